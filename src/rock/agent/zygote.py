"""The agent's zygote: one agent, started and imported once on the host, that each bwrap
sandbox's agent is forked from.

Starting Python and importing the agent costs ~9 ms of every sandbox start (~7 ms for the
interpreter, ~2.5 ms for our modules), more than a third of it. The zygote pays that once.
bubblewrap still builds every sandbox (namespaces, root, mounts, cgroup, seccomp); what it
runs in it is a stub shell that says "up" on a FIFO and then waits for the agent.

As soon as bwrap has cloned the sandbox's first process, the worker asks the zygote for an
agent. The zygote forks it straight into the sandbox's pid namespace; the child joins the
sandbox's cgroup and prepares while bwrap is still at work, waits for the stub's "up", then
enters the other namespaces and the root the way ``nsenter`` does, and gives up what the
sandbox's own processes do not have (the same capabilities, no new privileges, the same
seccomp filter) before it becomes the agent.

The agent holds the stub's second FIFO open for writing; when the agent exits, the stub reads
EOF and exits, bwrap follows, and the sandbox ends exactly as when the agent was bwrap's command.

Protocol with the worker, one JSON object per line: requests on stdin
``{"id", "pid", "join", "env", "log", "up", "hold", "socket", "ready", "lib", "caps", "seccomp"}``
(``pid``: bwrap's first process in the sandbox; ``join``: cgroup files to write 0 into; ``up``:
host path of the stub's FIFO; ``seccomp``: the filter as hex), answers on stdout ``{"id", "pid"}``
or ``{"id", "error"}``. The zygote exits when stdin closes; sandboxes do not depend on it.

It also launches bwrap itself (``{"op": "launch", ...}``, see ``launch``): it mounts the
sandbox's root in a mount namespace made for that sandbox and spawns the sandbox's bwrap into it,
so the host's mount table never holds the root, and the worker's event loop neither mounts nor forks.

Runs on the host as root, single-threaded (it forks), standard library only.
"""

import ctypes
import errno
import fcntl
import json
import os
import signal
import sys

_libc = ctypes.CDLL(None, use_errno=True)
# setns order: the mount namespace last (it needs CAP_SYS_ADMIN in ours). The pid namespace
# only applies to children: the zygote takes it just for the fork.
NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt")
CLONE_NEWPID = 0x20000000
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def enter(req):
    """Take the sandbox's namespaces (but pid, taken at fork) and root; after its stub's "up"."""
    proc = "/proc/%d/" % req["pid"]
    fds = [(os.open(proc + "ns/" + ns, os.O_RDONLY | os.O_CLOEXEC), ns) for ns in NAMESPACES
           if ns != "pid" and os.path.exists(proc + "ns/" + ns)]
    # bwrap is still building the sandbox: its stub says "up" on this FIFO when it is done.
    up = os.open(req["up"], os.O_RDONLY | os.O_CLOEXEC)
    os.read(up, 16)
    os.close(up)
    root = os.open(proc + "root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for fd, ns in fds:
        _check(_libc.setns(fd, 0), "setns " + ns)
        os.close(fd)
    # The mount namespace's root is not necessarily the sandbox's root: take the process's.
    os.fchdir(root)
    os.chroot(".")
    os.chdir("/")
    os.close(root)


def confine(req):
    """Give up what the sandbox's own processes do not have. Irreversible; seccomp last."""
    caps = req["caps"]
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = data[0].inheritable = caps & 0xFFFFFFFF
    data[1].effective = data[1].permitted = data[1].inheritable = caps >> 32
    _check(_libc.capset(ctypes.byref(_CapHeader(CAP_VERSION_3, 0)), data), "capset")
    for cap in range(64):
        if caps >> cap & 1:  # ambient, as bwrap sets them: they survive exec
            _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "ambient cap %d" % cap)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    # This process is a copy of the zygote, whose freed memory may still hold other sandboxes'
    # requests: nothing in the sandbox may read it (/proc/<pid>/mem, environ, ptrace). The
    # programs the agent starts are dumpable again after their exec, as usual.
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
    if req.get("seccomp"):
        program = bytes.fromhex(req["seccomp"])
        buf = ctypes.create_string_buffer(program, len(program))
        prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def move_to(files):
    """Move this thread (the whole process: it is single-threaded) into the cgroups whose files
    (``tasks`` on v1, ``cgroup.procs`` on v2) are ``files``."""
    for path in files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def log_and_join(req):
    """A child's first steps: output to the sandbox's log, no input, and into the sandbox's
    cgroup, so that everything from here on is accounted to it."""
    log_fd = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    move_to(req["join"])


# (name, module) of the package's subpackages preloaded here (e2b), set by main: their __path__
# moves to the sandbox's copy in each agent, as the package's own does.
_SUBPACKAGES = []


