"""Sandbox envs: a gymnasium env (or vector env) in a ROCK sandbox, driven from here.

A session owns one sandbox placed through the admin; closing the session (``close()``, the
context manager, or the object being collected) stops it, and a session whose process is gone
is reaped when its lease runs out. The concrete classes (``rock.numpy.*``, ``rock.torch.*``)
only choose how values are decoded: see ``Codec``.

    with rock.numpy.SandboxVectorEnv("CartPole-v1", num_envs=8) as env:
        obs, info = env.reset(seed=0)
        obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
"""

from __future__ import annotations

import sys
import weakref
from typing import Any, Callable, Generic, TypeVar

from rock.sdk.envs.contract import EnvContract, SpaceSpec
from rock.errors import EnvError
from rock.sdk.envs.gym_http import GymHttp, LeaseKeeper, session_path

ValueT = TypeVar("ValueT")
ActionT = TypeVar("ActionT")
RemoteT = TypeVar("RemoteT")
SessionT = TypeVar("SessionT", bound="SandboxSessionBase[Any]")

# Options of rlmesh's sessions that mean nothing here: accepted as names, refused with a value.
_UNSUPPORTED = {
    "rlmesh_package": "the env host here is ROCK's own; nothing of rlmesh is installed in the sandbox",
    "task": "tasks are not part of sandbox envs; use rock.sdk.training for dataset-backed tasks",
    "config": "there is no env config file: pass the env's options as keyword arguments",
    "capabilities": "capabilities are not negotiated: every session offers reset, step and render",
    "override": "there are no override files: pass packages, imports and keyword arguments",
    "cwd": "the env runs in its sandbox, not in a local directory",
    "repo_root": "local repositories are not mounted: install the env as a package (packages=[...])",
}


class Codec:
    """How a session turns wire values into the user's values. The NumPy codec is the identity
    (gymwire already gives writable arrays); the Torch codec turns arrays into tensors."""

    def array(self, value: Any) -> Any:
        """A value from the wire (an array, or a dict/tuple of them) as the user gets it."""
        return value

    def action(self, value: Any) -> Any:
        """An action from the user as the wire takes it."""
        return value


def _scalars(spec: SpaceSpec, value: Any) -> Any:
    """A single env's observation as the seed gives it: Python ints for Discrete, str for Text."""
    if spec.kind == "discrete":
        return int(value)
    if spec.kind == "text":
        return str(value)
    children = spec.children()
    if isinstance(children, dict) and isinstance(value, dict):
        return {k: _scalars(children[k], v) if k in children else v for k, v in value.items()}
    if isinstance(children, list) and isinstance(value, (tuple, list)):
        return tuple(_scalars(s, v) for s, v in zip(children, value))
    return value


