"""Sandbox envs whose values are NumPy arrays and Python primitives.

    import rock.numpy

    with rock.numpy.SandboxVectorEnv("CartPole-v1", num_envs=8) as env:
        obs, info = env.reset(seed=0)                       # obs: float32 array of shape (8, 4)
        obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rock.sdk.envs.contract import EnvContract, SpaceSpec
from rock.sdk.envs.sandbox_env import SandboxEnvBase, SandboxSessionBase, SandboxVectorEnvBase

__all__ = ["SandboxEnv", "SandboxVectorEnv", "SandboxSessionBase", "SandboxEnvBase", "SandboxVectorEnvBase",
           "EnvContract", "SpaceSpec"]


class SandboxEnv(SandboxEnvBase[np.ndarray, Any]):
    """One gymnasium env in a ROCK sandbox; observations as NumPy arrays, Python ints and strs."""


class SandboxVectorEnv(SandboxVectorEnvBase[np.ndarray, Any]):
    """A vector of gymnasium envs in a ROCK sandbox; batches as NumPy arrays (rewards float64,
    flags bool, each of shape ``(num_envs,)``)."""
