"""A real admin served by uvicorn in a background thread on a free port (the SWE-ReX pattern).

The thread has its own event loop, so tests may block (subprocesses, the sync SDK) while the
admin keeps serving. ``close()`` stops every sandbox it made before shutting down, so the
session-end leak check stays clean even when a test fails midway.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import uvicorn

from rock.admin.app import create_app
from rock.cli.server import uvicorn_config
from rock.config import Settings
from rock.runtime import get_runtime_class
from tests.conftest import SESSION_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Callable[[], str]) -> None:
    """Wait until the admin process at ``url`` answers /health; fail with its log if it exits or
    does not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the admin at {url} exited with {proc.returncode}: {log()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the admin at {url} did not answer within {timeout}s: {log()[-3000:]}")


def terminate(proc: subprocess.Popen, kill: Callable[[], None] | None = None, grace: float = 30) -> None:
    """SIGTERM, then ``kill`` (default SIGKILL of the process) after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            (kill or proc.kill)()
            proc.wait(10)


class _Server(uvicorn.Server):
    def __init__(self, config, ready: threading.Event):
        super().__init__(config)
        self.ready = ready
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()


class Admin:
    def __init__(self, backend: str, state_dir: Path | None = None, **settings):
        reason = get_runtime_class(backend).available()
        if reason:
            pytest.skip(f"{backend}: {reason}")
        self.backend = backend
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="a", dir=SESSION_ROOT))
        self.port = free_port()
        self.settings = Settings(state_dir=self.state_dir, backend=backend, port=self.port, **settings)
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> "Admin":
        self.app = create_app(self.settings)
        ready = threading.Event()
        config = uvicorn_config(self.app, "127.0.0.1", self.port, "warning")  # as `rock admin` serves it
        self.server = _Server(config, ready)
        self.thread = threading.Thread(target=self.server.run, name=f"admin-{self.backend}", daemon=True)
        self.thread.start()
        while not ready.wait(0.5):
            if not self.thread.is_alive():
                raise RuntimeError("the admin did not start; see the log above")
        return self

    def call(self, coro_fn, timeout: float = 120):
        """Run ``coro_fn()`` on the admin's own loop (where its worker lives)."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.server.loop).result(timeout)

    @property
    def ctx(self):
        return self.app.state.rock

    def stop(self, stop_sandboxes: bool = False) -> None:
        if self.server is None:
            return
        if stop_sandboxes:
            async def stop_all():
                # at once: a session's admin ends with whatever its tests left, and each docker
                # container's stop and removal is a second or more of waiting on the engine
                worker = self.ctx.worker
                ids = [info.sandbox_id for info in worker.list()] + list(worker.stopped_ids())  # + files kept
                await asyncio.gather(*(worker.stop(sandbox_id) for sandbox_id in ids))
            self.call(stop_all)
        self.server.should_exit = True
        self.thread.join(60)
        self.server = None


@pytest.fixture(scope="session", params=["docker", "bwrap"])
def admin(request):
    """One real admin per backend for the test session."""
    marker = getattr(pytest.mark, request.param)
    request.applymarker(marker)
    server = Admin(request.param).start()
    yield server
    server.stop(stop_sandboxes=True)


def backend_params():
    return [pytest.param("docker", marks=pytest.mark.docker, id="docker"),
            pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap")]
