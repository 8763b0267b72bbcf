"""The sandbox SDK (``rock.sdk.sandbox.client``): ROCK's ``Sandbox`` and ``SandboxGroup``.

Faster and stricter than ROCK's where the shape allows: ``start()`` returns when the sandbox is
ready (the admin replies then; no timer polling), one keep-alive client per object, ``arun`` returns
non-zero exit codes instead of raising, nohup mode reports the real exit code, files are binary-safe.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rock.actions import IsAliveResponse, SandboxStatusResponse
from rock.errors import RockError, SandboxNotFound
from rock.sdk.common.exceptions import CommandRockError
from rock.sdk.sandbox.commands import Commands, RunMode
from rock.sdk.sandbox.config import SandboxConfig, SandboxGroupConfig
from rock.sdk.sandbox.file_system import LinuxFileSystem
from rock.sdk.sandbox.files import Files
from rock.sdk.sandbox.lifecycle import Lifecycle
from rock.sdk.sandbox.network import Network
from rock.sdk.sandbox.nohup import Nohup
from rock.sdk.sandbox.parts import Delegate, FromContext, SandboxContext
from rock.sdk.sandbox.process import Process
from rock.sdk.sandbox.secrets import Secrets
from rock.sdk.sandbox.snapshots import Snapshots
from rock.sdk.sandbox.volumes import Volumes

log = logging.getLogger("rock.sdk")


if TYPE_CHECKING:
    import httpx

    from rock.sdk.sandbox.agent import RockAgent
    from rock.sdk.sandbox.model_service import ModelService

_S = TypeVar("_S", bound="Sandbox")  # the Sandbox class a fork's children are made of


class Sandbox:
    """One sandbox, ROCK's ``Sandbox``, composed of parts that share one ``SandboxContext`` (config,
    pooled HTTP client, id), as e2b's ``Sandbox`` is: ``files`` (text, bytes, directories,
    downloads), ``commands`` (one-shot processes, sessions, ``arun``, background processes),
    ``lifecycle`` (restart, commit, archive, egress), ``snapshots`` (pause, resume, snapshot, fork,
    restore) and ``nohup`` (rl-rock's background-run helpers). Every method of a part is also the
    sandbox's own, as rl-rock calls it (``sandbox.arun`` is ``sandbox.commands.arun``); ``start()``,
    ``attach()``, status and ``stop()`` are the sandbox's. ``transport``: an
    ``httpx.AsyncBaseTransport`` that carries every call to the admin instead of ROCK's own (as
    ``httpx.AsyncClient`` takes one: retries, a proxy, recording in a test)."""

    def __init__(self, config: SandboxConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None):
        self._context = context = SandboxContext(config or SandboxConfig(), transport)
        self.files = Files(context)
        self.commands = Commands(context, self.files)
        self.lifecycle = Lifecycle(context)
        self.snapshots: Snapshots[Sandbox] = Snapshots(context, type(self)._forked)
        self.nohup = Nohup(self.commands, self.files)
        self.fs = LinuxFileSystem(self)
        self.process = Process(self)
        self.network = Network(self)
        self.model_service: ModelService | None = None  # ROCK's attribute: a ModelService (set by sandbox.agent, or by the caller)
        self._agent: RockAgent | None = None

    @classmethod
    def _forked(cls, context: SandboxContext) -> Sandbox:
        """A client of the fork's child ``context`` names, of this class."""
        child = cls(context.config, transport=context.transport)
        child._context.bind(context.sandbox_id, context.host_name, context.host_ip)
        return child

    @property
    def agent(self) -> RockAgent:
        """ROCK's ``sandbox.agent``: a RockAgent (install(config), run(prompt))."""
        if self._agent is None:
            from rock.sdk.sandbox.agent import RockAgent

            self._agent = RockAgent(self)
        return self._agent

    @agent.setter
    def agent(self, value: RockAgent) -> None:
        """Replace the ``sandbox.agent`` object (ROCK allows assigning one)."""
        self._agent = value

    # -- attributes ------------------------------------------------------------------------

    config: FromContext[SandboxConfig] = FromContext(
        "config", "The sandbox's config (``attach()`` fills in its id and image). It may be replaced, as rl-rock "
        "allows; an HTTP client already made keeps the old one's admin and token.", settable=True)
    sandbox_id: FromContext[str | None] = FromContext(
        "sandbox_id", "The sandbox's id (None before ``start()`` or ``attach()``).")
    host_name: FromContext[str | None] = FromContext("host_name", "The name of the machine (node) the sandbox runs on.")
    host_ip: FromContext[str | None] = FromContext("host_ip", "The address of the machine (node) the sandbox runs on.")
    url: FromContext[str] = FromContext("url", "The admin's sandbox API URL this client talks to.")
    # rl-rock's own code (its job executor) binds a client to a known id by setting this private
    # attribute, without attach()'s status read; code written after it keeps working here.
    _sandbox_id: FromContext[str | None] = FromContext("sandbox_id", "The sandbox's id, settable.", settable=True)

    @property
    def cluster(self) -> str:
        """The cluster name from the config (ROCK's ``X-Cluster``)."""
        return self.config.cluster

    def __repr__(self) -> str:
        return f"Sandbox(sandbox_id={self.sandbox_id}, image={self.config.image}, url={self.config.base_url})"

    @property
    def volumes(self) -> Volumes:
        """The volumes of this sandbox's token on its admin (``rock.sdk.sandbox.volumes``)."""
        return Volumes(http=self._context.http)

    @property
    def secrets(self) -> Secrets:
        """The secrets of this sandbox's token on its admin (``rock.sdk.sandbox.secrets``), over this
        object's HTTP client."""
        return Secrets(http=self._context.http)

    # -- the sandbox itself ----------------------------------------------------------------

    async def start(self) -> None:
        """Create the sandbox; returns once it can run commands (raises with the reason otherwise)."""
        c, http = self.config, self._context.http
        image = c.image
        if c.dockerfile is not None or c.build_context is not None:
            from rock.sdk.sandbox.images import build

            image = (await build(http, c.build_context, c.dockerfile))["image"]
        body = {
            "image": image, "image_os": c.image_os, "memory": c.memory, "cpus": c.cpus,
            "limit_cpus": c.limit_cpus, "num_gpus": c.num_gpus, "sandbox_id": c.sandbox_id,
            "startup_timeout": c.startup_timeout,
            "auto_clear_time_minutes": int(math.ceil(c.auto_clear_seconds / 60)),
            "auto_clear_seconds": c.auto_clear_seconds, "network": c.network, "env": c.env, "wait": True,
            "auto_archive_seconds": c.auto_archive_seconds, "auto_delete_seconds": c.auto_delete_seconds,
            "accelerator_type": c.accelerator_type, "disk": c.disk, "use_kata_runtime": c.use_kata_runtime,
            "registry_username": c.registry_username, "registry_password": c.registry_password,
            "pull_policy": c.pull_policy, "snapshot": c.snapshot, "on_timeout": c.on_timeout,
            "auto_resume": c.auto_resume, "egress": c.egress, "secrets": c.secrets,
            "volumes": [m.model_dump() for m in c.volumes] if c.volumes else None,
        }
        result = await http.post("/start_async", body, timeout=c.startup_timeout + 30)
        self._context.bind(result["sandbox_id"], result.get("host_name"), result.get("host_ip"))

    async def attach(self, sandbox_id: str) -> None:
        """Bind this client to an existing sandbox by id (its host and image come from its status); raises if it
        does not exist."""
        self._context.sandbox_id = sandbox_id
        try:
            info = await self.get_status(include_all_states=True)
        except Exception:
            self._context.sandbox_id = None
            raise
        self._context.bind(sandbox_id, info.host_name, info.host_ip)
        self.config.sandbox_id = sandbox_id
        if info.image:
            self.config.image = info.image

    async def get_status(self, include_all_states: bool = False) -> SandboxStatusResponse:
        """The sandbox's status; ``include_all_states`` also answers for a stopped or failed one."""
        result = await self._context.http.get("/get_status", {"sandbox_id": self._context.need_id(),
                                                              "include_all_states": str(include_all_states).lower()})
        return SandboxStatusResponse.model_validate(result)

    async def quota(self) -> dict[str, Any]:
        """What this config's token (its namespace) holds and may hold, as the admin counts them:
        ``usage`` (running sandboxes, cpus, memory_bytes, env_hosts, snapshots, snapshot_bytes), ``limits`` (None:
        no limit; ``creates_per_minute`` too) and ``node`` (what the admin's node may still promise).
        Needs no started sandbox. A start past a limit raises ``QuotaExceeded`` (429) or
        ``CapacityExceeded`` (503), naming the limit."""
        quota: dict[str, Any] = await self._context.http.get("/quota", {})
        return quota

    async def is_alive(self) -> IsAliveResponse:
        """Whether the sandbox runs (ROCK's ``IsAliveResponse``)."""
        status = await self.get_status()
        return IsAliveResponse(is_alive=status.is_alive, message=status.host_name or "")

    async def stats(self) -> dict[str, Any]:
        """The sandbox's resource use (cpu, memory, pids) now."""
        stats: dict[str, Any] = await self._context.http.get("/stats", {"sandbox_id": self._context.need_id()})
        return stats

    async def stop(self) -> None:
        """Stop the sandbox: its processes end, its files stay for ``restart()`` until ``delete()``
        (or its ``auto_delete_seconds``). Like ROCK, a failure is only logged."""
        sandbox_id = self.sandbox_id
        if not sandbox_id:
            return
        try:
            await self._context.http.post("/stop", {"sandbox_id": sandbox_id})
        except (RockError, OSError) as exc:
            log.warning("stopping sandbox %s failed (ignored): %s", sandbox_id, exc)
        await self.aclose()

    async def delete(self) -> None:
        """Delete the sandbox and its kept files (stop it first if it runs)."""
        await self._context.http.post("/delete", {"sandbox_id": self._context.need_id()})

    async def close(self) -> None:
        """ROCK's ``close()``: stop the sandbox."""
        await self.stop()

    async def aclose(self) -> None:
        """Close this object's HTTP connections (the sandbox keeps running)."""
        await self._context.aclose()
        trainer = getattr(self.model_service, "_trainer", None)
        if trainer is not None:
            await trainer.aclose()

    async def __aenter__(self) -> "Sandbox":
        if not self.sandbox_id:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def fork(self: _S, n: int = 1, mode: str = "filesystem") -> list[_S]:
        """``n`` (1 to 20) new sandboxes from a fresh snapshot of this one, each running and ready:
        each starts on this sandbox's files (``full``: goes on with its processes too) and is its
        own from then on. All or nothing: if one child fails to start, the others are deleted and
        ``SandboxStartError`` names why."""
        # sandbox.snapshots.fork, typed here: its children are of this sandbox's class
        return cast("list[_S]", await self.snapshots.fork(n, mode))

    # -- the parts' methods, callable on the sandbox as rl-rock calls them --------------------

    # sandbox.files
    read_file = Delegate("files", Files.read_file)
    write_file = Delegate("files", Files.write_file)
    write_file_by_path = Delegate("files", Files.write_file_by_path)
    upload = Delegate("files", Files.upload)
    upload_by_path = Delegate("files", Files.upload_by_path)
    read_bytes = Delegate("files", Files.read_bytes)
    write_bytes = Delegate("files", Files.write_bytes)
    upload_dir = Delegate("files", Files.upload_dir)
    download = Delegate("files", Files.download)
    # sandbox.commands
    execute = Delegate("commands", Commands.execute)
    create_session = Delegate("commands", Commands.create_session)
    close_session = Delegate("commands", Commands.close_session)
    run_in_session = Delegate("commands", Commands.run_in_session)
    arun = Delegate("commands", Commands.arun)
    interrupt = Delegate("commands", Commands.interrupt)
    send_input = Delegate("commands", Commands.send_input)
    wait = Delegate("commands", Commands.wait)
    start_process = Delegate("commands", Commands.start_process)
    process_status = Delegate("commands", Commands.process_status)
    process_output = Delegate("commands", Commands.process_output)
    kill_process = Delegate("commands", Commands.kill_process)
    # sandbox.lifecycle
    restart = Delegate("lifecycle", Lifecycle.restart)
    update_egress = Delegate("lifecycle", Lifecycle.update_egress)
    archive = Delegate("lifecycle", Lifecycle.archive)
    commit_async = Delegate("lifecycle", Lifecycle.commit_async)
    get_commit_status = Delegate("lifecycle", Lifecycle.get_commit_status)
    commit = Delegate("lifecycle", Lifecycle.commit)
    # sandbox.snapshots (fork above: its children are of the sandbox's class)
    pause = Delegate("snapshots", Snapshots.pause)
    resume = Delegate("snapshots", Snapshots.resume)
    snapshot = Delegate("snapshots", Snapshots.snapshot)
    restore = Delegate("snapshots", Snapshots.restore)
    list_snapshots = Delegate("snapshots", Snapshots.list_snapshots)
    get_snapshot = Delegate("snapshots", Snapshots.get_snapshot)
    delete_snapshot = Delegate("snapshots", Snapshots.delete_snapshot)
    # sandbox.nohup
    start_nohup_process = Delegate("nohup", Nohup.start_nohup_process)
    wait_for_process_completion = Delegate("nohup", Nohup.wait_for_process_completion)
    handle_nohup_output = Delegate("nohup", Nohup.handle_nohup_output)
    run_nohup_and_wait = Delegate("nohup", Nohup.run_nohup_and_wait)
    read_file_by_line_range = Delegate("nohup", Nohup.read_file_by_line_range)


