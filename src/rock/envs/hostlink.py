"""The admin's own connection to an env host (``agent/envhost/host.py`` listens on a socket beside the
agent's): reset, step and batch go there straight, skipping the agent.

Leaner than the worker's ``AgentClient`` for this one job, because it is the per-step path:
a reply that arrives in one read is sliced out of it once, and a call that is the only one in
flight may wait for its reply by polling the socket for a short while instead of returning to
the event loop. Measured on this kind of VM (2 vCPUs), waking an idle vCPU for the reply costs
~35 us, more than a simple game's step and its framing together; polling keeps the admin's vCPU
awake for the few tens of microseconds the host needs. With other env calls in flight it never
polls, and a poll gives up after ``POLL_S``: the price is that a request of another kind (a
sandbox command) arriving meanwhile may wait up to that long, and a slow env's call costs the
admin that much CPU.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time

from rock.agent import protocol
from rock.errors import AgentGone
from rock.runtime.peer import check_peer
from rock.worker.agent_client import _error as agent_error

POLL_S = 0.0003  # long enough for a host that has to wake up and step a simple game


class HostLink:
    """The admin's connection to one env host's socket: calls are framed, several may be in flight, and the replies
    are matched by id. Made with ``connect``; a broken connection fails every waiting call with AgentGone."""

    in_flight = 0  # calls awaiting a reply on any link of this process

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop):
        self.sock, self.loop = sock, loop
        self.calls: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.reader = protocol.FrameReader()
        self.wbuf = bytearray()  # what the socket did not take yet
        self.closed = False
        loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def connect(cls, path: str, handle=None) -> "HostLink":
        """``handle``: the sandbox's RuntimeHandle; the process answering must be inside it."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, path)
            if handle is not None:
                check_peer(sock, handle)
        except OSError as exc:
            sock.close()
            raise AgentGone(f"cannot reach the env host at {path}: {exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        return cls(sock, loop)

    async def call(self, op: str, args: dict, poll: bool = False, body: bytes = b"") -> bytes:
        """``op`` on the host; returns the reply body. ``poll``: see the module docstring."""
        if self.closed:
            raise AgentGone("the connection to the env host is closed")
        rid = next(self.ids)
        future = self.loop.create_future()
        self.calls[rid] = future
        HostLink.in_flight += 1
        try:
            self._send(protocol.encode({"id": rid, "op": op, "args": args}, body))
            if poll and HostLink.in_flight == 1 and not self.wbuf:
                self._poll(future)
            return await future
        finally:
            HostLink.in_flight -= 1
            self.calls.pop(rid, None)

    def close(self) -> None:
        """Drop the connection: every call still waiting fails with AgentGone, and later calls do too."""
        self._lost(AgentGone("the connection to the env host was closed"))

    # -- sending ---------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if not self.wbuf:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(AgentGone(f"the env host went away: {exc}"))
                raise AgentGone("the env host went away") from None
            if sent == len(data):
                return
            data = data[sent:]
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self.wbuf += data

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.wbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(AgentGone(f"the env host went away: {exc}"))
            return
        del self.wbuf[:sent]
        if not self.wbuf:
            self.loop.remove_writer(self.sock.fileno())

    # -- receiving -------------------------------------------------------------------------

    def _poll(self, future: asyncio.Future) -> None:
        deadline = time.perf_counter() + POLL_S
        recv = self.sock.recv
        while not future.done() and time.perf_counter() < deadline:
            try:
                data = recv(1 << 20)
            except BlockingIOError:
                os.sched_yield()  # the host may have been woken on this very vCPU
                continue
            except OSError:
                return  # the reader sees it too and fails the calls
            if not data:
                self._lost(AgentGone("the env host went away (its sandbox stopped or the host died)"))
                return
            self._feed(data)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(AgentGone(f"the env host went away: {exc}"))
            return
        if not data:
            self._lost(AgentGone("the env host went away (its sandbox stopped or the host died)"))
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except protocol.ProtocolError as exc:
            for meta, body in exc.frames:  # the replies that came before the bad frame still count
                self._deliver(meta, body)
            self._lost(AgentGone(f"the env host sent a bad frame: {exc}"))
            return
        for meta, body in frames:
            self._deliver(meta, body)

    def _deliver(self, meta: dict, body: bytes) -> None:
        future = self.calls.get(meta["id"])
        if future is None or future.done() or "event" in meta:
            return
        if meta.get("ok"):
            future.set_result(body)
        else:
            future.set_exception(agent_error(meta.get("error") or {}))

    def _lost(self, exc: Exception) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            if self.wbuf:
                self.loop.remove_writer(self.sock.fileno())
            self.sock.close()
        for future in self.calls.values():
            if not future.done():
                future.set_exception(exc)


class HostLinks:
    """The admin's direct links to the env hosts of its env sandboxes, at most one a sandbox, by
    sandbox id. A sandbox without one (its host side out of reach: a remote worker's, or a socket
    path too long for AF_UNIX) is called through its agent instead; that is the caller's fallback.

    ``runtime_handle(sandbox_id)`` gives the sandbox's runtime handle (its run folder on the host,
    and what the peer check compares the host's process with); it raises where there is none."""

    def __init__(self, runtime_handle):
        self._runtime_handle = runtime_handle
        self._links: dict[str, tuple[str, HostLink]] = {}  # sandbox id -> (socket in the sandbox, link)

    def get(self, sandbox_id: str) -> HostLink | None:
        """The sandbox's open link, or None."""
        known = self._links.get(sandbox_id)
        return known[1] if known is not None and not known[1].closed else None

    async def connect(self, sandbox_id: str, socket_in_sandbox: str) -> None:
        """Open (or keep) the link to the sandbox's env host listening at ``socket_in_sandbox`` (a
        path in the sandbox's /.rock/run); nothing where the host side cannot be reached."""
        known = self._links.get(sandbox_id)
        if known is not None and known[0] == socket_in_sandbox and not known[1].closed:
            return
        try:
            handle = self._runtime_handle(sandbox_id)
        except Exception:  # noqa: BLE001 - no host path (e.g. a remote worker): calls go through the agent
            return
        path = os.path.join(handle.run_dir, os.path.basename(socket_in_sandbox))
        if len(path) >= 108:  # AF_UNIX's limit
            return
        try:
            link = await HostLink.connect(path, handle)
        except AgentGone:
            return
        if known is not None:
            known[1].close()
        self._links[sandbox_id] = (socket_in_sandbox, link)

    def drop(self, sandbox_id: str) -> None:
        """Close the sandbox's link, if any (the sandbox went, its host died, or its socket was
        closed for a checkpoint)."""
        if (known := self._links.pop(sandbox_id, None)) is not None:
            known[1].close()

    def close(self) -> None:
        """Close every link (the service's shutdown)."""
        for _, link in self._links.values():
            link.close()
        self._links.clear()

