"""Training tasks' settings (``ROCK_TRAINING_*`` environment variables, or the ``[training]`` section of the
admin's config file): instances' idle time and per-call timeout, how many may be open, how they spread over env
hosts."""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    """How training instances live: released after ``idle_ttl`` seconds unused, each call bounded by
    ``call_timeout``, at most ``max_instances`` open, spread over up to ``hosts`` env sandboxes."""

    model_config = SettingsConfigDict(env_prefix="ROCK_TRAINING_", extra="ignore")

    idle_ttl: float = Field(default=300.0, gt=0)  # the seed: instances are released after 5 minutes
    call_timeout: float = Field(default=120.0, gt=0)
    max_instances: int = Field(default=4096, ge=1)
    # A pure-computation suite's instances share env sandboxes, whose env host is one thread:
    # they are spread over up to ``hosts`` sandboxes (one core each) once each holds
    # ``host_fill`` instances, so a job's grading runs on every core (BFCL at concurrency 32
    # on 2 cores: 16 and 16 instead of 32 on one core).
    hosts: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    host_fill: int = Field(default=8, ge=1)
