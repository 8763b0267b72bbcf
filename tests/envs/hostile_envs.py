"""Env classes that misbehave on purpose, loaded by the env host as user envs (``module:Class``).

The host imports this file itself (it is put on the host's ``sys.path``); nothing here is a
stand-in for a real part: these are real envs whose code crashes, hangs or prints.
"""

import os
import random
import signal
import time


class Counter:
    """A well-behaved env: observation counts the steps; reward draws from the global RNG."""

    def __init__(self, start=0, **_):
        self.start = start
        self.n = start

    def reset(self, seed=None):
        if seed is not None:
            random.seed(seed)
        self.n = self.start
        return "n=%d" % self.n, {"start": self.start}

    def step(self, action):
        self.n += 1
        return "n=%d a=%s" % (self.n, action), random.random(), self.n >= self.start + 3, False, {}


class Clocked(Counter):
    """Not deterministic: its observation reads the clock, whatever the seed."""

    def step(self, action):
        obs, reward, terminated, truncated, info = Counter.step(self, action)
        return "%s t=%d" % (obs, time.monotonic_ns()), reward, terminated, truncated, info


class Raises(Counter):
    def step(self, action):
        if action == "boom":
            raise ValueError("boom requested")
        return super().step(action)


class ResetRaises(Counter):
    def reset(self, seed=None):
        raise ValueError("no reset for seed %r" % seed)


class Spins(Counter):
    """A Python busy loop: the per-call timeout (SIGALRM) interrupts it."""

    def step(self, action):
        while True:
            pass


class Sleeps(Counter):
    def step(self, action):
        time.sleep(3600)


class Stuck(Counter):
    """Blocks SIGALRM, then spins: like code stuck in a C extension, the timeout cannot reach it."""

    def step(self, action):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        while True:
            pass


class Exits(Counter):
    """Kills its whole process, as a segfault in a C extension would."""

    def step(self, action):
        os._exit(7)


class Prints(Counter):
    def step(self, action):
        print("noise on stdout that must not corrupt the protocol " * 50)
        os.write(1, b"raw bytes on fd 1\n")
        return super().step(action)


class SwallowsExit(Counter):
    def step(self, action):
        raise SystemExit(3)
