"""Sandboxes as Docker containers, through the Engine API (the docker SDK's low-level client).

A create is two API calls (create, start) and then the agent's ready line on the FIFO in
the bind-mounted run directory: no polling of the engine. One event stream per process
(``die`` events of rock containers) tells a create that its container exited before the
agent came up, so a failed start reports the container's logs at once instead of timing out.
Statistics come from the container's cgroup files on the host, not the slow stats API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Mount

from rock.errors import SandboxStartError
from rock.runtime import cgroups, docker_network
from rock.runtime.agent_boot import (
    AGENT_SRC,
    READY_TIMEOUT,
    SANDBOX_CAPS,
    SANDBOX_LIB,
    SANDBOX_RUN,
    agent_argv,
    prepare_run_dir,
    sandbox_env,
)
from rock.runtime.base import ResourceStats, Runtime, RuntimeHandle, SandboxSpec
from rock.runtime.host_policy import is_host_path
from rock.runtime.ready import wait_ready
from rock.runtime.docker_kept import DockerKeptContainers

log = logging.getLogger("rock.runtime.docker")

# Docker's default set minus what a sandbox does not need (MKNOD, NET_RAW, SYS_CHROOT, SETFCAP,
# SETPCAP, AUDIT_WRITE): the shared set, plus ports < 1024, which only reach the container's own
# network namespace (task servers on :80).
CAPS = [*SANDBOX_CAPS, "NET_BIND_SERVICE"]
LABEL = "rock.managed"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # what Docker accepts in a container name

# Docker calls block; they get their own threads so that a burst of creates cannot starve
# the event loop's default executor (6 threads on a 2-core machine).
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="rock-docker")


@functools.cache
def client() -> docker.APIClient:  # reads DOCKER_HOST like the CLI does
    # version="auto" costs one round trip, once per process.
    return docker.from_env(version="auto", timeout=120).api


async def _call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args, **kwargs))


class _DeathWatch:
    """One ``die`` event stream for all rock containers of this process, started on first use."""

    def __init__(self) -> None:
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._lock = threading.Lock()
        self._stream = None

    @property
    def running(self) -> bool:
        return self._stream is not None

    def start(self) -> None:
        with self._lock:
            if self._stream is not None:
                return
            # Returns once the engine has accepted the subscription: no die after this is missed.
            self._stream = client().events(decode=True, filters={"type": "container", "event": "die", "label": LABEL})
            threading.Thread(target=self._run, args=(self._stream,), name="rock-docker-events", daemon=True).start()

    def _run(self, stream) -> None:
        try:
            for event in stream:
                entry = self._waiters.pop(event.get("id", ""), None)
                if entry is not None:
                    loop, fut = entry
                    code = event.get("Actor", {}).get("Attributes", {}).get("exitCode", "?")
                    loop.call_soon_threadsafe(lambda f=fut, c=code: f.done() or f.set_result(c))
        except Exception as exc:  # the engine went away: the next create subscribes again
            log.warning("docker event stream ended: %s", exc)
        with self._lock:
            self._stream = None

    def watch(self, container_id: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters[container_id] = (loop, fut)
        return fut

    def unwatch(self, container_id: str) -> None:
        self._waiters.pop(container_id, None)


_deaths = _DeathWatch()


class DockerRuntime(Runtime):
    """Sandboxes as Docker containers: the engine's images, networks, limits and pause."""

    name = "docker"
    keeps_files = True
    # The agent is the container's first program, with its credentials as they will stay: nothing
    # made it non-dumpable, so it does that itself (a same-user ptrace would reach it otherwise).
    agent_env = {"ROCK_AGENT_NONDUMPABLE": "1"}

    def __init__(self, settings, owner: str):
        super().__init__(settings, owner)
        self.python_prefix = str(os.path.dirname(os.path.dirname(settings.host_python)))
        self.kept = DockerKeptContainers(self.owner_key, settings.default_image)

    @classmethod
    def available(cls) -> str | None:
        try:
            docker.from_env(timeout=3).ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
            return f"no Docker engine answers: {exc}"
        return None

    def _config(self, spec: SandboxSpec, run: str) -> dict:
        api = client()
        host_config = api.create_host_config(
            mounts=[
                Mount(SANDBOX_RUN, run, type="bind"),
                Mount(f"{SANDBOX_LIB}/rock_agent", str(AGENT_SRC), type="bind", read_only=True),
                Mount(self.python_prefix, self.python_prefix, type="bind", read_only=True),
                *(Mount(path, path, type="bind", read_only=True) for path in spec.ro_binds),
            ],
            # our own bridge, fenced off the host and other sandboxes (rock.runtime.docker_network)
            network_mode=docker_network.NETWORK if spec.network else "none",
            cap_drop=["ALL"],
            cap_add=CAPS,
            security_opt=["no-new-privileges"],
            pids_limit=spec.pids_limit,
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,  # equal to the memory limit: no swap
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
            # A real init as pid 1 reaps orphans and forwards signals; the agent stays a plain process.
            init=True,
            runtime=spec.runtime,
            device_requests=[DeviceRequest(device_ids=[str(i) for i in spec.gpu_ids], capabilities=[["gpu"]])]
            if spec.gpu_ids else None,
        )
        labels = {
            **spec.labels,
            LABEL: "1",
            "rock.sandbox_id": spec.sandbox_id,
            "rock.owner": self.owner,
            "rock.state_dir": os.path.realpath(self.settings.state_dir),
        }
        return dict(
            image=spec.image or self.settings.default_image,
            entrypoint=agent_argv(),
            environment=sandbox_env(self.settings, spec, self.agent_env),
            hostname=spec.sandbox_id[:63],
            # A readable name for `docker ps` where the id allows one; labels are what we rely on.
            name=f"rock-{self.owner_key[:8]}-{spec.sandbox_id}" if _NAME.match(spec.sandbox_id) else None,
            labels=labels,
            host_config=host_config,
            use_config_proxy=False,
        )

    async def create(self, spec: SandboxSpec) -> RuntimeHandle:
        t0 = time.perf_counter()
        run = prepare_run_dir(self.sandboxes_dir, spec.sandbox_id)
        config = self._config(spec, str(run))
        try:
            if not _deaths.running:
                await _call(_deaths.start)
            if spec.network:
                await _call(docker_network.ensure, client(), self.settings.sandbox_network_deny)
            if spec.pull_policy != "missing":
                await self._ensure_image(spec, config["image"])
            try:
                cid = (await _call(client().create_container, **config))["Id"]
            except ImageNotFound:  # `missing`: pulled only now, so a present image costs no extra call
                if spec.pull_policy != "missing":
                    raise
                await self._ensure_image(spec, config["image"])
                cid = (await _call(client().create_container, **config))["Id"]
        except BaseException as exc:
            _rmtree(str(run.parent))
            raise _start_error(exc, "create", config["image"]) from None
        t_created = time.perf_counter()
        handle = RuntimeHandle(sandbox_id=spec.sandbox_id, backend=self.name, runtime_id=cid, run_dir=str(run), spec=spec)
        await self._boot(handle, run, config["image"], remove_on_failure=True)
        log.info("sandbox %s ready in %.1f ms (create %.1f ms, container %s)", spec.sandbox_id,
                 (time.perf_counter() - t0) * 1e3, (t_created - t0) * 1e3, cid[:12])
        return handle

    async def _ensure_image(self, spec: SandboxSpec, image: str) -> None:
        from rock.runtime.docker_images import ensure_image

        auth = spec.registry_auth or {}
        await _call(ensure_image, image, spec.pull_policy, auth.get("username"), auth.get("password"))

    async def _boot(self, handle: RuntimeHandle, run: Path, image: str, remove_on_failure: bool) -> None:
        """Start the container and wait for its agent's ready line (or its death)."""
        cid = handle.runtime_id
        died = asyncio.ensure_future(self._death_reason(cid, _deaths.watch(cid)))
        try:
            await _call(client().start, cid)
            await wait_ready(run, died, READY_TIMEOUT)
        except BaseException as exc:
            if isinstance(exc, SandboxStartError) and not died.done():  # timed out: what did it do meanwhile?
                exc = SandboxStartError(f"{exc.message}; container logs: {await self._logs(cid)}")
            if remove_on_failure:
                await self.destroy(handle)
            else:  # a failed restart keeps the files: the container goes back to stopped
                with contextlib.suppress(Exception):
                    await self.suspend(handle)
            raise _start_error(exc, "start", image) from None
        finally:
            died.cancel()
            _deaths.unwatch(cid)

    async def _death_reason(self, cid: str, died: asyncio.Future) -> str:
        code = await died
        return f"container exited with code {code}; logs: {await self._logs(cid)}"

    async def _logs(self, cid: str) -> str:
        try:
            logs = (await _call(client().logs, cid, tail=40)).decode(errors="replace").strip()
        except DockerException as exc:
            logs = f"(unavailable: {exc})"
        return logs or "(none)"

    # -- kept containers: stop, restart, commit; pause and snapshots -------------------------

    async def suspend(self, handle: RuntimeHandle) -> None:
        await self.kept.suspend(handle)

    async def resume(self, handle: RuntimeHandle) -> RuntimeHandle:
        t0 = time.perf_counter()
        run = prepare_run_dir(self.sandboxes_dir, handle.sandbox_id)  # a fresh socket and ready FIFO, same path
        if not _deaths.running:
            await _call(_deaths.start)
        await self._boot(handle, run, handle.spec.image or self.settings.default_image, remove_on_failure=False)
        log.info("sandbox %s restarted in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)
        return handle

    async def disk_usage(self, handle: RuntimeHandle) -> int | None:
        return await self.kept.disk_usage(handle)

    async def commit(self, handle: RuntimeHandle, image_tag: str) -> str:
        return await self.kept.commit(handle, image_tag)

    async def _freeze(self, handle: RuntimeHandle) -> None:
        await self.kept.pause(handle)

    async def _thaw(self, handle: RuntimeHandle) -> None:
        await self.kept.unpause(handle)

    async def _snapshot(self, handle: RuntimeHandle, snapshot, path: Path) -> None:
        await self.kept.snapshot(handle, snapshot, paused=self.paused(handle))

    async def _start_from(self, snapshot, spec: SandboxSpec) -> RuntimeHandle:
        return await self.create(spec.model_copy(update={"image": snapshot.extra["image"], "pull_policy": "missing"}))

    async def _delete_snapshot(self, snapshot) -> None:
        await self.kept.delete_image(snapshot)

    async def destroy(self, handle: RuntimeHandle) -> None:
        t0 = time.perf_counter()
        try:
            if self.paused(handle):  # this engine's forced remove of a paused container hangs
                await _call(client().unpause, handle.runtime_id)
            await _call(client().remove_container, handle.runtime_id, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise
        await asyncio.to_thread(_rmtree, os.path.dirname(handle.run_dir))
        log.info("sandbox %s destroyed in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)

    async def alive(self, handle: RuntimeHandle) -> bool:
        try:
            info = await _call(client().inspect_container, handle.runtime_id)
        except NotFound:
            return False
        return bool(info["State"]["Running"])

    async def stats(self, handle: RuntimeHandle) -> ResourceStats:
        group = cgroups.docker_group(handle.runtime_id)
        return ResourceStats(**group.stats()) if group else ResourceStats()

    async def reap(self, known: set[str]) -> list[str]:
        """Remove this owner's containers that no known sandbox uses, and rock containers of any
        owner whose state directory no longer exists (that owner is gone for good)."""
        containers = await _call(client().containers, all=True, filters={"label": f"{LABEL}=1"})
        removed = []
        for c in containers:
            labels = c.get("Labels") or {}
            sid = labels.get("rock.sandbox_id", "")
            mine = labels.get("rock.owner") == self.owner and sid not in known
            orphan = not os.path.isdir(labels.get("rock.state_dir", ""))
            if mine or orphan:
                try:
                    if c.get("State") == "paused":  # a forced remove of a paused container hangs
                        await _call(client().unpause, c["Id"])
                    await _call(client().remove_container, c["Id"], force=True, v=True)
                except NotFound:
                    continue
                removed.append(sid)
                log.info("reaped container %s (sandbox %s, owner %s)", c["Id"][:12], sid, labels.get("rock.owner"))
        for d in list(self.sandboxes_dir.iterdir()):
            if d.is_dir() and d.name not in known:
                await asyncio.to_thread(_rmtree, str(d))
                if d.name not in removed:
                    removed.append(d.name)
        return sorted(removed)


def _start_error(exc: BaseException, step: str, image: str) -> BaseException:
    """What a failed create raises: a SandboxStartError that says why, in the engine's words."""
    if isinstance(exc, ImageNotFound):
        return SandboxStartError(f"image {image} is not present in the local Docker engine")
    if isinstance(exc, APIError):
        return SandboxStartError(f"docker {step} failed: {exc.explanation or exc}")
    if isinstance(exc, (DockerException, requests.RequestException)):
        return SandboxStartError(f"the Docker engine did not answer ({step}): {exc}")
    return exc


def _rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)




class ImageMissing(SandboxStartError):
    """The image is not in the local engine (a pull may bring it)."""


def inspect_image(image: str) -> tuple[str, dict[str, str]]:
    """The image's id and its environment variables; ImageMissing when it is not local."""
    try:
        info = client().inspect_image(image)
    except ImageNotFound:
        raise ImageMissing(f"{image!r} is neither a directory, a tar file nor a local Docker image") from None
    except DockerException as exc:
        raise SandboxStartError(f"cannot inspect image {image!r}: {exc}") from None
    env = dict(e.split("=", 1) for e in (info.get("Config") or {}).get("Env") or [] if "=" in e)
    return info["Id"], env


def export_image(image: str, write: Callable[[bytes], Any]) -> None:
    """Stream the image's root filesystem as a tar to ``write``, logging progress."""
    api = client()
    cid = api.create_container(image, command=["/bin/true"], labels={"rock.export": "1"})["Id"]
    try:
        total, next_report = 0, 64 << 20
        for chunk in api.export(cid):
            write(chunk)
            total += len(chunk)
            if total >= next_report:
                log.info("exporting %s: %d MiB", image, total >> 20)
                next_report += 64 << 20
        log.info("exported %s: %d MiB", image, total >> 20)
    finally:
        api.remove_container(cid, force=True)


# -- images as root filesystems, for a backend without an engine (bwrap) ----------------------

_image_locks: dict[str, asyncio.Lock] = {}
_image_ids: dict[str, tuple[float, str, dict[str, str]]] = {}
IMAGE_ID_TTL = 30.0  # how long a tag -> image id answer is trusted before asking the engine again


async def image_rootfs(image: str, images_dir: Path) -> tuple[Path, dict[str, str]]:
    """An unpacked root filesystem for a tar file or a local Docker image, made once and cached
    under ``images_dir`` (keyed by the image id, so a rebuilt image is unpacked again)."""
    if is_host_path(image) and os.path.isfile(image):  # a relative name is an image name, never a file here
        st = os.stat(image)
        key = _safe(Path(image).name) + "-" + hashlib.sha256(f"{os.path.realpath(image)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        env: dict[str, str] = {}
    else:
        cached = _image_ids.get(image)
        if cached is None or time.monotonic() - cached[0] > IMAGE_ID_TTL:
            image_id, env = await asyncio.to_thread(inspect_image, image)
            _image_ids[image] = cached = (time.monotonic(), image_id, env)
        _, image_id, env = cached
        key = _safe(image) + "-" + image_id.split(":")[-1][:12]
    root = images_dir / key / "rootfs"
    if root.is_dir():
        return root, env
    async with _image_locks.setdefault(key, asyncio.Lock()):
        if not root.is_dir():
            await asyncio.to_thread(_unpack, image, root)
    return root, env


def _unpack(image: str, root: Path) -> None:
    """Unpack into a temporary sibling and rename it into place: readers never see half a tree."""
    t0 = time.perf_counter()
    tmp = root.parent / f".rootfs.{os.getpid()}.{time.monotonic_ns()}"
    tmp.mkdir(parents=True)
    try:
        tar = ["tar", "-x", "-p", "--numeric-owner", "-C", str(tmp), "-f"]
        if is_host_path(image) and os.path.isfile(image):
            log.info("unpacking %s into %s", image, root)
            subprocess.run([*tar, image], check=True, capture_output=True)
        else:
            log.info("exporting docker image %s into %s (once per image)", image, root)
            # tar's complaints go to a file: a full stderr pipe would stall the export.
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen([*tar, "-"], stdin=subprocess.PIPE, stderr=err)
                try:
                    export_image(image, proc.stdin.write)
                finally:
                    proc.stdin.close()
                    proc.wait()
                if proc.returncode:
                    err.seek(0)
                    raise SandboxStartError(f"unpacking image {image} failed: {err.read()[-500:].decode(errors='replace')}")
        _runtime_files(tmp)
        try:
            tmp.rename(root)
        except OSError:  # another worker finished first
            if not root.is_dir():
                raise
    except subprocess.CalledProcessError as exc:
        raise SandboxStartError(f"unpacking {image} failed: {exc.stderr.decode(errors='replace')[-500:]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("image %s ready at %s in %.1f s", image, root, time.perf_counter() - t0)


# What Docker writes into every container without a network (`docker run --network none`): an
# image carries an empty /etc/hosts (or none), and without these lines `localhost` does not
# resolve in a bwrap sandbox, where ROCK's own agent configs reach the model service at
# http://localhost:8080/v1.
ETC_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
             "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def _runtime_files(root: Path) -> None:
    """The files Docker provides at run time that an unpacked image lacks: /etc/hosts."""
    hosts = root / "etc" / "hosts"
    if (root / "etc").is_dir() and not hosts.is_symlink() and (not hosts.exists() or hosts.stat().st_size == 0):
        hosts.write_text(ETC_HOSTS)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:64]
