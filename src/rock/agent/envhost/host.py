"""The env host: one process per sandbox holding many env instances (GEM and user envs).

Started by the agent (``envhost/ops.py``) as ``$ROCK_HOST_PYTHON -I envhost/host.py``: unlike the
agent it runs WITH site-packages, because env code needs gem, numpy and friends. It speaks
the agent's framing (``protocol.py``) over its stdin/stdout pipes and handles one request at a
time on its main thread, so a step costs a few microseconds of overhead beyond the env itself.

Isolation between the envs of one host:
- an exception in one env's code is caught and returned as that call's error, and a call
  running longer than its timeout is interrupted and marks its env broken (``guard.py``);
- ``print()`` in env code cannot corrupt the protocol: fd 1 is pointed at stderr and the
  protocol uses private duplicates of the original pipes;
- every env gets its own global ``random`` / ``numpy.random`` state (``rng.py``), so
  the observations of one env do not depend on what the other envs of the host do.

Standard library only at import time (it may run under any image's python3). Its siblings
(``guard``, ``rng``, ``codec``, ``serve``, ``gym*``; and ``protocol`` from the agent package above) are loaded by path, see ``_sibling``.
"""

import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
import time
from typing import Any, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
_AGENT = os.path.dirname(_HERE)  # the agent package: protocol.py is shared with the agent


