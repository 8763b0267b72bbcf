"""The agent's Unix-socket server: accepts the worker's connections and dispatches ops.

Threads, not asyncio: importing asyncio costs ~70 ms on a cold 2-core VM, and the
agent's start-up is on every sandbox's critical path. Ops marked ``INLINE`` never
block (they hand work to a session's own reader thread), so they run on the
connection's thread; everything else runs on a small pool of reusable threads.
"""

import _queue
import _socket
import sys

from . import fastos as os
from . import protocol, threads
from .deferred import DEFERRED
from .errors import OpError, from_os_error

VERSION = "1"


# Room for the most descriptors one message may carry (the kernel's SCM_MAX_FD).
_FDS_SPACE = _socket.CMSG_SPACE(253 * 4)


def close_fds(fds):
    """Close passed descriptors nobody took."""
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


class Request:
    """One client request: its arguments, payload, and the way to answer it."""

    __slots__ = ("conn", "id", "op", "args", "body", "cancelled", "_chunks", "done", "on_chunk")

    def __init__(self, conn, rid, op, args, body):
        self.conn = conn
        self.id = rid
        self.op = op
        self.args = args
        self.body = body
        self.cancelled = threads.Event()
        # Made here, not on first use: the connection's reader thread and the handler's thread
        # would race to create it and could end up on different queues.
        self._chunks = _queue.SimpleQueue()
        self.done = False
        # Set by a handler that takes each chunk on the connection's thread as it arrives (it
        # must not block); chunks() then yields only the end.
        self.on_chunk = None

    def event(self, name, fields=None, body=b""):
        """Send an event of this request before its end (streamed output, progress)."""
        meta = {"id": self.id, "event": name}
        if fields:
            meta.update(fields)
        self.conn.send(meta, body)

    def reply(self, result=None, body=b""):
        """End the request with ``result`` and ``body`` (only the first end is sent)."""
        if not self.done:
            self.done = True
            self.conn.finish(self.id)
            self.conn.send({"id": self.id, "ok": True, "result": result or {}}, body)

    def fail(self, type_, message):
        """End the request with error ``type_`` and ``message`` (only the first end is sent)."""
        if not self.done:
            self.done = True
            self.conn.finish(self.id)
            self.conn.send({"id": self.id, "ok": False, "error": {"type": type_, "message": message}})

    def chunks(self):
        """Iterate the payload the client streams after the request, until its eof."""
        while True:
            item = self._chunks.get()
            if item is None:
                return
            yield item


class Connection:
    """One client's connection (the worker's): frames in, requests dispatched, replies and events out under
    one lock."""

    def __init__(self, agent, sock):
        self.agent = agent
        self.sock = sock
        self.lock = threads.Lock()
        self.requests = {}
        self.closed = False
        # Descriptors the worker passed (SCM_RIGHTS), in order, until the request that names
        # them (its "fds": a count) takes them: they come with the first bytes of its frame.
        self.fds = []

    def send(self, meta, body=b""):
        """Send one frame (dropped once the connection is closed)."""
        data = protocol.encode(meta, body)
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def finish(self, rid):
        """Forget request ``rid`` (it has ended)."""
        self.requests.pop(rid, None)

    def serve(self):
        """Read frames until the client goes, dispatching each; the open requests are cancelled at the end."""
        reader = protocol.FrameReader()
        try:
            while True:
                # 64 KiB reads unless a large frame is arriving: a recv buffer above glibc's mmap
                # threshold (128 KiB) costs an mmap, an mremap and an munmap, for every small frame
                # too (a model call's answer), where the large read pays off only for bulk data.
                data, anc, _, _ = self.sock.recvmsg(min(max(reader.missing(), 64 << 10), 1 << 20), _FDS_SPACE,
                                                    _socket.MSG_CMSG_CLOEXEC)
                if anc:
                    self._take_fds(anc)
                if not data:
                    break
                for meta, body in reader.feed(data):
                    self.on_frame(meta, body)
        except (OSError, protocol.ProtocolError) as exc:
            sys.stderr.write("rock agent: connection dropped: %s\n" % exc)
        finally:
            self.closed = True
            self.agent.connections.discard(self)
            for req in list(self.requests.values()):
                req.cancelled.set()
                req._chunks.put(None)
            close_fds(self.fds)
            self.sock.close()

    def _take_fds(self, anc):
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                self.fds.extend(memoryview(data)[: len(data) - len(data) % 4].cast("i"))

    def on_frame(self, meta, body):
        """Handle one frame: a new request (dispatched), or a chunk or end of input for an open one."""
        rid = meta["id"]
        if "op" in meta:
            args = meta.get("args") or {}
            if "fds" in args:  # the count the worker passed with this frame, replaced by the descriptors
                count = args["fds"] if isinstance(args["fds"], int) else 0
                args["fds"], self.fds = self.fds[:count], self.fds[count:]
            req = Request(self, rid, meta["op"], args, body)
            self.requests[rid] = req
            self.agent.dispatch(req)
            return
        req = self.requests.get(rid)
        if req is None:
            return
        if meta.get("chunk"):
            if req.on_chunk is not None:
                req.on_chunk(body)
            else:
                req._chunks.put(body)
        elif meta.get("eof"):
            req._chunks.put(None)
        elif meta.get("cancel"):
            req.cancelled.set()
            req._chunks.put(None)


