"""A Gymnasium session inside the env host: one env, or a vector of them.

Loaded by ``host.py`` (by path, like its other siblings) when a ``gym`` env is made; it runs
under the env host's interpreter with the session image's packages, so it may import numpy and
gymnasium, which the agent never does. Values cross as ``gymwire`` bodies.

Vector envs are gymnasium's own ``SyncVectorEnv`` (autoreset NEXT_STEP, lane i seeded
``seed + i``, observations batched as gymnasium batches them), so results equal gymnasium's
in-process. ``async`` splits the lanes into contiguous slices, one per worker process, each a
``SyncVectorEnv`` over its slice, the first slice stepped by the host itself while the others
step in parallel: with a few cores that beats one process per env (gymnasium's
``AsyncVectorEnv``), whose per-env pipe round trips dominate cheap envs.
"""

import difflib
import importlib

_np = None
wire = None  # gymwire, and below SlicedVectorEnv (gymslices): handed over by bind()
SlicedVectorEnv = None


class BadValue(Exception):
    """An action or argument the session refuses: the caller's mistake, not the env's."""


def bind(gymwire_module, gymslices_module):
    """The env host loads its siblings by path (not as a package): it hands this module its own."""
    global wire, _np, SlicedVectorEnv
    wire = gymwire_module
    _np = wire.np()
    SlicedVectorEnv = gymslices_module.SlicedVectorEnv


# -- making envs -----------------------------------------------------------------------------


def resolve(source, kwargs):
    """A function that makes one env of ``source``: a gymnasium id or ``module:attr``."""
    import gymnasium

    if source.startswith("gym://"):
        source = source[len("gym://"):]
    module_name, sep, attr = source.partition(":")
    if sep and "/" not in module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LookupError("cannot import %r for entry point %r: %s (is its package in `packages`?)"
                              % (module_name, source, exc))
        target = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                break
        if callable(target):
            return lambda: target(**kwargs)
        # not an attribute: gymnasium's own "module:EnvId" form, the module registers the id
        source = attr
    if source not in gymnasium.registry:
        _import_plugins(source)
    if source not in gymnasium.registry:
        close = difflib.get_close_matches(source, list(gymnasium.registry), n=3, cutoff=0.5)
        hint = "; closest known ids: " + ", ".join(close) if close else ""
        raise LookupError("gymnasium has no env %r%s" % (source, hint))
    return lambda: gymnasium.make(source, **kwargs)


class PlainEnv:
    """A gymnasium env as the GEM routes drive it (``rock.make("gym:ID")``): seed positional."""

    def __init__(self, env):
        self.env = env

    def reset(self, seed=None):
        """Reset the env with ``seed``: ``(observation, info)``."""
        return self.env.reset(seed=seed)

    def step(self, action):
        """One step: gymnasium's five-tuple."""
        return self.env.step(action)

    def close(self):
        """Close the env."""
        self.env.close()


# Packages that register their envs with gymnasium when imported, by the ids' first word.
PLUGINS = {"MiniGrid": "minigrid", "BabyAI": "minigrid", "ALE": "ale_py"}


def _import_plugins(source):
    """Import the package that registers ``source`` (or, for an unknown id, every known one that
    is installed, so the closest ids can come from all of them)."""
    prefix = source.split("/")[0].split("-")[0]
    names = [PLUGINS[prefix]] if prefix in PLUGINS else sorted(set(PLUGINS.values()))
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


