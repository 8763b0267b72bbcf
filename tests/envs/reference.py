"""Playing the same games in-process (gem.make, the reference) and through the service."""

from __future__ import annotations

import json
import random

import numpy as np

from rock.agent.envhost.host import jsonable
from rock.envs.client import make

# (env id, seed, steps): games whose steps draw from the global RNG (2048's new tiles,
# Minesweeper's mines) show whether each hosted env really has its own random state.
GAMES = [
    ("game:GuessTheNumber-v0-easy", 7, 4),
    ("game:Sokoban-v0-easy", 42, 10),
    ("game:Game2048-v0-easy", 3, 12),
    ("game:Minesweeper-v0-easy", 5, 8),
    ("game:Mastermind-v0-easy", 11, 6),
    ("game:FifteenPuzzle-v0-easy", 2, 6),
    ("game:TowerofHanoi-v0-easy", 4, 6),
    ("game:Sudoku-v0-easy", 9, 4),
    ("game:Crosswords-v0-easy", 1, 4),
    ("rg:basic_arithmetic", 13, 1),
]


def normal(value):
    """As the value looks after the trip through JSON (numpy scalars become numbers, ...)."""
    return json.loads(json.dumps(value, default=jsonable))


def _action(env) -> str:
    """The env's own random action, drawn without touching the global RNG the env plays with."""
    state = random.getstate(), np.random.get_state()
    try:
        return env.sample_random_action()
    except NotImplementedError:
        return "\\boxed{1}"
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])


def play_in_process(env_id: str, seed: int, actions: list | None = None, steps: int = 0, **kwargs):
    """Returns (records, actions): the reset record, then one per step until the episode ends."""
    import gem

    env = gem.make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    records, played = [normal({"observation": obs, "info": info})], []
    for i in range(len(actions) if actions is not None else steps):
        action = actions[i] if actions is not None else _action(env)
        obs, reward, terminated, truncated, info = env.step(action)
        played.append(action)
        records.append(normal({"observation": obs, "reward": float(reward), "terminated": bool(terminated),
                               "truncated": bool(truncated), "info": info}))
        if terminated or truncated:
            break
    return records, played


def play_remote(games: list[tuple[str, int, list]]) -> dict[str, list]:
    """All games open at once, stepped in turn: envs share hosts and interleave their calls."""
    envs = {env_id: make(env_id) for env_id, _, _ in games}
    try:
        records = {}
        for env_id, seed, _ in games:
            obs, info = envs[env_id].reset(seed=seed)
            records[env_id] = [{"observation": obs, "info": info}]
        for i in range(max(len(a) for _, _, a in games)):
            for env_id, _, actions in games:
                if i < len(actions):
                    obs, reward, terminated, truncated, info = envs[env_id].step(actions[i])
                    records[env_id].append({"observation": obs, "reward": reward, "terminated": terminated,
                                            "truncated": truncated, "info": info})
        return records
    finally:
        for env in envs.values():
            env.close()


def _rng():
    return random.getstate(), np.random.get_state()


def _set_rng(state) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])


class Alone:
    """An in-process gem env with its own global RNG state, as if it ran in its own process."""

    def __init__(self, env_id: str, **kwargs):
        import gem

        outer = _rng()
        random.seed()
        np.random.seed()
        self.env = gem.make(env_id, **kwargs)
        self.state = _rng()
        _set_rng(outer)

    def call(self, name: str, *args):
        outer = _rng()
        _set_rng(self.state)
        try:
            return getattr(self.env, name)(*args)
        finally:
            self.state = _rng()
            _set_rng(outer)


def play_vec_in_process(env_id: str, num_envs: int, seed: int, rounds: list[dict], mode: str) -> list[list]:
    """The documented vector semantics (rock.envs.vector), played with separate in-process envs."""
    envs = [Alone(env_id) for _ in range(num_envs)]
    first = [normal(dict(zip(("observation", "info"), e.call("reset", seed + i)))) for i, e in enumerate(envs)]
    ended = [False] * num_envs
    out = [first]
    for actions in rounds:
        results = []
        for i, action in actions.items():
            env = envs[i]
            if mode == "next_step" and ended[i]:
                obs, info = env.call("reset", None)
                ended[i] = False
                results.append(normal({"observation": obs, "info": info, "reward": 0.0, "terminated": False,
                                       "truncated": False}))
                continue
            obs, reward, terminated, truncated, info = env.call("step", action)
            rec = {"observation": obs, "reward": float(reward), "terminated": terminated, "truncated": truncated,
                   "info": info}
            if (terminated or truncated) and mode == "same_step":
                new_obs, new_info = env.call("reset", None)
                rec.update(observation=new_obs, info=dict(new_info, final_observation=obs, final_info=info))
            elif terminated or truncated:
                ended[i] = True
            results.append(normal(rec))
        out.append(results)
    return out
