"""Agent ops for hosted envs: ``env.make``, ``env.reset``, ``env.step``, ``env.batch``,
``env.close``, ``env.list``.

The agent runs with ``-I -S`` and never imports gem. On first use it starts an env host
(``host.py``) with the interpreter that has the env packages (``ROCK_HOST_PYTHON`` unless the
env says otherwise), WITH site-packages, and forwards requests to it over pipes in the agent's
own framing. Replies come back on the host's reader thread, which answers the worker directly:
step/reset/batch are ``INLINE`` + deferred, so a step costs no pool-thread hand-off here, and
the observation JSON the host encoded travels as the reply body untouched.

The host also listens on its own socket next to the agent's (``/.rock/run/eh<n>.sock``); the
worker sends reset/step/batch there directly and saves the hop through this process. ``env.make``
and ``env.list`` tell the worker where that socket is. Everything also works through the agent.

Failure handling: an env's exception or timeout is its call's error (the host contains it), and
a host stuck in C code where its timeout cannot reach is killed by the watchdog (``guard.py``).
When the host dies, every pending call fails with ``EnvHostDied``, its envs report ``EnvLost``
with the reason, and the next ``env.make`` starts a fresh host.
"""

import _queue
import collections
import hashlib
import itertools
import json
import mmap
import os
import select
import signal
import subprocess
import sys
import threading
import time

from .. import paths, protocol
from ..errors import OpError
from ..deferred import DEFERRED
from .guard import BUSY, watch

HOST_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "host.py")
START_TIMEOUT = 60.0

_lock = threading.Lock()
_hosts = {}  # python path -> HostProcess
_envs = {}  # env handle -> Rec
_env_ids = itertools.count(1)
_host_gen = itertools.count(1)


def _run_dir():
    """Where the host's socket goes: beside the agent's socket (the worker sees that folder)."""
    return os.environ.get("ROCK_ENV_SOCKET_DIR") or paths.run_dir[0]


class Rec:
    """What the agent keeps of one env: its env host, env id, call timeout, and why it was lost (if it
    was)."""

    __slots__ = ("host", "env_id", "timeout", "lost")

    def __init__(self, host, env_id, timeout):
        self.host, self.env_id, self.timeout, self.lost = host, env_id, timeout, None