class Session:
    """What the env host holds for one gym env: ``reset``/``step``/``render`` return bodies."""

    def __init__(self, source, kwargs, num_envs=1, vector=False, mode="sync", workers=1):
        import gymnasium
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        self.source, self.vector, self.num_envs = source, vector, num_envs
        make_one = resolve(source, kwargs)
        if not vector:
            self.env = make_one()
            self.single_obs, self.single_act = self.env.observation_space, self.env.action_space
        elif mode == "async" and workers > 1 and num_envs > 1:
            self.env = SlicedVectorEnv(make_one, num_envs, min(workers, num_envs))
            self.single_obs, self.single_act = self.env.single_observation_space, self.env.single_action_space
        else:
            self.env = SyncVectorEnv([make_one] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)
            self.single_obs, self.single_act = self.env.single_observation_space, self.env.single_action_space
        self.gymnasium = gymnasium

    def contract(self):
        """What the made env declares once: its id, render mode, ``num_envs``, metadata and spaces (as
        SpaceSpecs)."""
        env = self.env
        spec = getattr(env, "spec", None)
        return {"id": getattr(spec, "id", None) or self.source, "render_mode": getattr(env, "render_mode", None),
                "num_envs": self.num_envs if self.vector else 1, "metadata": jsonable(getattr(env, "metadata", {}) or {}),
                "observation_space": wire.space_spec(self.single_obs), "action_space": wire.space_spec(self.single_act)}

    # -- calls (the env host runs them under its guard) -----------------------------------------

    def reset(self, seed=None, options=None):
        """Reset with ``seed`` and ``options``: the gymwire body of ``(observation, info)``."""
        return wire.encode(self.env.reset(seed=seed, options=options))

    def step(self, action):
        """One step of ``action``: the gymwire body of the five-tuple (a vector env's rewards float64 and
        flags bool arrays)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.vector:
            reward = _np.asarray(reward, dtype=_np.float64)
            terminated, truncated = _np.asarray(terminated, dtype=bool), _np.asarray(truncated, dtype=bool)
        else:
            reward, terminated, truncated = float(reward), bool(terminated), bool(truncated)
        return wire.encode((obs, reward, terminated, truncated, info))

    def render(self, env_index=0):
        """A frame, of one env ``env_index`` for a vector env, as a gymwire body."""
        if not self.vector:
            frame = self.env.render()
        elif isinstance(self.env, SlicedVectorEnv):
            frame = self.env.render_one(env_index)
        else:
            frame = self.env.envs[env_index].render()
        return wire.encode(frame)

    def close(self):
        """Close the env."""
        self.env.close()

    # -- checking what the caller sent (outside the guard: not env code) --------------------------

    def seeds(self, seed):
        """``seed`` checked: None, an int, or for a vector env one int or None per env; ``BadValue``
        otherwise."""
        if seed is None or isinstance(seed, int) and not isinstance(seed, bool):
            return seed
        if self.vector and isinstance(seed, list) and all(s is None or isinstance(s, int) for s in seed):
            if len(seed) != self.num_envs:
                raise BadValue("%d seeds for %d envs: give one per env, or one int (env i gets seed + i)"
                               % (len(seed), self.num_envs))
            return seed
        raise BadValue("seed must be an int%s or null, not %r" % (", a list of ints" if self.vector else "", seed))

    def env_index(self, index):
        """``index`` checked against the number of envs; ``BadValue`` when out of range."""
        if not isinstance(index, int) or not 0 <= index < (self.num_envs if self.vector else 1):
            raise BadValue("env_index %r is out of range for %d env(s)" % (index, self.num_envs if self.vector else 1))
        return index

    def action(self, body):
        """The action decoded from its gymwire body; ``BadValue`` when it cannot be read."""
        try:
            value = wire.decode(body)
        except (ValueError, KeyError, TypeError) as exc:
            raise BadValue("the action body cannot be read: %s" % exc)
        if self.vector:
            return batch_action(self.single_act, value, self.num_envs)
        return fit(self.single_act, value, "action")


def jsonable(value):
    """``value`` as JSON can carry it: keys as text, tuples as lists, scalars of arrays as numbers,
    anything else as its text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", 1) == 0 else str(value)


