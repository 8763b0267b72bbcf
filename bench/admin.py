"""A real admin for a benchmark: ``rock admin start`` in its own process, as users run it.

In its own process, not a thread of the benchmark: the client and the admin must not share
one interpreter lock, or every number through the SDK carries the other's work.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

SANDBOX_API = "/apis/envs/sandbox/v1"


class AdminProcess:
    def __init__(self, backend: str, prefix: str = "rock-bench-", role: str = "admin", token: str | None = None,
                 state: str | None = None):
        self.backend, self.role, self.token = backend, role, token
        self.state = state or tempfile.mkdtemp(prefix=prefix)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _rock(self, *args: str) -> None:
        env = {**os.environ, "ROCK_TOKENS": json.dumps({self.token: "bench"})} if self.token else None
        subprocess.run([sys.executable, "-m", "rock.cli.main", *args, "--state-dir", self.state], check=True,
                       capture_output=True, timeout=300, env=env)

    def start(self) -> str:
        self._rock("admin", "start", "--backend", self.backend, "--port", str(self.port), "--role", self.role)
        return self.url

    def __enter__(self) -> "AdminProcess":
        """``with AdminProcess(...) as admin``: started here, stopped (``stop``) however the block ends."""
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def pid(self) -> int | None:
        """The admin's process id (for its CPU ticks), None when unknown."""
        try:
            return int((Path(self.state) / "admin.pid").read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Delete every sandbox it still has (env sandboxes, stopped ones with kept files), then stop
        the admin; remove its state."""
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            if self.role == "admin":
                kept: set[str] = set()
                for page in itertools.count(1):  # a soak leaves thousands of stopped sandboxes
                    listed = httpx.get(self.url + SANDBOX_API + "/sandboxes", params={"page_size": 1000, "page": page},
                                       headers=h, timeout=60).json().get("result") or {}
                    kept |= {item["sandbox_id"] for item in listed.get("items") or []
                             if item.get("lifecycle_state") != "deleted"}
                    if not listed.get("has_more"):
                        break
                kept |= set(httpx.get(self.url + "/apis/v1/envs/gem/hosted", headers=h, timeout=60).json())
                for sandbox_id in kept:
                    httpx.post(self.url + SANDBOX_API + "/delete", json={"sandbox_id": sandbox_id}, headers=h,
                               timeout=120)
        finally:
            self._rock("admin", "stop")
            if self.role == "admin":
                shutil.rmtree(self.state, ignore_errors=True)
