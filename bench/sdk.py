"""SDK benchmarks, through the public SDK over loopback against a real admin per backend
(``rock admin start``, its own process).

sdk_start_to_first_output  Sandbox.start() -> create_session -> first arun output (floor: the
                           same steps on a worker in the benchmark's process, no HTTP)
sdk_echo_round_trip        arun("echo hi") in a persistent session (floor: the agent round trip
                           from that worker, i.e. what HTTP + admin add is the ratio; and
                           http_floor_p50_ms: the same SDK call answered at once by a bare
                           uvicorn, in alternating blocks; arun is at best about their sum)
commands_per_s             echo in 64 sessions (16 sandboxes x 4) at once from one client
                           process: per_s, and the CPU per command of the admin, the client and
                           the sandboxes (agent and bash, from their cgroups), with the rate this
                           machine's cores could carry at that CPU (cpu_ceiling_per_s), and with
                           the admin at its floor or free (ceiling_at_admin_floor_per_s,
                           ceiling_without_admin_per_s: the target's reach on these cores); the admin's
                           floor in alternating blocks: a bare uvicorn's CPU per request under the
                           same 64 loops plus the CPU per echo of AgentClients on uvloop sent straight to the agents
(sdk_burst_100 is in bench.burst, run last)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import runtime as runtime_bench
from bench.admin import AdminProcess
from bench.report import percentile, record
from rock.actions import CreateBashSessionRequest, Observation
from rock.config import Settings
from rock.runtime import get_runtime_class
from rock.sdk.sandbox import Sandbox, SandboxConfig
from rock.sdk.sandbox.http import Http
from rock.worker.worker import Worker


class _FloorWorker:
    """The same steps without HTTP and the admin: a worker of the benchmark's own, same backend,
    its sandboxes sized like the SDK's (``_config``)."""

    def __init__(self, backend: str):
        self.state = Path(tempfile.mkdtemp(prefix="rock-bench-floor-"))
        self.worker = Worker(Settings(state_dir=self.state, backend=backend, default_memory="256m", default_cpus=0.5))

    async def start_to_first_output(self) -> float:
        sid = "f" + uuid.uuid4().hex[:10]
        elapsed = await runtime_bench.first_output(self.worker, sid)
        await self.worker.stop(sid)
        return elapsed

    async def echoes(self, n: int) -> list[float]:
        return await runtime_bench.echoes(self.worker, n)

    async def sessions(self, sandboxes: int, per_sandbox: int) -> list[tuple[str, str]]:
        """``sandboxes`` sandboxes of this worker with ``per_sandbox`` bash sessions each: (the agent's
        socket, session)."""
        self.started = ["f" + uuid.uuid4().hex[:10] for _ in range(sandboxes)]
        await asyncio.gather(*(self.worker.create(self.worker.default_spec(sid)) for sid in self.started))
        out = [(sid, f"s{i}") for sid in self.started for i in range(per_sandbox)]
        await asyncio.gather(*(self.worker.agent(sid).create_session(name) for sid, name in out))
        return [(self.worker._get(sid).handle.socket_path, name) for sid, name in out]

    async def close_sessions(self) -> None:
        """Stop the sandboxes ``sessions`` started."""
        await asyncio.gather(*(self.worker.stop(sid) for sid in getattr(self, "started", ())),
                             return_exceptions=True)
        self.started = []

    async def close(self) -> None:
        await self.worker.close(stop_sandboxes=True)
        shutil.rmtree(self.state, ignore_errors=True)


def _config(url: str) -> SandboxConfig:
    return SandboxConfig(base_url=url, memory="256m", cpus=0.5, auto_clear_seconds=600)


async def _start_to_first_output(url: str, command: str = "echo hi") -> float:
    """Seconds from ``Sandbox.start()`` to ``command``'s output ("hi") through a new session, the
    sandbox deleted after (untimed)."""
    t0 = time.perf_counter()
    sandbox = Sandbox(_config(url))
    await sandbox.start()
    await sandbox.create_session(CreateBashSessionRequest(session="b"))
    out = await sandbox.arun(command, session="b")
    elapsed = time.perf_counter() - t0
    assert out.output.strip() == "hi", out
    await sandbox.delete()  # stop would keep its files (ROCK's stop)
    await sandbox.aclose()
    return elapsed