def _sibling(name, folder=_HERE):
    # Loaded by path under a private name: with -I the script's folder is not on sys.path,
    # and env packages must not be able to shadow (or be shadowed by) our modules.
    spec = importlib.util.spec_from_file_location("_rock_envhost_" + name, os.path.join(folder, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


protocol = _sibling("protocol", _AGENT)
RESET_FIELDS, STEP_FIELDS = protocol.RESET_FIELDS, protocol.STEP_FIELDS
envguard = _sibling("guard")
RngIsolation = _sibling("rng").RngIsolation
replay = _sibling("replay")
Failure, Guard, describe = envguard.Failure, envguard.Guard, envguard.describe
envcodec = _sibling("codec")
# Re-exported: tests and the reference encoder use them from here.
jsonable, dumps, columns, offline_nltk = envcodec.jsonable, envcodec.dumps, envcodec.columns, envcodec.offline_nltk
_encode, _fast_encode = envcodec._encode, envcodec._fast_encode
replay.bind(Failure, dumps)


@dataclasses.dataclass(eq=False)
class Env:
    """One env this host holds: its local id and env id, the env object, its call timeout, its own random
    state, and its health and replay trail."""

    id: str
    env_id: str
    timeout: Optional[float]  # Optional: evaluated under any image's python3 (3.8 too)
    obj: Any = None
    rng: Any = None  # its saved random state (rng.py)
    broken: Optional[str] = None  # why it cannot be used until made again (guard.py)
    needs_reset: bool = False
    created: float = dataclasses.field(default_factory=time.time)
    # monotonic: set on every call, where time.time() costs more
    last_used: float = dataclasses.field(default_factory=time.monotonic)
    steps: int = 0
    made: Optional[dict] = None  # the make's arguments, for a fork to make the env again (replay.py)
    trail: Any = None  # replay.Trail: the reset's seed and the actions since, for a fork


class Host:
    """The env host: makes, steps and closes the envs of one sandbox, each call under a guard that bounds
    its time and keeps one env's failure from breaking the others."""

    def __init__(self, busy=None):
        self.envs = {}
        self.rng = RngIsolation()
        self.gem = None
        self.gymhost = None
        self.guard = Guard(self.rng, busy)
        self.guarded = self.guard.guarded  # bound once: every step goes through it

    def env(self, args):
        """The env ``args['env']`` names; ``EnvNotFound`` when it is not here."""
        env = self.envs.get(args.get("env"))
        if env is None:
            raise Failure("EnvNotFound", "no env %r in this sandbox (closed, reclaimed, or never made)" % args.get("env"))
        return env

    # -- ops ---------------------------------------------------------------------------

    def op_ping(self, args):
        """The host's pid, Python, number of envs and random-state mode."""
        return {"pid": os.getpid(), "python": sys.version.split()[0], "envs": len(self.envs), "rng": self.rng.mode}

    def op_make(self, args):
        """Make env ``env_id`` under local id ``env`` (its class from the catalog's entry point, its import
        paths added)."""
        local, env_id = args["env"], args["env_id"]
        if local in self.envs:
            raise Failure("BadRequest", "env %r already exists" % local)
        for path in args.get("sys_path") or ():
            if path not in sys.path:
                sys.path.insert(0, path)
        gym = args.get("gym")
        factory = self.gym_factory(env_id, gym) if gym is not None else self.factory(env_id, args.get("entry_point"))
        env = Env(local, env_id, args.get("timeout"))
        env.made = {k: args.get(k) for k in ("env_id", "entry_point", "kwargs", "timeout", "sys_path", "gym")}
        kwargs = args.get("kwargs") or {}
        try:
            env.obj = self.guarded(env, "make", lambda: factory(**kwargs))
            contract = None if gym is None or gym.get("plain") else self.guarded(env, "make", env.obj.contract)
        except Failure as exc:
            self.rng.forget(env)
            if env.obj is not None:
                self._close_quietly(env)
            if exc.type == "EnvError":
                exc.type = "EnvMakeError"
            raise
        self.envs[local] = env
        result = {"env": local, "env_id": env_id}
        if contract is not None:
            result["contract"] = contract
        if "reset" in args:
            # make then reset in one call (``reset``: the seed): a training instance's create
            # needs both, and a second round trip from the worker cost more than the reset.
            # The reset's fields go in the reply's body, as a reset's own do.
            try:
                return result, dict(zip(RESET_FIELDS, self.reset(env, args["reset"])))
            except Failure:
                self.op_close({"env": local})  # the caller hears of no env: the host keeps none
                raise
        return result

    def gym_factory(self, env_id, gym):
        """Seed 003's sandbox env: a gymnasium env or vector env (``gymhost.Session``)."""
        if self.gymhost is None:
            try:
                gymhost = _sibling("gymhost")
                gymhost.bind(_sibling("gymwire"), _sibling("gymslices"))
            except BaseException as exc:
                raise Failure("EnvMakeError", "gymnasium envs need numpy and gymnasium in the env's image (%s): %s"
                              % (sys.executable, describe(exc)))
            self.gymhost = gymhost
        for name in gym.get("imports") or ():
            try:
                importlib.import_module(name)
            except BaseException as exc:
                raise Failure("EnvMakeError", "import %r failed in the env host: %s" % (name, describe(exc)))

        if gym.get("plain"):  # the GEM door: the gymnasium env itself, values as JSON
            def make_plain(**kwargs):
                try:
                    return self.gymhost.PlainEnv(self.gymhost.resolve(gym.get("source") or env_id, kwargs)())
                except LookupError as exc:
                    raise Failure("EnvNotFound", str(exc))

            return make_plain

        def make(**kwargs):
            try:
                return self.gymhost.Session(gym.get("source") or env_id, kwargs, num_envs=gym.get("num_envs", 1),
                                            vector=bool(gym.get("vector")), mode=gym.get("mode") or "sync",
                                            workers=gym.get("workers", 1))
            except LookupError as exc:
                raise Failure("EnvNotFound", str(exc).strip("'\""))
            except TypeError as exc:
                if "cannot cross the wire" in str(exc):
                    raise Failure("EnvMakeError", str(exc))
                raise

        return make

    def _close_quietly(self, env):
        try:
            self.guarded(env, "close", env.obj.close)
        except Failure:
            pass

    def factory(self, env_id, entry_point):
        """The callable that makes ``env_id``: the entry point's object when one is given, else GEM's
        registry entry."""
        if entry_point:
            module_name, _, attr = entry_point.partition(":")
            try:
                obj = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except BaseException as exc:
                raise Failure("EnvMakeError", "cannot import entry point %r: %s" % (entry_point, describe(exc)))
            return obj
        if self.gem is None:
            try:
                import gem
            except BaseException as exc:
                raise Failure("EnvMakeError", "cannot import gem in the env host (%s): %s" % (sys.executable, describe(exc)))
            self.gem = gem
            offline_nltk()
        registry = self.gem.envs.registration.ENV_REGISTRY
        if env_id not in registry:
            raise Failure("EnvNotFound", "gem has no env %r" % env_id)
        offline_nltk()
        return lambda **kw: self.gem.make(env_id, **kw)

    def reset(self, env, seed):
        """Reset ``env`` with ``seed`` under the guard, starting its replay trail."""
        obs, info = self.guarded(env, "reset", env.obj.reset, seed)
        env.needs_reset = False
        env.trail = replay.Trail(seed, obs)
        return obs, info

    def step(self, env, action):
        """Step ``env`` with ``action`` under the guard, extending its replay trail."""
        obs, reward, terminated, truncated, info = self.guarded(env, "step", env.obj.step, action)
        env.steps += 1
        if env.trail is not None:
            env.trail.stepped(action, obs)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def autoreset(self, env):
        """A vector env's reset of an ended episode, with no seed: kept in the env's trail (a fork
        replays it where it happened, ``replay.AUTORESET``) instead of starting an unseeded one."""
        trail = env.trail
        obs, info = self.reset(env, None)
        if trail is not None:
            trail.stepped(replay.AUTORESET, obs)
            env.trail = trail
        return obs, info

    def vstep(self, mode, env, action):
        """One env of a vector step; autoreset semantics are documented in rock/envs/vector.py.
        (``step`` written out: a vector runs this once per env, a call level costs ~5%.)"""
        if env.needs_reset and mode == "next_step":
            obs, info = self.autoreset(env)
            return obs, 0.0, False, False, info
        obs, reward, terminated, truncated, info = self.guarded(env, "step", env.obj.step, action)
        env.steps += 1
        if env.trail is not None:
            env.trail.stepped(action, obs)
        if terminated or truncated:
            if mode == "same_step":
                final_obs, final_info = obs, info
                obs, info = self.autoreset(env)
                info = dict(info or {}, final_observation=final_obs, final_info=final_info)
            elif mode == "next_step":
                env.needs_reset = True
        return obs, float(reward), bool(terminated), bool(truncated), info

    def op_reset(self, args):
        """The ``reset`` op: observation and info."""
        return dict(zip(RESET_FIELDS, self.reset(self.env(args), args.get("seed"))))

    def op_step(self, args):
        """The ``step`` op: observation, reward, terminated, truncated and info."""
        return dict(zip(STEP_FIELDS, self.step(self.env(args), args.get("action"))))

    def op_fork(self, args):
        """``envs``: new local names, each the env ``env`` made again and re-played to where it
        is now (``replay.py``); all made or none."""
        source = self.env(args)
        names = args["envs"]
        if any(name in self.envs for name in names) or len(set(names)) != len(names):
            raise Failure("BadRequest", "fork names must be new and distinct")
        made = []
        try:
            for name in names:
                made.append(replay.fork(self, source, name))
        except BaseException:
            for name in made:
                self.op_close({"env": name})
            raise
        return {"envs": made, "steps": len(source.trail.actions)}

    def op_close(self, args):
        """Close an env; whether one was closed."""
        env = self.envs.pop(args.get("env"), None)
        if env is None:
            return {"closed": False}
        self.rng.forget(env)
        close = getattr(env.obj, "close", None)
        if callable(close) and not env.broken:
            try:
                self.guarded(env, "close", close)
            except Failure as exc:
                return {"closed": True, "warning": exc.message}
        return {"closed": True}

    def op_batch(self, args):
        """One call over many envs of this host, as a vector env uses it (``rock/envs/vector.py``):
        ``call`` is reset (``values``: one seed per env), step or vstep (``values``: one action
        per env; ``autoreset``: vstep's mode), ``envs`` the envs' local names.

        The reply is columnar, one list per field (observation and info, plus reward, terminated
        and truncated for steps): encoded and decoded several times faster than a dict per env.
        Each env's outcome is independent: a failed one is null in the columns and its error is
        in ``errors`` under its position."""
        call, names, values = args["call"], args["envs"], args["values"]
        if call == "reset":
            fn, fields = self.reset, RESET_FIELDS
        elif call == "step":
            fn, fields = self.step, STEP_FIELDS
        elif call == "vstep":
            fn, fields = functools.partial(self.vstep, args.get("autoreset") or "same_step"), STEP_FIELDS
        else:
            raise Failure("BadRequest", "batch call must be reset, step or vstep, not %r" % call)
        if len(names) != len(values):
            raise Failure("BadRequest", "batch has %d envs and %d values" % (len(names), len(values)))
        get, rows, errors = self.envs.get, [], {}
        append = rows.append
        for name, value in zip(names, values):
            try:
                append(fn(get(name) or self.env({"env": name}), value))
            except Failure as exc:
                errors[len(rows)] = {"type": exc.type, "message": exc.message}
                append(None)
        return columns(rows, fields, errors)

    # -- gym sessions: bodies in, bodies out (gymwire) --------------------------------------------

    def gym_env(self, args):
        """The env ``args`` names, which must be a gymnasium session."""
        env = self.env(args)
        if self.gymhost is None or not isinstance(env.obj, self.gymhost.Session):
            raise Failure("BadRequest", "env %s (%s) is not a gymnasium env" % (env.id, env.env_id))
        return env

    def checked(self, fn, *args):
        """Call ``fn`` on what the caller sent, its ``BadValue`` answered as ``BadRequest``."""
        try:
            return fn(*args)
        except self.gymhost.BadValue as exc:
            raise Failure("BadRequest", str(exc))

    def op_gym_reset(self, args, body):
        """Reset a gymnasium session (seed and options checked first): a gymwire body."""
        env = self.gym_env(args)
        seed = self.checked(env.obj.seeds, args.get("seed"))
        options = args.get("options")
        if options is not None and not isinstance(options, dict):
            raise Failure("BadRequest", "options must be a dict or null")
        return self.guarded(env, "reset", env.obj.reset, seed, options)

    def op_gym_step(self, args, body):
        """Step a gymnasium session with the action in ``body``: a gymwire body."""
        env = self.gym_env(args)
        action = self.checked(env.obj.action, body)
        return self.guarded(env, "step", env.obj.step, action)

    def op_gym_render(self, args, body):
        """Render a gymnasium session (one env of a vector one): a gymwire body."""
        env = self.gym_env(args)
        index = self.checked(env.obj.env_index, args.get("env_index", 0))
        return self.guarded(env, "render", env.obj.render, index)

    def op_list(self, args):
        """The envs held here, with their ages, steps and health."""
        to_wall = time.time() - time.monotonic()
        return {"envs": [{"env": e.id, "env_id": e.env_id, "created": e.created, "last_used": e.last_used + to_wall,
                          "steps": e.steps, "broken": e.broken} for e in self.envs.values()]}

    # Results of these ops go to the caller as a JSON body, passed through untouched by the
    # agent and the admin: the observation is encoded once, here.
    BODY_OPS = ("reset", "step", "batch")

    # These take the request's body and answer with a body of their own (a gymwire value).
    RAW_OPS = ("gym_reset", "gym_step", "gym_render")

    def handle(self, meta, body=b""):
        """Serve one request, then let the guard know the host is idle."""
        try:
            return self._handle(meta, body)
        finally:
            self.guard.idle()

    def _handle(self, meta, body):
        op = meta.get("op")
        fn = getattr(self, "op_" + str(op), None)
        try:
            if fn is None:
                raise Failure("BadRequest", "unknown env host op %r" % op)
            if op in self.RAW_OPS:
                return protocol.encode({"id": meta["id"], "ok": True, "result": {}}, fn(meta.get("args") or {}, body))
            result = fn(meta.get("args") or {})
            if isinstance(result, tuple):  # (result, a value for the body)
                return protocol.encode({"id": meta["id"], "ok": True, "result": result[0]}, dumps(result[1]))
            if op in self.BODY_OPS:
                return protocol.encode({"id": meta["id"], "ok": True, "result": {}}, dumps(result))
            return protocol.encode({"id": meta["id"], "ok": True, "result": result})
        except Failure as exc:
            error = {"type": exc.type, "message": exc.message}
        except (KeyError, TypeError, ValueError) as exc:
            error = {"type": "BadRequest", "message": "%s: %s" % (type(exc).__name__, exc)}
        except Exception as exc:  # noqa: BLE001 - a bug of ours fails this call, never the host and its envs
            error = {"type": "EnvError", "message": "the env host failed in %s: %s" % (op, describe(exc))}
        return protocol.encode({"id": meta["id"], "ok": False, "error": error})


def serve(argv):
    """Run the env host on the command line's socket until its parent goes."""
    _sibling("serve").serve(argv, Host, protocol, envguard.BUSY.size)


if __name__ == "__main__":
    serve(sys.argv[1:])
