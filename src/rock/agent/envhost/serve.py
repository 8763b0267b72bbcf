"""The env host's serving loop: the agent's pipes and, with --socket, the worker's own connections.

A sibling of ``host.py``, loaded by path (see ``host._sibling``); standard library only.
"""

import os
import signal
import socket


def _die_with_parent():
    # If the agent dies, a host stuck in env code would never read EOF: let the kernel kill it.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _options(argv):
    opts = {"socket": None, "busy-fd": None}
    for key, value in zip(argv[::2], argv[1::2]):
        opts[key.lstrip("-")] = value
    return opts


class Peer:
    """A connection to the host: the agent's pipes, or a client on the host's own socket."""

    def __init__(self, rfd, wfd, protocol, sock=None):
        self.rfd, self.wfd, self.sock = rfd, wfd, sock
        self.reader = protocol.FrameReader()

    def send(self, data):
        """Write ``data`` to the peer, over its socket or its pipe."""
        if self.sock is not None:
            self.sock.sendall(data)
        else:
            _write_all(self.wfd, data)


# From the agent around a checkpoint of the whole sandbox (rock_agent.checkpoint): gVisor cannot
# save a socket bound or connected through the host, and ours is one. ``quiesce`` closes our
# listener and every client on it; ``listen`` binds again at the same path (in a restored
# sandbox, its own run folder). Clients (the worker) fall back to the agent and reconnect.
CHECKPOINT_OPS = ("quiesce", "listen")


def _listen(path, sel, protocol):
    import selectors

    listener = protocol.listen_unix(path, 64, os)
    sel.register(listener, selectors.EVENT_READ, None)
    return listener


def _drop(sel, clients, peer):
    clients.discard(peer)
    try:
        sel.unregister(peer.rfd)
    except (KeyError, ValueError):
        pass
    peer.sock.close()


def serve(argv, make_host, protocol, busy_size):
    """Answer the agent on stdin/stdout and, with --socket, the worker directly: the worker's
    reset/step/batch then skip a hop through the agent (one process wake-up less per step).
    ``make_host(busy)`` makes the env host; ``protocol`` is the agent's framing module."""
    opts = _options(argv)
    # Keep private copies of the pipes for the protocol; env code gets /dev/null and stderr.
    agent = Peer(os.dup(0), os.dup(1), protocol)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    try:  # before RngIsolation looks for it; every gem env needs it anyway
        import numpy  # noqa: F401
    except ImportError:
        pass
    busy = None
    if opts["busy-fd"] is not None:
        import mmap

        busy = mmap.mmap(int(opts["busy-fd"]), busy_size)
    host = make_host(busy)
    signal.signal(signal.SIGALRM, host.guard.on_alarm)
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(agent.rfd, selectors.EVENT_READ, agent)
    listener = _listen(opts["socket"], sel, protocol) if opts["socket"] else None
    clients = set()  # the peers on our socket: a checkpoint closes them (``quiesce``)
    agent.send(protocol.encode({"id": 0, "event": "ready", "pid": os.getpid(), "socket": opts["socket"]}))
    # Reads land in one buffer made once: os.read(fd, 1 MiB) allocated a fresh 1 MiB for each
    # (above malloc's mmap threshold: an mmap, a page fault, an mremap and a munmap per request).
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        for key, _ in sel.select():
            peer = key.data
            if peer is not agent and peer is not None and peer not in clients:
                continue  # closed by a quiesce earlier in this batch of events
            if peer is None:
                if listener is None:
                    continue
                fd, _ = listener._accept()  # a bare _socket (protocol.listen_unix): the fd, wrapped here
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
                client = Peer(conn.fileno(), conn.fileno(), protocol, conn)
                clients.add(client)
                sel.register(conn, selectors.EVENT_READ, client)
                continue
            try:
                data = bytes(view[:os.readv(peer.rfd, (buf,))])
            except OSError:
                data = b""
            if not data:
                if peer is agent:
                    return  # the agent is gone: so are we
                _drop(sel, clients, peer)
                continue
            try:
                for meta, body in peer.reader.feed(data):
                    if peer is agent and meta.get("op") in CHECKPOINT_OPS:
                        if meta["op"] == "quiesce":
                            for client in list(clients):
                                _drop(sel, clients, client)
                            if listener is not None:
                                sel.unregister(listener)
                                listener.close()
                                listener = None
                        elif opts["socket"] and listener is None:
                            listener = _listen(opts["socket"], sel, protocol)
                        peer.send(protocol.encode({"id": meta["id"], "ok": True, "result": {}}))
                        continue
                    peer.send(host.handle(meta, body))
            except (OSError, protocol.ProtocolError):
                if peer is agent:
                    return
                _drop(sel, clients, peer)