def _map_arrays(fn: Callable[[Any], Any], value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_arrays(fn, v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_map_arrays(fn, v) for v in value)
    return value


def _space_property(name: str, doc: str, batched: bool = False) -> Any:
    """A read-only attribute for the gymnasium space ``name`` of the env's contract (``batched``:
    gymnasium's ``batch_space`` of it over a vector env's ``num_envs``)."""
    def space(self: Any) -> Any:
        return self._batched(name) if batched else self._space(name)

    return property(space, doc=doc)


def _progress(line: str) -> None:
    print(f"rock: {line}", file=sys.stderr, flush=True)


def _close_remote(http: GymHttp, session_id: str, keeper: LeaseKeeper) -> None:
    keeper.stop()
    try:
        http.json("DELETE", session_path(session_id))
    except EnvError as exc:
        if exc.kind != "EnvNotFound":
            raise
    http.close()


def _close_when_collected(http: GymHttp, session_id: str, keeper: LeaseKeeper) -> None:
    """A session nobody closed: try once; if the admin cannot be reached, its lease runs out."""
    try:
        _close_remote(http, session_id, keeper)
    except Exception as exc:  # noqa: BLE001 - garbage collection and exit must not raise
        print(f"rock: could not close gym session {session_id} ({exc}); the admin reaps it when its lease ends",
              file=sys.stderr)
        http.close()


class SandboxSessionBase(Generic[RemoteT]):
    """A session: the sandbox, the env in it, and the connection to it. Closing it stops the sandbox."""

    codec: Codec = Codec()
    _vector = False

    def __init__(self, source: str, *, base_image: str | None = None, rlmesh_package: Any = None,
                 packages: list[str] | None = None, imports: list[str] | None = None, trust_remote_code: bool = False, allow_unpinned_hf: bool = False, num_envs: int = 1,
                 vectorization_mode: str | None = None, build_memory: str | None = None, task: Any = None,
                 config: Any = None, capabilities: Any = None, override: Any = None, cwd: Any = None,
                 repo_root: Any = None, base_url: str | None = None,
                 token: str | None = None, lease: float | None = None, timeout: float | None = None,
                 progress: Callable[[str], None] | None = _progress, **gym_make_kwargs: Any) -> None:
        given = dict(rlmesh_package=rlmesh_package, task=task, config=config, capabilities=capabilities,
                     override=override, cwd=cwd, repo_root=repo_root)
        for name, value in given.items():
            if value is not None:
                raise TypeError(f"{type(self).__name__} no longer supports {name}=...: {_UNSUPPORTED[name]}")
        for name, value in (("packages", packages), ("imports", imports)):
            if isinstance(value, (str, bytes)):
                raise TypeError(f"{name} must be a list of strings, not a single string (write {name}=[{value!r}])")
        if not isinstance(source, str) or not source:
            raise TypeError("source must be a gymnasium id, gym://ID, module:attr or a registered env name")
        self._closed = True
        self._http = GymHttp(base_url, token)
        request = {"source": source, "base_image": base_image, "packages": None if packages is None else list(packages),
                   "imports": None if imports is None else list(imports), "trust_remote_code": trust_remote_code,
                   "allow_unpinned_hf": allow_unpinned_hf, "build_memory": build_memory}
        try:
            self._http.build_image(request, progress or (lambda line: None))
            info = self._http.json("POST", "/sessions", {
                **request, "num_envs": num_envs, "vector": self._vector,
                "vectorization_mode": vectorization_mode or "sync", "kwargs": gym_make_kwargs, "lease": lease,
                "timeout": timeout})
        except BaseException:
            self._http.close()
            raise
        self._attach(info)

    def _attach(self, info: dict[str, Any]) -> None:
        """Become the client of the open session ``info`` (as the admin answered its open or fork)."""
        self.session_id: str = info["session_id"]
        self.sandbox_id: str = info["sandbox_id"]
        self.image: str = info["image"]
        self._contract = EnvContract(**info["contract"])
        self._spaces: dict[str, Any] = {}
        self._closed = False
        self._keeper = LeaseKeeper(self, self._http, self.session_id, info["lease"])
        self._finalizer = weakref.finalize(self, _close_when_collected, self._http, self.session_id, self._keeper)

    # -- what the env reports ------------------------------------------------------------------

    @property
    def env_contract(self) -> EnvContract:
        """What the env declared when it was made: its spaces, render mode, metadata (and ``num_envs``)."""
        return self._contract

    @property
    def render_mode(self) -> str | None:
        """The env's ``render_mode`` (gymnasium's attribute), or None."""
        return self._contract.render_mode

    @property
    def metadata(self) -> dict[str, Any]:
        """The env's ``metadata`` dict, as gymnasium's ``Env.metadata``."""
        return self._contract.metadata

    @property
    def observation_space_spec(self) -> SpaceSpec:
        """The observation space as its portable description (no gymnasium needed to read it)."""
        return self._contract.observation_space

    @property
    def action_space_spec(self) -> SpaceSpec:
        """The action space as its portable description (no gymnasium needed to read it)."""
        return self._contract.action_space

    def _space(self, name: str) -> Any:
        if name not in self._spaces:
            self._spaces[name] = getattr(self._contract, name).to_space()
        return self._spaces[name]

    # -- calls ------------------------------------------------------------------------------------

    def _call(self, method: str, tail: str, data: bytes = b"", content_type: str = "application/json") -> Any:
        from rock.agent.envhost import gymwire

        if self._closed:
            raise EnvError(f"session {self.session_id} is closed", "EnvNotFound")
        return gymwire.decode(self._http.value(method, session_path(self.session_id, tail), data, content_type))

    def _reset(self, seed: int | list[int] | None, options: dict[str, Any] | None) -> Any:
        import json

        return self._call("POST", "/reset", json.dumps({"seed": seed, "options": options}).encode())

    def _step(self, action: Any) -> Any:
        from rock.agent.envhost import gymwire

        body = gymwire.encode(self.codec.action(action))
        return self._call("POST", "/step", body, "application/octet-stream")

    def render(self, *, env_index: int = 0) -> Any:
        """A frame of env ``env_index`` (an RGB array for ``render_mode="rgb_array"``), or None."""
        frame = self._call("GET", f"/render?env_index={int(env_index)}")
        return _map_arrays(self.codec.array, frame)

    def fork(self: SessionT, n: int, how: str = "replay") -> list[SessionT]:
        """``n`` new sessions that go on from this one's current state: the same next observation
        for the same action, then each steps on its own. Each is a session of the same class with
        a sandbox of its own. ``how="replay"`` (1 to 64, every backend): opened as this one was,
        with this one's seeded reset and the actions since replayed by the admin and the
        observation checked; a session reset without a seed, or an env that is not
        deterministic, is refused (``EnvError`` kind ``EnvNotDeterministic``), never forked into
        another state, and one not reset yet is refused (``BadRequest``). ``how="full"`` (1 to 20,
        gVisor): a memory fork of this session's sandbox per child, any env, no replay. A vector
        session forks whole (each lane where this one's is). Close each child as any session
        (``rock.envs.gym.forks``)."""
        if self._closed:
            raise EnvError(f"session {self.session_id} is closed", "EnvNotFound")
        forked = self._http.json("POST", session_path(self.session_id, "/fork"), {"n": n, "how": how})
        children: list[SessionT] = []
        for info in forked["sessions"]:
            child = object.__new__(type(self))  # a session the admin opened: no build, no open of its own
            child._http = self._http.twin()
            child._attach(info)
            children.append(child)
        return children

    def close(self) -> None:
        """Close the session and stop its sandbox. Safe to call again, also after a failed attempt."""
        if not self._finalizer.alive:
            return
        self._closed = True
        _close_remote(self._http, self.session_id, self._keeper)  # raises if the stop failed: close() again
        self._finalizer.detach()

    def __enter__(self: SessionT) -> SessionT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.sandbox_id
        return f"<{type(self).__name__} {self._contract.id} num_envs={self._contract.num_envs} {state}>"


class SandboxEnvBase(SandboxSessionBase[Any], Generic[ValueT, ActionT]):
    """One gymnasium env in a sandbox of its own."""

    def __init__(self, source: str, **kwargs: Any) -> None:
        for name in ("num_envs", "vectorization_mode"):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} is single-env only: {name} is for SandboxVectorEnv")
        super().__init__(source, **kwargs)

    observation_space = _space_property("observation_space", "The observation space as a gymnasium ``Space`` "
                                        "(built once from the env's contract).")

    action_space = _space_property("action_space", "The action space as a gymnasium ``Space`` (built once from "
                                   "the env's contract).")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ValueT, dict[str, Any]]:
        """Gymnasium's ``reset``: the first observation (through the codec) and the info dict."""
        obs, info = self._reset(seed, options)
        return self._obs(obs), info

    def step(self, action: ActionT) -> tuple[ValueT, float, bool, bool, dict[str, Any]]:
        """Gymnasium's ``step``: observation, reward, terminated, truncated, info."""
        obs, reward, terminated, truncated, info = self._step(action)
        return self._obs(obs), float(reward), bool(terminated), bool(truncated), info

    def _obs(self, obs: Any) -> ValueT:
        value: ValueT = _map_arrays(self.codec.array, _scalars(self._contract.observation_space, obs))
        return value


