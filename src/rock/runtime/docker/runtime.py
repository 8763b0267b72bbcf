"""Sandboxes as Docker containers, through the Engine API (the docker SDK's low-level client).

A create is two API calls (create, start) and then the agent's ready line on the FIFO in
the bind-mounted run directory: no polling of the engine. One event stream per process
(``die`` events of rock containers) tells a create that its container exited before the
agent came up, so a failed start reports the container's logs at once instead of timing out.
Statistics come from the container's cgroup files on the host, not the slow stats API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Mount

from rock.errors import SandboxStartError
from rock.runtime import cgroups
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
from rock.runtime.kept import KeepsFiles
from rock.runtime.docker import network as docker_network
from rock.runtime.docker.engine import LABEL, call, client
from rock.runtime.docker.images import ensure_image
from rock.runtime.docker.kept import DockerKeptContainers
from rock.runtime.ready import wait_ready

log = logging.getLogger("rock.runtime.docker")

# Docker's default set minus what a sandbox does not need (MKNOD, NET_RAW, SYS_CHROOT, SETFCAP,
# SETPCAP, AUDIT_WRITE): the shared set, plus ports < 1024, which only reach the container's own
# network namespace (task servers on :80).
CAPS = [*SANDBOX_CAPS, "NET_BIND_SERVICE"]
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # what Docker accepts in a container name


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


class DockerRuntime(KeepsFiles, Runtime):
    """Sandboxes as Docker containers: the engine's images, networks, limits and pause."""

    name = "docker"
    keeps_files = True
    egress = True
    kata = True
    # The agent is the container's first program, with its credentials as they will stay: nothing
    # made it non-dumpable, so it does that itself (a same-user ptrace would reach it otherwise).
    agent_env = {"ROCK_AGENT_NONDUMPABLE": "1"}

    def __init__(self, settings, owner: str):
        super().__init__(settings, owner)
        self.python_prefix = str(os.path.dirname(os.path.dirname(settings.host_python)))
        self.kept = DockerKeptContainers(self.owner_key, settings.default_image)

    @classmethod
    def available(cls) -> str | None:
        """None when a Docker engine answers, else why not."""
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
                *(Mount(v.target, v.source, type="bind", read_only=v.read_only) for v in spec.volume_binds),
            ],
            # our own bridge, fenced off the host and other sandboxes (rock.runtime.docker.network)
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
        """Start a container running the sandbox's agent (read-only mounted) and wait until it is ready:
        its handle."""
        t0 = time.perf_counter()
        run = prepare_run_dir(self.sandboxes_dir, spec.sandbox_id)
        config = self._config(spec, str(run))
        try:
            if not _deaths.running:
                await call(_deaths.start)
            if spec.network:
                await call(docker_network.ensure, client(), self.settings.sandbox_network_deny)
            if spec.pull_policy != "missing":
                await self._ensure_image(spec, config["image"])
            try:
                cid = (await call(client().create_container, **config))["Id"]
            except ImageNotFound:  # `missing`: pulled only now, so a present image costs no extra call
                if spec.pull_policy != "missing":
                    raise
                await self._ensure_image(spec, config["image"])
                cid = (await call(client().create_container, **config))["Id"]
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
        auth = spec.registry_auth or {}
        await call(ensure_image, image, spec.pull_policy, auth.get("username"), auth.get("password"))

    async def _boot(self, handle: RuntimeHandle, run: Path, image: str, remove_on_failure: bool) -> None:
        """Start the container and wait for its agent's ready line (or its death)."""
        cid = handle.runtime_id
        died = asyncio.ensure_future(self._death_reason(cid, _deaths.watch(cid)))
        try:
            await call(client().start, cid)
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
            logs = (await call(client().logs, cid, tail=40)).decode(errors="replace").strip()
        except DockerException as exc:
            logs = f"(unavailable: {exc})"
        return logs or "(none)"

    # -- kept containers: stop, restart, commit; pause and snapshots -------------------------

    async def resume(self, handle: RuntimeHandle) -> RuntimeHandle:
        """Start a stopped container again, with a fresh socket and ready FIFO at the same path: its
        handle."""
        t0 = time.perf_counter()
        run = prepare_run_dir(self.sandboxes_dir, handle.sandbox_id)  # a fresh socket and ready FIFO, same path
        if not _deaths.running:
            await call(_deaths.start)
        await self._boot(handle, run, handle.spec.image or self.settings.default_image, remove_on_failure=False)
        log.info("sandbox %s restarted in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)
        return handle

    async def _freeze(self, handle: RuntimeHandle) -> None:
        await self.kept.pause(handle)

    async def _thaw(self, handle: RuntimeHandle) -> None:
        await self.kept.unpause(handle)

    async def _snapshot(self, handle: RuntimeHandle, snapshot, path: Path) -> None:
        await self.kept.snapshot(handle, snapshot, paused=self.paused(handle))

    async def _start_from(self, snapshot, spec: SandboxSpec) -> RuntimeHandle:
        return await self.create(spec.model_copy(update={"image": snapshot.extra["image"], "pull_policy": "missing"}))

    def rolls_back(self, handle: RuntimeHandle, snapshot) -> bool:
        return self.kept.rolls_back(handle, snapshot)

    async def rollback_plan(self, handle: RuntimeHandle, snapshot):
        return await self.kept.rollback_plan(self.snapshots, handle, snapshot)

    async def _delete_snapshot(self, snapshot) -> None:
        await self.kept.delete_image(snapshot)

    async def destroy(self, handle: RuntimeHandle) -> None:
        """Remove the container (a paused one is thawed first: removing it paused hangs)."""
        t0 = time.perf_counter()
        await _remove_container(handle.runtime_id, self.paused(handle))
        await asyncio.to_thread(_rmtree, os.path.dirname(handle.run_dir))
        log.info("sandbox %s destroyed in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)

    async def alive(self, handle: RuntimeHandle) -> bool:
        """Whether the container still runs."""
        try:
            info = await call(client().inspect_container, handle.runtime_id)
        except NotFound:
            return False
        return bool(info["State"]["Running"])

    async def stats(self, handle: RuntimeHandle) -> ResourceStats:
        """The container's use, read from its cgroup."""
        group = cgroups.docker_group(handle.runtime_id)
        return ResourceStats(**group.stats()) if group else ResourceStats()

    async def reap(self, known: set[str]) -> list[str]:
        """Remove this owner's containers that no known sandbox uses, and rock containers of any
        owner whose state directory no longer exists (that owner is gone for good)."""
        containers = await call(client().containers, all=True, filters={"label": f"{LABEL}=1"})
        removed = []
        for c in containers:
            labels = c.get("Labels") or {}
            sid = labels.get("rock.sandbox_id", "")
            mine = labels.get("rock.owner") == self.owner and sid not in known
            orphan = not os.path.isdir(labels.get("rock.state_dir", ""))
            if mine or orphan:
                gone = await _remove_container(c["Id"], c.get("State") == "paused")
                if gone is None:
                    continue
                removed.append(sid)
                log.info("%s container %s (sandbox %s, owner %s)", "reaped" if gone else "already removing",
                         c["Id"][:12], sid, labels.get("rock.owner"))
        for d in list(self.sandboxes_dir.iterdir()):
            if d.is_dir() and d.name not in known:
                await asyncio.to_thread(_rmtree, str(d))
                if d.name not in removed:
                    removed.append(d.name)
        return sorted(removed)


async def _remove_container(cid: str, paused: bool) -> bool | None:
    """Remove container ``cid`` (thawed first where ``paused``: a forced remove of a paused
    container hangs in this engine). True once removed, False where another removal of it is
    under way (the engine's 409: an admin that stopped a moment ago and is still releasing its
    sandboxes, or another worker's reap of the same orphan), None where it was gone already."""
    try:
        if paused:
            try:
                await call(client().unpause, cid)
            except APIError as exc:
                if exc.status_code != 409:  # 409: thawed meanwhile, or its removal has begun
                    raise
        await call(client().remove_container, cid, force=True, v=True)
    except NotFound:
        return None
    except APIError as exc:
        if exc.status_code != 409:
            raise
        return False
    return True


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
