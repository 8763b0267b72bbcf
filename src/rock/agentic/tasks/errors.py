"""Errors of agentic tasks: a ``kind`` for callers and a message a person can act on."""

from __future__ import annotations

import difflib

from rock.errors import RockError


class TaskError(RockError):
    status_code = 400

    def __init__(self, message: str, kind: str = "BadTask"):
        super().__init__(message)
        self.kind = kind
        self.status_code = 404 if kind in ("UnknownSuite", "TaskNotFound") else 400


def closest(name: str, known, n: int = 3) -> str:
    """' (closest: a, b)' for an unknown name, or '' when nothing is near."""
    near = difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)
    return f" (closest: {', '.join(near)})" if near else ""
