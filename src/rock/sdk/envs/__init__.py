"""The envs' client side, at ROCK's import path (``from rock.sdk.envs import make, RockEnv``).

``client``: ``rock.make`` and GEM envs (sync and async); ``vec_client``: ``rock.make_vec``;
``sandbox_env``, ``gym_http`` and ``contract``: gymnasium sessions for ``rock.numpy`` and
``rock.torch``. All of it goes to the admin through ``rock.client``; the service's side of the
envs is ``rock.envs``, which nothing here imports."""

from rock.sdk.envs.client import AsyncEnv, Env, make, make_async, make_vec, make_vec_async
from rock.errors import EnvError
from rock.sdk.envs.vec_client import AsyncVecEnv, VecEnv

RockEnv = Env  # rl-rock's name for the env class

__all__ = ["make", "make_async", "make_vec", "make_vec_async", "Env", "RockEnv", "AsyncEnv", "VecEnv",
           "AsyncVecEnv", "EnvError"]