class SandboxVectorEnvBase(SandboxSessionBase[Any], Generic[ValueT, ActionT]):
    """``num_envs`` copies of a gymnasium env in one sandbox, stepped as one batch (gymnasium's
    vector API: autoreset NEXT_STEP, env i seeded ``seed + i``)."""

    _vector = True

    def __init__(self, source: str, num_envs: int, *, vectorization_mode: str = "sync", **kwargs: Any) -> None:
        if not isinstance(num_envs, int) or num_envs < 2:
            raise ValueError(f"{type(self).__name__} needs num_envs >= 2 (got {num_envs!r}); use SandboxEnv for one env")
        if vectorization_mode not in ("sync", "async"):
            raise ValueError(f"vectorization_mode must be 'sync' or 'async', not {vectorization_mode!r}")
        super().__init__(source, num_envs=num_envs, vectorization_mode=vectorization_mode, **kwargs)

    @property
    def num_envs(self) -> int:
        """How many envs this vector env steps together."""
        return self._contract.num_envs

    single_observation_space = _space_property("observation_space", "One env's observation space (a gymnasium "
                                               "``Space``).")

    single_action_space = _space_property("action_space", "One env's action space (a gymnasium ``Space``).")

    observation_space = _space_property("observation_space", "The batched observation space over ``num_envs`` envs "
                                        "(gymnasium's ``batch_space``).", batched=True)

    action_space = _space_property("action_space", "The batched action space over ``num_envs`` envs (gymnasium's "
                                   "``batch_space``).", batched=True)

    def _batched(self, name: str) -> Any:
        key = "batched_" + name
        if key not in self._spaces:
            from gymnasium.vector.utils import batch_space

            self._spaces[key] = batch_space(self._space(name), self.num_envs)
        return self._spaces[key]

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[ValueT, dict[str, Any]]:
        """Gymnasium's vector ``reset``: env ``i`` seeded ``seed + i`` (or ``seed[i]``); batched observations and info."""
        obs, info = self._reset(seed, options)
        return _map_arrays(self.codec.array, obs), info

    def step(self, actions: ActionT) -> tuple[ValueT, ValueT, ValueT, ValueT, dict[str, Any]]:
        """Gymnasium's vector ``step`` (autoreset NEXT_STEP): batched observations, rewards, terminated, truncated, info."""
        obs, rewards, terminated, truncated, info = self._step(actions)
        a = self.codec.array
        return _map_arrays(a, obs), a(rewards), a(terminated), a(truncated), info
