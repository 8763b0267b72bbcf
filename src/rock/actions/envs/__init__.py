"""rl-rock's ``rock.actions.envs``: the GEM env routes' bodies and the abstract ``Env``."""

from rock.actions.envs.base import Env
from rock.actions.envs.request import EnvCloseRequest, EnvMakeRequest, EnvResetRequest, EnvStepRequest
from rock.actions.envs.response import (EnvCloseResponse, EnvListResponse, EnvMakeResponse, EnvResetResponse,
                                        EnvStepResponse)

__all__ = ["Env", "EnvCloseRequest", "EnvMakeRequest", "EnvResetRequest", "EnvStepRequest", "EnvCloseResponse",
           "EnvListResponse", "EnvMakeResponse", "EnvResetResponse", "EnvStepResponse"]
