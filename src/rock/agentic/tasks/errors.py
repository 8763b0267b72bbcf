"""Errors of agentic tasks: ``TaskError`` (rock.errors), a ``kind`` for callers and a message a person can
act on, and the hint that names the closest known name."""

from __future__ import annotations

import difflib

from rock.errors import TaskError

__all__ = ["TaskError", "closest"]


def closest(name: str, known, n: int = 3) -> str:
    """' (closest: a, b)' for an unknown name, or '' when nothing is near."""
    near = difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)
    return f" (closest: {', '.join(near)})" if near else ""
