"""Bodies of the GEM env routes (``/apis/v1/envs/gem``) at rl-rock's import path."""

from pydantic import BaseModel, ConfigDict, Field


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EnvMakeRequest(_Compat):
    env_id: str
    sandbox_id: str = Field(default="", description="ignored by the server: it names the env's sandbox itself")


class EnvResetRequest(_Compat):
    sandbox_id: str = Field(min_length=1)
    seed: int | None = None


class EnvStepRequest(_Compat):
    sandbox_id: str = Field(min_length=1)
    action: str


class EnvCloseRequest(_Compat):
    sandbox_id: str = Field(min_length=1)