class Agent:
    """The agent's ops by name and how each runs (inline on the reading thread, or on the pool)."""

    def __init__(self):
        self.ops = {}
        self.inline = set()
        self.pool = threads.POOL  # the one pool every thread of the agent comes from
        self.connections = set()
        # Op prefix -> set once the thread loading those ops (load_aside) is done.
        self.loading = {}

    def notify(self, meta, body=b"", exclude=None):
        """An unsolicited notice (frame id 0, which clients never use) to every other open
        connection, i.e. the worker's: how code inside the sandbox (the ``rock model-service``
        command) asks the admin for something. Returns how many connections it went to."""
        sent = 0
        for conn in list(self.connections):
            if conn is not exclude and not conn.closed:
                conn.send(dict(meta, id=0), body)
                sent += 1
        return sent

    def register(self, module):
        """Add a module's ops (``OPS``) and which of them run inline (``INLINE``)."""
        self.ops.update(module.OPS)
        self.inline.update(getattr(module, "INLINE", ()))

    def dispatch(self, req):
        """Run the handler of ``req``'s op (loading its module on first use); an unknown op fails the
        request."""
        handler = self.ops.get(req.op) or self._load(req.op)
        if handler is None:
            req.fail("BadRequest", "unknown op %r" % req.op)
        elif req.op in self.inline:
            self.run(req, handler)
        else:
            self.pool.submit(self.run, (req, handler))

    def load_aside(self, prefix, load):
        """Run ``load(agent)``, which registers the ops named ``prefix...``, on a thread of its own;
        a request for one of them meanwhile waits for it rather than loading them another way."""
        self.loading[prefix] = threads.spawn_joinable(load, self)

    def _load(self, op):
        for prefix, loaded in list(self.loading.items()):
            if op.startswith(prefix):
                loaded.wait()
                if op in self.ops:
                    return self.ops[op]
        for prefix, name in LAZY_MODULES.items():
            if op.startswith(prefix):
                try:
                    module = __import__(__package__ + "." + name, fromlist=["OPS"])
                except ImportError:
                    return None
                self.register(module)
                return self.ops.get(op)
        return None

    def in_pool(self, req, handler):
        """From an inline handler: finish ``req`` with ``handler`` on a pool thread."""
        self.pool.submit(self.run, (req, handler))
        return DEFERRED

    @staticmethod
    def run(req, handler):
        """Run ``handler`` for ``req`` and reply with what it returns, or fail with its error (a deferred
        reply is sent later by the handler)."""
        try:
            out = handler(req)
            if out is DEFERRED:
                return
            result, body = out if isinstance(out, tuple) else (out, b"")
            req.reply(result, body)
        except OpError as exc:
            req.fail(exc.type, exc.message)
        except OSError as exc:
            err = from_os_error(exc)
            req.fail(err.type, err.message)
        except (KeyError, TypeError, ValueError) as exc:
            req.fail("BadRequest", "%s: %s" % (type(exc).__name__, exc))
        except Exception as exc:  # a bug in the agent must not kill the connection
            import traceback

            traceback.print_exc()
            req.fail("AgentError", "%s: %s" % (type(exc).__name__, exc))


