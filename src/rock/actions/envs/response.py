"""Replies of the GEM env routes at rl-rock's import path."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


class EnvMakeResponse(_Compat):
    sandbox_id: str


class EnvResetResponse(_Compat):
    observation: Any
    info: dict = Field(default_factory=dict)


class EnvStepResponse(_Compat):
    observation: Any
    reward: float
    terminated: bool
    truncated: bool
    info: dict = Field(default_factory=dict)


class EnvCloseResponse(_Compat):
    sandbox_id: str


class EnvListResponse(_Compat):
    env_id: list[str]
