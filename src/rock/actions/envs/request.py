"""Bodies of the GEM env routes (``/apis/v1/envs/gem``) at rl-rock's import path."""

from pydantic import BaseModel, ConfigDict, Field


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EnvMakeRequest(_Compat):
    """POST /make: start an env of the catalog's ``env_id``; the reply's ``sandbox_id`` is the env's handle."""

    env_id: str
    sandbox_id: str = Field(default="", description="ignored by the server: it names the env's sandbox itself")


class EnvResetRequest(_Compat):
    """POST /reset: start a new episode of the env ``sandbox_id`` (its handle), seeded with ``seed`` when given."""

    sandbox_id: str = Field(min_length=1)
    seed: int | None = None


class EnvStepRequest(_Compat):
    """POST /step: apply ``action`` (text) to the env ``sandbox_id`` (its handle)."""

    sandbox_id: str = Field(min_length=1)
    action: str


class EnvCloseRequest(_Compat):
    """POST /close: end the env ``sandbox_id`` (its handle); a sandbox dedicated to it is stopped too."""

    sandbox_id: str = Field(min_length=1)
