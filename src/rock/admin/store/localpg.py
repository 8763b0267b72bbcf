"""A throwaway PostgreSQL server in its own directory, on a given port: what the cluster tests
and the scale benchmark (bench/scale_sim.py) share their records in. Started and stopped by
exactly what made it; never a server someone else runs. Needs Debian's ``postgresql`` package
(scripts/setup-host.sh installs it)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (scripts/setup-host.sh installs the postgresql package)")
    return found


class Postgres:
    """A throwaway server in its own directory (as the ``postgres`` user when we are root: it refuses root)."""

    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.data, self.sock = root / "data", root / "sock"
        self.proc: subprocess.Popen | None = None
        self.url = f"postgresql://rock@127.0.0.1:{port}/rock"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> "Postgres":
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        subprocess.run(self._as_owner([_pg_bin("initdb"), "-D", str(self.data), "-U", "rock", "-A", "trust", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        self.proc = subprocess.Popen(
            self._as_owner([_pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sock),
                            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"]),
            stdout=subprocess.DEVNULL, stderr=open(self.root / "log", "wb"), start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True)
            if ready.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "rock", "rock"],
                       check=True, capture_output=True, timeout=60)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # Told by pg_ctl, not by a signal to our child: that is runuser, which does not pass it on.
            subprocess.run(self._as_owner([_pg_bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"]),
                           capture_output=True, timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
