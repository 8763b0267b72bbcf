"""SDK benchmarks, through the public SDK over loopback against a real admin per backend.

sdk_start_to_first_output  Sandbox.start() -> create_session -> first arun output (floor: the
                           same steps on the worker in-process, no HTTP)
sdk_echo_round_trip        arun("echo hi") in a persistent session (floor: the agent round trip
                           in-process, i.e. what HTTP + admin add is the ratio)
sdk_burst_100              100 Sandbox.start() at once, each until ready (success_rate counts)
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import uvicorn

from bench.report import record
from rock.actions import CreateBashSessionRequest
from rock.admin.app import create_app
from rock.config import Settings
from rock.runtime import get_runtime_class
from rock.runtime.base import SandboxSpec
from rock.sdk.sandbox import Sandbox, SandboxConfig


class _Server(uvicorn.Server):
    def __init__(self, config, ready: threading.Event):
        super().__init__(config)
        self.ready, self.loop = ready, None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()


class _Admin:
    """The admin in a thread with its own loop, like `rock admin start`, on a free port."""

    def __init__(self, backend: str):
        self.state = Path(tempfile.mkdtemp(prefix="rock-bench-sdk-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = create_app(Settings(state_dir=self.state, backend=backend, port=self.port))
        ready = threading.Event()
        self.server = _Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                             access_log=False), ready)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not ready.wait(0.5):
            if not self.thread.is_alive():
                raise RuntimeError("admin did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, coro_fn, timeout: float = 600):
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.server.loop).result(timeout)

    def close(self) -> None:
        worker = self.app.state.rock.worker

        async def stop_all():
            await asyncio.gather(*(worker.stop(i.sandbox_id) for i in worker.list()), return_exceptions=True)

        self.call(stop_all)
        self.server.should_exit = True
        self.thread.join(60)
        shutil.rmtree(self.state, ignore_errors=True)


def _config(url: str) -> SandboxConfig:
    return SandboxConfig(base_url=url, memory="256m", cpus=0.5, auto_clear_seconds=600)


async def _start_to_first_output(url: str) -> float:
    t0 = time.perf_counter()
    sandbox = Sandbox(_config(url))
    await sandbox.start()
    await sandbox.create_session(CreateBashSessionRequest(session="b"))
    out = await sandbox.arun("echo hi", session="b")
    elapsed = time.perf_counter() - t0
    assert out.output.strip() == "hi", out
    await sandbox.stop()
    return elapsed


async def _timed_start(url: str) -> float | None:
    sandbox = Sandbox(_config(url))
    t0 = time.perf_counter()
    try:
        await sandbox.start()
        return time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a failed start is counted, not raised
        return None
    finally:
        await sandbox.stop()


async def _backend(ctx, backend: str) -> list[dict]:
    admin = _Admin(backend)
    worker = admin.app.state.rock.worker
    records = []
    try:
        await _start_to_first_output(admin.url)  # warm-up: unpack the image, compile, caches

        async def floor_start() -> float:
            sid = "f" + uuid.uuid4().hex[:10]
            t0 = time.perf_counter()
            await worker.create(SandboxSpec(sandbox_id=sid, image=admin.app.state.rock.settings.default_image))
            agent = worker.agent(sid)
            await agent.create_session("b")
            await agent.run("b", "echo hi")
            elapsed = time.perf_counter() - t0
            await worker.stop(sid)
            return elapsed

        n = ctx.n(5, 30)
        ctx.progress(f"sdk {backend}: start -> first output x{n}")
        starts = [await _start_to_first_output(admin.url) for _ in range(n)]
        floors = [admin.call(floor_start) for _ in range(max(3, n // 3))]
        records.append(record("sdk_start_to_first_output", backend, starts, floor_s=floors))

        sandbox = Sandbox(_config(admin.url))
        await sandbox.start()
        await sandbox.create_session(CreateBashSessionRequest(session="b"))
        sid = sandbox.sandbox_id

        async def floor_echo() -> list[float]:
            agent = worker.agent(sid)
            await agent.create_session("floor")
            out = []
            for _ in range(ctx.n(200, 1000)):
                t0 = time.perf_counter()
                await agent.run("floor", "echo hi")
                out.append(time.perf_counter() - t0)
            return out

        for _ in range(100):
            await sandbox.arun("echo hi", session="b")
        n = ctx.n(300, 2000)
        ctx.progress(f"sdk {backend}: arun echo x{n}")
        echoes = []
        for _ in range(n):
            t0 = time.perf_counter()
            await sandbox.arun("echo hi", session="b")
            echoes.append(time.perf_counter() - t0)
        floor = admin.call(floor_echo)
        records.append(record("sdk_echo_round_trip", backend, echoes, floor_s=floor))
        await sandbox.stop()

        ctx.progress(f"sdk {backend}: burst of 100 start()")
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_timed_start(admin.url) for _ in range(100)))
        wall = time.perf_counter() - t0
        ok = [r for r in results if r is not None]
        records.append(record("sdk_burst_100", backend, ok, attempts=100, wall_s=round(wall, 3)))
    finally:
        admin.close()
    return records


async def run(ctx) -> list[dict]:
    records = []
    for backend in ctx.backends:
        if backend not in ("docker", "bwrap", "local") or get_runtime_class(backend).available():
            continue
        records += await _backend(ctx, backend)
    return records
