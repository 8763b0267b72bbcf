"""Env errors as the service and the SDK see them: one class, the agent's error type as ``kind``.

The env host and the agent name what went wrong (``EnvTimeout``, ``EnvLost``, ...); this maps
each name to the HTTP status the admin answers with, in one place. The SDK raises ``EnvError``
with the same ``kind`` and message.
"""

from __future__ import annotations

from rock.errors import AgentError, RockError

STATUS = {
    "BadRequest": 400,
    "EnvNotFound": 404,        # unknown id, or a handle that was closed / reclaimed
    "EnvUnavailable": 422,     # known id that cannot run here (missing corpus, fails inside gem)
    "EnvMakeError": 422,       # the env's constructor raised
    "EnvBuildError": 422,      # its image could not be built (a package that does not install, a bad import)
    "EnvBroken": 409,          # an earlier call timed out; the env must be closed and made again
    "EnvLost": 410,            # its env host died; the env is gone
    # a fork's replay did not reach the source's observation (rock/envs/forking.py)
    "EnvNotDeterministic": 409,
    # the env's own code raised in reset/step (most often on an action it cannot take; the message
    # names the exception and where): an answer about this call's input, not a failure of the admin
    "EnvError": 422,
    "EnvHostDied": 502,        # the env host process died during this call
    "EnvTimeout": 504,         # the call ran past its timeout
}


class EnvError(RockError):
    """An env call refused or failed; ``kind`` names why (EnvNotFound, EnvMakeError, EnvTimeout, ...)
    and sets the HTTP status."""

    statuses = STATUS  # kind defaults to "EnvError" (the class's name)


def from_agent(exc: AgentError) -> RockError:
    """An agent error of an env op as an EnvError (other agent errors pass through unchanged)."""
    if exc.kind in STATUS:
        return EnvError(exc.message, exc.kind)
    return exc
