"""A process table by pid, the in-sandbox half of E2B's envd ``process.Process`` service.

Standard library only. Each process's output is read by its own threads for as long as it
runs, whoever listens: a client that goes away (a background command, a dropped connection)
only unsubscribes; ``envd.connect`` subscribes again to the live output. A per-process
``deadline`` (E2B's per-call timeout) kills the whole process group when it passes.

Ops (args -> result; events ``start {pid}`` and ``data {stream}`` with the bytes as body):
  envd.start    cmd, args, envs, cwd, user, stdin, pty {cols, rows}, tag, deadline, sandbox_id
  envd.connect  pid | tag                      -> {"end": {...}} once it ends, or {"detached": true}
  envd.list     -> {"processes": [{pid, tag, config}]}
  envd.input    pid | tag, stream (stdin|pty), body = bytes
  envd.close_stdin, envd.signal (signal), envd.resize (cols, rows), envd.user (user)
"""

import os
import select
import signal
import subprocess
import threading
import time

from .. import threads
from ..errors import OpError

_table = {}  # pid -> Proc, while it runs
_lock = threading.Lock()
POLL = 0.25  # how often a following request checks whether its client went away
PTY_POLL = 0.1  # how often a pty's reader checks whether its process is gone
PTY_GRACE = 5.0  # how long a pty's output is read after its process is gone


def user_info(name=None):
    """(name, uid, gid, home) of ``name``, or of the agent's own user when None."""
    import pwd

    try:
        entry = pwd.getpwnam(name) if name else pwd.getpwuid(os.getuid())
    except KeyError:
        if name:
            raise OpError("Unauthenticated", "invalid user: %r does not exist in this sandbox's image" % name)
        return str(os.getuid()), os.getuid(), os.getgid(), os.environ.get("HOME") or "/"
    if name and entry.pw_uid != os.getuid() and os.getuid() != 0:
        raise OpError("PermissionDenied", "cannot run as %r: the sandbox's agent is not root" % name)
    return entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/"


def _user(req):
    name, uid, gid, home = user_info(req.args.get("user") or None)
    return {"name": name, "uid": uid, "gid": gid, "home": home}


def _switcher(name, uid, gid, pty):
    switch = uid != os.getuid()

    def preexec():
        if pty:  # the pty's slave (our stdin) becomes the new session's controlling terminal
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if switch:
            os.setgid(gid)
            os.initgroups(name, gid)
            os.setuid(uid)

    return preexec if (switch or pty) else None


def _winsize(fd, cols, rows):
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))