class SandboxGroup:
    """Several sandboxes started together, at most ``start_concurrency`` at a time, with retries."""

    def __init__(self, config: SandboxGroupConfig):
        self.config = config
        self.sandbox_list: list[Sandbox] = [Sandbox(config) for _ in range(config.size)]

    async def start(self) -> None:
        """Start every sandbox of the group, ``start_concurrency`` at a time, each retried up to
        ``start_retry_times``."""
        semaphore = asyncio.Semaphore(self.config.start_concurrency)

        async def one(sandbox: Sandbox) -> None:
            async with semaphore:
                for attempt in range(1, self.config.start_retry_times + 1):
                    try:
                        return await sandbox.start()
                    except RockError as exc:
                        if attempt == self.config.start_retry_times or exc.status_code < 500:
                            raise
                        log.warning("starting a sandbox failed (attempt %d): %s; retrying", attempt, exc)

        await asyncio.gather(*(one(s) for s in self.sandbox_list))

    async def stop(self) -> None:
        """Stop every sandbox of the group (errors ignored, as ROCK does)."""
        await asyncio.gather(*(s.stop() for s in self.sandbox_list), return_exceptions=True)


__all__ = ["Sandbox", "SandboxGroup", "RunMode", "SandboxConfig", "SandboxGroupConfig", "CommandRockError",
           "SandboxNotFound"]
