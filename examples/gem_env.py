"""A GEM environment hosted in a sandbox (seed 000/001's `rock.make`), and a vector of them.

Run against a running admin: `rock admin start`, then `python examples/gem_env.py`.
`rock envs list` shows every env id and whether it can run here.
"""

import random

import rock


def main() -> None:
    env = rock.make("game:Sokoban-v0-easy")
    observation, info = env.reset(seed=42)
    print(observation.splitlines()[0][:100])
    rng = random.Random(0)
    for step in range(1, 51):
        action = f"\\boxed{{{rng.choice(['up', 'left', 'right', 'down'])}}}"
        observation, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    print(f"episode over after {step} steps: reward {reward}, terminated={terminated}, truncated={truncated}")
    env.close()

    envs = rock.make_vec("game:Sokoban-v0-easy", num_envs=4)  # one request steps all four
    observations, infos = envs.reset(seed=0)
    observations, rewards, terminated, truncated, infos = envs.step(["\\boxed{up}"] * 4)
    print(f"vector of {len(observations)}: rewards {list(rewards)}")
    assert len(observations) == 4
    envs.close()


if __name__ == "__main__":
    main()
