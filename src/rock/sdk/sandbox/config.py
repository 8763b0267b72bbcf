"""Sandbox configuration, with ROCK's field names and defaults (``rock.sdk.sandbox.config``)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rock.actions.volumes import VolumeMount
from rock.client.config import resolve_token, resolve_url


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class BaseConfig(BaseModel):
    """What every client config has: the admin's URL, extra headers and the token; unknown fields refused."""

    # Reject unknown fields: SandboxConfig(imgae=...) should fail loudly, not start the default image.
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(default_factory=lambda: resolve_url())
    extra_headers: dict[str, str] = Field(default_factory=dict)
    xrl_authorization: str | None = None  # ROCK's deprecated token field; sent as XRL-Authorization
    # ours: the API token (``Authorization: Bearer``); defaults to $ROCK_TOKEN
    token: str | None = Field(default_factory=lambda: resolve_token())


class SandboxConfig(BaseConfig):
    """rl-rock's ``SandboxConfig``: the sandbox to start (image, memory, cpus, TTL, ids and labels)."""

    image: str = "python:3.11"
    image_os: str = "linux"
    auto_clear_seconds: int = 60 * 5
    startup_timeout: float = Field(default_factory=lambda: _env_float("ROCK_SANDBOX_STARTUP_TIMEOUT_SECONDS", 180))
    memory: str = "8g"
    cpus: float = 2
    limit_cpus: float | None = None
    num_gpus: float | None = None
    accelerator_type: str | None = None
    user_id: str | None = None
    experiment_id: str | None = None
    cluster: str = Field(default_factory=lambda: os.environ.get("ROCK_DEFAULT_CLUSTER", "default"))
    namespace: str | None = None
    registry_username: str | None = None
    registry_password: str | None = None
    use_kata_runtime: bool = False
    sandbox_id: str | None = None
    auto_archive_seconds: int | None = None
    auto_delete_seconds: int | None = None
    disk: str | None = "50G"
    # ours: start from an image built from a Dockerfile (its text) and/or a build context directory;
    # the admin builds it once per content (``image`` is then ignored)
    dockerfile: str | None = None
    build_context: str | None = None
    pull_policy: Literal["missing", "always", "never"] = "missing"  # when the server pulls `image`
    network: bool = False
    # ours: the egress policy ("none", "all" or {"allow": [...], "deny": [...], "ports": [...]}):
    # the sandbox goes out only through the admin's gate, to what the policy names (not with network)
    egress: str | dict[str, Any] | None = None
    # ours: environment variable -> the name of a secret of yours (``Secrets``): the variable holds a
    # placeholder; the egress relay sends the value to the secret's hosts only (needs ``egress``)
    secrets: dict[str, str] | None = None
    env: dict[str, str] | None = None
    request_timeout: float | None = Field(default=None, description="read timeout of one request; None = none")
    # ours: start from a snapshot (``Sandbox.snapshot()``'s name): its files (full: its processes),
    # image and limits; image, memory and cpus above are then not used
    snapshot: str | None = None
    # ours, E2B's lifecycle: what the idle timeout (auto_clear_seconds) does, "stop" or "pause"; and
    # whether a call to a paused sandbox resumes it first (otherwise it raises SandboxPaused)
    on_timeout: Literal["stop", "pause"] | None = None
    auto_resume: bool | None = None
    # ours: volumes of the token's mounted at start (``rock.sdk.sandbox.volumes``)
    volumes: list[VolumeMount] | None = None

    def headers(self) -> dict[str, str]:
        """The headers every call to the admin carries for this config: ROCK's ``X-Cluster``,
        ``X-User-Id``, ``X-Experiment-Id`` and ``X-Namespace`` where set, the token(s), then
        ``extra_headers`` (which win)."""
        headers = {"X-Cluster": self.cluster}
        for name, value in (("X-User-Id", self.user_id), ("X-Experiment-Id", self.experiment_id),
                            ("X-Namespace", self.namespace)):
            if value:
                headers[name] = value
        if self.xrl_authorization:
            headers["XRL-Authorization"] = f"Bearer {self.xrl_authorization}"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(self.extra_headers)
        return headers


class SandboxGroupConfig(SandboxConfig):
    """rl-rock's ``SandboxGroupConfig``: ``size`` sandboxes of one config, started ``start_concurrency`` at a time."""

    size: int = Field(default=2, ge=1)
    start_concurrency: int = Field(default=2, ge=1)
    start_retry_times: int = Field(default=3, ge=1)
