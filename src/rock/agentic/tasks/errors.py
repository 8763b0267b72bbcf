"""Errors of agentic tasks: a ``kind`` for callers and a message a person can act on."""

from __future__ import annotations

import difflib

from rock.errors import RockError


class TaskError(RockError):
    """A task, suite, harness or policy that cannot be used: ``kind`` names the failure (BadTask, BadRequest,
    UnknownSuite, TaskNotFound, ...) and the message says what to fix. HTTP 400, or 404 for an unknown suite or
    task."""

    status_code = 400  # every kind but the two of ``statuses``
    statuses = {"UnknownSuite": 404, "TaskNotFound": 404}

    def __init__(self, message: str, kind: str = "BadTask"):
        super().__init__(message, kind)


def closest(name: str, known, n: int = 3) -> str:
    """' (closest: a, b)' for an unknown name, or '' when nothing is near."""
    near = difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)
    return f" (closest: {', '.join(near)})" if near else ""
