"""Suites by name: the built-in ones (in the cache, built when first opened) or a folder of Harbor tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from rock.agentic.tasks.errors import TaskError, closest
from rock.agentic.tasks.harbor import TaskFolder
from rock.agentic.tasks.pypi_bugs import cache_dir

BUILTIN = {"pypi-bugs": "real libraries' sdists with one procedural bug each",
           "humaneval-repo": "the 164 HumanEval problems as one-file repositories"}


def built(name: str) -> dict | None:
    """A built-in suite's manifest (what it was built with and its task counts), or None when this
    host has not built it."""
    manifest = cache_dir() / "suites" / name / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.exists() else None


def open_suite(name: str, progress: Callable[[str], None] | None = None) -> TaskFolder:
    """``pypi-bugs``, ``humaneval-repo``, or the path of a folder of task folders (or of one task).

    A built-in suite this host has not built yet is built first, as ``rock suites build`` would
    with its defaults (pypi-bugs runs each library's tests per mutant: 11-19 minutes on 2 cores), with
    ``progress`` lines (default: on stderr) so nobody waits on a silent process."""
    if name in BUILTIN:
        if built(name) is None:
            from rock.agentic.tasks.build import PER_LIBRARY, SEED, build_suites, stderr_progress

            say = progress or stderr_progress(f"building {name}")
            how = f"seed {SEED}, {PER_LIBRARY} tasks per library; " if name == "pypi-bugs" else ""
            say(f"suite {name} is not built on this host yet: building it now into {cache_dir() / 'suites'} "
                f"({how}`rock suites build` builds every suite at once)")
            build_suites([name], say=say)
        return TaskFolder(cache_dir() / "suites" / name, name)
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
