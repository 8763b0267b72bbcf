"""A minimal synchronous client for the env host: spawn it and speak the framing over its pipes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from rock.agent import protocol

HOST_SCRIPT = Path(protocol.__file__).parent / "envhost" / "host.py"
HERE = str(Path(__file__).resolve().parent)


class HostDriver:
    def __init__(self, python: str = sys.executable, env: dict | None = None):
        self.proc = subprocess.Popen([python, "-I", str(HOST_SCRIPT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.reader = protocol.FrameReader()
        self.ids = itertools.count(1)
        self.frames: list = []
        meta, _ = self._next()
        assert meta["event"] == "ready", meta

    def _next(self):
        while not self.frames:
            data = self.proc.stdout.read1(1 << 20)
            if not data:
                raise EOFError(f"env host exited with {self.proc.wait()}")
            self.frames.extend(self.reader.feed(data))
        return self.frames.pop(0)

    def call(self, op: str, **args):
        """Returns (meta, decoded body); skips progress events."""
        rid = next(self.ids)
        self.proc.stdin.write(protocol.encode({"id": rid, "op": op, "args": args}))
        self.proc.stdin.flush()
        while True:
            meta, body = self._next()
            if "event" not in meta:
                assert meta["id"] == rid
                return meta, (json.loads(body) if body else None)

    def ok(self, op: str, **args):
        meta, body = self.call(op, **args)
        assert meta["ok"], meta
        return body if body is not None else meta["result"]

    def user_env(self, handle: str, cls: str, timeout: float | None = 5, **kwargs):
        return self.ok("make", env=handle, env_id=f"test:{cls}", entry_point=f"hostile_envs:{cls}",
                       sys_path=[HERE], timeout=timeout, kwargs=kwargs)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)
