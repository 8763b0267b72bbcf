"""Env hosting settings (``ROCK_ENV_*`` environment variables), defaults sized for toy games."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EnvSettings(BaseSettings):
    """Env hosting settings, from ``ROCK_ENV_*`` environment variables: how many envs share a sandbox, the env
    sandboxes' and gym sessions' memory and CPUs, the image, the per-call timeout and the idle times (seconds),
    and which of the admin's environment variables env sandboxes get."""

    model_config = SettingsConfigDict(env_prefix="ROCK_ENV_", extra="ignore")

    # Many envs share one sandbox: a text game needs kilobytes, the host process ~120 MB.
    envs_per_sandbox: int = Field(default=64, ge=1, le=4096)
    sandbox_memory: str = "512m"
    # One core per env sandbox: the env host is one thread, so it is never throttled by this
    # limit, only kept to its core. At 0.5, a burst of resets or makes of a heavy env (Sokoban's
    # room generation) ran into the CFS quota, and the steps right after it waited for the next
    # quota period (up to 100 ms).
    sandbox_cpus: float = 1.0
    image: str | None = None  # None: the admin's default image (the env host uses the host's Python)
    # Per call (make, reset, step) inside the env; past it the env is marked broken.
    call_timeout: float = Field(default=120.0, gt=0)
    # An env nobody used for this long is closed; an env sandbox left empty is stopped after linger.
    idle_ttl: float = Field(default=600.0, gt=0)
    sandbox_linger: float = Field(default=60.0, ge=0)
    # Environment variables passed from the admin into env sandboxes when set (data locations).
    pass_env: list[str] = Field(default_factory=lambda: ["NLTK_DATA", "HF_HOME", "HF_DATASETS_CACHE"])
    # Gymnasium sessions: one sandbox each, sized for numeric envs and their workers.
    gym_sandbox_memory: str = "2g"
    gym_sandbox_cpus: float = Field(default=2.0, gt=0)
    # A session whose client stopped renewing its lease (a keepalive every lease/3 s) is closed.
    gym_lease: float = Field(default=60.0, gt=0)
