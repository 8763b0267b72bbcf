"""Derived env images: a base image plus pip packages (and optional files), built once and cached.

Sandboxes have no network, so what an env needs is installed on the host: the host's pip
installs the packages into a ``--target`` folder, which becomes ``SITE`` in an image built
``FROM`` the base image. Inside a sandbox the env host runs the host's interpreter (its prefix is
mounted read-only at the same path in every docker and bwrap sandbox) with ``SITE`` on its path,
so the wheels pip chose on the host are the right ones inside. bwrap runs the same image through
its rootfs export, like any image.

The tag is a hash of everything that decides the content: the base image's id, the packages,
the imports, the files, and the interpreter's version. A second request for the same content
finds the image and costs one engine call; concurrent requests for it wait for one build.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rock.envs.errors import EnvError

log = logging.getLogger("rock.envs.images")

SITE = "/opt/rock/site"
REPO = "rock-env"
Progress = Callable[[str], None]


class EnvImageSpec(BaseModel):
    """What an env image holds. ``files`` maps a path relative to ``SITE`` to a host file."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(min_length=1)
    packages: list[str] = Field(default_factory=list)
    # pip's --no-deps: install exactly ``packages`` (their declared dependencies may be far more
    # than the env needs, e.g. bfcl-eval's every model vendor's SDK).
    no_deps: bool = False
    imports: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    build_memory: str | None = None  # a limit for the image build's container (docker's format: "4g")

    @field_validator("packages")
    @classmethod
    def _requirements_only(cls, packages: list[str]) -> list[str]:
        # pip options in the list would change how everything is installed (and from where).
        for p in packages:
            if p.strip().startswith("-"):
                raise ValueError(f"{p!r} is a pip option, not a package; packages are requirements like "
                                 f"'numpy>=1.26' (no_deps=true for --no-deps)")
        return packages


class EnvImage(BaseModel):
    tag: str
    site: str = SITE
    python: str  # the interpreter the env host runs (mounted from the host)
    built: bool = False  # False: it was already there
    seconds: float = 0.0


def _python_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_key(spec: EnvImageSpec, base_id: str, python_version: str) -> str:
    facts = [base_id, sorted(spec.packages), sorted(spec.imports), python_version,
             sorted((rel, _file_digest(src)) for rel, src in spec.files.items())]
    if spec.no_deps:  # only when set: the keys of every other image stay what they were
        facts.append("no-deps")
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


