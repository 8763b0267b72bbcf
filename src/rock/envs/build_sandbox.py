"""Where an env image's packages are installed and its imports checked: a sandbox, never the host.

A build sandbox is a sandbox of the image's base on the docker engine's runtime (env images are
engine images, and a bwrap sandbox with a network would share the host's network namespace),
with its own filesystem, the build's memory, cpu and pids limits, a network of its own (only
this sandbox has one), and a time limit. pip is the host's interpreter (mounted read-only in
every sandbox, the one the env host runs later), started as an unprivileged user (``nobody``)
by a few lines of ours that drop root first; it writes ``SITE`` inside the sandbox, which comes
back as a tar that becomes the image. Whatever a package's build runs (a setup.py, a build
backend) runs there.

The operator's package sources reach the sandbox as the host's own pip configuration says
(index URLs, find-links, the CA bundle): local folders and files among them are mounted
read-only at the same paths, nothing else of the host is.

Import checks run in a sandbox of the built image with no network, as the same user.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import unquote, urlparse

from rock.envs.errors import EnvError
from rock.runtime.base import SandboxSpec

log = logging.getLogger("rock.envs.build")

BUILD_PREFIX = "rock-build-"  # the ids of build sandboxes
WORK = "/tmp/rock-build"  # inside the sandbox: uploaded sources, pip's home and temp
UID = GID = 65534  # nobody
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Run by the host interpreter in the sandbox, as root: hand the build's folders to the build user,
# let it reach the interpreter's prefix (an image's /root is often 0700), drop root, run argv.
LAUNCH = r"""
import json, os, sys
a = json.loads(sys.argv[1])
for top in a["own"]:
    for d, dirs, files in os.walk(top):
        os.lchown(d, a["uid"], a["gid"])
        for n in dirs + files:
            os.lchown(os.path.join(d, n), a["uid"], a["gid"])
for d in a["traverse"]:
    try:
        os.chmod(d, os.stat(d).st_mode | 0o011)
    except OSError:
        pass
os.setgroups([])
os.setgid(a["gid"])
os.setuid(a["uid"])
os.chdir(a["cwd"])
os.dup2(1, 2)
os.execve(a["argv"][0], a["argv"], a["env"])
"""
# The import check: the name is an argument, never code.
CHECK = "import importlib, sys; sys.path.insert(0, sys.argv[1]); importlib.import_module(sys.argv[2])"
_PIP_SOURCES = ("index-url", "extra-index-url", "find-links")
_PIP_KEYS = (*_PIP_SOURCES, "cert", "trusted-host", "default-timeout", "timeout", "retries", "no-index", "proxy", "pre")


@functools.cache
def pip_environment(python: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The operator's pip configuration as variables for the build sandbox, and the local
    folders and files it names (to mount read-only). Read with our own fixed command."""
    try:
        out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    config: dict[str, str] = {}
    for line in out.splitlines():  # "global.find-links='/opt/wheels'", ":env:.cert='...'"
        name, sep, value = line.partition("=")
        key = name.rpartition(".")[2]
        if sep and key in _PIP_KEYS:
            try:
                config[key] = str(ast.literal_eval(value))
            except (ValueError, SyntaxError):
                continue
    if os.environ.get("ROCK_PIP_INDEX_URL"):  # ROCK's variable: the package index env images install from
        config["index-url"] = os.environ["ROCK_PIP_INDEX_URL"]
    binds: list[str] = []
    for key, value in config.items():
        items = value.split() if key in _PIP_SOURCES else [value] if key == "cert" else []
        for item in items:
            path = unquote(urlparse(item).path) if item.startswith("file:") else item
            if key != "find-links" and os.path.basename(path.rstrip("/")) == "simple":
                path = os.path.dirname(path.rstrip("/"))  # a local index links ../../files/...: its root
            if path.startswith("/") and path != "/" and os.path.exists(path) and path not in binds:
                binds.append(path)
    env = tuple(("PIP_" + key.upper().replace("-", "_"), value) for key, value in config.items())
    return env, tuple(binds)


