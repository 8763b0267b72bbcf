"""A real admin for a benchmark: ``rock admin start`` in its own process, as users run it.

In its own process, not a thread of the benchmark: the client and the admin must not share
one interpreter lock, or every number through the SDK carries the other's work.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile

import httpx

SANDBOX_API = "/apis/envs/sandbox/v1"


class AdminProcess:
    def __init__(self, backend: str, prefix: str = "rock-bench-"):
        self.backend = backend
        self.state = tempfile.mkdtemp(prefix=prefix)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _rock(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "rock.cli.main", *args, "--state-dir", self.state], check=True,
                       capture_output=True, timeout=300)

    def start(self) -> str:
        self._rock("admin", "start", "--backend", self.backend, "--port", str(self.port))
        return self.url

    def stop(self) -> None:
        """Delete every sandbox it still has (env sandboxes, stopped ones with kept files), then stop
        the admin; remove its state."""
        try:
            listed = httpx.get(self.url + SANDBOX_API + "/sandboxes", params={"page_size": 1000}, timeout=60).json()
            kept = {item["sandbox_id"] for item in (listed.get("result") or {}).get("items") or []
                    if item.get("lifecycle_state") != "deleted"}
            kept |= set(httpx.get(self.url + "/apis/v1/envs/gem/hosted", timeout=60).json())
            for sandbox_id in kept:
                httpx.post(self.url + SANDBOX_API + "/delete", json={"sandbox_id": sandbox_id}, timeout=120)
        finally:
            self._rock("admin", "stop")
            shutil.rmtree(self.state, ignore_errors=True)
