"""Gymnasium envs that misbehave on purpose, installed into an env image by ROCK's tests."""

import time

import gymnasium as gym
import numpy as np


class Hostile(gym.Env):
    """Action 0: a normal step. Action 1: raises. Action 2: hangs (until interrupted)."""

    def __init__(self, hang_seconds: float = 3600.0):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.hang_seconds = hang_seconds
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        if action == 1:
            raise RuntimeError("hostile env refuses action 1")
        if action == 2:
            time.sleep(self.hang_seconds)
        self.t += 1
        return np.full(2, self.t / 100, np.float32), 1.0, False, self.t >= 50, {"t": self.t}


class Unseeded(gym.Env):
    """Ignores its seed: every observation is drawn from a generator seeded by the OS, so no
    replay of its seed and actions reaches the observation it holds (a fork must refuse it)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.random.default_rng().random(2, dtype=np.float32), {}

    def step(self, action):
        return np.random.default_rng().random(2, dtype=np.float32), 0.0, False, False, {}