def _ping(req):
    return {"pid": os.getpid(), "python": sys.version.split()[0], "version": VERSION}


# Op prefixes and the module that serves them, each loaded on first use (``sessions`` is loaded
# at start-up, beside the first request: see main), keeping a sandbox's start -> first output short.
LAZY_MODULES = {"session.": "sessions", "exec": "procs", "proc.": "procs", "file.": "files", "tar.": "files", "stats": "stats", "env.": "envhost.ops",
                 "tcp.": "tcprelay", "envd.": "e2b.process", "envdfs.": "e2b.filesystem",
                 "kernel.": "e2b.interpreter", "chat.": "chat.endpoint", "checkpoint.": "checkpoint",
                 "reset.": "reset"}


def build_agent():
    """The agent with the ops it serves from the start; the others load on first use."""
    agent = Agent()
    agent.ops["ping"] = _ping
    agent.inline.add("ping")
    return agent


def parse_args(argv):
    """The command line's options (``--socket``, ``--ready``)."""
    opts = {"socket": None, "ready": None}
    it = iter(argv)
    for arg in it:
        key = arg.lstrip("-")
        if key not in opts:
            raise SystemExit("rock agent: unknown argument %s" % arg)
        opts[key] = next(it)
    if not opts["socket"]:
        raise SystemExit("rock agent: --socket is required")
    return opts