class BuildSandbox:
    """One sandbox of ``runtime`` (the docker engine's: see ``ImageBuilder``), destroyed on exit."""

    def __init__(self, runtime, spec: SandboxSpec, python: str):
        self.runtime, self.spec, self.python = runtime, spec, python
        self.handle = None
        self.client = None

    async def __aenter__(self) -> "BuildSandbox":
        from rock.worker.agent_client import AgentClient

        t0 = time.perf_counter()
        self.handle = await self.runtime.create(self.spec)
        try:
            self.client = await AgentClient.connect(self.handle.socket_path, self.handle)
        except BaseException:
            await self.runtime.destroy(self.handle)
            raise
        log.info("build sandbox %s (%s, network %s) up in %.1f s", self.spec.sandbox_id, self.spec.image,
                 "on" if self.spec.network else "off", time.perf_counter() - t0)
        return self

    async def __aexit__(self, *exc) -> None:
        self.client.close()
        try:
            await asyncio.shield(self.runtime.destroy(self.handle))
        except Exception as err:  # noqa: BLE001 - the build's own error is what the caller needs
            log.warning("build sandbox %s: destroy failed: %s", self.spec.sandbox_id, err)

    def _launch_argv(self, argv: list[str], own: list[str], cwd: str, env: dict[str, str]) -> list[str]:
        # The build user must reach the interpreter and the mounted package sources: the folders
        # above them (an image's /root, folders a backend made for a mount) may be 0700.
        prefix = os.path.dirname(os.path.dirname(self.python))
        traverse = sorted({d for path in (prefix, *self.spec.ro_binds) for d in _ancestors(os.path.dirname(path))})
        args = {"own": own, "traverse": traverse, "uid": UID, "gid": GID, "cwd": cwd, "argv": argv,
                "env": {"PATH": PATH, "LANG": "C.UTF-8", **env}}
        return [self.python, "-I", "-S", "-c", LAUNCH, json.dumps(args)]

    async def run(self, argv: list[str], own: list[str], cwd: str, env: dict[str, str], timeout: float,
                  on_line: Callable[[str], None]) -> int:
        """Run ``argv`` as the build user; each output line goes to ``on_line``. Killed at ``timeout``."""
        proc = await self.client.proc_start(self._launch_argv(argv, own, cwd, env))
        deadline, offset, buf = time.monotonic() + timeout, 0, b""
        while True:
            status = await self.client.proc_wait(proc["proc_id"], timeout=1.0)
            while True:
                data, offset, _ = await self.client.proc_output(proc["proc_id"], "stdout", offset)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace").rstrip())
            if not status["running"]:
                if buf:
                    on_line(buf.decode(errors="replace").rstrip())
                return status["exit_code"]
            if time.monotonic() > deadline:
                await self.client.proc_kill(proc["proc_id"], 9)
                raise EnvError(f"the build ran past its time limit ({timeout:g} s; the admin's build_timeout)",
                               "EnvBuildError")

    def tar(self, path: str) -> AsyncIterator[bytes]:
        """The file or folder at ``path`` inside the sandbox as a tar stream, in chunks."""
        return self.client.tar_get(path)


def _ancestors(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def build_spec(image: str, memory_bytes: int | None, cpus: float, pids_limit: int | None, network: bool,
               python: str) -> SandboxSpec:
    """A build sandbox's spec (id ``BUILD_PREFIX`` + a random suffix, labelled ``rock.build``): the image,
    memory in bytes (None: no limit), CPUs and pids limit, and with ``network`` the operator's pip
    configuration and the local files it names, mounted read-only."""
    env, binds = pip_environment(python) if network else ((), ())
    return SandboxSpec(sandbox_id=f"{BUILD_PREFIX}{uuid.uuid4().hex[:12]}", image=image, memory_bytes=memory_bytes,
                       cpus=cpus, pids_limit=pids_limit, network=network, labels={"rock.build": "1"},
                       ro_binds=list(binds))


def pip_env(python: str) -> dict[str, str]:
    """The operator's pip configuration (``pip config list`` of ``python``) as environment variables for a build
    sandbox."""
    return dict(pip_environment(python)[0])
