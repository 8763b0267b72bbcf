"""An env that does nothing, for the env benchmark's floor (``bench/envs.py``).

Stepped through the service, its steps per second are the most any env can reach there: every
step still crosses the client, the admin and an env host in a sandbox, and is isolated there
(its own RNG state, its timeout), but the env's own code costs nothing. Divided by an env's
in-process rate, that gives the highest ratio the service could show for it.

Standard library only: it is copied into an image built from the default one and loaded there
by the env host, like any user-registered env (``rock envs register``).
"""


class Noop:
    def __init__(self, **kwargs):
        self.steps = 0

    def reset(self, seed=None):
        self.steps = 0
        return "ready", {}

    def step(self, action):
        self.steps += 1
        return "ok", 0.0, False, False, {}

    def close(self):
        pass
