"""Harness ``mini-swe-agent``: mini-swe-agent 2.4.6 (PyPI) in the task's sandbox, its model calls
answered over the Chat protocol by the job's trainer (local mode).

    agent sandbox: the task's image + mini-swe-agent's packages (rock.agentic.mini_swe, built
    FROM the task's docker_image once, by the env image builder of this host's docker engine)
        mini --HTTP--> endpoint (loopback) --agent socket--> admin --> ChatTrainer.serve(policy)

Policies:
  ``oracle``  the first call is answered with a ``bash`` tool call running the task's solution
              (``oracle.oracle_tool_call``), the next with mini-swe-agent's submit command;
  ``null``    the submit command at once: the agent ends, nothing changed;
  a callable  ``policy(PendingCall) -> completion`` (sync or async): a trainer's or a test's.

The verifier runs the task's own image, fresh: the harness's packages never reach the hidden tests.
"""

from __future__ import annotations

import json
import time

from rock.agentic import mini_swe, tracing
from rock.agentic.record import RolloutRecord
from rock.agentic.tasks.build import stderr_progress
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harbor import Task
from rock.agentic.tasks.oracle import oracle_tool_call
from rock.agentic.tasks.harness import ChatHarness, RolloutOptions, register_harness, time_limit
from rock.sdk.sandbox.agent import RockAgentConfig
from rock.sdk.sandbox.model_service.base import ModelServiceConfig

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"  # mini-swe-agent's "I am done"


def reply(tool_call: dict, content: str | None = None) -> dict:
    """A chat completion of one assistant message carrying ``tool_call`` (and ``content``)."""
    return {"choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": content, "tool_calls": [tool_call]}}]}


def submit_call(call_id: str = "call_submit") -> dict:
    """A bash tool call of mini-swe-agent's submit command, which ends its run."""
    return {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": SUBMIT})}}


def oracle_policy(task: Task):
    """The reference fix through mini-swe-agent's bash tool, then its submit command."""
    def answer(call) -> dict:
        if any(m.get("role") == "tool" for m in call.request.get("messages", [])):
            return reply(submit_call(), "The fix is in; submitting.")
        return reply(oracle_tool_call(task), "Applying the reference fix.")
    return answer


def null_policy(call) -> dict:
    """The submit command at once: the agent ends, nothing changed."""
    return reply(submit_call(), "I will not change anything.")


class MiniSweHarness(ChatHarness):
    """Harness ``mini-swe-agent``: mini-swe-agent from PyPI in an image made FROM the task's, its model calls
    answered by the job's policy (``oracle``, ``null`` or a callable). ``policy_options["max_steps"]`` caps its
    steps (default 30)."""

    name = "mini-swe-agent"
    policies = ("oracle", "null")
    oracle_policy = staticmethod(oracle_policy)
    null_policy = staticmethod(null_policy)
    step_limit = 30
    _images: dict[str, str] = {}  # task image -> its mini-swe-agent image, per process

    async def image(self, task: Task) -> str | None:
        """The task image with mini-swe-agent installed, built on first use (minutes; progress on stderr) and kept
        for the process. Raises TaskError for a task that builds its own image from a Dockerfile."""
        if not task.image:
            raise TaskError(f"harness mini-swe-agent runs tasks with an [environment] docker_image; {task.task_id} "
                            "builds its own (environment/Dockerfile)", "BadRequest")
        if task.image not in self._images:
            # Built on first use (pip in a build sandbox, minutes): its progress lines go to stderr.
            image = await mini_swe.ensure_image(task.image, progress=stderr_progress("mini-swe-agent image"))
            self._images[task.image] = image.tag
        return self._images[task.image]

    def config(self, task: Task, options: RolloutOptions, limit: float) -> RockAgentConfig:
        """The agent's install and run, for ``box.agent``."""
        steps = int((options.policy_options or {}).get("max_steps") or self.step_limit)
        model = (options.policy_options or {}).get("model") or "rock-policy"
        return RockAgentConfig.mini_swe_agent(
            step_limit=steps, project_path=task.workdir, agent_run_timeout=max(2, int(limit)),
            agent_run_check_interval=1, model_service_config=ModelServiceConfig(enabled=True, models=[model]))

    async def run(self, box, task: Task, options: RolloutOptions, rec: RolloutRecord) -> None:
        """Install mini-swe-agent, run it on the task's instruction while the policy answers its calls, and record
        its exit, output and every model call. A policy that breaks stops the endpoint so the agent exits at
        once."""
        answer = self.answerer(task, options)
        limit = time_limit(options.agent_timeout, task.agent_timeout)
        config = self.config(task, options, limit)
        t, began = time.perf_counter(), time.time()
        await box.agent.install(config)
        rec.timings["harness_install_ms"] = round((time.perf_counter() - t) * 1000, 1)
        tracing.span_at("harness_install", began, time.time())
        await self.run_agent(box, task, options, answer, rec)


register_harness("mini-swe-agent", MiniSweHarness)
