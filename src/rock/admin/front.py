"""What a front door declares to the app beside its ``install(app, ctx)``: ``FRONT = FrontDoor(...)``
in its package. The app reads these and nothing else of a door (rock.admin.app):

    roles       the roles that install it (its install still mounts only what the role serves)
    public      (METHOD, path) pairs served without a token even when tokens are on
    open_paths  path prefixes past the token gate: their routes prove the caller themselves
    refusals    the token gate's answer under a path prefix, in the door's own shape (tried in
                the order the doors are installed, so a narrower prefix is declared first)
    errors      exception handlers, (exception type, handler), for the roles that install it
    health      an answer to ``GET /health`` for the door's own callers (envd's health for
                the e2b SDK), or None when the request is not theirs
    env_calls   route template -> env call kind, counted by ``/metrics`` (rock_env_steps) when
                answered successfully

The gate's declarations (public, open paths, refusals unless narrowed) hold on every role: a
request for a route a role does not mount is then its 404, not a 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("admin", "proxy")


@dataclass(frozen=True)
class Refusal:
    """The token gate's refusal under ``prefix``: ``answer(path, query, error) -> Response``."""

    prefix: str
    answer: Callable[..., Any]
    roles: tuple[str, ...] = ROLES


@dataclass(frozen=True)
class FrontDoor:
    """A front door's declarations (see the module's docstring)."""

    roles: tuple[str, ...] = ROLES
    public: frozenset[tuple[str, str]] = frozenset()
    open_paths: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    errors: tuple[tuple[type[BaseException], Callable[..., Any]], ...] = ()
    health: Callable[..., Awaitable[Any]] | None = None
    env_calls: Mapping[str, str] = field(default_factory=dict)