def become_agent(req, package):
    """In the zygote's child, already in the sandbox's pid namespace: the rest, then the agent."""
    log_and_join(req)
    os.setsid()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(req["env"])
    from . import fastos

    fastos.environ.clear()
    fastos.environ.update(req["env"])
    enter(req)
    confine(req)
    # Held for life and never inherited: the stub waits on it, so the sandbox ends with us.
    hold = os.open(req["hold"], os.O_WRONLY | os.O_CLOEXEC)
    os.closerange(3, hold)
    os.closerange(hold + 1, 1 << 20)
    # Modules not loaded yet (files, procs, envs...) load from the sandbox's copy of the package.
    package.__path__[:] = [req["lib"]]
    for name, module in _SUBPACKAGES:  # and those of its subpackages preloaded (e2b)
        module.__path__[:] = [os.path.join(req["lib"], *name.split(".")[1:])]
    sys.path[0] = os.path.dirname(req["lib"])
    from . import server

    server.main(["--socket", req["socket"], "--ready", req["ready"]])


def prepare_root(req):
    """In the zygote, in the mount namespace just made for one sandbox: its mounts private, its
    overlay root mounted, and every host mount bwrap does not build from detached."""
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    root = req["root"]
    for d in (root["upper"], root["work"], root["merged"]):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            pass
    # Overlay options cannot quote ',' or ':'; a path through an open fd has neither.
    # "layers": the read-only layers a sandbox started from a snapshot stands on, top first.
    lowers = [*root.get("layers", ()), root["lower"]]
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in (*lowers, root["upper"], root["work"])]
    try:
        options = "lowerdir=%s,upperdir=/proc/self/fd/%d,workdir=/proc/self/fd/%d" % (
            ":".join("/proc/self/fd/%d" % fd for fd in fds[:-2]), fds[-2], fds[-1])
        _check(_libc.mount(b"overlay", root["merged"].encode(), b"overlay", 0, options.encode()), "mount the root")
    finally:
        for fd in fds:
            os.close(fd)
    keep = req.get("keep")
    if keep:  # bwrap's CPU grows with every mount it sees (mounttrim): only what it builds from
        from . import mounttrim  # preloaded by main

        try:
            mounttrim.trim(keep["needed"], keep["recursive"])
        except (OSError, ValueError) as exc:  # slower, not wrong: bwrap still finds all it needs
            sys.stderr.write("rock zygote: the host's mounts were not trimmed for bwrap (%s): %s\n"
                             % (root["merged"], exc))


def _high(fd):
    """``fd`` moved to 100 or above (close-on-exec), clear of the numbers bwrap's argv names."""
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    finally:
        os.close(fd)


