"""Agentic tasks with hidden tests: Harbor-layout task folders (a user's, or the built-in suites
``pypi-bugs`` and ``humaneval-repo``), rollouts in sandboxes, and a verifier that runs the hidden
tests on the agent's diff in a fresh sandbox. See docs/agentic-tasks.md."""

from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harbor import Task, TaskFolder, load_task

__all__ = ["Task", "TaskError", "TaskFolder", "load_task"]