def signal_ready(path, line=b"ready\n"):
    """Write the ready line (or another: ``quiet``) to the worker's FIFO.

    Normally the worker already holds the read end and a non-blocking open succeeds at once.
    If it does not yet (a slow ``docker start`` returns late), a side thread waits for it in a
    blocking open, so the signal is never lost.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        threads.spawn(_signal_ready_blocking, path, line)
        return
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _signal_ready_blocking(path, line):
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        sys.stderr.write("rock agent: could not signal readiness: %s\n" % exc)


def harden():
    """Limits the agent applies to itself and so to every process of the sandbox (inherited).

    ROCK_MAX_FILE_BYTES: no file grows past it (RLIMIT_FSIZE: the write fails with EFBIG).
    ROCK_AGENT_NONDUMPABLE=1: nothing in the sandbox may ptrace the agent or read its memory,
    though it runs as the same user (no Yama here). Where the agent's credentials changed on its
    way in (bwrap's zygote drops capabilities) the kernel made it non-dumpable already; where it
    is the container's first program (docker, gVisor) it sets it itself, after the ready signal:
    at once where rock_agent.libc is loaded already (gVisor's pids limit, bwrap's zygote), else
    in a thread, as loading it must not delay a start.
    ROCK_AGENT_MEMORY_LIMIT: a thread kills the sandbox's biggest process past it (rock_agent.oom)."""
    limit = os.environ.get("ROCK_MAX_FILE_BYTES")
    if limit and limit != "0":
        _limit_file_size(int(limit))
    if os.environ.get("ROCK_AGENT_NONDUMPABLE") == "1":
        if __package__ + ".libc" in sys.modules:
            _nondumpable()
        else:
            threads.spawn(_nondumpable)
    if os.environ.get("ROCK_AGENT_MERGE_MEMORY") == "1":
        from .merge import merge_later

        threads.spawn(merge_later)
    if os.environ.get("ROCK_AGENT_MEMORY_LIMIT"):
        from . import oom

        oom.start()


def _limit_file_size(limit):
    """RLIMIT_FSIZE at ``limit``: through rock_agent.libc where it is loaded already (gVisor's pids
    limit, bwrap's zygote), else through ``resource``, a C extension (3-4 ms to load under gVisor)."""
    libc = sys.modules.get(__package__ + ".libc")
    if libc is not None:
        libc.check("setrlimit", 1, libc.u64((limit, limit)), what="setrlimit RLIMIT_FSIZE")  # RLIMIT_FSIZE: 1
        return
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _nondumpable():
    from . import libc

    libc.call("prctl", 4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def main(argv):
    """Run the agent: serve on the socket, tell the worker it is ready, until the worker goes."""
    opts = parse_args(argv)
    # A launcher may have left SIGINT/SIGQUIT ignored (sh ignores them for `&` jobs), and an
    # ignored signal survives exec: Ctrl-C would then never reach commands in the sessions.
    import _signal

    for sig in (_signal.SIGINT, _signal.SIGQUIT):
        _signal.signal(sig, _signal.SIG_DFL)
    # gVisor's process limit, set before anything else runs, with the capabilities it needs
    # given up before the ready signal (rock_agent.pids); a failure ends the agent and the start.
    # Named here, not in pids, which only a limited agent imports (rock.runtime.agent_boot.PIDS_LIMIT_ENV).
    pids_limit = os.take("ROCK_AGENT_PIDS_LIMIT")
    if pids_limit:
        from . import pids

        pids.setup(pids_limit)
    from . import paths

    path = opts["socket"]
    paths.run_dir[0] = os.dirname(os.abspath(path))
    from . import checkpoint

    checkpoint.install()
    checkpoint.state["path"] = path
    listener = checkpoint.state["listener"] = _listen(path)
    # Ready as soon as the socket listens: the worker's own work after the signal, its connect
    # and its first request (queued in the backlog) overlap with loading the ops and starting
    # the spare bash below, instead of waiting for them.
    if opts["ready"]:
        signal_ready(opts["ready"])
    # The spare bash first (after the limits it inherits), spawned by its session's own thread:
    # its exec (0.4-2.4 ms in a sandbox's fresh overlay, the spawning thread blocked meanwhile)
    # and start-up then overlap with accepting the worker's connection, its session.create and
    # the first command's trip, instead of delaying them. Where the sessions are not loaded yet
    # (not forked from bwrap's zygote) they load on a thread of their own as well: 10-20 ms of
    # imports in a fresh gVisor sandbox, mostly waiting on its gofer, which the first request
    # need not wait for unless it is a session's (which waits for that thread: Agent.load_aside).
    harden()
    agent = build_agent()
    # Read once and dropped: it is the agent's, not an environment the sandbox's commands inherit.
    if os.take("ROCK_AGENT_PREWARM") == "process":
        threads.spawn(_prewarm_processes)  # no spare bash: this sandbox's commands are processes
    elif __package__ + ".sessions" in sys.modules:  # forked from bwrap's zygote, which loaded them
        _sessions_and_spare(agent)
    else:
        agent.load_aside("session.", _sessions_and_spare)
    agent.pool.prestart(2)
    while True:
        fd, _ = listener._accept()
        if checkpoint.quiet.is_set():  # woken by checkpoint.quiesce's own connection
            os.close(fd)
            listener = _make_way(agent, listener, path, opts["ready"])
            continue
        conn = Connection(agent, _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd))
        agent.connections.add(conn)
        threads.spawn(conn.serve)


def _sessions_and_spare(agent):
    """The sessions' ops, served once their spare bash is on its way (so the first session.create
    takes it, and never races it with a bash of its own)."""
    try:
        from . import sessions

        sessions.prewarm()
        agent.register(sessions)
    except Exception as exc:  # noqa: BLE001 - logged; a session op then tries the import again (Agent._load)
        sys.stderr.write("rock agent: could not load the sessions: %s\n" % exc)


def _prewarm_processes():
    """envd's process table loaded and the default user looked up (the name service's first
    lookup reads the image's nsswitch.conf and passwd) while the client is still on its way,
    instead of on its first Start."""
    try:
        from .e2b import process

        process.user_info()
    except Exception as exc:  # noqa: BLE001 - the first Start meets it again and reports it
        sys.stderr.write("rock agent: could not prewarm the process table: %s\n" % exc)


def _listen(path):
    return protocol.listen_unix(path, 128, os)


def _make_way(agent, listener, path, ready):
    """A checkpoint is coming (``checkpoint.quiesce``): no socket through the host left open, say
    so, wait for SIGUSR2, then listen again and say ready. Returns the new listener."""
    from . import checkpoint

    listener.close()
    checkpoint.wait_closed(agent)
    checkpoint.env_hosts("quiesce")
    checkpoint.drain_wake()
    if ready:
        signal_ready(ready, b"quiet\n")
    checkpoint.wait_for_wake()
    checkpoint.quiet.clear()
    listener = checkpoint.state["listener"] = _listen(path)
    checkpoint.env_hosts("listen")
    if ready:
        signal_ready(ready)
    return listener
