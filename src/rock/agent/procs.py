"""One-shot commands and background processes."""

import os
import signal
import subprocess
import threading
import time

from . import paths, protocol
from .command import Output
from .errors import OpError, lookup

_procs = {}
_lock = threading.Lock()
_counter = [0]


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
    env = dict(os.environ)
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
    threads = [threading.Thread(target=_collect, args=(os.fdopen(out_r, "rb"), outputs["stdout"]), daemon=True),
               threading.Thread(target=_collect, args=(os.fdopen(err_r, "rb"), outputs["stderr"]), daemon=True),
               threading.Thread(target=_feed, args=(os.fdopen(in_w, "wb"), req.body), daemon=True)]
    try:
        for t in threads:
            t.start()
        proc = subprocess.Popen(argv, stdin=in_r, stdout=out_w, stderr=err_w, env=_env(a), cwd=a.get("cwd") or None,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise OpError("FileNotFound", "cannot run %r: %s" % (a["command"], exc.strerror))
    finally:  # the command's ends: the threads see EOF (or EPIPE) once it exits, or at once if it never ran
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    timed_out = False
    try:
        proc.wait(float(timeout) if timeout else None)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
    for t in threads:
        # a child that left the group still holding the pipes must not hold the reply forever
        t.join(None if not timed_out else 5)
    # The text goes in the reply's body, not its JSON: escaping could grow it several times
    # (a NUL is six bytes of JSON) past what one frame's metadata may hold.
    out, err = outputs["stdout"].text().encode(), outputs["stderr"].text().encode()
    return {"stdout_bytes": len(out), "exit_code": proc.returncode, "timed_out": timed_out,
            "truncated": any(o.dropped for o in outputs.values())}, out + err


def _kill_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


class Background:
    """A background process and the files its stdout and stderr go to."""

    def __init__(self, proc_id, args):
        self.proc_id = proc_id
        logs = paths.private("procs")
        self.paths = {s: os.path.join(logs, "%s.%s" % (proc_id, s)) for s in ("stdout", "stderr")}
        with open(self.paths["stdout"], "wb") as out, open(self.paths["stderr"], "wb") as err:
            self.proc = subprocess.Popen(
                _argv(args), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=_env(args), cwd=args.get("cwd") or None, start_new_session=True,
            )
        self.started = time.time()
        self.command = args["command"]

    def status(self):
        """Its id, pid, whether it runs, exit code, command and start time."""
        code = self.proc.poll()
        return {"proc_id": self.proc_id, "pid": self.proc.pid, "running": code is None, "exit_code": code,
                "command": self.command, "started": self.started}


def _get(proc_id):
    return lookup(_procs, proc_id, "NotFound", "no background process %r")


def start(req):
    """The ``proc.start`` op: start a background process (named, or numbered); its status."""
    with _lock:
        _counter[0] += 1
        proc_id = req.args.get("name") or "p%d" % _counter[0]
        if proc_id in _procs and _procs[proc_id].proc.poll() is None:
            raise OpError("BadRequest", "a background process named %r is running" % proc_id)
    proc = Background(proc_id, req.args)
    _procs[proc_id] = proc
    return {"proc_id": proc_id, "pid": proc.proc.pid}


def status(req):
    """The ``proc.status`` op."""
    return _get(req.args["proc_id"]).status()


def wait(req):
    """Block until the process exits or ``timeout`` passes; return its status either way."""
    proc = _get(req.args["proc_id"])
    timeout = req.args.get("timeout")
    try:
        proc.proc.wait(float(timeout) if timeout is not None else None)
    except subprocess.TimeoutExpired:
        pass
    return proc.status()


def output(req):
    """The ``proc.output`` op: a background process's output from ``offset``, the next offset and whether
    it runs."""
    proc = _get(req.args["proc_id"])
    stream = req.args.get("stream", "stdout")
    if stream not in proc.paths:
        raise OpError("BadRequest", "stream must be stdout or stderr")
    running = proc.proc.poll() is None
    offset = int(req.args.get("offset") or 0)
    limit = int(req.args.get("length") or 8 << 20)
    with open(proc.paths[stream], "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    return {"next_offset": offset + len(data), "running": running}, data


def kill(req):
    """The ``proc.kill`` op: signal a background process's group."""
    proc = _get(req.args["proc_id"])
    _kill_group(proc.proc.pid, int(req.args.get("signal") or signal.SIGTERM))
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