class HostProcess:
    """One env host process (``host.Host`` runs inside it) and the threads that talk to it."""

    def __init__(self, python, env, isolated=False):
        self.python = python
        self.key = (python, isolated)
        fd = os.memfd_create("rock-envhost-busy")
        os.ftruncate(fd, BUSY.size)
        self.busy = mmap.mmap(fd, BUSY.size)
        # isolated: without the interpreter's own site-packages, only the env image's (sys_path)
        argv = [python, "-I"] + (["-S"] if isolated else []) + [HOST_SCRIPT, "--busy-fd", str(fd)]
        run_dir = _run_dir()
        self.socket = os.path.join(run_dir, "eh%d.sock" % next(_host_gen)) if run_dir else None
        if self.socket:
            _unlink(self.socket)
            argv += ["--socket", self.socket]
        try:
            self.proc = _from_spawner(lambda: subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                close_fds=True, pass_fds=(fd,)))
        finally:
            os.close(fd)
        self.pid = self.proc.pid
        self.wfd = self.proc.stdin.fileno()
        os.set_blocking(self.wfd, False)
        self.ids = itertools.count(1)
        self.pending = collections.OrderedDict()  # host processes requests in order: first = running
        self.cond = threading.Condition()
        self.wbuf = bytearray()
        self.alive = True
        self.death = None
        self.kill_reason = None
        self.gone = threading.Event()
        self.stderr_tail = collections.deque(maxlen=64)
        self.ready = threading.Event()
        self.started = time.time()
        for target in (self._read, self._drain_stderr, lambda: watch(self.busy, self.gone, self.kill), self._write):
            threading.Thread(target=target, daemon=True).start()
        if not self.ready.wait(START_TIMEOUT) or not self.alive:
            self.kill("it did not start within %ds" % START_TIMEOUT)
            raise OpError("EnvHostDied", "the env host (%s) failed to start: %s" % (python, self.death or "no answer"))

    # -- sending -------------------------------------------------------------------------

    def request(self, op, args, on_done, body=b""):
        """Send one request; ``on_done(meta, body)`` runs on the reader thread with the reply."""
        rid = next(self.ids)
        data = protocol.encode({"id": rid, "op": op, "args": args}, body)
        with self.cond:
            if not self.alive:
                raise OpError("EnvHostDied", "the env host died: %s" % self.death)
            self.pending[rid] = on_done
            if self.wbuf:
                self.wbuf += data
                return
            try:
                sent = os.write(self.wfd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # the reader sees the death and fails this request
            if sent < len(data):
                self.wbuf += data[sent:]
                self.cond.notify_all()

    def call(self, op, args, timeout=None):
        """Blocking request for pool-thread handlers; returns (result, body) or raises OpError."""
        box, done = [], threading.Event()
        self.request(op, args, lambda meta, body: (box.append((meta, body)), done.set()))
        if not done.wait(timeout):
            raise OpError("EnvTimeout", "the env host did not answer %s within %ss" % (op, timeout))
        meta, body = box[0]
        if not meta.get("ok"):
            err = meta.get("error") or {}
            raise OpError(err.get("type", "EnvError"), err.get("message", ""))
        return meta.get("result") or {}, body

    def _write(self):
        while True:
            with self.cond:
                while self.alive and not self.wbuf:
                    self.cond.wait()
                if not self.alive:
                    return
                data = bytes(self.wbuf)
            select.select([], [self.wfd], [], 1.0)
            try:
                sent = os.write(self.wfd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return
            with self.cond:
                del self.wbuf[:sent]

    # -- receiving -----------------------------------------------------------------------

    def _read(self):
        reader = protocol.FrameReader()
        fd = self.proc.stdout.fileno()
        try:
            while True:
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                for meta, body in reader.feed(data):
                    if "event" in meta:
                        if meta["event"] == "ready":
                            self.ready.set()
                        continue
                    with self.cond:
                        on_done = self.pending.pop(meta["id"], None)
                    if on_done is not None:
                        on_done(meta, body)
        except (OSError, protocol.ProtocolError) as exc:
            self.kill("it sent a bad frame: %s" % exc)
        self._died()

    def _drain_stderr(self):
        # Env code logs (gem logs at INFO); keep the tail for crash reports, drop the rest.
        for line in self.proc.stderr:
            self.stderr_tail.append(line.decode("utf-8", "replace"))

    def _died(self):
        code = self.proc.wait()
        if self.kill_reason:
            reason = self.kill_reason
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            reason = "it was killed by %s" % name + (" (most likely out of memory)" if -code == signal.SIGKILL else "")
        else:
            reason = "it exited with status %d" % code
        tail = "".join(self.stderr_tail)[-1500:].strip()
        self.death = reason + ("; last stderr: " + tail if tail else "")
        with self.cond:
            self.alive = False
            pending, self.pending = self.pending, collections.OrderedDict()
            self.cond.notify_all()
        self.gone.set()
        if self.socket:
            _unlink(self.socket)
        with _lock:
            for handle, rec in _envs.items():
                if rec.host is self:
                    rec.lost = self.death
            if _hosts.get(self.key) is self:
                del _hosts[self.key]
        error = {"id": 0, "ok": False, "error": {"type": "EnvHostDied", "message": "the env host died: " + self.death}}
        for on_done in pending.values():
            on_done(error, b"")

    def kill(self, reason):
        """Kill the env host process, remembering the first ``reason`` (its envs are lost with it)."""
        if self.kill_reason is None:
            self.kill_reason = reason
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_spawn_queue = _queue.SimpleQueue()
_spawn_lock = threading.Lock()


def _spawner():
    while True:
        fn, box, done = _spawn_queue.get()
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((False, exc))
        done.set()


def _from_spawner(fn):
    """Run ``fn`` (a Popen) on one long-lived thread. The host asks the kernel to kill it when its
    parent dies (PR_SET_PDEATHSIG), and "parent" means the spawning *thread*: a pool thread
    that retires would take the host with it."""
    box, done = [], threading.Event()
    with _spawn_lock:
        if not getattr(_spawner, "started", False):
            threading.Thread(target=_spawner, name="rock-envhost-spawner", daemon=True).start()
            _spawner.started = True
    _spawn_queue.put((fn, box, done))
    done.wait()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def get_host(python=None, isolated=False):
    """The env host for interpreter ``python`` (isolated or not), started if none runs."""
    python = python or os.environ.get("ROCK_HOST_PYTHON") or sys.executable
    key = (python, bool(isolated))
    with _lock:
        host = _hosts.get(key)
        if host is not None and host.alive:
            return host
        host = HostProcess(python, dict({"HF_HUB_OFFLINE": "1"}, **os.environ), bool(isolated))  # nothing may download at run time
        _hosts[key] = host
        return host


def _rec(handle):
    rec = _envs.get(handle)
    if rec is None:
        raise OpError("EnvNotFound", "no env %r in this sandbox (closed, reclaimed, or never made)" % handle)
    if rec.lost:
        raise OpError("EnvLost", "env %s (%s) was lost when its env host died: %s; make a new env" % (handle, rec.env_id, rec.lost))
    return rec


def _forward(req, meta, body):
    if meta.get("ok"):
        req.reply(meta.get("result"), body)
    else:
        err = meta.get("error") or {}
        req.fail(err.get("type", "EnvError"), err.get("message", ""))


def _packages_path(python, packages):
    """pip-install a user env's packages once per sandbox into a private target folder."""
    key = hashlib.sha256(json.dumps([python, sorted(packages)]).encode()).hexdigest()[:16]
    target = os.path.join(os.environ.get("ROCK_ENV_PACKAGES_DIR", "/tmp/rock-env-packages"), key)
    if not os.path.exists(os.path.join(target, ".complete")):
        cmd = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", target] + list(packages)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise OpError("EnvMakeError", "installing %s failed: %s" % (" ".join(packages), proc.stdout.decode("utf-8", "replace")[-2000:]))
        open(os.path.join(target, ".complete"), "w").close()
    return target


# -- ops --------------------------------------------------------------------------------


def env_make(req):
    """The ``env.make`` op: make an env in the env host of its interpreter and keep its record."""
    a = req.args
    env_id = a["env_id"]
    python = a.get("python") or None
    host = get_host(python, a.get("isolated"))
    sys_path = list(a.get("sys_path") or [])
    if a.get("packages"):
        sys_path.insert(0, _packages_path(host.python, a["packages"]))
    handle = a.get("env") or "e%d" % next(_env_ids)
    timeout = a.get("timeout")
    args = {"env": handle, "env_id": env_id, "entry_point": a.get("entry_point"), "kwargs": a.get("kwargs") or {},
            "timeout": timeout, "sys_path": sys_path, "gym": a.get("gym")}
    if "reset" in a:  # reset right after the make (its seed); the reset's fields are the reply's body
        args["reset"] = a["reset"]
    with _lock:
        if handle in _envs:
            raise OpError("BadRequest", "env %r already exists" % handle)
        _envs[handle] = Rec(host, env_id, timeout)
    try:
        result, body = host.call("make", args)
    except OpError:
        with _lock:
            _envs.pop(handle, None)
        raise
    result.update(host_pid=host.pid, socket=host.socket)
    return (result, body) if body else result


def env_fork(req):
    """``n`` new envs in the host of ``env``, each re-played to where it is (envhost/replay.py):
    ``{"envs": [names]}``, all made or none."""
    source = _rec(req.args.get("env"))
    n = req.args.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise OpError("BadRequest", "n must be a positive integer")
    names = ["e%d" % next(_env_ids) for _ in range(n)]
    with _lock:
        for name in names:
            _envs[name] = Rec(source.host, source.env_id, source.timeout)
    try:
        result, _ = source.host.call("fork", {"env": req.args["env"], "envs": names})
    except OpError:
        with _lock:
            for name in names:
                _envs.pop(name, None)
        raise
    return result


def _relay(op, key):
    def handler(req):
        rec = _rec(req.args.get("env"))
        args = {"env": req.args["env"], key: req.args.get(key)}
        rec.host.request(op, args, lambda meta, body: _forward(req, meta, body))
        return DEFERRED

    return handler


def _relay_raw(op):
    """A gym op: all its arguments and its body go to the host, its body comes back."""

    def handler(req):
        rec = _rec(req.args.get("env"))
        rec.host.request(op, req.args, lambda meta, body: _forward(req, meta, body), req.body or b"")
        return DEFERRED

    return handler


def env_batch(req):
    """One call over many envs (``call``: reset/step/vstep, ``envs``, ``values``), answered column by
    column as the host's ``batch`` op documents (``host.py``).

    All envs of a batch live in one host (one interpreter), as a vector env's do; an env that
    is unknown or lost gets its error at its position."""
    names = req.args["envs"]
    hosts = {_envs[n].host for n in names if n in _envs and not _envs[n].lost}
    if len(hosts) > 1:
        raise OpError("BadRequest", "a batch must name envs of one env host (one interpreter)")
    if not hosts:
        errors = {}
        for pos, name in enumerate(names):
            try:
                _rec(name)
            except OpError as exc:
                errors[pos] = {"type": exc.type, "message": exc.message}
        fields = protocol.RESET_FIELDS if req.args.get("call") == "reset" else protocol.STEP_FIELDS
        return {}, json.dumps(dict({f: [None] * len(names) for f in fields}, errors=errors)).encode()
    hosts.pop().request("batch", req.args, lambda meta, body: _forward(req, meta, body))
    return DEFERRED


def env_close(req):
    """The ``env.close`` op: close an env and forget its record."""
    handle = req.args.get("env")
    with _lock:
        rec = _envs.pop(handle, None)
    if rec is None:
        return {"closed": False}
    if rec.lost or not rec.host.alive:
        return {"closed": True, "lost": rec.lost}
    rec.host.request("close", {"env": handle}, lambda meta, body: _forward(req, meta, body))
    return DEFERRED


def env_list(req):
    """The envs of this sandbox, as the hosts see them, plus envs lost with a dead host."""
    with _lock:
        hosts = [h for h in _hosts.values() if h.alive]
        lost = [{"env": k, "env_id": r.env_id, "lost": r.lost} for k, r in _envs.items() if r.lost]
    envs, info = [], []
    for host in hosts:
        try:
            result, _ = host.call("list", {}, timeout=10)
        except OpError as exc:
            info.append({"python": host.python, "pid": host.pid, "error": exc.message})
            continue
        envs.extend(result["envs"])
        info.append({"python": host.python, "pid": host.pid, "started": host.started, "envs": len(result["envs"]),
                     "socket": host.socket})
    return {"envs": envs + lost, "hosts": info}


OPS = {
    "env.make": env_make,
    "env.reset": _relay("reset", "seed"),
    "env.step": _relay("step", "action"),
    "env.batch": env_batch,
    "env.close": env_close,
    "env.fork": env_fork,
    "env.list": env_list,
    "env.gym_reset": _relay_raw("gym_reset"),
    "env.gym_step": _relay_raw("gym_step"),
    "env.gym_render": _relay_raw("gym_render"),
}
# These only hand the request to the host and return: they run on the connection's thread.
INLINE = ("env.reset", "env.step", "env.batch", "env.close", "env.gym_reset", "env.gym_step", "env.gym_render")
