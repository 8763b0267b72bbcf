"""Replies of the GEM env routes at rl-rock's import path."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


class EnvMakeResponse(_Compat):
    """The new env's handle (``<env sandbox>:<env>``), to pass as ``sandbox_id`` to reset, step and close."""

    sandbox_id: str


class EnvResetResponse(_Compat):
    """The first observation of a new episode and the env's info."""

    observation: Any
    info: dict[str, Any] = Field(default_factory=dict)


class EnvStepResponse(_Compat):
    """What one action did: the next observation, the reward, whether the episode ended (``terminated``) or was cut
    short (``truncated``), and the env's info."""

    observation: Any
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = Field(default_factory=dict)


class EnvCloseResponse(_Compat):
    """The handle of the env that was closed."""

    sandbox_id: str


class EnvListResponse(_Compat):
    """The env ids the catalog offers."""

    env_id: list[str]
