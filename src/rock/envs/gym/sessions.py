"""Gymnasium sessions in the admin: one sandbox per session, values as gymwire bodies.

A session is one env of ``EnvService`` (so routing, the direct socket to the env host, the
idle reaper and listing are shared with GEM envs) made in a sandbox of its own: the image is
the session's derived env image (``images.py``: its packages, built once), the env host runs
the host's interpreter without its own site-packages, only the image's, and the sandbox is
stopped as soon as the session closes. A session lives while its client renews a lease; a
client process that is gone stops renewing and its session is reaped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from rock.actions.images import ImageRef
from rock.envs.gym import forks as gym_forks
from rock.envs.catalog import EnvInfo
from rock.envs.errors import EnvError
from rock.envs.images import SITE, EnvImage, EnvImageSpec, ImageBuilder, Progress
from rock.envs.records import EnvRecord
from rock.envs.requirements import MODULE_PATTERN, REQUIREMENT_PATTERN
from rock.envs.service import EnvService, split_handle

log = logging.getLogger("rock.envs.gym")

# What a bare gymnasium id needs: every family that works offline from PyPI wheels.
DEFAULT_PACKAGES = ["gymnasium[classic-control,toy-text,mujoco]", "box2d", "minigrid", "ale-py"]
_HF = re.compile(r"^hf://(?P<repo>[^@]+?)(?:@(?P<rev>[0-9A-Za-z._/-]+))?$")


# checked by rock.envs.requirements (its messages, a 400); stated for clients
_Requirement = Annotated[str, WithJsonSchema({"type": "string", "pattern": REQUIREMENT_PATTERN})]
_Module = Annotated[str, WithJsonSchema({"type": "string", "pattern": MODULE_PATTERN, "maxLength": 256})]


class GymImageRequest(BaseModel):
    """Which gymnasium env and the image it runs in: the ``source`` (a gymnasium id, a module:attr entry point, a
    registered name, or hf://repo@revision), the base image, the pip packages and the modules to import. The
    image is built once per distinct request and found afterwards."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=512, description="gymnasium id, gym://ID, module:attr, "
                        "a registered env name, or hf://repo@revision")
    base_image: ImageRef | None = Field(default=None, description="image the env image is built FROM (default: the admin's)")
    packages: list[_Requirement] | None = Field(default=None, description="pip requirements for the env (default: gymnasium "
                                       "with its offline families)")
    imports: list[_Module] | None = Field(default=None, description="modules imported when the env host starts")
    trust_remote_code: bool = False
    allow_unpinned_hf: bool = False
    build_memory: str | None = Field(default=None, description="memory limit for the image build, e.g. '4g'")

    @field_validator("packages", "imports")
    @classmethod
    def _strings(cls, v):
        if v is not None and any(not s.strip() for s in v):
            raise ValueError("names must not be empty")
        return v


class GymSessionRequest(GymImageRequest):
    """Open a gymnasium session: the env and its image, how many envs (``num_envs`` > 1, or ``vector``, makes a
    vector env; ``async`` mode steps them in worker processes), the constructor's kwargs, the lease and the
    per-call timeout in seconds."""

    num_envs: int = Field(default=1, ge=1, le=4096)
    vector: bool = Field(default=False, description="a vector env (SandboxVectorEnv) even for one env")
    vectorization_mode: str = Field(default="sync", pattern="^(sync|async)$")
    kwargs: dict = Field(default_factory=dict, description="keyword arguments of the env's constructor (gym.make)")
    lease: float | None = Field(default=None, gt=0, le=86400, description="seconds without a keepalive before the "
                                "session is closed (default: the admin's gym_lease)")
    timeout: float | None = Field(default=None, gt=0, le=86400, description="per call inside the env (make, reset, "
                                  "step), seconds: at most a day")


class GymSessionInfo(BaseModel):
    """An open session: its id (an env handle), its sandbox, the image, the env's contract (id, spaces, num_envs,
    render mode, metadata) and the lease in seconds."""

    session_id: str
    sandbox_id: str
    image: str
    contract: dict
    lease: float


