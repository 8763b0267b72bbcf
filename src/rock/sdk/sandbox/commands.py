"""``sandbox.commands``: commands in the Sandbox SDK, as e2b's ``sandbox.commands``: one-shot
processes, bash sessions, ``arun`` (normal or nohup), session control and background processes.
Each is callable on the ``Sandbox`` too (``sandbox.arun`` is ``sandbox.commands.arun``).

``arun`` returns non-zero exit codes instead of raising, and its nohup mode waits for the process
without polling and reports its real exit code."""

from __future__ import annotations

import logging
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
    Observation,
)
from rock.actions.response import session_output
from rock.errors import BadRequest, RockError
from rock.sdk.sandbox.parts import SandboxContext, SandboxPart

if TYPE_CHECKING:
    from rock.sdk.sandbox.files import Files

log = logging.getLogger("rock.sdk")


class RunMode:
    """``arun``'s modes: ``normal`` (in the session, waited for) and ``nohup`` (in the background, its output to a
    file)."""

    NORMAL = "normal"
    NOHUP = "nohup"


class Commands(SandboxPart):
    """The sandbox's commands: one-shot processes, named bash sessions, ``arun``, and background
    processes outside any session. ``files`` reads a nohup run's output file."""

    def __init__(self, context: SandboxContext, files: Files) -> None:
        super().__init__(context)
        self._files = files

    async def execute(self, command: Command) -> CommandResponse:
        """A one-shot process (not a session): stdout and stderr apart, like subprocess.run."""
        body = {"sandbox_id": self._context.need_id(), "command": command.command, "timeout": command.timeout,
                "env": command.env, "cwd": command.cwd, "shell": isinstance(command.command, str)}
        return CommandResponse.model_validate(await self._context.http.post("/execute", body))

    async def create_session(self, request: CreateBashSessionRequest) -> CreateBashSessionResponse:
        """Create a named persistent bash session."""
        body = {"sandbox_id": self._context.need_id(), **request.model_dump()}
        return CreateBashSessionResponse.model_validate(await self._context.http.post("/create_session", body))

    async def close_session(self, request: CloseBashSessionRequest) -> CloseBashSessionResponse:
        """Close a bash session (its processes end)."""
        body = {"sandbox_id": self._context.need_id(), **request.model_dump()}
        return CloseBashSessionResponse.model_validate(await self._context.http.post("/close_session", body))

    async def close_quietly(self, session: str) -> None:
        """Close a session this SDK opened for one call; a failure is only logged (the call's own
        result or error matters more)."""
        try:
            await self.close_session(CloseBashSessionRequest(session=session))
        except (RockError, OSError) as exc:
            log.debug("closing temporary session %s: %s", session, exc)

    async def run_in_session(self, action: Action) -> Observation:
        """Run in a named session. ``check="raise"`` (the default) raises CommandRockError on a
        non-zero exit or a timeout; the observation rides on the exception."""
        body = {"sandbox_id": self._context.need_id(), "action_type": "bash", "session": action.session,
                "command": action.command, "timeout": action.timeout, "check": action.check}
        return Observation.model_validate(await self._context.http.post("/run_in_session", body))

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
                await self.close_quietly(temp)

    async def _run(self, cmd: str, session: str, timeout: float | None,
                   on_output: Callable[[str], Any] | None) -> Observation:
        if on_output is not None:
            from rock.sdk.sandbox.stream import run_streamed

            return await run_streamed(self._context, cmd, session, timeout, on_output)
        body = {"sandbox_id": self._context.need_id(), "action_type": "bash", "session": session, "command": cmd,
                "timeout": timeout, "check": "silent"}
        return Observation.model_validate(await self._context.http.post("/run_in_session", body))

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
        data = await self._files.read_bytes(out, length=limit)
        return Observation(output=session_output(data.decode(errors="replace")), exit_code=r.exit_code if done else 1,
                           failure_reason=failure, status=r.status)

    # -- ours: session control and background processes -------------------------------------

    async def interrupt(self, session: str) -> Observation:
        """Interrupt what runs in ``session`` (like Ctrl-C); returns what it printed so far."""
        body = {"sandbox_id": self._context.need_id(), "session": session}
        return Observation.model_validate(await self._context.http.post("/interrupt_session", body))

    async def send_input(self, session: str, data: str) -> None:
        """Type ``data`` into a session's terminal (a running command reads it)."""
        await self._context.http.post("/send_input", {"sandbox_id": self._context.need_id(), "session": session,
                                                      "data": data})

    async def wait(self, session: str, timeout: float | None = None, idle_timeout: float | None = None) -> Observation:
        """Wait for the session's running command to finish; its observation."""
        body = {"sandbox_id": self._context.need_id(), "session": session, "timeout": timeout,
                "idle_timeout": idle_timeout}
        return Observation.model_validate(await self._context.http.post("/wait_session", body))

    async def start_process(self, command: str | list[str], env: dict[str, str] | None = None,
                            cwd: str | None = None, name: str | None = None) -> dict[str, Any]:
        """Start a background process (not in a session); its record with ``proc_id``."""
        body = {"sandbox_id": self._context.need_id(), "command": command, "shell": isinstance(command, str),
                "env": env, "cwd": cwd, "name": name}
        started: dict[str, Any] = await self._context.http.post("/procs/start", body)
        return started

    async def process_status(self, proc_id: str) -> dict[str, Any]:
        """A background process's record: state and exit code."""
        status: dict[str, Any] = await self._context.http.get("/procs/status", {"sandbox_id": self._context.need_id(),
                                                                                "proc_id": proc_id})
        return status

    async def process_output(self, proc_id: str, stream: str = "stdout", offset: int = 0) -> tuple[bytes, int, bool]:
        """Read a background process's ``stream`` from ``offset``: (bytes, next offset, whether it ended)."""
        r = await self._context.http.raw_get("/procs/output", {"sandbox_id": self._context.need_id(),
                                                               "proc_id": proc_id, "stream": stream, "offset": offset})
        return r.content, int(r.headers["x-next-offset"]), r.headers["x-running"] == "1"

    async def kill_process(self, proc_id: str, signal: int = 15) -> None:
        """Send ``signal`` to a background process."""
        await self._context.http.post("/procs/kill", {"sandbox_id": self._context.need_id(), "proc_id": proc_id,
                                                      "signal": signal})