class Proc:
    def __init__(self, args):
        cmd = args.get("cmd")
        argv = args.get("args") or []
        if not isinstance(cmd, str) or not cmd or not all(isinstance(a, str) for a in argv):
            raise OpError("BadRequest", "process.cmd must be a non-empty string and args a list of strings")
        name, uid, gid, home = user_info(args.get("user") or None)
        env = dict(os.environ)
        env.update(HOME=home, USER=name, LOGNAME=name, E2B_SANDBOX="true")
        if args.get("sandbox_id"):
            env["E2B_SANDBOX_ID"] = str(args["sandbox_id"])
        env.update({str(k): str(v) for k, v in (args.get("envs") or {}).items()})
        cwd = args.get("cwd") or (home if os.path.isdir(home) else "/")
        if not os.path.isdir(cwd):
            raise OpError("BadRequest", "cwd %r does not exist or is not a directory" % cwd)
        self.config = {"cmd": cmd, "args": argv, "envs": args.get("envs") or {}, "cwd": cwd}
        self.tag = args.get("tag")
        self.subs = []
        self.end = None
        self.done = threading.Event()
        self.master = self.stdin = None
        pty = args.get("pty")
        preexec = _switcher(name, uid, gid, bool(pty))
        try:
            if pty:
                self.master, slave = os.openpty()
                _winsize(slave, pty.get("cols") or 80, pty.get("rows") or 24)
                try:
                    self.proc = subprocess.Popen([cmd] + argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                                 cwd=cwd, start_new_session=True, preexec_fn=preexec)
                finally:
                    os.close(slave)
                self.outputs = [("pty", self.master)]
            else:
                self.proc = subprocess.Popen([cmd] + argv, stdin=subprocess.PIPE if args.get("stdin") else
                                             subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             env=env, cwd=cwd, start_new_session=True, preexec_fn=preexec)
                self.stdin = self.proc.stdin
                self.outputs = [("stdout", self.proc.stdout.fileno()), ("stderr", self.proc.stderr.fileno())]
        except FileNotFoundError as exc:
            if self.master is not None:
                os.close(self.master)
            raise OpError("FileNotFound", "cannot run %r: %s" % (cmd, exc.strerror))
        self.pid = self.proc.pid
        self.deadline = args.get("deadline")
        self.expired = False  # killed by its deadline: the admin answers deadline_exceeded, as envd does
        self.write_lock = threading.Lock()

    def run(self):
        """Serve the process on one thread of its own: its outputs read, its deadline kept, its end
        taken (no thread per pipe, waiter and timer, and no wait for a thread's start)."""
        try:
            threads.spawn(self._serve)
        except RuntimeError:  # no room for a thread (the sandbox at its pids limit): served on this one
            self._serve()

    def _emit(self, event, fields, body=b""):
        for sub in list(self.subs):
            sub(event, fields, body)

    def _serve(self):
        streams = dict((fd, stream) for stream, fd in self.outputs)
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        deadline = None if not self.deadline else time.monotonic() + float(self.deadline)
        exited = None  # when a pty's process was seen gone (its slave may live on in a child)
        try:
            # Until every output's end: what it wrote is delivered before its end. A pty's master
            # may never see its end (a background child keeps the slave): there the process's exit
            # bounds the wait to PTY_GRACE seconds.
            while streams:
                wait = None if deadline is None else max(deadline - time.monotonic(), 0)
                if self.master is not None:
                    if exited is None and self.proc.poll() is not None:
                        exited = time.monotonic()
                    if exited is not None:
                        left = exited + PTY_GRACE - time.monotonic()
                        if left <= 0:
                            break
                        wait = left if wait is None else min(wait, left)
                    wait = PTY_POLL if wait is None else min(wait, PTY_POLL)
                ready = poller.poll(None if wait is None else wait * 1000)
                # Checked whether or not output came: a process that writes without pause is
                # still killed at its deadline.
                if deadline is not None and time.monotonic() >= deadline:
                    deadline = None
                    self._expire()
                for fd, _ in ready:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # a pty's master reads EIO once the last slave is closed
                        data = b""
                    if data:
                        self._emit("data", {"stream": streams[fd]}, data)
                    else:
                        poller.unregister(fd)
                        del streams[fd]
            code = self._reap(deadline)
        finally:
            self._close()
        self._ended(code)

    def _reap(self, deadline):
        """Its exit status. Its outputs may close before it exits: the deadline still holds. Waited
        for on a pidfd where the kernel has them (Popen.wait's timeout polls in sleeps)."""
        while deadline is not None:
            left = max(deadline - time.monotonic(), 0)
            try:
                pidfd = os.pidfd_open(self.pid)
            except (AttributeError, OSError):
                try:
                    return self.proc.wait(left)
                except subprocess.TimeoutExpired:
                    pass
            else:
                try:
                    waiter = select.poll()
                    waiter.register(pidfd, select.POLLIN)
                    exited = waiter.poll(left * 1000)
                finally:
                    os.close(pidfd)
                if exited:
                    break
            deadline = None
            self._expire()
        return self.proc.wait()

    def _close(self):
        for f in (self.proc.stdout, self.proc.stderr, self.stdin):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def _ended(self, code):
        if code >= 0:
            status = "exit status %d" % code
            self.end = {"exitCode": code, "exited": True, "status": status}
            if code:
                self.end["error"] = status
        else:  # killed by a signal: Go's ProcessState says -1, not exited, "signal: killed"
            name = {signal.SIGKILL: "killed", signal.SIGTERM: "terminated", signal.SIGINT: "interrupt",
                    signal.SIGHUP: "hangup"}.get(-code, "signal %d" % -code)
            self.end = {"exitCode": -1, "exited": False, "status": "signal: " + name, "error": "signal: " + name}
        if self.expired:
            self.end["expired"] = True
        with _lock:
            _table.pop(self.pid, None)
        self.done.set()

    def _expire(self):
        self.expired = True
        self.kill_group(signal.SIGKILL)

    def kill_group(self, sig):
        try:
            os.killpg(self.pid, sig)
        except OSError:
            try:
                os.kill(self.pid, sig)
            except OSError:
                pass

    def info(self):
        out = {"pid": self.pid, "config": self.config}
        if self.tag:
            out["tag"] = self.tag
        return out


