"""Running the admin in the foreground: uvicorn with the app, and a readiness signal for
``rock admin start`` (a line written to an inherited pipe once the app is serving)."""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from pathlib import Path

import uvicorn

from rock.admin.app import create_app
from rock.admin.http_protocol import HeldHeadHttpTools, ReadingWebSockets
from rock.admin.auth import check_bind
from rock.cli.statefiles import info_path, log_path, pid_path, remove_own_files
from rock.config import Settings


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, settings: Settings, ready_fd: int | None):
        super().__init__(config)
        self.settings, self.ready_fd = settings, ready_fd

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        tune_gc()
        app = self.config.loaded_app
        while hasattr(app, "app") and not hasattr(app, "state"):
            app = app.app
        backend = getattr(getattr(getattr(app, "state", None), "rock", None), "worker", None)
        info = {"pid": os.getpid(), "host": self.settings.host, "port": self.settings.port,
                "url": f"http://{self.settings.host}:{self.settings.port}", "role": self.settings.role,
                "backend": getattr(backend, "backend_name", self.settings.backend),
                "state_dir": str(self.settings.state_dir), "started_at": time.time(),
                "log_file": str(log_path(self.settings))}
        tmp = info_path(self.settings).with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, info_path(self.settings))
        if self.ready_fd is not None:
            os.write(self.ready_fd, (json.dumps(info) + "\n").encode())
            os.close(self.ready_fd)
            self.ready_fd = None


    async def shutdown(self, sockets=None) -> None:
        await super().shutdown(sockets)
        # Here, not after run(): uvicorn re-raises SIGTERM once run() unwinds, ending the process.
        remove_own_files(self.settings)


GC_THRESHOLDS = (20_000, 20, 10)


def tune_gc() -> None:
    """Once the app serves: most of the heap then is what startup imported and built (modules, the
    app, pydantic's validators), and Python's collector walked all of it on every full pass: ~30%
    of the admin's CPU in a burst of 4,000 starts (bench scale_sim, timed with gc.callbacks), each
    full pass a ~160 ms stall; ~9% under 64 concurrent commands. Frozen, it is never walked again
    (it lives as long as the process anyway); a larger young generation (Python's default is 700
    allocations) makes fewer passes over what requests make and drop, and moves fewer in-flight
    coroutines and futures to the older generations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# How long the admin keeps an idle client connection open. uvicorn's default, 5 s, is exactly
# httpx's keepalive_expiry: a pooled connection the client reuses at ~5 s idle can cross the
# admin's close, and the request is answered with a reset (httpx.ReadError). Under a burst the
# admin's loop runs late and that window widens: one start in each 1,000-sandbox burst failed so.
# Longer than the clients' own expiry (httpx 5 s, aiohttp 15 s), the client always lets go first.
KEEP_ALIVE_S = 75


def uvicorn_config(app, host: str, port: int, log_level: str) -> uvicorn.Config:
    """How the admin is served (the tests' in-process admins too): httptools writing each
    response's head with its body, WebSockets that read on while their route keeps up
    (rock.admin.http_protocol), WebSocket messages up to 16 MiB."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=10, ws_max_size=16 << 20, http=HeldHeadHttpTools,
                          ws=ReadingWebSockets, timeout_keep_alive=KEEP_ALIVE_S)


def serve(settings: Settings, ready_fd: int | None = None, log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT; sandboxes keep running across restarts."""
    check_bind(settings.host, settings.tokens)
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)  # over the CLI's -v level
    from rock import config_rock

    config_rock.report(settings)
    pid_path(settings).write_text(str(os.getpid()))
    config = uvicorn_config(create_app(settings), settings.host, settings.port, log_level)
    server = _Server(config, settings, ready_fd)
    try:
        server.run()
    finally:
        remove_own_files(settings)
    return 0 if server.started else 1
