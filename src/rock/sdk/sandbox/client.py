"""The sandbox SDK (``rock.sdk.sandbox.client``): ROCK's ``Sandbox`` and ``SandboxGroup``.

Faster and stricter than ROCK's where the shape allows: ``start()`` returns when the sandbox is
ready (the admin replies then; no timer polling), one keep-alive client per object, ``arun`` returns
non-zero exit codes instead of raising, nohup mode reports the real exit code, files are binary-safe.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shlex
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

from rock.actions import (
    Action,
    CloseBashSessionRequest,
    CloseBashSessionResponse,
    Command,
    CommandResponse,
    CreateBashSessionRequest,
    CreateBashSessionResponse,
    IsAliveResponse,
    Observation,
    SandboxStatusResponse,
)
from rock.actions.response import session_output
from rock.errors import BadRequest, RockError, SandboxNotFound
from rock.sdk.common.exceptions import CommandRockError
from rock.sdk.sandbox.config import SandboxConfig, SandboxGroupConfig
from rock.sdk.sandbox.files import FilesMixin
from rock.sdk.sandbox.http import Http
from rock.sdk.sandbox.file_system import LinuxFileSystem
from rock.sdk.sandbox.lifecycle import LifecycleMixin
from rock.sdk.sandbox.network import Network
from rock.sdk.sandbox.nohup import NohupMixin
from rock.sdk.sandbox.process import Process
from rock.sdk.sandbox.snapshots import SnapshotsMixin
from rock.sdk.sandbox.volumes import Volumes

log = logging.getLogger("rock.sdk")


if TYPE_CHECKING:
    import httpx

    from rock.sdk.sandbox.agent import RockAgent
    from rock.sdk.sandbox.model_service import ModelService


class RunMode:
    """``arun``'s modes: ``normal`` (in the session, waited for) and ``nohup`` (in the background, its output to a
    file)."""

    NORMAL = "normal"
    NOHUP = "nohup"


class Sandbox(FilesMixin, LifecycleMixin, SnapshotsMixin, NohupMixin):
    """One sandbox, ROCK's ``Sandbox``: ``start()``, sessions and commands, files (``FilesMixin``),
    restart/commit/archive (``LifecycleMixin``), pause/resume/snapshot/fork (``SnapshotsMixin``) and
    background runs (``NohupMixin``), over one pooled HTTP client. ``transport``: an
    ``httpx.AsyncBaseTransport`` that carries every call to the admin instead of ROCK's own (as
    ``httpx.AsyncClient`` takes one: retries, a proxy, recording in a test)."""

    def __init__(self, config: SandboxConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config or SandboxConfig()
        self._transport = transport
        self._url = f"{self.config.base_url.rstrip('/')}/apis/envs/sandbox/v1"
        self._sandbox_id: str | None = None
        self._host_name: str | None = None
        self._host_ip: str | None = None
        self._http_client: Http | None = None
        self.fs = LinuxFileSystem(self)
        self.process = Process(self)
        self.network = Network(self)
        self.model_service: ModelService | None = None  # ROCK's attribute: a ModelService (set by sandbox.agent, or by the caller)
        self._agent: RockAgent | None = None

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

    @property
    def sandbox_id(self) -> str | None:
        """The sandbox's id (None before ``start()`` or ``attach()``)."""
        return self._sandbox_id

    @property
    def host_name(self) -> str | None:
        """The name of the machine (node) the sandbox runs on."""
        return self._host_name

    @property
    def host_ip(self) -> str | None:
        """The address of the machine (node) the sandbox runs on."""
        return self._host_ip

    @property
    def cluster(self) -> str:
        """The cluster name from the config (ROCK's ``X-Cluster``)."""
        return self.config.cluster

    @property
    def url(self) -> str:
        """The admin's sandbox API URL this client talks to."""
        return self._url

    def __repr__(self) -> str:
        return f"Sandbox(sandbox_id={self._sandbox_id}, image={self.config.image}, url={self.config.base_url})"

    @property
    def volumes(self) -> Volumes:
        """The volumes of this sandbox's token on its admin (``rock.sdk.sandbox.volumes``)."""
        return Volumes(http=self._http)

    @property
    def _http(self) -> Http:
        if self._http_client is None:
            self._http_client = Http.for_config(self.config, self._transport)
        return self._http_client

    def _need_id(self) -> str:
        if not self._sandbox_id:
            raise BadRequest("this Sandbox has not been started or attached yet; call start() or attach(id)")
        return self._sandbox_id

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the sandbox; returns once it can run commands (raises with the reason otherwise)."""
        c = self.config
        image = c.image
        if c.dockerfile is not None or c.build_context is not None:
            from rock.sdk.sandbox.images import build

            image = (await build(self._http, c.build_context, c.dockerfile))["image"]
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
        result = await self._http.post("/start_async", body, timeout=c.startup_timeout + 30)
        self._sandbox_id = result["sandbox_id"]
        self._host_name, self._host_ip = result.get("host_name"), result.get("host_ip")

    async def attach(self, sandbox_id: str) -> None:
        """Bind this client to an existing sandbox by id (its host and image come from its status); raises if it
        does not exist."""
        self._sandbox_id = sandbox_id
        try:
            info = await self.get_status(include_all_states=True)
        except Exception:
            self._sandbox_id = None
            raise
        self._host_name, self._host_ip = info.host_name, info.host_ip
        self.config.sandbox_id = sandbox_id
        if info.image:
            self.config.image = info.image

    async def get_status(self, include_all_states: bool = False) -> SandboxStatusResponse:
        """The sandbox's status; ``include_all_states`` also answers for a stopped or failed one."""
        result = await self._http.get("/get_status", {"sandbox_id": self._need_id(),
                                                      "include_all_states": str(include_all_states).lower()})
        return SandboxStatusResponse.model_validate(result)

    async def quota(self) -> dict[str, Any]:
        """What this config's token (its namespace) holds and may hold, as the admin counts them:
        ``usage`` (running sandboxes, cpus, memory_bytes, env_hosts, snapshots, snapshot_bytes), ``limits`` (None:
        no limit; ``creates_per_minute`` too) and ``node`` (what the admin's node may still promise).
        Needs no started sandbox. A start past a limit raises ``QuotaExceeded`` (429) or
        ``CapacityExceeded`` (503), naming the limit."""
        quota: dict[str, Any] = await self._http.get("/quota", {})
        return quota

    async def is_alive(self) -> IsAliveResponse:
        """Whether the sandbox runs (ROCK's ``IsAliveResponse``)."""
        status = await self.get_status()
        return IsAliveResponse(is_alive=status.is_alive, message=status.host_name or "")

    async def stop(self) -> None:
        """Stop the sandbox: its processes end, its files stay for ``restart()`` until ``delete()``
        (or its ``auto_delete_seconds``). Like ROCK, a failure is only logged."""
        if not self._sandbox_id:
            return
        try:
            await self._http.post("/stop", {"sandbox_id": self._sandbox_id})
        except (RockError, OSError) as exc:
            log.warning("stopping sandbox %s failed (ignored): %s", self._sandbox_id, exc)
        await self.aclose()

    async def delete(self) -> None:
        """Delete the sandbox and its kept files (stop it first if it runs)."""
        await self._http.post("/delete", {"sandbox_id": self._need_id()})

    async def close(self) -> None:
        """ROCK's ``close()``: stop the sandbox."""
        await self.stop()

    async def aclose(self) -> None:
        """Close this object's HTTP connections (the sandbox keeps running)."""
        if self._http_client is not None:
            client, self._http_client = self._http_client, None
            await client.aclose()
        trainer = getattr(self.model_service, "_trainer", None)
        if trainer is not None:
            await trainer.aclose()

    async def __aenter__(self) -> "Sandbox":
        if not self._sandbox_id:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- commands --------------------------------------------------------------------------

    async def execute(self, command: Command) -> CommandResponse:
        """A one-shot process (not a session): stdout and stderr apart, like subprocess.run."""
        body = {"sandbox_id": self._need_id(), "command": command.command, "timeout": command.timeout,
                "env": command.env, "cwd": command.cwd, "shell": isinstance(command.command, str)}
        return CommandResponse.model_validate(await self._http.post("/execute", body))

    async def create_session(self, request: CreateBashSessionRequest) -> CreateBashSessionResponse:
        """Create a named persistent bash session."""
        body = {"sandbox_id": self._need_id(), **request.model_dump()}
        return CreateBashSessionResponse.model_validate(await self._http.post("/create_session", body))

    async def close_session(self, request: CloseBashSessionRequest) -> CloseBashSessionResponse:
        """Close a bash session (its processes end)."""
        body = {"sandbox_id": self._need_id(), **request.model_dump()}
        return CloseBashSessionResponse.model_validate(await self._http.post("/close_session", body))

    async def run_in_session(self, action: Action) -> Observation:
        """Run in a named session. ``check="raise"`` (the default) raises CommandRockError on a
        non-zero exit or a timeout; the observation rides on the exception."""
        body = {"sandbox_id": self._need_id(), "action_type": "bash", "session": action.session,
                "command": action.command, "timeout": action.timeout, "check": action.check}
        return Observation.model_validate(await self._http.post("/run_in_session", body))

    async def arun(self, cmd: str, session: str | None = None, wait_timeout: float = 300, wait_interval: float = 10,
                   mode: str = RunMode.NORMAL, response_limited_bytes_in_nohup: int | None = None,
                   ignore_output: bool = False, output_file: str | None = None, *,
                   timeout: float | None = None, on_output: Callable[[str], Any] | None = None) -> Observation:
        """Run ``cmd`` and return its Observation; a non-zero exit code is returned, not raised.

        Without ``session`` a temporary session is used and closed again. ``mode="nohup"`` runs
        the command detached (it survives ``wait_timeout``), waits for it without polling and
        returns its real exit code and output. ``on_output`` (ours) streams output as it comes.
        ``wait_interval`` is accepted for ROCK compatibility; nothing polls.
        """
        if mode not in (RunMode.NORMAL, RunMode.NOHUP):
            raise BadRequest(f"unsupported arun mode {mode!r}; use 'normal' or 'nohup'")
        temp = None
        if session is None:
            session = temp = f"bash-{uuid.uuid4().hex[:12]}"
            await self.create_session(CreateBashSessionRequest(session=temp))
        try:
            if mode == RunMode.NOHUP:
                return await self._nohup(cmd, session, wait_timeout, response_limited_bytes_in_nohup,
                                         ignore_output, output_file)
            return await self._run(cmd, session, timeout, on_output)
        finally:
            if temp is not None:
                await self._quiet_close(temp)

    async def _run(self, cmd: str, session: str, timeout: float | None,
                   on_output: Callable[[str], Any] | None) -> Observation:
        if on_output is not None:
            from rock.sdk.sandbox.stream import run_streamed

            return await run_streamed(self, cmd, session, timeout, on_output)
        body = {"sandbox_id": self._need_id(), "action_type": "bash", "session": session, "command": cmd,
                "timeout": timeout, "check": "silent"}
        return Observation.model_validate(await self._http.post("/run_in_session", body))

    async def _nohup(self, cmd: str, session: str, wait_timeout: float, limit: int | None, ignore_output: bool,
                     output_file: str | None) -> Observation:
        out = output_file or f"/tmp/tmp_{time.time_ns()}.out"
        if "/" in out.rstrip("/"):
            await self._run(f"mkdir -p {shlex.quote(out.rsplit('/', 1)[0] or '/')}", session, 30, None)
        # A background job of the session's shell, in its own process group (job control), so an
        # expired wait interrupts only `wait`; `wait` itself yields the job's real exit code.
        script = (f"nohup /bin/sh -c {shlex.quote(cmd)} < /dev/null > {shlex.quote(out)} 2>&1 & "
                  f"__rock_pid=$!; wait $__rock_pid")
        r = await self._run(script, session, wait_timeout, None)
        done = r.status == "completed"
        failure = "" if done else f"process did not complete within {wait_timeout}s; still running, output in {out}"
        if ignore_output:
            text = f"Command executed in nohup mode without streaming the log content.\nOutput file: {out}"
            return Observation(output=text, exit_code=r.exit_code if done else 1, failure_reason=failure,
                               status=r.status)
        # As ROCK's `cat` of the file in the session gives it: stripped like any command's output.
        data = await self.read_bytes(out, length=limit)
        return Observation(output=session_output(data.decode(errors="replace")), exit_code=r.exit_code if done else 1,
                           failure_reason=failure, status=r.status)

    async def _quiet_close(self, session: str) -> None:
        try:
            await self.close_session(CloseBashSessionRequest(session=session))
        except (RockError, OSError) as exc:
            log.debug("closing temporary session %s: %s", session, exc)

    # -- ours: session control, background processes, statistics ---------------------------

    async def interrupt(self, session: str) -> Observation:
        """Interrupt what runs in ``session`` (like Ctrl-C); returns what it printed so far."""
        body = {"sandbox_id": self._need_id(), "session": session}
        return Observation.model_validate(await self._http.post("/interrupt_session", body))

    async def send_input(self, session: str, data: str) -> None:
        """Type ``data`` into a session's terminal (a running command reads it)."""
        await self._http.post("/send_input", {"sandbox_id": self._need_id(), "session": session, "data": data})

    async def wait(self, session: str, timeout: float | None = None, idle_timeout: float | None = None) -> Observation:
        """Wait for the session's running command to finish; its observation."""
        body = {"sandbox_id": self._need_id(), "session": session, "timeout": timeout, "idle_timeout": idle_timeout}
        return Observation.model_validate(await self._http.post("/wait_session", body))

    async def start_process(self, command: str | list[str], env: dict[str, str] | None = None,
                            cwd: str | None = None, name: str | None = None) -> dict[str, Any]:
        """Start a background process (not in a session); its record with ``proc_id``."""
        body = {"sandbox_id": self._need_id(), "command": command, "shell": isinstance(command, str),
                "env": env, "cwd": cwd, "name": name}
        started: dict[str, Any] = await self._http.post("/procs/start", body)
        return started

    async def process_status(self, proc_id: str) -> dict[str, Any]:
        """A background process's record: state and exit code."""
        status: dict[str, Any] = await self._http.get("/procs/status", {"sandbox_id": self._need_id(), "proc_id": proc_id})
        return status

    async def process_output(self, proc_id: str, stream: str = "stdout", offset: int = 0) -> tuple[bytes, int, bool]:
        """Read a background process's ``stream`` from ``offset``: (bytes, next offset, whether it ended)."""
        r = await self._http.raw_get("/procs/output", {"sandbox_id": self._need_id(), "proc_id": proc_id,
                                                       "stream": stream, "offset": offset})
        return r.content, int(r.headers["x-next-offset"]), r.headers["x-running"] == "1"

    async def kill_process(self, proc_id: str, signal: int = 15) -> None:
        """Send ``signal`` to a background process."""
        await self._http.post("/procs/kill", {"sandbox_id": self._need_id(), "proc_id": proc_id, "signal": signal})

    async def stats(self) -> dict[str, Any]:
        """The sandbox's resource use (cpu, memory, pids) now."""
        stats: dict[str, Any] = await self._http.get("/stats", {"sandbox_id": self._need_id()})
        return stats


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
