"""Sandbox envs whose values are Torch tensors.

Needs torch (``pip install torch``; the CPU build is enough): arrays become tensors that own
their memory, and actions may be tensors. The sessions are the same as ``rock.numpy``'s.
"""

from __future__ import annotations

from typing import Any

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("rock.torch needs PyTorch, which is not installed here: `pip install torch` (the CPU build "
                      "is enough), or use rock.numpy for NumPy values") from exc

from rock.sdk.envs.contract import EnvContract, SpaceSpec
from rock.sdk.envs.sandbox_env import Codec, SandboxEnvBase, SandboxSessionBase, SandboxVectorEnvBase

__all__ = ["SandboxEnv", "SandboxVectorEnv", "SandboxSessionBase", "SandboxEnvBase", "SandboxVectorEnvBase",
           "EnvContract", "SpaceSpec"]


def _numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_numpy(v) for v in value)
    return value


class TorchCodec(Codec):
    def array(self, value):
        return torch.from_numpy(value)  # the decoded array is private to this value: the tensor owns it

    def action(self, value):
        return _numpy(value)


class SandboxEnv(SandboxEnvBase[torch.Tensor, Any]):
    """One gymnasium env in a ROCK sandbox; array observations as tensors."""

    codec = TorchCodec()


class SandboxVectorEnv(SandboxVectorEnvBase[torch.Tensor, Any]):
    """A vector of gymnasium envs in a ROCK sandbox; batches as tensors (rewards float64, flags bool)."""

    codec = TorchCodec()
