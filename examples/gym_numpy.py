"""Gymnasium envs in a sandbox with NumPy values (seed 003's `rock.numpy`): one env and a vector.

Run against a running admin: `rock admin start`, then `python examples/gym_numpy.py`.
The first run builds the env image (gymnasium and its offline families, with progress on stderr).
"""

import numpy as np

import rock.numpy


def main() -> None:
    with rock.numpy.SandboxEnv("CartPole-v1") as env:
        obs, info = env.reset(seed=0)
        total = 0.0
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += reward
            if terminated or truncated:
                obs, info = env.reset()
        print(f"CartPole: observation {obs.dtype}{obs.shape}, reward over 20 steps {total}")
        assert isinstance(obs, np.ndarray) and obs.shape == (4,)

    with rock.numpy.SandboxVectorEnv("CartPole-v1", num_envs=8) as envs:
        obs, info = envs.reset(seed=0)  # env i is seeded 0 + i
        obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
        print(f"8 CartPoles: observations {obs.shape}, rewards {rewards.tolist()}")
        assert obs.shape == (8, 4) and rewards.shape == (8,)


if __name__ == "__main__":
    main()
