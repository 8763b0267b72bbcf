"""Forking an env by re-play: the env made again, reset with the same seed, stepped with the
same actions, and checked against where its source is.

An env's state lives in its process's memory (and the env's own objects), which cannot be
copied into another instance: a GEM or gymnasium env has no ``clone``. But a seeded env is
deterministic, so the host keeps, per env, the seed of its last reset and every action since
(``Trail``), and a fork replays them into a new instance of the same env (same id, same
kwargs). The replayed observation must equal the source's current one, encoded as the caller
would receive it; if it does not (an env that reads the clock, an unseeded reset, a source whose
state depends on files it changed), the fork is refused with ``EnvNotDeterministic``, never a
child silently in another state. The cost is the episode so far, replayed once per child.

Standard library only (the env host's rule); loaded by path by ``host.py``.
"""


# In a trail's actions: a vector env's autoreset of an ended episode (``Host.autoreset``), which
# passes no seed. After a seeded reset the env's own random stream makes it deterministic, so
# a replay repeats it where it happened instead of refusing every lane that ever ended.
AUTORESET = object()


class Trail:
    """What a fork replays: ``seed`` (the last reset's), the ``actions`` since (with AUTORESET
    where a vector env reset an ended episode), and the latest observation (a reference: the
    check encodes it only when a fork asks)."""

    __slots__ = ("seed", "actions", "last")

    def __init__(self, seed, obs):
        self.seed, self.actions, self.last = seed, [], obs

    def stepped(self, action, obs):
        """Record one step's action and the observation it led to."""
        self.actions.append(action)
        self.last = obs


# Bound by ``bind`` (we are loaded by path, as host.py's siblings are): the host's Failure,
# and its encoder, so that "equal" means what the caller would receive.
Failure = dumps = None


def bind(failure, encode):
    """Give this module the env host's failure type and encoder (set once at start-up, so it imports
    nothing of the host)."""
    global Failure, dumps
    Failure, dumps = failure, encode


def fork(host, source, name):
    """A new env ``name`` in ``host`` where ``source`` is now; returns ``name``."""
    trail = source.trail
    if source.broken:
        raise Failure("EnvBroken", "env %s is broken (%s): it cannot be forked" % (source.id, source.broken))
    if trail is None:
        raise Failure("BadRequest", "env %s has no episode to fork: reset it first" % source.id)
    if trail.seed is None:
        raise Failure("EnvNotDeterministic", "env %s was reset without a seed: a replay cannot reach the same "
                      "state; reset it with a seed to fork it" % source.id)
    if source.made.get("gym") and not source.made["gym"].get("plain"):
        raise Failure("BadRequest", "env %s is a gym session: fork the GEM view of it (gym:<id> by make)" % source.id)
    host.op_make(dict(source.made, env=name))
    child = host.envs[name]
    try:
        obs, _ = host.reset(child, trail.seed)
        for action in trail.actions:
            obs = host.reset(child, None)[0] if action is AUTORESET else host.step(child, action)[0]
        if dumps(obs) != dumps(trail.last):
            raise Failure("EnvNotDeterministic",
                          "env %s (%s) is not deterministic: replaying its seed %r and %d actions gave another "
                          "observation than it holds, so no fork of it can start in its state"
                          % (source.id, source.env_id, trail.seed, len(trail.actions)))
    except BaseException:
        host.op_close({"env": name})
        raise
    # The child's own trail is its source's (a fork of it replays the same), and an episode that
    # ended under a next_step vector env is reset by the child's next step, as by its source's.
    child.trail = Trail(trail.seed, obs)
    child.trail.actions = list(trail.actions)
    child.needs_reset = source.needs_reset
    return name
