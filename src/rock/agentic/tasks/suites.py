"""Suites by name: the built-in ones (made at set-up into the cache) or a folder of Harbor tasks."""

from __future__ import annotations

from pathlib import Path

from rock.agentic.tasks.errors import TaskError, closest
from rock.agentic.tasks.harbor import TaskFolder
from rock.agentic.tasks.pypi_bugs import cache_dir

BUILTIN = {"pypi-bugs": "real libraries' sdists with one procedural bug each",
           "humaneval-repo": "the 164 HumanEval problems as one-file repositories"}


def open_suite(name: str) -> TaskFolder:
    """``pypi-bugs``, ``humaneval-repo``, or the path of a folder of task folders (or of one task)."""
    if name in BUILTIN:
        root = cache_dir() / "suites" / name
        if not (root / "manifest.json").exists():
            raise TaskError(f"suite {name} is not built on this host yet: run `python -m rock.agentic.tasks.build "
                            f"--suite {name}` (scripts/setup-host.sh does)", "UnknownSuite")
        return TaskFolder(root, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return TaskFolder(path)
    raise TaskError(f"unknown suite {name!r}{closest(name, BUILTIN)}: give pypi-bugs, humaneval-repo or the path "
                    "of a folder of Harbor tasks", "UnknownSuite")


def select_ids(suite: TaskFolder, tasks: list[str] | None = None, limit: int | None = None) -> list[str]:
    """The chosen task ids, checked (an unknown one is named with the closest ids); all by default."""
    known = suite.ids()
    if tasks:
        missing = [t for t in tasks if t not in set(known)]
        if missing:
            raise TaskError("; ".join(f"{suite.name} has no task {t!r}{closest(t, known)}" for t in missing),
                            "TaskNotFound")
        ids = list(dict.fromkeys(tasks))
    else:
        ids = known
    return ids[:limit] if limit else ids