def _arrays(space, value, lead, where):
    """``value`` as an array of shape ``lead + space.shape`` in ``space``'s dtype, checked in one pass."""
    from gymnasium import spaces as S

    arr = _np.asarray(value)
    shape = lead + tuple(space.shape)
    if lead and (arr.ndim == 0 or arr.shape[0] != lead[0]):
        raise BadValue("a batch of %s action(s) for %d envs: give one per env"
                       % (arr.shape[0] if arr.ndim else "scalar", lead[0]))
    if arr.shape != shape:
        raise BadValue("%s has shape %s; %s needs %s" % (where, arr.shape, space, shape))
    integral = not isinstance(space, S.Box) or space.dtype.kind in "iub"
    if arr.dtype.kind not in "biuf" or (integral and arr.dtype.kind == "f"):
        raise BadValue("%s has dtype %s; %s needs %s" % (where, arr.dtype, space, space.dtype))
    if isinstance(space, S.Discrete):
        low, high = space.start, space.start + space.n
    elif isinstance(space, S.MultiDiscrete):
        low, high = space.start, space.start + space.nvec
    elif isinstance(space, S.MultiBinary):
        low, high = 0, 2
    else:  # Box: bounds are the env's business, as in-process (most clip)
        return arr.astype(space.dtype, copy=False)
    if arr.size and not ((arr >= low) & (arr < high)).all():
        raise BadValue("%s %s is outside %s" % (where, arr.tolist() if arr.size <= 16 else "(some values)", space))
    return arr.astype(space.dtype, copy=False)


def fit(space, value, where):
    """``value`` as ``space`` takes it, or BadValue saying what is wrong with it."""
    from gymnasium import spaces as S

    if type(value) is int and type(space) is S.Discrete:  # the common case, without numpy round trips
        if not space.start <= value < space.start + space.n:
            raise BadValue("%s %d is outside %s" % (where, value, space))
        return value
    if isinstance(space, (S.Box, S.Discrete, S.MultiDiscrete, S.MultiBinary)):
        arr = _arrays(space, value, (), where)
        return _np.int64(arr) if isinstance(space, S.Discrete) else arr
    if isinstance(space, S.Dict):
        if not isinstance(value, dict) or set(value) != set(space.spaces):
            raise BadValue("%s must be a dict with keys %s" % (where, sorted(space.spaces)))
        return {k: fit(s, value[k], "%s[%r]" % (where, k)) for k, s in space.spaces.items()}
    if isinstance(space, S.Tuple):
        if not isinstance(value, (tuple, list)) or len(value) != len(space.spaces):
            raise BadValue("%s must be a tuple of %d for %s" % (where, len(space.spaces), space))
        return tuple(fit(s, v, "%s[%d]" % (where, i)) for i, (s, v) in enumerate(zip(space.spaces, value)))
    if isinstance(space, S.Text) and not isinstance(value, str):
        raise BadValue("%s must be a string for %s, not %s" % (where, space, type(value).__name__))
    return value


def batch_action(space, value, n):
    """A batch of ``n`` actions for ``space``, as gymnasium's vector envs take it."""
    from gymnasium import spaces as S

    if isinstance(space, S.Dict):
        if not isinstance(value, dict) or set(value) != set(space.spaces):
            raise BadValue("actions must be a dict with keys %s, each a batch of %d" % (sorted(space.spaces), n))
        return {k: batch_action(s, value[k], n) for k, s in space.spaces.items()}
    if isinstance(space, S.Tuple):
        if not isinstance(value, (tuple, list)) or len(value) != len(space.spaces):
            raise BadValue("actions must be a tuple of %d batches" % len(space.spaces))
        return tuple(batch_action(s, v, n) for s, v in zip(space.spaces, value))
    if isinstance(space, (S.Box, S.Discrete, S.MultiDiscrete, S.MultiBinary)):
        return _arrays(space, value, (n,), "actions")
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise BadValue("a batch of actions for %d envs must be a list of %d" % (n, n))
    return tuple(fit(space, v, "action[%d]" % i) for i, v in enumerate(value))
