"""One-shot commands and background processes.

They are started with ``posix_spawn`` and reaped by a thread of their own, without ``subprocess``
or ``threading``: importing those (re, enum, locale, selectors...) took 45-55 ms in a fresh gVisor
sandbox and ~5 ms under bwrap, paid by every sandbox's first command. Only a call that names a
working directory, which ``posix_spawn`` cannot set, loads ``subprocess``.
"""

import _signal
import time

from . import fastos as os, paths, protocol, threads
from .command import Output
from .errors import OpError, lookup

_procs = {}
_lock = threads.Lock()
_counter = [0]
# What subprocess's restore_signals gives a child: Python ignores SIGPIPE and SIGXFSZ, an ignored
# signal survives exec, and a shell cannot take it back (``yes | head`` would then never end on
# SIGPIPE). glibc's posix_spawn also leaves its own two internal signals (32, 33) ignored, as in
# the sessions' bash; a glibc program sets its handlers for them over that.
_DEFAULT_IN_CHILD = tuple(getattr(_signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(_signal, n))


class _Child:
    """A started process: its pid, and its exit code (``-signal`` if a signal ended it) once the
    thread that waits on it has reaped it. That thread is the only one to wait on the pid, so no
    two callers race for its status; it starts before the process does, so a sandbox at its
    process limit cannot leave the process unreaped."""

    __slots__ = ("pid", "returncode", "_spawned", "_exited", "_popen")

    def __init__(self, argv, env, cwd, stdin, stdout, stderr):
        self.pid = self.returncode = self._popen = None
        self._spawned, self._exited = threads.Event(), threads.Event()
        threads.spawn(self._reap)
        try:
            if cwd:  # posix_spawn cannot set it (glibc's addchdir is not in Python's os)
                import subprocess

                self._popen = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd,
                                               start_new_session=True)
                self.pid = self._popen.pid
            else:
                actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate((stdin, stdout, stderr))]
                self.pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setsid=True,
                                           setsigdef=_DEFAULT_IN_CHILD)
        finally:
            self._spawned.set()  # without a pid (the start failed) the thread ends

    def _reap(self):
        self._spawned.wait()
        if self.pid is None:
            return
        try:
            code = os.exit_code(os.waitpid(self.pid, 0)[1])
        except ChildProcessError:  # reaped elsewhere: its status is lost (subprocess says 0 too)
            code = 0
        self.returncode = code
        if self._popen is not None:  # so its own clean-up never waits on a pid that may be reused
            self._popen.returncode = code
        self._exited.set()

    def wait(self, timeout=None):
        """Whether it has exited within ``timeout`` seconds (None: until it does)."""
        return self._exited.wait(timeout)

    def kill_group(self, sig):
        """Signal its process group (its session's), unless it has been reaped (its pid may be reused)."""
        if self.returncode is None:
            try:
                os.killpg(self.pid, sig)
            except OSError:
                pass


def _argv(args):
    command = args["command"]
    if args.get("shell") or isinstance(command, str) and not args.get("argv"):
        if not isinstance(command, str):
            raise OpError("BadRequest", "a shell command must be a string")
        return ["/bin/sh", "-c", command] if not args.get("bash") else ["bash", "-c", command]
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise OpError("BadRequest", "command must be a non-empty list of strings or a shell string")
    return command


def _env(args):
    env = dict(os.environ)  # the agent's own, less what it took for itself (fastos.take)
    env.update({str(k): str(v) for k, v in (args.get("env") or {}).items()})
    return env


# What one execute keeps of each stream when the caller names no cap: the reply is one frame on
# the agent's connection, and 300 MB of output in one frame dropped that connection (and the
# caller's sandbox with it). Beyond the cap the middle is cut, with a marker the caller sees.
DEFAULT_EXEC_OUTPUT = 16 << 20


def _collect(pipe, output):
    """Read ``pipe`` to its end into ``output`` (an Output: head and tail under a cap)."""
    try:
        while True:
            data = pipe.read1(1 << 16)
            if not data:
                break
            output.add(data)
    except (OSError, ValueError):
        pass
    finally:
        pipe.close()


