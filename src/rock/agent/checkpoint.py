"""Making way for a checkpoint of the whole sandbox (gVisor's ``runsc checkpoint``), and back.

gVisor cannot save a socket bound or connected through the host, and the agent's socket is one
(the worker reaches it from outside). So on ``checkpoint.quiesce`` the agent answers, closes its
listening socket and every connection, and says ``quiet`` on the ready FIFO; its main thread then
waits for SIGUSR2. The worker checkpoints the sandbox and sends SIGUSR2 to its first process (the
agent) in the sandbox it left running and in each sandbox restored from the image: there the agent
listens again at the same path (the new sandbox's own run folder) and says ``ready``.
Env hosts have a socket of their own beside the agent's: the agent has each close it (and its
clients) before it says ``quiet`` and listen again after SIGUSR2 (``env_hosts``).
Everything else (sessions, processes, memory) is inside the sandbox and is saved as it stands.
"""

import _signal
import time

from . import fastos as os
from . import threads
from .deferred import DEFERRED

# What the main thread's accept loop and this module share: the listening socket, and set while
# the agent has made way (the accept loop's error then means "wait for SIGUSR2", not a failure).
state = {"listener": None, "path": None}
quiet = threads.Event()
_wake = []


def install():
    """At start-up, on the main thread: SIGUSR2 wakes ``wait_for_wake`` (its default would kill).

    Also the interpreter's wakeup fd: a signal sent to the process may be taken by any of its
    threads, and Python runs the handler only on the main thread, once it runs again; blocked
    in ``wait_for_wake``'s read, it would miss such a signal (until the worker repeats it). The
    C-level handler writes the signal's number to the wakeup fd from whichever thread took it."""
    r, w = os.pipe()
    os.set_blocking(w, False)  # as set_wakeup_fd requires
    _wake[:] = [r, w]

    def on_usr2(signum, frame):
        try:
            os.write(w, b"x")
        except OSError:
            pass

    _signal.signal(_signal.SIGUSR2, on_usr2)
    _signal.set_wakeup_fd(w)


def drain_wake():
    """Forget SIGUSR2s from before (a worker may repeat one it thinks was lost)."""
    import fcntl

    fd = _wake[0]
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def wait_for_wake():
    """Block the main thread until SIGUSR2 (the wakeup fd's byte or its handler's ``x``; another
    signal's number, written there too, does not count)."""
    usr2 = bytes([_signal.SIGUSR2])
    while True:
        got = os.read(_wake[0], 64)
        if b"x" in got or usr2 in got:
            return


def _quiesce(req):
    agent = req.conn.agent
    quiet.set()
    req.reply({"quiet": True})
    threads.spawn(_close_all, agent)
    return DEFERRED


def _close_all(agent):
    import _socket

    # Wake the accept loop with a connection of our own (gVisor does not wake an accept blocked on
    # a host socket that is shut down); seeing ``quiet`` set, it closes the listener.
    try:
        waker = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        waker.connect(state["path"])
        waker.close()
    except OSError:
        pass
    for conn in list(agent.connections):
        try:
            conn.sock.shutdown(_socket.SHUT_RDWR)  # its reader ends and closes the socket
        except OSError:
            pass


def wait_closed(agent, timeout=10.0):
    """Until every connection's socket is closed (each reader thread closes its own)."""
    deadline = time.monotonic() + timeout
    while agent.connections and time.monotonic() < deadline:
        time.sleep(0.001)


def env_hosts(op):
    """``quiesce`` (before the checkpoint) or ``listen`` (after SIGUSR2) to every env host this
    agent runs: each has a socket of its own beside ours (rock_agent.envhost.serve)."""
    import sys

    ops = sys.modules.get(__package__ + ".envhost.ops")  # loaded on the first env op only
    if ops is None:
        return
    for host in [h for h in list(ops._hosts.values()) if h.alive]:
        try:
            host.call(op, {}, timeout=30)
        except Exception:  # noqa: BLE001 - a dead or stuck host: the checkpoint says so if it matters
            pass


OPS = {"checkpoint.quiesce": _quiesce}
