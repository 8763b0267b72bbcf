"""The env catalog: gem's ids with their availability here, plus envs users register.

Availability comes from ``probe.py`` run in its own process (never in the admin's): the
service runs it inside an env sandbox, the CLI without an admin runs it locally. Results are
cached on disk under a fingerprint of what decides them (the interpreter, package versions,
where an NLTK ``words`` corpus is), so installing the corpus or pandas shows up on the next list.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rock.actions.images import ImageRef
from rock.envs.errors import EnvError
from rock.runtime import processes

PROBE_SCRIPT = Path(__file__).with_name("probe.py")
# Runs the probe with these arguments under the env interpreter; returns its stdout.
Runner = Callable[[list[str]], Awaitable[bytes]]


class UserEnv(BaseModel):
    """An env a user registers under an id: where its class is, what it needs, where it runs."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
    entry_point: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", description="module:Class")
    packages: list[str] = Field(default_factory=list, description="pip requirements installed in the sandbox")
    image: ImageRef | None = Field(default=None, description="image of its sandboxes; None: the env default")
    python: str | None = Field(default=None, description="interpreter in the sandbox; None: the host's")
    sys_path: list[str] = Field(default_factory=list, description="folders (inside the sandbox) to import from")
    kwargs: dict = Field(default_factory=dict, description="constructor defaults; make() kwargs win")
    description: str = ""