def spawn_bwrap(req):
    """Start the sandbox's bwrap (``req["argv"]``) in the sandbox's cgroup, with the sandbox's log as
    its output and its fds at the numbers its argv names; its pid.

    ``posix_spawn`` (a vfork): nothing of the zygote is copied, as a fork would (its page tables,
    then a copy-on-write fault for each page the child touched, then the copy's unmapping at exec).
    A child is born in its parent's cgroups, so the zygote steps into the sandbox's for the spawn
    (``req["join"]``) and back into its own (``req["home"]``) after it: two writes per hierarchy
    where a shell in between (join, start bwrap, wait) cost an exec and a process per sandbox.
    """
    given = []
    try:
        if req.get("seccomp"):
            r, w = os.pipe()
            os.write(w, bytes.fromhex(req["seccomp"]))
            os.close(w)
            given.append((_high(r), req["seccomp_fd"]))
        if req.get("info"):
            given.append((_high(os.open(req["info"], os.O_RDWR | os.O_CLOEXEC)), req["info_fd"]))
        actions = [(os.POSIX_SPAWN_OPEN, 1, req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
                   (os.POSIX_SPAWN_DUP2, 1, 2),
                   (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]
        actions += [(os.POSIX_SPAWN_DUP2, src, dst) for src, dst in given]  # inheritable: bwrap gets them
        join, home = req.get("join") or [], req.get("home") or []
        if join and not home:
            raise OSError(errno.EINVAL, "the worker named no cgroups to go back to after the sandbox's")
        try:
            move_to(join)
            # Its own session (a worker restart does not touch it; the worker kills the group), and
            # the signals the zygote ignores back to their defaults (an ignored SIGCHLD survives exec).
            return os.posix_spawn(req["argv"][0], req["argv"], dict(os.environ), file_actions=actions,
                                  setsid=True, setsigdef=(signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP))
        finally:
            if join:
                _go_home(home)
    finally:
        for fd, _ in given:
            os.close(fd)


def _go_home(files):
    """Back into the zygote's own cgroups. A zygote left in a sandbox's would be killed with it and
    count as its process: it exits instead, and the worker starts a new one for the next sandbox."""
    try:
        move_to(files)
    except OSError as exc:
        sys.stderr.write("rock zygote: cannot go back to its own cgroups: %s\n" % exc)
        os._exit(70)


def launch(req, out_fd, own_mnt_ns):
    """Start a sandbox's bwrap in a mount namespace of its own, holding the sandbox's root.

    The zygote makes that namespace itself (``unshare``), prepares it (``prepare_root``), spawns
    bwrap into it and goes back to its own namespace: bwrap keeps the new one alive, and the
    kernel drops it, overlay and all, with the sandbox's last process.
    """
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    except OSError as exc:
        _reply(out_fd, _failed(req, exc))
        return
    try:
        prepare_root(req)
        answer = {"id": req.get("id"), "pid": spawn_bwrap(req)}
    except Exception as exc:  # noqa: BLE001 - the worker's request fails, the zygote goes on
        answer = _failed(req, exc)
    finally:
        if _libc.setns(own_mnt_ns, CLONE_NEWNS) != 0:
            # A zygote left in a sandbox's namespace would build every later sandbox in it: it
            # exits instead, and the worker starts a new one for the next sandbox.
            sys.stderr.write("rock zygote: cannot go back to its own mount namespace: %s\n"
                             % os.strerror(ctypes.get_errno()))
            os._exit(70)
    _reply(out_fd, answer)


def _forked(req, out_fd, fork):
    """Fork with ``fork``: the zygote answers the worker with the child's pid (or why there is
    none) and goes on with False; the child gets True."""
    try:
        pid = fork()
    except OSError as exc:
        _reply(out_fd, _failed(req, exc))
        return False
    if pid:
        _reply(out_fd, {"id": req.get("id"), "pid": pid})
        return False
    return True


def _child(what, code, fn, *args):
    """Run a forked child's work; it never returns to the zygote's loop. Failures go to the
    sandbox's log (its stderr by then), whose tail the worker shows."""
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - reported, then the child ends
        sys.stderr.write("%s: %s: %s\n" % (what, type(exc).__name__, exc))
        sys.stderr.flush()
    os._exit(code)


def _failed(req, exc):
    """The answer to ``req`` when ``exc`` stopped it."""
    return {"id": req.get("id"), "error": "%s: %s" % (type(exc).__name__, exc)}


def _reply(out_fd, message):
    os.write(out_fd, (json.dumps(message) + "\n").encode())


def spawn(req, out_fd, own_pid_ns, package):
    """Fork the sandbox's agent straight into its pid namespace; the zygote does not wait.

    Sent as soon as bwrap has cloned the sandbox's first process: the child does its share
    while bwrap is still building the sandbox, and waits for the stub's "up" to enter it.
    """
    def fork_into_sandbox():
        target = os.open("/proc/%d/ns/pid" % req["pid"], os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(target, CLONE_NEWPID), "setns pid")
        finally:
            os.close(target)
        pid = -1  # a failed fork leaves it so: the zygote goes back to its own namespace all the same
        try:
            pid = os.fork()
            return pid
        finally:
            if pid != 0:  # the zygote's own children are born in its own pid namespace again
                _libc.setns(own_pid_ns, CLONE_NEWPID)

    if _forked(req, out_fd, fork_into_sandbox):
        _child("rock agent: could not start in the sandbox", 1, become_agent, req, package)


def main(package):
    # Warm exactly what a sandbox's start runs: the server, the sessions and bash, the calls the
    # server makes on itself (libc: its file size limit), its checkpoint signal (checkpoint), the
    # KSM offer it schedules (merge), and the launch's mount trimming (mounttrim). A module missing
    # here is read and unmarshalled from the sandbox's copy of the package at every start.
    from . import bash, checkpoint, libc, merge, mounttrim, server, sessions  # noqa: F401
    # envd's process table too (with subprocess and pwd): an E2B client's first commands.run
    # would import them inside the new sandbox, on its create -> first output path.
    from .e2b import process  # noqa: F401

    # Listed once here: walking sys.modules in every child touched (copied) a page per module.
    _SUBPACKAGES[:] = [(name, module) for name, module in sys.modules.items()
                       if name.startswith(package.__name__ + ".") and hasattr(module, "__path__")]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    own_mnt_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the replies
    _reply(out_fd, {"ready": True, "pid": os.getpid()})
    buf = b""
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                req = json.loads(line)
            except ValueError as exc:
                _reply(out_fd, {"error": "bad request: %s" % exc})
                continue
            if req.get("op") == "launch":
                launch(req, out_fd, own_mnt_ns)
            else:
                spawn(req, out_fd, own_pid_ns, package)


if __name__ == "__main__":
    # Imported as a package by its directory name, like boot.py, so relative imports work.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    pkg = __import__(os.path.basename(here) + ".zygote")
    pkg.zygote.main(pkg)
