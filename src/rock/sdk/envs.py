"""ROCK's import path for GEM envs (``from rock.sdk.envs import make, RockEnv``); see rock.envs.client."""

from rock.envs.client import AsyncEnv, Env, make, make_async, make_vec, make_vec_async
from rock.envs.errors import EnvError
from rock.envs.vec_client import AsyncVecEnv, VecEnv

RockEnv = Env  # rl-rock's name for the env class

__all__ = ["make", "make_async", "make_vec", "make_vec_async", "Env", "RockEnv", "AsyncEnv", "VecEnv",
           "AsyncVecEnv", "EnvError"]