class EnvInfo(BaseModel):
    """One env id of the catalog: its family (the part before ``:``, ``user`` or ``gym``), whether it can run here
    and, when not, why; its entry point, where it comes from (gem, user, gym), and for user and gym envs the
    image and packages."""

    id: str
    family: str
    available: bool
    reason: str | None = None
    entry_point: str | None = None
    source: str = "gem"
    image: str | None = None
    packages: list[str] = Field(default_factory=list)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _words_dirs() -> list[str]:
    """Where NLTK would look for corpora (its default search path), without importing nltk."""
    dirs = [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    home = os.path.expanduser("~/nltk_data")
    dirs += [home, "/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]
    dirs += [os.path.join(sys.prefix, p) for p in ("nltk_data", "share/nltk_data", "lib/nltk_data")]
    return dirs


_fingerprints: dict[str, tuple[float, str]] = {}


def fingerprint(python: str) -> str:
    """Changes when what decides availability changes; recomputed at most every few seconds
    (reading package metadata costs milliseconds, and every make asks)."""
    now = time.monotonic()
    hit = _fingerprints.get(python)
    if hit is not None and now - hit[0] < 5.0:
        return hit[1]
    facts = [os.path.realpath(python), PROBE_SCRIPT.stat().st_mtime_ns]
    facts += [_version(d) for d in ("gem-llm", "reasoning-gym", "nltk", "pandas")]
    facts += [d for d in _words_dirs() if os.path.isdir(os.path.join(d, "corpora", "words")) or
              os.path.isfile(os.path.join(d, "corpora", "words.zip"))]
    fp = hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]
    _fingerprints[python] = (now, fp)
    return fp


def local_runner(python: str) -> Runner:
    """Run the probe as a child process of the caller (the CLI without an admin)."""

    async def run(args: list[str]) -> bytes:
        proc = await processes.start([python, "-I", str(PROBE_SCRIPT), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise EnvError(f"the env probe failed ({python}): {err.decode(errors='replace')[-1500:]}", "EnvUnavailable")
        return out

    return run


class Catalog:
    """The env ids this admin offers: GEM's (found by a probe run with the env interpreter, its answers cached on
    disk until the installed packages change) and the envs users registered (a JSON file under the state
    directory; an id belongs to the namespace that registered it)."""

    def __init__(self, state_dir: Path, python: str):
        self.dir = Path(state_dir) / "envs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.registry_path = self.dir / "registry.json"
        self._user: dict[str, UserEnv] = {}
        self._owners: dict[str, str | None] = {}  # env id -> the namespace that registered it
        self._user_mtime: int | None = None
        self._probes: dict[str, dict] = {}
        self._locks = {"deep": asyncio.Lock(), "ids": asyncio.Lock()}

    # -- user envs ---------------------------------------------------------------------------

    def user_envs(self) -> dict[str, UserEnv]:
        """Registered envs; re-read when the file changed (the CLI may register while the admin runs)."""
        try:
            mtime = self.registry_path.stat().st_mtime_ns
        except FileNotFoundError:
            self._user, self._owners, self._user_mtime = {}, {}, None
            return self._user
        if mtime != self._user_mtime:
            data = json.loads(self.registry_path.read_text() or "[]")
            self._owners = {e["id"]: e.pop("_owner", None) for e in data}
            self._user = {e["id"]: UserEnv(**e) for e in data}
            self._user_mtime = mtime
        return self._user

    def _save_user(self, envs: dict[str, UserEnv]) -> None:
        tmp = self.registry_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{**e.model_dump(), "_owner": self._owners.get(i)} for i, e in envs.items()], indent=1))
        os.replace(tmp, self.registry_path)

    def _mine(self, env_id: str, owner: str | None) -> None:
        """Only the namespace that registered an id changes it: another one would choose the code
        that namespace's env sandboxes run."""
        if env_id in self.user_envs() and self._owners.get(env_id) != owner:
            raise EnvError(f"env id {env_id!r} is registered by another namespace; register yours under another id",
                           "BadRequest")

    async def register(self, env: UserEnv, runner: Runner | None = None, replace: bool = False,
                       owner: str | None = None) -> UserEnv:
        """Register (or with ``replace``, change) a user env. Raises EnvError (BadRequest) for a GEM id, an id
        another namespace registered, or an id already registered differently without ``replace``."""
        gem_ids = {e["id"] for e in (await self.probe("ids", runner))["envs"]}
        if env.id in gem_ids:
            raise EnvError(f"{env.id!r} is a gem env id; register your env under another id", "BadRequest")
        self._mine(env.id, owner)
        envs = dict(self.user_envs())
        if env.id in envs and not replace and envs[env.id] != env:
            raise EnvError(f"env id {env.id!r} is already registered (pass replace to change it)", "BadRequest")
        envs[env.id] = env
        self._owners[env.id] = owner
        self._save_user(envs)
        return env

    def unregister(self, env_id: str, owner: str | None = None) -> bool:
        """Remove a user env; False when it was not registered. Raises EnvError (BadRequest) for another
        namespace's id."""
        self._mine(env_id, owner)
        envs = dict(self.user_envs())
        if envs.pop(env_id, None) is None:
            return False
        self._save_user(envs)
        return True

    # -- probing -----------------------------------------------------------------------------

    def _keys(self, mode: str) -> list[str]:
        """Cache keys that answer ``mode``: a deep probe also answers 'ids'."""
        fp = fingerprint(self.python)
        return [f"deep-{fp}"] if mode == "deep" else [f"ids-{fp}", f"deep-{fp}"]

    def _load(self, mode: str) -> dict | None:
        for key in self._keys(mode):
            if key in self._probes:
                return self._probes[key]
            try:
                data = self._probes[key] = json.loads((self.dir / f"catalog-{key}.json").read_text())
                return data
            except (FileNotFoundError, ValueError):
                continue
        return None

    def is_cached(self, mode: str) -> bool:
        """Whether a probe of ``mode`` ('ids' or 'deep') is already known, so asking costs no probe."""
        return self._load(mode) is not None

    async def probe(self, mode: str, runner: Runner | None = None) -> dict:
        """The probe's answer for ``mode`` ('deep' constructs each env, 'ids' does not), cached."""
        data = self._load(mode)
        if data is not None:
            return data
        async with self._locks[mode]:
            data = self._load(mode)
            if data is None:
                raw = await (runner or local_runner(self.python))(["--ids"] if mode == "ids" else [])
                data = json.loads(raw)
                if data.get("error"):
                    raise EnvError(data["error"], "EnvUnavailable")
                key = self._keys(mode)[0]
                (self.dir / f"catalog-{key}.json").write_text(json.dumps(data))
                self._probes[key] = data
            return data

    def cached(self, env_id: str) -> dict | None:
        """What a probe already said about ``env_id`` (no probing)."""
        for entry in (self._load("ids") or {}).get("envs", ()):
            if entry["id"] == env_id:
                return entry
        return None

    async def entries(self, deep: bool = True, runner: Runner | None = None) -> list[EnvInfo]:
        """Every env id with what is known of it: GEM's from the probe (``deep`` constructs each env to tell
        whether it can run; slower), then the registered user envs."""
        data = await self.probe("deep" if deep else "ids", runner)
        out = [EnvInfo(id=e["id"], family=e["id"].split(":")[0], available=e["available"], reason=e["reason"],
                       entry_point=e["entry_point"]) for e in data["envs"]]
        for env in self.user_envs().values():
            out.append(EnvInfo(id=env.id, family="user", available=True, entry_point=env.entry_point, source="user",
                               image=env.image, packages=env.packages))
        return out

    # -- errors ------------------------------------------------------------------------------

    @staticmethod
    def suggest(env_id: str, ids: list[str], n: int = 3) -> list[str]:
        """Closest ids: spelling first, then ids that contain the name (``sokoban`` -> the Sokobans)."""
        by_lower = {i.lower(): i for i in ids}
        close = [by_lower[m] for m in difflib.get_close_matches(env_id.lower(), list(by_lower), n=n, cutoff=0.6)]
        name = env_id.split(":")[-1].split("-")[0].lower()
        if len(close) < n and len(name) >= 3:
            close += [i for i in ids if name in i.lower() and i not in close][: n - len(close)]
        if not close:
            close = [by_lower[m] for m in difflib.get_close_matches(env_id.lower(), list(by_lower), n=n, cutoff=0.3)]
        return close

    async def unknown(self, env_id: str, runner: Runner | None = None) -> EnvError:
        """The EnvError (EnvNotFound) for an id nobody offers, naming the closest known ids."""
        ids = [e["id"] for e in (await self.probe("ids", runner))["envs"]] + list(self.user_envs())
        close = self.suggest(env_id, ids)
        hint = f"; closest known ids: {', '.join(close)}" if close else ""
        return EnvError(f"unknown env id {env_id!r}{hint} (`rock envs list` shows them all)", "EnvNotFound")

    def unavailable(self, env_id: str) -> EnvError | None:
        """The EnvError (EnvUnavailable) for an id a probe found cannot run here, with its reason; None when it can
        or nothing is known yet (no probe is run)."""
        entry = self.cached(env_id)
        if entry is not None and not entry["available"]:
            return EnvError(f"{env_id} cannot run here: {entry['reason']}", "EnvUnavailable")
        return None
