"""``sandbox.nohup``: rl-rock's background-process helpers on the Sandbox SDK (each callable on the
``Sandbox`` too), built on the sandbox's ``commands`` and ``files`` as e2b builds ``git`` on its
``commands``.

``arun(mode="nohup")`` is the better call (it waits for the process without polling and
returns its real exit code); these keep rl-rock code that calls the building blocks working.
``wait_for_process_completion`` waits on the process in the session itself (``tail --pid``)
instead of sleeping ``wait_interval`` seconds between checks.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from rock.actions import BashAction, Command, CreateBashSessionRequest, ExecuteBashSessionResponse, Observation
from rock.actions import ReadFileResponse
from rock.actions.response import session_output
from rock.errors import BadRequest

if TYPE_CHECKING:
    from rock.sdk.sandbox.commands import Commands
    from rock.sdk.sandbox.files import Files

PID_PREFIX, PID_SUFFIX = "PIDSTART", "PIDEND"
_PID = re.compile(PID_PREFIX + r"(\d+)" + PID_SUFFIX)


def extract_nohup_pid(output: str) -> int | None:
    """The pid a ``nohup ... & echo $!`` line printed, or None."""
    m = _PID.search(output or "")
    return int(m.group(1)) if m else None


class Nohup:
    """rl-rock's building blocks of ``arun(mode="nohup")``: a command in the background, its output in
    a file, waited for; and a text file's lines by range."""

    def __init__(self, commands: Commands, files: Files) -> None:
        self._commands, self._files = commands, files

    async def start_nohup_process(self, cmd: str, tmp_file: str, session: str) -> tuple[int | None, Observation | None]:
        """Start ``cmd`` detached with its output in ``tmp_file``: (pid, None), or (None, the failed observation)."""
        # A job that ends at once may be gone from the job table before disown runs: that is no failure.
        command = (f"nohup {cmd} < /dev/null > {tmp_file} 2>&1 & echo {PID_PREFIX}${{!}}{PID_SUFFIX};"
                   "disown 2>/dev/null || true")
        r = await self._commands.run_in_session(BashAction(command=command, session=session, timeout=30,
                                                           check="silent"))
        if r.exit_code != 0:
            return None, r
        return extract_nohup_pid(r.output), None

    async def wait_for_process_completion(self, pid: int, session: str, wait_timeout: float,
                                          wait_interval: float = 10) -> tuple[bool, str]:
        """Wait until process ``pid`` has exited: (True, message) or (False, why not)."""
        began = time.perf_counter()
        # tail --pid returns when the process exits, whoever its parent is (busybox has no --pid: poll then).
        wait = (f"if tail --pid={pid} -f /dev/null 2>/dev/null; then :; else "
                f"while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; fi")
        r = await self._commands.run_in_session(BashAction(command=wait, session=session, timeout=wait_timeout,
                                                           check="silent"))
        elapsed = time.perf_counter() - began
        if r.status == "timeout":
            return False, f"Process {pid} did not complete within {elapsed:.1f}s (timeout: {wait_timeout}s)"
        return True, f"Process completed successfully in {elapsed:.1f}s"

    async def handle_nohup_output(self, tmp_file: str, session: str, success: bool, message: str, ignore_output: bool,
                                  response_limited_bytes_in_nohup: int | None) -> Observation:
        """The observation of a finished nohup run: its output file's head (``response_limited_bytes_in_nohup``), or
        only where it is."""
        if ignore_output:
            text = f"Command executed in nohup mode without streaming the log content.\nOutput file: {tmp_file}"
            return Observation(output=text, exit_code=0 if success else 1, failure_reason="" if success else message)
        # ROCK reads the file with `cat` in the session: its output is stripped like any command's.
        data = await self._files.read_bytes(tmp_file, length=response_limited_bytes_in_nohup)
        return Observation(output=session_output(data.decode(errors="replace")), exit_code=0 if success else 1,
                           failure_reason="" if success else message)

    async def run_nohup_and_wait(self, cmd: str, redirect_file_path: str = "/dev/null", wait_timeout: float = 300,
                                 wait_interval: float = 10) -> ExecuteBashSessionResponse:
        """Run ``cmd`` in the background of a fresh session (output to ``redirect_file_path``) and wait up to
        ``wait_timeout`` for it."""
        session = f"bash-{time.time_ns()}"
        try:
            await self._commands.create_session(CreateBashSessionRequest(session=session))
            pid, failed = await self.start_nohup_process(cmd, redirect_file_path, session)
            if failed is not None:
                return ExecuteBashSessionResponse(success=False, message=failed.output)
            if pid is None:
                return ExecuteBashSessionResponse(success=False, message="the process id of the command was not printed")
            success, message = await self.wait_for_process_completion(pid, session, wait_timeout, wait_interval)
            return ExecuteBashSessionResponse(success=success, message=message)
        finally:
            await self._commands.close_quietly(session)

    async def read_file_by_line_range(self, file_path: str, start_line: int | None = None, end_line: int | None = None,
                                      lines_per_request: int = 1000, session: str | None = None) -> ReadFileResponse:
        """Lines ``start_line``..``end_line`` (1-based, inclusive; to the end when None) of a text file."""
        start_line = 1 if start_line is None else start_line
        if start_line < 1:
            raise BadRequest(f"start_line({start_line}) must be positive")
        if end_line is not None and end_line < start_line:
            raise BadRequest(f"end_line({end_line}) must be greater than start_line({start_line})")
        if not 1 <= lines_per_request <= 10000:
            raise BadRequest(f"lines_per_request({lines_per_request}) must be between 1 and 10000")
        last = "$" if end_line is None else str(end_line)
        r = await self._commands.execute(Command(command=["sed", "-n", f"{start_line},{last}p", file_path]))
        if r.exit_code != 0:
            raise BadRequest(f"cannot read {file_path}: {r.stderr.strip() or r.stdout.strip()}")
        return ReadFileResponse(content=r.stdout)