def _feed(pipe, data):
    try:
        if data:
            pipe.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass  # the command stopped reading its stdin: what it did not read is not an error
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def execute(req):
    """The ``exec`` op: run a command to its end with a timeout; stdout and stderr, each cut in the middle
    past ``max_output``, and the exit code."""
    a = req.args
    timeout = a.get("timeout")
    # each stream's text is at most 3x its bytes (a bad byte decodes to U+FFFD): two of them fit a frame's body
    cap = min(int(a.get("max_output") or DEFAULT_EXEC_OUTPUT), protocol.MAX_BODY // 8)
    argv = _argv(a)
    # The pipes' threads start before the command: a command that forks up to the sandbox's pids
    # limit (a fork bomb) would otherwise leave the agent no room for them ("can't start new thread").
    (out_r, out_w), (err_r, err_w), (in_r, in_w) = os.pipe(), os.pipe(), os.pipe()
    outputs = {"stdout": Output(cap), "stderr": Output(cap)}
    ended = []
    try:
        ended += [threads.spawn_joinable(_collect, open(out_r, "rb"), outputs["stdout"]),
                  threads.spawn_joinable(_collect, open(err_r, "rb"), outputs["stderr"]),
                  threads.spawn_joinable(_feed, open(in_w, "wb"), req.body)]
        child = _Child(argv, _env(a), a.get("cwd") or None, in_r, out_w, err_w)
    except FileNotFoundError as exc:
        raise OpError("FileNotFound", "cannot run %r: %s" % (a["command"], exc.strerror))
    finally:  # the command's ends: the threads see EOF (or EPIPE) once it exits, or at once if it never ran
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    timed_out = not child.wait(float(timeout) if timeout else None)
    if timed_out:
        child.kill_group(_signal.SIGKILL)
        child.wait()
    for thread_ended in ended:
        # a child that left the group still holding the pipes must not hold the reply forever
        thread_ended.wait(None if not timed_out else 5)
    # The text goes in the reply's body, not its JSON: escaping could grow it several times
    # (a NUL is six bytes of JSON) past what one frame's metadata may hold.
    out, err = outputs["stdout"].text().encode(), outputs["stderr"].text().encode()
    return {"stdout_bytes": len(out), "exit_code": child.returncode, "timed_out": timed_out,
            "truncated": any(o.dropped for o in outputs.values())}, out + err


class Background:
    """A background process and the files its stdout and stderr go to."""

    def __init__(self, proc_id, args):
        self.proc_id = proc_id
        logs = paths.private("procs")
        self.paths = {s: os.join(logs, "%s.%s" % (proc_id, s)) for s in ("stdout", "stderr")}
        fds = [os.open("/dev/null", os.O_RDONLY)]
        try:
            fds += [os.open(self.paths[s], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666) for s in ("stdout", "stderr")]
            self.child = _Child(_argv(args), _env(args), args.get("cwd") or None, *fds)
        finally:
            for fd in fds:
                os.close(fd)
        self.started = time.time()
        self.command = args["command"]

    def status(self):
        """Its id, pid, whether it runs, exit code, command and start time."""
        code = self.child.returncode
        return {"proc_id": self.proc_id, "pid": self.child.pid, "running": code is None, "exit_code": code,
                "command": self.command, "started": self.started}


def _get(proc_id):
    return lookup(_procs, proc_id, "NotFound", "no background process %r")


def start(req):
    """The ``proc.start`` op: start a background process (named, or numbered); its status."""
    with _lock:
        _counter[0] += 1
        proc_id = req.args.get("name") or "p%d" % _counter[0]
        if proc_id in _procs and _procs[proc_id].child.returncode is None:
            raise OpError("BadRequest", "a background process named %r is running" % proc_id)
    proc = Background(proc_id, req.args)
    _procs[proc_id] = proc
    return {"proc_id": proc_id, "pid": proc.child.pid}


def status(req):
    """The ``proc.status`` op."""
    return _get(req.args["proc_id"]).status()


def wait(req):
    """Block until the process exits or ``timeout`` passes; return its status either way."""
    proc = _get(req.args["proc_id"])
    timeout = req.args.get("timeout")
    proc.child.wait(float(timeout) if timeout is not None else None)
    return proc.status()


def output(req):
    """The ``proc.output`` op: a background process's output from ``offset``, the next offset and whether
    it runs."""
    proc = _get(req.args["proc_id"])
    stream = req.args.get("stream", "stdout")
    if stream not in proc.paths:
        raise OpError("BadRequest", "stream must be stdout or stderr")
    running = proc.child.returncode is None
    offset = int(req.args.get("offset") or 0)
    limit = int(req.args.get("length") or 8 << 20)
    with open(proc.paths[stream], "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    return {"next_offset": offset + len(data), "running": running}, data


def kill(req):
    """The ``proc.kill`` op: signal a background process's group."""
    proc = _get(req.args["proc_id"])
    proc.child.kill_group(int(req.args.get("signal") or _signal.SIGTERM))
    return {}


def list_procs(req):
    """The ``proc.list`` op: every background process's status."""
    return {"procs": [p.status() for _, p in sorted(_procs.items())]}


OPS = {
    "exec": execute,
    "proc.start": start,
    "proc.status": status,
    "proc.wait": wait,
    "proc.output": output,
    "proc.kill": kill,
    "proc.list": list_procs,
}
