"""Env errors as the service and the SDK see them: one class, the agent's error type as ``kind``.

The env host and the agent name what went wrong (``EnvTimeout``, ``EnvLost``, ...);
``rock.errors.STATUS`` maps each name to the HTTP status the admin answers with, in one place
that clients share. The SDK raises ``EnvError`` with the same ``kind`` and message.
"""

from __future__ import annotations

from rock.errors import ENV_STATUS, AgentError, EnvError, RockError

STATUS = ENV_STATUS  # the kinds and their statuses live with the error tree, which clients share


__all__ = ["STATUS", "EnvError", "from_agent"]


def from_agent(exc: AgentError) -> RockError:
    """An agent error of an env op as an EnvError (other agent errors pass through unchanged)."""
    if exc.kind in STATUS:
        return EnvError(exc.message, exc.kind)
    return exc