def _find(args):
    pid, tag = args.get("pid"), args.get("tag")
    with _lock:
        if pid is not None:
            proc = _table.get(int(pid))
        else:
            proc = next((p for p in _table.values() if tag and p.tag == tag), None)
    if proc is None:
        raise OpError("NotFound", "process with %s not found" % ("pid %s" % pid if pid is not None else "tag %r" % tag))
    return proc


def _subscribe(req, proc):
    """Send ``proc``'s output events to ``req`` from now on."""
    def sub(event, fields, body):
        req.event(event, fields, body)

    proc.subs.append(sub)
    return sub


def _until_end(req, proc, sub):
    """Wait for the end, unless the client goes away first: then only unsubscribe, never kill."""
    try:
        while not proc.done.wait(POLL):
            if req.cancelled.is_set() or req.conn.closed:
                return {"detached": True}
        return {"end": proc.end}
    finally:
        try:
            proc.subs.remove(sub)
        except ValueError:
            pass


def start(req):
    proc = Proc(req.args)
    with _lock:
        _table[proc.pid] = proc
    sub = _subscribe(req, proc)
    req.event("start", {"pid": proc.pid})
    proc.run()
    return _until_end(req, proc, sub)


def connect(req):
    proc = _find(req.args)
    sub = _subscribe(req, proc)
    req.event("start", {"pid": proc.pid})
    if proc.done.is_set():  # it ended between the lookup and the subscription
        proc.subs.remove(sub)
        return {"end": proc.end}
    return _until_end(req, proc, sub)


def list_procs(req):
    with _lock:
        return {"processes": [p.info() for p in _table.values()]}


def send_input(req):
    proc = _find(req.args)
    data = req.body or b""
    with proc.write_lock:
        if proc.master is not None:
            os.write(proc.master, data)
        elif proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except BrokenPipeError:
                raise OpError("BadRequest", "process %d closed its stdin" % proc.pid)
        else:
            raise OpError("BadRequest", "process %d was started without stdin (or its stdin is closed)" % proc.pid)
    return {}


def close_stdin(req):
    proc = _find(req.args)
    with proc.write_lock:
        if proc.master is not None:
            os.write(proc.master, b"\x04")  # a pty has no separate stdin: EOF is ^D
        elif proc.stdin is not None:
            proc.stdin.close()
    return {}


def send_signal(req):
    proc = _find(req.args)
    sig = int(req.args.get("signal") or signal.SIGKILL)
    if sig not in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        raise OpError("BadRequest", "unsupported signal %d" % sig)
    proc.kill_group(sig)
    return {}


def resize(req):
    proc = _find(req.args)
    if proc.master is None:
        raise OpError("BadRequest", "process %d has no pty to resize" % proc.pid)
    _winsize(proc.master, req.args.get("cols") or 80, req.args.get("rows") or 24)
    return {}


OPS = {
    "envd.start": start,
    "envd.connect": connect,
    "envd.list": list_procs,
    "envd.input": send_input,
    "envd.close_stdin": close_stdin,
    "envd.signal": send_signal,
    "envd.resize": resize,
    "envd.user": _user,
}
