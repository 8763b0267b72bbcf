"""The records a backend takes and returns: what a caller asks for (``SandboxSpec``), how a
backend finds a sandbox again (``RuntimeHandle``), what a sandbox uses (``ResourceStats``).

Below the backends' interface (``base``) and what it shares with them (``snapshots``,
``forks``), which all name these."""

from __future__ import annotations

import os
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rock.runtime.agent_boot import SOCKET_NAME


class VolumeBind(BaseModel):
    """A volume's host directory mounted into a sandbox at ``target`` (``rock.admin.volumes``)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    target: str
    read_only: bool = False


class SandboxSpec(BaseModel):
    """What a caller asks a backend for."""

    model_config = ConfigDict(extra="forbid")

    sandbox_id: str
    image: str | None = None
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = 1024
    network: bool = False
    max_file_bytes: int | None = None  # no file grows past it (None: the settings' max_file_bytes; 0: no limit)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    pull_policy: str = "missing"  # missing | always | never: when to pull the image (engine-backed images)
    # Registry login for the pull; never persisted with the rest of the spec.
    registry_auth: dict[str, str] | None = Field(default=None, exclude=True)
    runtime: str | None = None  # an engine runtime other than the default (e.g. kata)
    # Placement: whole GPUs wanted, disk promised, labels the node must carry (accelerator_type too).
    gpus: int = 0
    disk_bytes: int | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    # The GPUs the node gave this sandbox (its /dev/nvidiaN), set by the worker, not by callers.
    gpu_ids: list[int] = Field(default_factory=list)
    # Host paths mounted read-only at the same path: only the env image builder sets these (the
    # operator's package index and CA bundle in a build sandbox); no request field reaches them.
    ro_binds: list[str] = Field(default_factory=list)
    # An egress policy (``rock.actions.egress.EgressRules`` as a dict): the sandbox's own network
    # namespace gets a way out through the worker's gate (``rock.runtime.egress``); None: none.
    egress: dict | None = None
    # Secrets the egress relay sends for this sandbox: each one's name, namespace, placeholder and
    # hosts (E2B's transforms: a host and its headers); never a value (``rock.runtime.egress.broker``).
    brokered: list[dict] = Field(default_factory=list)
    # Volumes of the sandbox's tenant, resolved by the admin to their host directories.
    volume_binds: list[VolumeBind] = Field(default_factory=list)
    # What the agent readies at boot for the first command: "session" a spare bash (ROCK's
    # sessions), "process" the process table (E2B's commands, each its own process); see
    # rock.agent.server.main.
    prewarm: Literal["session", "process"] = "session"


class RuntimeHandle(BaseModel):
    """What a backend needs to find a sandbox again, also after a worker restart (persisted as JSON)."""

    sandbox_id: str
    backend: str
    runtime_id: str
    run_dir: str
    spec: SandboxSpec
    pid: int | None = None
    created_at: float = Field(default_factory=time.time)
    extra: dict[str, str] = Field(default_factory=dict)

    @property
    def socket_path(self) -> str:
        """The agent's Unix socket in the sandbox's run directory."""
        return os.path.join(self.run_dir, SOCKET_NAME)

    @property
    def start_time(self) -> int | None:
        """Start time of ``pid`` (see ``process_start_time``) where the backend recorded one."""
        value = self.extra.get("start_time", "")
        return int(value) if value.isdigit() else None


class ResourceStats(BaseModel):
    """What a sandbox uses of its limits (None where the backend cannot tell)."""

    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    pids: int | None = None
    pids_limit: int | None = None
    # Forks the pids limit has refused so far: a sandbox at its limit, e.g. a fork bomb contained.
    forks_refused: int | None = None
