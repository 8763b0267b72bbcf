"""The same gymnasium envs with Torch tensors (seed 003's `rock.torch`; needs `pip install torch`,
the CPU build is enough).

Run against a running admin: `rock admin start`, then `python examples/gym_torch.py`.
"""

import torch

import rock.torch


def main() -> None:
    with rock.torch.SandboxVectorEnv("CartPole-v1", num_envs=4) as envs:
        obs, info = envs.reset(seed=0)
        actions = torch.ones(4, dtype=torch.int64)  # tensors go in as actions too
        obs, rewards, terminated, truncated, info = envs.step(actions)
        print(f"4 CartPoles: {type(obs).__name__} {tuple(obs.shape)} {obs.dtype}, rewards {rewards.tolist()}")
        assert isinstance(obs, torch.Tensor) and tuple(obs.shape) == (4, 4)


if __name__ == "__main__":
    main()