_LIST_IDS = """
import json, sys
sys.path.insert(0, "SITE")
import gymnasium
for plugin in ("minigrid", "ale_py"):
    try:
        __import__(plugin)
    except ImportError:
        pass
print(json.dumps(sorted(gymnasium.registry)))
"""


class GymSessions:
    """The admin's gymnasium sessions: one env in a sandbox of its own per session, in the env image its request
    names; values travel as gymwire bodies. A session lives while its client renews the lease, and its sandbox
    stops when it closes. Also serves ``rock.make("gym:ID")`` and the gym part of the catalog."""

    def __init__(self, envs: EnvService, builder: ImageBuilder, default_base: str):
        self.envs = envs
        self.builder = builder
        self.default_base = default_base
        self.sessions: dict[str, GymSessionInfo] = {}
        self.trails: dict[str, gym_forks.Trail] = {}  # session id -> how it opened and its episode so far
        self._ids: dict[str, list[str]] = {}  # image tag -> gymnasium ids
        envs.resolvers["gym"] = self.gem_door

    async def gem_door(self, env_id: str) -> tuple[dict, dict]:
        """``rock.make("gym:ID")``: the plain gymnasium env in the shared sandboxes of its image,
        stepped through the GEM routes (JSON values), like any other env id."""
        spec, make = self.image_spec(GymImageRequest(source=env_id[len("gym:"):]))
        image = await self.builder.ensure(spec)
        extra = {"python": image.python, "sys_path": [image.site], "isolated": True,
                 "gym": {"source": make["source"], "plain": True, "imports": spec.imports}}
        return extra, {"image": image.tag, "network": False}

    # -- images ------------------------------------------------------------------------------

    def image_spec(self, req: GymImageRequest) -> tuple[EnvImageSpec, dict]:
        """The image a session of ``req`` runs in, and how its env host makes the env."""
        source = req.source
        if source.startswith("hf://"):
            raise self._hf_error(req)
        user = self.envs.catalog.user_envs().get(source)
        make = {"source": source, "kwargs": {}}
        if user is not None:
            packages = list(req.packages or user.packages)
            make = {"source": user.entry_point, "kwargs": dict(user.kwargs)}
            base = req.base_image or user.image or self.default_base
        else:
            packages = list(req.packages) if req.packages is not None else list(DEFAULT_PACKAGES)
            base = req.base_image or self.default_base
        if not any(re.match(r"^gymnasium\b", p.strip()) for p in packages):
            packages.append("gymnasium")  # the env host's vector envs and spaces are gymnasium's
        spec = EnvImageSpec(base=base, packages=packages, imports=list(req.imports or []),
                            build_memory=req.build_memory)
        self.builder.check(spec)  # a 400 for what is not a requirement or a module name, before any build
        return spec, make

    def _hf_error(self, req: GymImageRequest) -> EnvError:
        m = _HF.match(req.source)
        if m is None:
            return EnvError(f"{req.source!r} is not an hf:// source (hf://owner/repo@revision)", "BadRequest")
        if not req.trust_remote_code:
            return EnvError(f"{req.source} runs code from the Hugging Face Hub: pass trust_remote_code=True to allow it",
                            "BadRequest")
        if not m.group("rev") and not req.allow_unpinned_hf:
            return EnvError(f"{req.source} is not pinned to a revision: use hf://{m.group('repo')}@<commit>, or pass "
                            "allow_unpinned_hf=True", "BadRequest")
        return EnvError(f"{req.source} needs the Hugging Face Hub, and this machine has no internet access: install the "
                        "env as a package (packages=[...]) or a local module and use its entry point (module:Class)",
                        "EnvUnavailable")

    async def image(self, req: GymImageRequest, progress: Progress | None = None) -> EnvImage:
        """The env image for ``req``: found, or built (with ``progress`` lines; minutes the first time)."""
        spec, _ = self.image_spec(req)
        return await self.builder.ensure(spec, progress)

    # -- sessions ----------------------------------------------------------------------------

    async def open(self, req: GymSessionRequest, owner: str | None) -> GymSessionInfo:
        """Open a session for ``owner``: the image found or built, a sandbox started for it, the env made there.
        Returns its info; raises EnvError for a source, package or import that cannot be used."""
        spec, make = self.image_spec(req)
        self.envs.admit_hosts(owner, 1)  # before a build: a namespace at its env host quota is refused at once
        image = await self.builder.ensure(spec)
        s = self.envs.settings
        vector = req.vector or req.num_envs > 1
        workers = 1
        if vector and req.vectorization_mode == "async":
            workers = max(1, min(req.num_envs, math.ceil(s.gym_sandbox_cpus)))
        args = {"env_id": "gym:" + req.source, "timeout": req.timeout or s.call_timeout,
                "kwargs": {**make["kwargs"], **req.kwargs}, "python": image.python, "sys_path": [image.site],
                "isolated": True,
                "gym": {"source": make["source"], "num_envs": req.num_envs, "vector": vector,
                        "mode": req.vectorization_mode, "workers": workers, "imports": spec.imports}}
        t0 = time.perf_counter()
        info = await self.start(args, image.tag, req.lease or s.gym_lease, owner)
        log.info("gym session %s (%s x%d, %s) ready in %.0f ms", info.session_id, req.source, req.num_envs,
                 req.vectorization_mode if vector else "single", (time.perf_counter() - t0) * 1000)
        return info

    async def start(self, args: dict, image: str, lease: float, owner: str | None) -> GymSessionInfo:
        """A session's sandbox (``image``) and its env made with the env host's ``args``: an
        opened session, or a fork's child opened as its source was."""
        s = self.envs.settings
        sb = self.envs.reserve_dedicated(owner, image, s.gym_sandbox_memory, s.gym_sandbox_cpus)
        try:
            rec, result = await self.envs.make_env(sb, args, owner)
        except BaseException:
            await self.envs.stop_sandbox(sb)
            raise
        rec.ttl = lease
        self.envs.start_reaper(deadline_changed=True)  # the lease may be shorter than the reaper's sleep
        info = GymSessionInfo(session_id=rec.handle, sandbox_id=sb.sandbox_id, image=image,
                              contract=result["contract"], lease=lease)
        self.sessions[rec.handle] = info
        self.trails[rec.handle] = gym_forks.Trail(args, image)
        return info

    def get(self, session_id: str, owner: str | None) -> EnvRecord:
        """The caller's session, the one lookup of every session route. Another namespace's is
        answered exactly like a missing one, and nothing of it is touched (forgetting it here let
        any token holder end another's session by naming it)."""
        rec = self.envs.envs.get(session_id)
        if rec is None or session_id not in self.sessions or rec.owner != owner:
            split_handle(session_id)  # a malformed id gets its own message
            if rec is None:
                self._forget(session_id)  # its env is gone (closed, reaped)
            raise EnvError(f"no gym session {session_id!r} (closed, reaped after its lease ran out, or never opened)",
                           "EnvNotFound")
        return rec

    def _forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.trails.pop(session_id, None)

    async def reset(self, session_id: str, owner: str | None, seed, options) -> bytes:
        """Reset the session's env with ``seed`` and ``options``; returns the env host's answer (a gymwire body of
        observation and info), and records it for forks."""
        self.get(session_id, owner)
        body = await self.envs.call(session_id, "gym_reset", {"seed": seed, "options": options}, owner)
        if (trail := self.trails.get(session_id)) is not None:
            trail.after_reset(seed, options, body)
        return body

    async def step(self, session_id: str, owner: str | None, action: bytes) -> bytes:
        """Step the session's env with ``action`` (a gymwire body); returns the answer undecoded. A step that fails
        in the env's code marks the session broken for forks until the next reset."""
        self.get(session_id, owner)
        trail = self.trails.get(session_id)
        try:
            body = await self.envs.call(session_id, "gym_step", {}, owner, action)
        except EnvError as exc:
            if trail is not None and exc.kind != "BadRequest":  # refused before the env saw it: nothing changed
                trail.broken = exc.message
            raise
        if trail is not None:
            trail.after_step(action, body)
        return body

    async def fork(self, session_id: str, owner: str | None, n: int,
                   how: str = "replay") -> tuple[list[GymSessionInfo], int]:
        """``n`` new sessions that go on from this one's state (``rock.envs.gym.forks``), and how
        many actions each replayed."""
        return await gym_forks.fork(self, session_id, owner, n, how)

    async def render(self, session_id: str, owner: str | None, env_index: int) -> bytes:
        """The frame of env ``env_index`` (of a vector env; 0 for a single one) as a gymwire body."""
        self.get(session_id, owner)
        return await self.envs.call(session_id, "gym_render", {"env_index": env_index}, owner)

    def keepalive(self, session_id: str, owner: str | None) -> float:
        """Renew the session's lease; returns the lease in seconds, the time until it is reaped without another."""
        rec = self.get(session_id, owner)
        rec.touch()
        return rec.ttl or self.envs.settings.idle_ttl

    async def close(self, session_id: str, owner: str | None) -> bool:
        """Close the session: its env ends and its sandbox is stopped. Returns whether the env host closed it;
        raises EnvError (EnvNotFound) for a session that is gone or not the caller's."""
        self.get(session_id, owner)
        self._forget(session_id)
        return await self.envs.close(session_id, owner)

    def listing(self, owner: str | None) -> list[dict]:
        """The caller's open sessions as dicts: the info without the contract, plus env id, num_envs, and when it
        was created and last used (Unix seconds). Sessions reaped meanwhile are forgotten."""
        out = []
        for sid, info in list(self.sessions.items()):
            rec = self.envs.envs.get(sid)
            if rec is None:
                self._forget(sid)  # reaped
                continue
            if rec.owner == owner:
                out.append({**info.model_dump(exclude={"contract"}), "env_id": info.contract.get("id"),
                            "num_envs": info.contract.get("num_envs"), "created": rec.created,
                            "last_used": rec.last_used})
        return out

    # -- the catalog ------------------------------------------------------------------------------

    async def catalog(self, owner: str | None) -> list[EnvInfo]:
        """The gymnasium ids the default env image offers (listed inside a sandbox of that image,
        once per image); before that image is built, one entry that says so."""
        spec, _ = self.image_spec(GymImageRequest(source="CartPole-v1"))
        tag = await self.builder.find(spec)
        if tag is None:
            return [EnvInfo(id="gym:<gymnasium id>", family="gym", available=True, source="gym", packages=spec.packages,
                            reason="any id of gymnasium's offline families; their image is built on first use, then "
                                   "listed here")]
        if tag not in self._ids:
            self._ids[tag] = await self._list_ids(tag, owner)
        return [EnvInfo(id="gym:" + i, family="gym", available=True, source="gym", image=tag, packages=spec.packages)
                for i in self._ids[tag]]

    async def _list_ids(self, tag: str, owner: str | None) -> list[str]:
        sb = await self.envs.running_sandbox(owner, tag)
        client = await self.envs.sandboxes.agent(sb.sandbox_id, owner)
        result = await client.exec('exec "$ROCK_HOST_PYTHON" -I -S -', shell=True, timeout=300,
                                   stdin=_LIST_IDS.replace("SITE", SITE).encode())
        if result.exit_code != 0:
            raise EnvError(f"listing gymnasium ids in {sb.sandbox_id} failed: {result.stderr[-1500:]}", "EnvUnavailable")
        return json.loads(result.stdout)

    async def shutdown(self) -> None:
        """Close every session (the admin is stopping); errors are ignored."""
        await asyncio.gather(*(self.envs.close(sid, self.envs.envs[sid].owner) for sid in list(self.sessions)
                               if sid in self.envs.envs), return_exceptions=True)
        self.sessions.clear()
        self.trails.clear()


async def catalog_entries(envs: EnvService, gym: GymSessions | None, owner: str | None, deep: bool) -> list:
    """Every family's entries: GEM's catalog and registered envs, then the gym ids (an admin's; a proxy has
    no gym sessions). What GEM's catalog route and the admin UI's environments page list."""
    entries = await envs.catalog_entries(owner, deep)
    return entries + (await gym.catalog(owner) if gym is not None else [])
