"""A private Docker engine for tests that restart it: its own dockerd (and the containerd it
starts), data root, exec root and socket under one temp directory, no bridge and no iptables
rules, in a network namespace of its own. The machine's shared engine is never touched. Its one image is made here from a few host
files (bash, coreutils, the libraries the host's Python needs; the Python itself is mounted in
by the docker runtime), a few MB instead of a save/load of python:3.11."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

import docker

IMAGE = "rock-fault-tiny:1"
TOOLS = ["bash", "dash", "sleep", "cat", "head", "ls", "env", "rm", "mkdir", "echo", "true"]


class PrivateEngine:
    def __init__(self, live_restore: bool = False) -> None:
        self.live_restore = live_restore
        self.dir = Path(tempfile.mkdtemp(prefix="rock-dk-", dir="/tmp"))
        self.host = f"unix://{self.dir}/docker.sock"
        (self.dir / "daemon.json").write_text("{}")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "PrivateEngine":
        d = self.dir
        log = open(d / "dockerd.log", "ab")
        # In a network namespace of its own: with --bridge=none dockerd deletes the interface
        # named docker0 it finds at start, which on the host is the shared engine's bridge.
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--", "dockerd", "--config-file", str(d / "daemon.json"), "--data-root", str(d / "data"),
             "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"), "-H", self.host,
             "--bridge=none", "--iptables=false", "--ip-masq=false", "--userland-proxy=false",
             "--containerd-namespace", f"rockfault{os.getpid()}", "--containerd-plugins-namespace",
             f"rockfault{os.getpid()}-plugins", "--log-level", "warn", *(["--live-restore"] if self.live_restore else [])],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the private dockerd exited: {self.log()[-3000:]}")
            try:
                self.client().close()  # the client asks the engine its API version
                return self
            except docker.errors.DockerException:  # not up yet
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the private dockerd did not answer in {timeout}s: {self.log()[-3000:]}")

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=60)

    def log(self) -> str:
        return (self.dir / "dockerd.log").read_text(errors="replace")

    def stop(self) -> None:
        """As ``systemctl stop docker``: SIGTERM, the engine stops its containers and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)

    def remove(self) -> None:
        """Containers, engine, leftover shims (live-restore keeps them past the engine), mounts, files."""
        if self.proc is not None and self.proc.poll() is None:
            client = self.client()
            try:
                for c in client.containers.list(all=True):
                    c.remove(force=True)
            finally:
                client.close()
        self.stop()
        for pid in _processes_naming(str(self.dir)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(self.dir))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def load_tiny_image(self) -> str:
        client = self.client()
        try:
            client.images.load(_image_tar())  # docker load of a one-layer image we write ourselves
        finally:
            client.close()
        return IMAGE


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _libraries(binaries: list[str]) -> set[str]:
    found: set[str] = set()
    out = subprocess.run(["ldd", *binaries], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.add(parts[2])
        elif parts and parts[0].startswith("/") and not parts[0].endswith(":"):
            found.add(parts[0])
    return found


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _rootfs_tar() -> bytes:
    binaries = [shutil.which(t) for t in TOOLS]
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    python = os.path.realpath(sys.executable)
    libs = _libraries([*binaries, python, *(str(p) for p in dynload.glob("*.so") if "tkinter" not in p.name)])
    prefix = os.path.dirname(os.path.dirname(python))  # mounted by the runtime: not in the image
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def directory(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)

        files = {}  # where in the image -> the host file (dereferenced)
        for path in [*binaries, *sorted(libs)]:
            if not path.startswith(prefix):
                files[os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)).lstrip("/")] = path
        dirs = {"etc", "root", "dev", "proc", "sys", "run", "usr/local/bin", "usr/lib", "usr/lib64", "usr/sbin"} | {
            os.path.dirname(a) for a in files}
        for d in sorted({p for d in dirs for p in _ancestors(d)}):
            directory(d)
        directory("tmp", 0o1777)
        for name in ("bin", "lib", "lib64", "sbin"):
            link(name, f"usr/{name}")
        link("usr/bin/sh", "dash")
        for arcname, path in sorted(files.items()):
            tar.add(os.path.realpath(path), arcname=arcname)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _image_tar() -> bytes:
    """A ``docker save`` archive of one layer: the rootfs above."""
    import hashlib
    import json

    layer = _rootfs_tar()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"], "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [IMAGE], "Layers": ["layer/layer.tar"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in ((config_name, config), ("layer/layer.tar", layer), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
