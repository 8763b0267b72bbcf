"""The real e2b SDK (newest 2.x, in its own venv) against a real admin per backend:

e2b_create_to_first_output  Sandbox.create("base") -> commands.run("echo hi") output (floor: our
                            SDK's start() -> create_session -> arun("echo hi") on the same admin)
e2b_create_to_first_output_login_shell  the same against our start() -> arun of the process
                            commands.run starts, ``/bin/bash -l -c 'echo hi'`` (a login shell)
e2b_command_round_trip      commands.run("echo hi") on a running sandbox (floor: our SDK's
                            arun("echo hi") in a session on the same admin), with the admin's CPU
                            per command on each side
e2b_command_round_trip_login_shell  the same against our arun of what commands.run makes the
                            sandbox run, ``/bin/bash -l -c 'echo hi'`` (a login shell per command)

Blocks of the e2b client and of the floor alternate. E2B's hosted service publishes about
150 ms to start a sandbox and ~70 ms per command: the README quotes them as the reference.
The venv is ROCK_BENCH_E2B_VENV or /tmp/e2b-newest (made with pip on first use).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bench.admin import AdminProcess
from bench.report import process_cpu_s, record
from bench.sdk import _config, _start_to_first_output, isolated
from bench.venvs import E2B_NEWEST_IMPORTS, E2B_NEWEST_PACKAGES, VenvError, client_python
from rock.actions import CreateBashSessionRequest
from rock.sdk.sandbox import Sandbox

VENV = Path(os.environ.get("ROCK_BENCH_E2B_VENV") or "/tmp/e2b-newest")
CLIENT = Path(__file__).with_name("e2b_client.py")
LOGIN_ECHO = "/bin/bash -l -c 'echo hi'"  # the process the e2b SDK's commands.run("echo hi") starts


def _python() -> Path | None:
    try:
        return client_python(VENV, E2B_NEWEST_PACKAGES, E2B_NEWEST_IMPORTS)
    except VenvError:
        return None


class _Client:
    def __init__(self, python: Path, url: str):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "E2B_DEBUG")}
        env.update(E2B_API_KEY="bench", E2B_API_URL=url, E2B_SANDBOX_URL=url)
        self.proc = subprocess.Popen([str(python), "-I", str(CLIENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def ask(self, verb: str, n: int) -> list[float]:
        self.proc.stdin.write(f"{verb} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the e2b client exited ({self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(120)


async def against_floor(client: _Client, verb: str, floor, n: int, block: int, *more) -> tuple[list, ...]:
    """``n`` of the client's ``verb`` and as many of ``await floor()`` (seconds), and of each of
    ``more`` floors, in alternating blocks."""
    got: list[float] = []
    floors: list[list[float]] = [[] for _ in (floor, *more)]
    while len(got) < n:
        got += client.ask(verb, block)
        for each, samples in zip((floor, *more), floors):
            for _ in range(block):
                samples.append(await each())
    return (got, *floors)


async def _backend(ctx, backend: str, python: Path) -> list[dict]:
    admin = AdminProcess(backend, prefix="rock-bench-e2b-")
    url = admin.start()
    client = _Client(python, url)
    records = []
    try:
        client.ask("create", 1)  # warm-up: imports, connections, the image
        await _start_to_first_output(url)
        n, block = ctx.n(10, 40), 5
        ctx.progress(f"e2b {backend}: create -> first output x{n} (floor: our start() -> arun)")
        creates, starts, login_starts = await against_floor(
            client, "create", lambda: _start_to_first_output(url), n, block,
            lambda: _start_to_first_output(url, LOGIN_ECHO))
        records.append(record("e2b_create_to_first_output", backend, creates, floor_s=starts,
                              reference_hosted_ms=150))
        # What commands.run asks the sandbox to run is a new login shell, not a line in a running
        # bash: the same start with that process is the floor that leaves only the door's own cost.
        records.append(record("e2b_create_to_first_output_login_shell", backend, creates, floor_s=login_starts,
                              floor=f"our start() -> arun of what commands.run starts: {LOGIN_ECHO}"))

        sandbox = Sandbox(_config(url))
        await sandbox.start()
        await sandbox.create_session(CreateBashSessionRequest(session="b"))
        n, block = ctx.n(100, 1000), 25
        ctx.progress(f"e2b {backend}: commands.run echo x{n} (floor: our arun echo)")
        # The e2b SDK's commands.run starts `/bin/bash -l -c CMD` each time: a process our arun in a
        # running session does not start. The same command through our arun is the second floor.
        trips, aruns, logins = [], [], []
        cpu = {"e2b": 0.0, "arun": 0.0, "login": 0.0}
        pid = admin.pid() or 0
        client.ask("rt", 3)

        async def ours(cmd: str, into: list[float]) -> None:
            for _ in range(block):
                t0 = time.perf_counter()
                out = await sandbox.arun(cmd, session="b")
                into.append(time.perf_counter() - t0)
                assert out.output.strip() == "hi", out

        while len(trips) < n:
            c0 = process_cpu_s(pid)
            trips += client.ask("rt", block)
            c1 = process_cpu_s(pid)
            await ours("echo hi", aruns)
            c2 = process_cpu_s(pid)
            await ours(LOGIN_ECHO, logins)
            c3 = process_cpu_s(pid)
            cpu["e2b"] += c1 - c0
            cpu["arun"] += c2 - c1
            cpu["login"] += c3 - c2
        per = {k: round(v / len(trips) * 1e3, 3) for k, v in cpu.items()}
        records.append(record("e2b_command_round_trip", backend, trips, floor_s=aruns, reference_hosted_ms=70,
                              admin_cpu_ms_per_command=per["e2b"], floor_admin_cpu_ms_per_command=per["arun"]))
        records.append(record("e2b_command_round_trip_login_shell", backend, trips, floor_s=logins,
                              floor=f"our arun of the process commands.run starts: {LOGIN_ECHO}",
                              admin_cpu_ms_per_command=per["e2b"], floor_admin_cpu_ms_per_command=per["login"]))
        await sandbox.delete()
        await sandbox.aclose()
    finally:
        client.close()
        admin.stop()
    return records


async def each_backend(ctx, part: str, per_backend, backends: list[str] | None = None) -> list[dict]:
    """``per_backend(ctx, backend, python)`` on ``backends`` (default: every one asked for but local:
    E2B's sandboxes are isolated ones), with the SDK's venv made first; none without that venv."""
    python = _python()
    if python is None:
        ctx.progress(f"{part}: could not install the e2b SDK into its venv; skipped")
        return []
    records = []
    for backend in backends if backends is not None else isolated(ctx):
        records += await per_backend(ctx, backend, python)
    return records


async def run(ctx) -> list[dict]:
    return await each_backend(ctx, "e2b", _backend)
