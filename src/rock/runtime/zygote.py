"""The worker's side of the agent zygote (``rock/agent/zygote.py``): start it, ask it for agents.

One zygote per bwrap runtime, started with the worker's interpreter on first use and again
if it dies. Requests carry an id; answers may come back in any order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import time

from rock.errors import SandboxStartError
from rock.runtime import cgroups, processes
from rock.runtime.agent_boot import AGENT_SRC

log = logging.getLogger("rock.runtime.zygote")
START_TIMEOUT = 30.0
ZYGOTE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
SPAWN_TIMEOUT = 10.0


class Zygote:
    """The worker's connection to the agent zygote, the agent every bwrap sandbox's agent is forked from
    (it saves the interpreter start and imports); started on first use and again if it dies."""

    def __init__(self, python: str):
        self.python = python
        self._proc: processes.Child | None = None
        self._starting: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        # Where the zygote goes back to after starting a sandbox's bwrap from inside its cgroup.
        self._home: list[str] = []

    async def start(self) -> None:
        """Start the zygote unless it runs (concurrent callers share one start)."""
        if self._proc is not None and self._proc.returncode is None:
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        t0 = time.perf_counter()
        proc = await processes.start(
            [self.python, "-I", "-S", str(AGENT_SRC / "zygote.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            # Every agent is a copy of this process, and /proc/<pid>/environ shows the environment
            # it was started with: never the worker's own (tokens, credentials).
            env=ZYGOTE_ENV, cwd="/",
            # Out of the admin's process group: Ctrl-C on a foreground `admin` stops the admin,
            # which closes the zygote; the terminal's SIGINT must not reach it (nor print its traceback).
            start_new_session=True,
        )
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            hello = json.loads(line or b"{}")
        except (asyncio.TimeoutError, ValueError):
            hello = {}
        if not hello.get("ready"):
            proc.kill()
            raise SandboxStartError("the agent zygote did not start; see the worker's log")
        self._proc = proc
        self._home = cgroups.home_files(proc.pid)
        asyncio.ensure_future(self._read_answers(proc))
        log.info("agent zygote started (pid %d, %.1f ms)", proc.pid, (time.perf_counter() - t0) * 1e3)

    async def _read_answers(self, proc: processes.Child) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            future = self._pending.pop(answer.get("id"), None)
            if future is not None and not future.done():
                future.set_result(answer)
        await proc.wait()
        if proc is self._proc:  # not closed by us
            log.warning("agent zygote (pid %d) exited with %s; the next sandbox starts a new one", proc.pid,
                        proc.returncode)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SandboxStartError("the agent zygote exited while starting this sandbox"))
        self._pending.clear()

    async def spawn(self, request: dict) -> int:
        """Fork an agent into the sandbox described by ``request``; its pid on the host."""
        answer = await self._ask(request)
        if "error" in answer:
            raise SandboxStartError(f"the agent could not enter the sandbox: {answer['error']}")
        return int(answer["pid"])

    async def launch(self, request: dict) -> int:
        """Have the zygote mount a sandbox's root and start its bwrap in the sandbox's cgroup
        (``request["join"]``); bwrap's pid."""
        await self.start()  # before the request is made: where it goes back to is read at its start
        answer = await self._ask({**request, "op": "launch", "home": self._home})
        if "error" in answer:
            raise SandboxStartError(f"the sandbox could not be launched: {answer['error']}")
        return int(answer["pid"])

    async def _ask(self, request: dict) -> dict:
        await self.start()
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self._proc.stdin.write(json.dumps({**request, "id": rid}).encode() + b"\n")
        try:
            return await asyncio.wait_for(future, SPAWN_TIMEOUT)
        finally:
            self._pending.pop(rid, None)

    async def close(self) -> None:
        """Close the zygote's input (it exits; the sandboxes it started run on)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.stdin.close()  # the zygote exits on EOF; its sandboxes keep running
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
