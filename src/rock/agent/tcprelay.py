"""TCP relay: a connection to a port inside the sandbox, carried over the agent's socket.

This is how the admin reaches a server in a sandbox that has no network of its own (the
default): the agent, inside the sandbox's network namespace, connects to the port on
loopback and moves bytes both ways. Client -> server bytes arrive as the request's ``chunk``
frames (``eof`` half-closes); server -> client bytes leave as ``data`` events; a ``closed``
event says the server finished sending; the final reply comes once both directions are done.
"""

import _socket

from . import threads
from .errors import OpError

CONNECT_TIMEOUT = 10.0
READ_SIZE = 64 << 10


def _open(port, host):
    last = None
    for family, addr in ((_socket.AF_INET, host or "127.0.0.1"), (_socket.AF_INET6, host or "::1")):
        if host and family == _socket.AF_INET6 and ":" not in host:
            continue
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect((addr, port))
        except OSError as exc:
            sock.close()
            last = exc
            if host:
                break
            continue
        sock.settimeout(None)
        _nodelay(sock)
        return sock
    reason = getattr(last, "strerror", None) or str(last)
    raise OpError("ConnectionRefused", "nothing accepts connections on port %d inside the sandbox (%s)" % (port, reason))


# A server that writes an answer in two pieces without TCP_NODELAY (Python's http.server: headers,
# then body) holds the second piece until the first is acknowledged, and Linux delays that
# acknowledgement up to 40 ms: on a kept-alive connection every answer would wait that long. The
# relay acknowledges at once (quick-ack is one-shot in the kernel, so it is set again after each
# read) and sends its own pieces at once.
_QUICKACK = getattr(_socket, "TCP_QUICKACK", None)


def _nodelay(sock):
    try:
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    except OSError:
        pass


def _quickack(sock):
    if _QUICKACK is not None:
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass


def _connect(req):
    port = req.args.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise OpError("BadRequest", "port must be an integer from 1 to 65535, not %r" % (port,))
    host = req.args.get("host")
    sock = _open(port, host)
    req.event("connected")
    upstream_done = threads.Event()

    def pump():  # server -> client
        try:
            while True:
                data = sock.recv(READ_SIZE)
                if not data:
                    break
                _quickack(sock)
                req.event("data", None, data)
        except OSError:
            pass
        finally:
            req.event("closed")
            upstream_done.set()

    threads.spawn(pump)
    try:
        for chunk in req.chunks():  # client -> server, until the client's eof (or cancel)
            sock.sendall(chunk)
        if not req.cancelled.is_set():
            try:
                sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass
            upstream_done.wait()
    finally:
        try:
            sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    return {}


OPS = {"tcp.connect": _connect}
