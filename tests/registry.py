"""A real image registry for tests: Debian's docker-registry on a loopback port, with an
htpasswd login (the Docker engine treats 127.0.0.0/8 registries as plain HTTP)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

USER, PASSWORD = "rockuser", "rock-secret"
PORTS = range(18450, 18460)


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port for the test registry in {PORTS.start}-{PORTS.stop - 1}")


class Registry:
    """``Registry()`` wants a login (USER, PASSWORD) for every pull and push; ``Registry(login=False)`` serves anyone."""

    def __init__(self, login: bool = True) -> None:
        for tool in ("docker-registry", "htpasswd"):
            if not shutil.which(tool):
                pytest.fail(f"{tool} is not installed; scripts/setup-host.sh installs it")
        self.dir = Path(tempfile.mkdtemp(prefix="rock-registry-"))
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
        (self.dir / "htpasswd").write_text(htpasswd.stdout)
        (self.dir / "config.yml").write_text(f"""version: 0.1
log: {{level: warn}}
storage: {{filesystem: {{rootdirectory: {self.dir / "data"}}}, delete: {{enabled: true}}}}
http: {{addr: "{self.host}"}}
""" + (f"""auth: {{htpasswd: {{realm: rock-test, path: {self.dir / "htpasswd"}}}}}
""" if login else ""))
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "registry.log", "wb"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {(self.dir / 'registry.log').read_text()[-1000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("docker-registry did not listen within 30 s")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
