"""The env service's records: an env sandbox (its slots and when it went empty) and an open env
(its handle, owner, sandbox and the times its idle TTL is counted from).

They live in the admin's memory only: routing a call needs nothing but the handle, so they serve
placement (free slots), listing and the idle TTL, and are rebuilt after an admin restart
(``rock.envs.recovery``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rock.idle import Leased


@dataclass(eq=False)
class EnvSandbox:
    """One env sandbox as the service holds it: the envs it hosts, the slots claimed for envs on
    their way in, whether it is running yet (``ready``), and since when it has been empty (it is
    stopped after ``sandbox_linger``). ``key`` is the pool it belongs to: (owner, image, network)."""

    sandbox_id: str
    owner: str | None
    key: tuple
    envs: set[str] = field(default_factory=set)
    reserved: int = 0
    ready: asyncio.Future | None = None
    empty_since: float | None = None
    # A sandbox of its own for one env (a gym session): sized for it, stopped when it closes.
    dedicated: bool = False
    memory: str | None = None
    cpus: float | None = None


@dataclass(eq=False)
class EnvRecord(Leased):
    """One open env as the service holds it: its handle, owner, the sandbox it lives in, and the
    times its idle TTL is counted from."""

    handle: str
    env_id: str
    owner: str | None
    sandbox: EnvSandbox
    vec: str | None = None
    ttl: float | None = None  # idle time before it is closed; None: the service's idle_ttl
    made: dict = field(default_factory=dict)  # what the env host answered to its make