async def _latencies(ctx, backend: str) -> list[dict]:
    admin = AdminProcess(backend, prefix="rock-bench-sdk-")
    url = admin.start()
    floor = _FloorWorker(backend)
    await floor.worker.start()
    records = []
    try:
        await _start_to_first_output(url)  # warm-up: unpack the image, compile, caches
        await floor.start_to_first_output()
        await asyncio.sleep(runtime_bench.SETTLE_S)  # what was stopped just before is still being torn down

        n = ctx.n(5, 30)
        ctx.progress(f"sdk {backend}: start -> first output x{n}")
        starts = [await _start_to_first_output(url) for _ in range(n)]
        floors = [await floor.start_to_first_output() for _ in range(max(3, n // 3))]
        records.append(record("sdk_start_to_first_output", backend, starts, floor_s=floors))

        sandbox = Sandbox(_config(url))
        await sandbox.start()
        await sandbox.create_session(CreateBashSessionRequest(session="b"))
        for _ in range(100):
            await sandbox.arun("echo hi", session="b")
        await asyncio.sleep(runtime_bench.SETTLE_S)
        n = ctx.n(300, 2000)
        ctx.progress(f"sdk {backend}: arun echo x{n} (and a bare uvicorn round trip, alternating)")
        echoes, bare = [], []
        async with _BareHttp() as http:
            while len(echoes) < n:
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    await sandbox.arun("echo hi", session="b")
                    echoes.append(time.perf_counter() - t0)
                bare += [await http.round_trip() for _ in range(BLOCK)]
        worker = await floor.echoes(ctx.n(200, 1000))
        rec = record("sdk_echo_round_trip", backend, echoes, floor_s=worker)
        # Its two floors: the agent round trip from a worker (floor_p50_ms) and the same SDK call
        # to a bare uvicorn answering at once (http_floor_p50_ms); arun is at best about their sum.
        rec["http_floor_p50_ms"] = round(percentile(bare, 0.5) * 1e3, 4)
        rec["floors_sum_p50_ms"] = round(rec["floor_p50_ms"] + rec["http_floor_p50_ms"], 4)
        rec["target_p50_ms"] = 0.5
        records.append(rec)
        await sandbox.delete()
        await sandbox.aclose()
        records.append(await _commands_per_s(ctx, backend, url, admin, floor))
    finally:
        await floor.close()
        admin.stop()
    return records


SANDBOXES, SESSIONS = 16, 4  # 64 sessions
BLOCK = 25  # samples per block; blocks of arun and of the bare HTTP round trip alternate

# A bare uvicorn (uvloop, httptools, as the admin runs) that answers run_in_session's envelope at
# once, in its own process: what one HTTP round trip through the SDK's transport costs.
_BARE_APP = r"""
import sys, uvicorn
BODY = b'{"status":"Success","message":null,"error":null,"result":{"session_type":"bash","output":"hi\\n",' \
       b'"exit_code":0,"failure_reason":"","expect_string":"","status":"completed","truncated":false}}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", log_level="warning",
            access_log=False)
"""


# The agent leg alone, on uvloop as the admin runs it: an AgentClient per sandbox (the agent's own
# socket, its sessions made by the floor worker), echo in every session at once for one block per
# line read; prints the block's commands and this process's CPU seconds.
_AGENT_FLOOR = r"""
import asyncio, json, sys, time, uvloop
from rock.worker.agent_client import AgentClient
sessions = json.loads(sys.argv[1])
async def block():
    clients = {path: await AgentClient.connect(path) for path in {path for path, _ in sessions}}
    counts = [0] * len(sessions)
    async def loop(i, until):
        path, name = sessions[i]
        while time.perf_counter() < until:
            out = await clients[path].run(name, "echo hi")
            assert out.output == "hi\n", out
            counts[i] += 1
    for warm, seconds in ((True, 0.2), (False, 1.0)):
        counts[:] = [0] * len(sessions)
        cpu0, until = time.process_time(), time.perf_counter() + seconds
        await asyncio.gather(*(loop(i, until) for i in range(len(sessions))))
    cpu = time.process_time() - cpu0
    for client in clients.values():
        client.close()
    return sum(counts), cpu
for _ in sys.stdin:
    print(json.dumps(uvloop.run(block())), flush=True)
"""


class _AgentFloor:
    """``_AGENT_FLOOR`` in its own process; ``block()`` runs one block there: (commands, CPU seconds)."""

    def __init__(self, sessions: list[tuple[str, str]]):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen([sys.executable, "-c", _AGENT_FLOOR, json.dumps(sessions)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def block(self) -> tuple[int, float]:
        return await asyncio.to_thread(self._block)

    def _block(self) -> tuple[int, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the agent floor process ended (its error is above)")
        n, cpu = json.loads(line)
        return n, cpu

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _BareHttp:
    async def __aenter__(self) -> "_BareHttp":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-c", _BARE_APP, str(port)])
        # one client per sandbox of commands_per_s, as its SDK sandboxes each have theirs
        self.clients = [Http(f"http://127.0.0.1:{port}", {}, 30, prefix="") for _ in range(SANDBOXES)]
        self.http = self.clients[0]
        body = {"sandbox_id": "x", "action_type": "bash", "session": "b", "command": "echo hi", "timeout": None,
                "check": "silent"}
        self.body = body
        self.call = lambda: self.http.post("/run_in_session", body)
        deadline = time.monotonic() + 30
        while True:
            try:
                await self.call()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                await asyncio.sleep(0.05)
        for _ in range(100):
            await self.call()
        return self

    async def round_trip(self) -> float:
        t0 = time.perf_counter()
        Observation.model_validate(await self.call())  # what arun does with its answer
        return time.perf_counter() - t0

    async def echo(self, i: int) -> None:
        """commands_per_s's loop ``i`` (session ``i % SESSIONS`` of sandbox ``i // SESSIONS``), answered at once."""
        Observation.model_validate(await self.clients[i // SESSIONS].post("/run_in_session", self.body))

    async def __aexit__(self, *exc) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients))
        self.proc.terminate()
        self.proc.wait(10)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _commands_per_s(ctx, backend: str, url: str, admin: AdminProcess, floor: _FloorWorker) -> dict:
    """``echo`` in 64 sessions (16 sandboxes x 4) at once from this one process: commands per
    second, and the CPU the admin and this client spent per command. In alternating one-second
    blocks with the admin's two floors under the same load: a bare uvicorn answering the same
    bytes to the same 64 loops (the server's CPU per request: what HTTP alone costs a Python
    server), and the same echoes sent straight to the agents by AgentClients on uvloop in a process
    of their own (its CPU per command: the agent leg the admin adds). Their sum is about the
    least the admin could spend on a command."""
    sandboxes = [Sandbox(_config(url)) for _ in range(SANDBOXES)]
    await asyncio.gather(*(sb.start() for sb in sandboxes))
    sessions = [(sb, f"s{i}") for sb in sandboxes for i in range(SESSIONS)]
    await asyncio.gather(*(sb.create_session(CreateBashSessionRequest(session=name)) for sb, name in sessions))
    pid = int((Path(admin.state) / "admin.pid").read_text())
    agents: _AgentFloor | None = None
    blocks = ctx.n(3, 10)

    async def burst(call, loops: int) -> int:
        """``call(i)`` in ``loops`` loops at once for one block: how many ended."""
        counts = [0] * loops

        async def loop(i: int, until: float) -> None:
            while time.perf_counter() < until:
                await call(i)
                counts[i] += 1

        until = time.perf_counter() + 1.0
        await asyncio.gather(*(loop(i, until) for i in range(loops)))
        return sum(counts)

    async def admin_echo(i: int) -> None:
        sb, name = sessions[i]
        out = await sb.arun("echo hi", session=name)
        assert out.output.strip() == "hi", out

    n = wall = admin_cpu = client_cpu = box_cpu = 0.0
    http_n = http_cpu = agent_n = agent_cpu = 0.0
    try:
        agents = _AgentFloor(await floor.sessions(SANDBOXES, SESSIONS))
        async with _BareHttp() as bare:
            await burst(admin_echo, len(sessions))  # warm-up
            await burst(bare.echo, len(sessions))
            await agents.block()
            ctx.progress(f"sdk {backend}: echo in {len(sessions)} sessions at once, {blocks} blocks of 1s "
                         "alternating with a bare uvicorn and the agents alone")
            for _ in range(blocks):
                boxes0 = await _sandboxes_cpu_s(sandboxes)
                admin0, mine0, t0 = _cpu_s(pid), time.process_time(), time.perf_counter()
                n += await burst(admin_echo, len(sessions))
                wall += time.perf_counter() - t0
                admin_cpu += _cpu_s(pid) - admin0
                client_cpu += time.process_time() - mine0
                boxes = await _sandboxes_cpu_s(sandboxes)
                box_cpu = None if boxes is None or boxes0 is None or box_cpu is None else box_cpu + boxes - boxes0

                bare0 = _cpu_s(bare.proc.pid)
                http_n += await burst(bare.echo, len(sessions))
                http_cpu += _cpu_s(bare.proc.pid) - bare0

                done, cpu = await agents.block()
                agent_n += done
                agent_cpu += cpu
    finally:
        if agents is not None:
            agents.close()
        await floor.close_sessions()
        await asyncio.gather(*(sb.delete() for sb in sandboxes), return_exceptions=True)
        await asyncio.gather(*(sb.aclose() for sb in sandboxes), return_exceptions=True)
    per_command = [admin_cpu, client_cpu] + ([box_cpu] if box_cpu is not None else [])
    total_ms = sum(per_command) * 1e3 / max(1, n)
    http_floor = http_cpu * 1e3 / max(1, http_n)
    agent_floor = agent_cpu * 1e3 / max(1, agent_n)
    ctx.progress(f"sdk {backend}: {n / wall:.0f} commands/s, admin CPU {admin_cpu * 1e3 / max(1, n):.4f} ms a command; "
                 f"its floor {http_floor + agent_floor:.4f} ms (a bare uvicorn {http_floor:.4f} + the agent leg "
                 f"{agent_floor:.4f}); target 0.06")
    return {"metric": "commands_per_s", "backend": backend, "n": int(n), "per_s": round(n / wall, 1),
            "sessions": len(sessions), "sandboxes": SANDBOXES, "target_per_s": 10000,
            "admin_cpu_ms_per_command": round(admin_cpu * 1e3 / max(1, n), 4),
            "target_admin_cpu_ms_per_command": 0.06,
            # the admin's floors, measured in the blocks between the admin's: HTTP alone (a bare
            # uvicorn's CPU per request) and the agent leg alone (AgentClients' CPU per echo, on uvloop)
            "http_floor_cpu_ms_per_command": round(http_floor, 4),
            "agent_floor_cpu_ms_per_command": round(agent_floor, 4),
            "floor_admin_cpu_ms_per_command": round(http_floor + agent_floor, 4),
            "client_cpu_ms_per_command": round(client_cpu * 1e3 / max(1, n), 4),
            # the agents and shells inside the sandboxes (their cgroups), for the same commands
            "sandbox_cpu_ms_per_command": round(box_cpu * 1e3 / max(1, n), 4) if box_cpu is not None else None,
            # what this machine's cores could carry at that CPU per command, with nothing else running
            "cpu_ceiling_per_s": round((os.cpu_count() or 1) * 1e3 / total_ms, 1) if total_ms else None,
            # the same with the admin at its floor, and with an admin that cost nothing: the client's
            # and the sandboxes' own CPU per command bound the rate whatever the admin does
            "ceiling_at_admin_floor_per_s": _ceiling(http_floor + agent_floor, client_cpu, box_cpu, n),
            "ceiling_without_admin_per_s": _ceiling(0.0, client_cpu, box_cpu, n),
            "load_average": round(os.getloadavg()[0], 2)}


def _ceiling(admin_ms: float, client_cpu: float, box_cpu: float | None, n: float) -> float | None:
    """Commands per second this machine's cores could carry at ``admin_ms`` of admin CPU a command
    plus the client's and the sandboxes' own (CPU seconds over ``n`` commands); None without the
    sandboxes' share."""
    if box_cpu is None or not n:
        return None
    return round((os.cpu_count() or 1) * 1e3 / (admin_ms + (client_cpu + box_cpu) * 1e3 / n), 1)


async def _sandboxes_cpu_s(sandboxes: list[Sandbox]) -> float | None:
    """CPU seconds the sandboxes' cgroups have used so far (None where the backend cannot say)."""
    used = [(await sb.stats()).get("cpu_seconds") for sb in sandboxes]
    return None if any(u is None for u in used) else sum(used)


def usable(ctx) -> list[str]:
    return [b for b in ctx.backends if b in ("docker", "bwrap", "local") and get_runtime_class(b).available() is None]


def isolated(ctx) -> list[str]:
    """``usable`` less ``local``: the parts whose sandboxes must be real ones (kept files, E2B)."""
    return [b for b in usable(ctx) if b != "local"]


async def run(ctx) -> list[dict]:
    """Latencies only; the bursts are their own part (``bench.burst``), run last: a burst's
    teardown (docker's above all) goes on for seconds and would show in whatever follows."""
    records = []
    for backend in usable(ctx):
        records += await _latencies(ctx, backend)
    return records