class ImageBuilder:
    """Builds and finds env images with the docker engine. One per process is enough."""

    def __init__(self, state_dir: Path, python: str | None = None):
        self.dir = Path(state_dir) / "env-images"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.python = python or os.path.realpath(sys.executable)
        self._version: str | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._client = None

    def client(self):
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env(version="auto", timeout=600)
            except Exception as exc:  # noqa: BLE001 - the engine's own words go to the caller
                raise EnvError(f"env images need a docker engine, and none answers: {exc}", "EnvUnavailable") from None
        return self._client

    async def tag(self, spec: EnvImageSpec) -> str:
        """The tag the image of ``spec`` has (or will have once built)."""
        base_id = await asyncio.to_thread(self._base_id, spec.base)
        if self._version is None:
            self._version = await asyncio.to_thread(_python_version, self.python)
        return f"{REPO}:{content_key(spec, base_id, self._version)}"

    async def find(self, spec: EnvImageSpec) -> str | None:
        """The image's tag if it is built, else None (nothing is built)."""
        tag = await self.tag(spec)
        return tag if await asyncio.to_thread(self._exists, tag) else None

    async def ensure(self, spec: EnvImageSpec, progress: Progress | None = None) -> EnvImage:
        """The image for ``spec``: found, or built (with ``progress`` lines) and then found."""
        say = progress or (lambda line: None)
        t0 = time.perf_counter()
        tag = await self.tag(spec)
        if await asyncio.to_thread(self._exists, tag):
            return EnvImage(tag=tag, python=self.python)
        async with self._locks.setdefault(tag, asyncio.Lock()):
            # Another admin process may be building the same image: one build per tag on this host.
            lock = await asyncio.to_thread(self._file_lock, tag)
            try:
                if not await asyncio.to_thread(self._exists, tag):
                    say(f"building env image {tag} from {spec.base} with {', '.join(spec.packages) or 'no packages'}")
                    await asyncio.to_thread(self._build, spec, tag, say)
                    built = True
                else:
                    built = False
            finally:
                lock.close()
        seconds = time.perf_counter() - t0
        if built:
            log.info("env image %s built in %.1f s", tag, seconds)
            say(f"env image {tag} ready in {seconds:.1f} s")
        return EnvImage(tag=tag, python=self.python, built=built, seconds=seconds)

    # -- engine calls (blocking: run in threads) ---------------------------------------------

    def _base_id(self, base: str) -> str:
        from docker.errors import APIError, ImageNotFound

        try:
            return self.client().api.inspect_image(base)["Id"]
        except ImageNotFound:
            raise EnvError(f"base image {base!r} is not in the local docker engine (build or load it first)",
                           "EnvUnavailable") from None
        except APIError as exc:
            if exc.status_code != 400:
                raise
            # the engine's 400: not an image reference at all ("invalid reference format")
            raise EnvError(f"base image {base!r} is not a valid image name: {exc.explanation}", "BadRequest") from None

    def _exists(self, tag: str) -> bool:
        from docker.errors import ImageNotFound

        try:
            self.client().api.inspect_image(tag)
            return True
        except ImageNotFound:
            return False

    def _file_lock(self, tag: str):
        f = open(self.dir / (tag.replace(":", "-") + ".lock"), "w")
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def _build(self, spec: EnvImageSpec, tag: str, say: Progress) -> None:
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.dir))
        try:
            site = work / "site"
            site.mkdir()
            if spec.packages:
                self._pip(spec.packages, site, say, no_deps=spec.no_deps)
            for rel, src in spec.files.items():
                dest = site / rel
                if not dest.resolve().is_relative_to(site.resolve()):
                    raise EnvError(f"file {rel!r} would land outside the image's site folder", "BadRequest")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
            self._check_imports(spec.imports, site)
            self._docker_build(spec, tag, work, say)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _pip(self, packages: list[str], site: Path, say: Progress, no_deps: bool = False) -> None:
        options = ["--no-deps"] if no_deps else []
        cmd = [self.python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
               "--no-warn-script-location", "--target", str(site), *options, "--", *packages]
        if os.environ.get("ROCK_PIP_INDEX_URL"):  # ROCK's variable: the package index env images install from
            cmd[4:4] = ["--index-url", os.environ["ROCK_PIP_INDEX_URL"]]
        say("pip install " + " ".join([*options, *packages]))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            if not line or "is ignored: it is neither a file nor a directory" in line:
                continue
            tail = (tail + [line])[-20:]
            if line.startswith(("Collecting", "Successfully", "ERROR", "Building", "Downloading")):
                say(line)
        if proc.wait() != 0:
            raise EnvError(f"installing {' '.join(packages)} failed (pip exit {proc.returncode}):\n" + "\n".join(tail),
                           "EnvBuildError")

    def _check_imports(self, imports: list[str], site: Path) -> None:
        """Every import must load from the site folder with the env host's interpreter, isolated
        from the host's own site-packages as the env host will be."""
        for name in imports:
            code = f"import sys; sys.path.insert(0, {str(site)!r}); import {name}"
            proc = subprocess.run([self.python, "-I", "-S", "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise EnvError(f"import {name!r} fails with the image's packages: {last}", "EnvBuildError")

    def _docker_build(self, spec: EnvImageSpec, tag: str, work: Path, say: Progress) -> None:
        from rock.errors import SandboxStartError
        from rock.runtime.docker_images import build_image

        labels = {"rock.env.site": SITE, "rock.env.packages": json.dumps(spec.packages),
                  "rock.env.no_deps": json.dumps(spec.no_deps),
                  "rock.env.imports": json.dumps(spec.imports), "rock.env.base": spec.base}
        dockerfile = f"FROM {spec.base}\nCOPY site {SITE}\n"
        (work / "Dockerfile").write_text(dockerfile)
        with tempfile.TemporaryFile(dir=self.dir) as ctx:
            with tarfile.open(fileobj=ctx, mode="w") as tar:
                tar.add(work / "Dockerfile", arcname="Dockerfile")
                tar.add(work / "site", arcname="site")
            ctx.seek(0)
            limits = {"memory": _bytes(spec.build_memory)} if spec.build_memory else None
            say(f"docker build {tag} ({ctx.seek(0, io.SEEK_END) // (1 << 20)} MB of packages)")
            ctx.seek(0)
            try:
                build_image(ctx, tag, labels=labels, limits=limits, say=say)
            except SandboxStartError as exc:
                raise EnvError(exc.message, "EnvBuildError") from None


def _bytes(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = size.strip().lower().rstrip("b")
    try:
        return int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s)
    except ValueError:
        raise EnvError(f"build_memory {size!r} is not a size like '4g' or '512m'", "BadRequest") from None
