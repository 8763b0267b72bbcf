"""The sandbox's OpenAI-compatible model endpoint, on loopback inside the sandbox.

``chat.serve`` (from the admin) binds the port and holds the request open for as long as the
endpoint lives: each chat call made inside the sandbox leaves as a ``call`` event (body: the
request's JSON, untouched) and waits; the admin's answer comes back as a ``chunk`` on the same
request. The sandbox needs no network: the calls cross the agent's socket, and the sandbox
reaches its policy and nothing else. Nothing is recorded here: the admin records what it sees.

Answer chunks are ``meta JSON + "\\n" + payload``; meta is ``{"index", "kind", "status",
"final"}`` with kind ``json`` (a whole completion: served as JSON, or as server-sent events when
the call asked to stream), ``sse`` (upstream event bytes passed through as they come; ``final``
ends them), or ``error`` (the payload is the error body). A ``watch`` chunk (``{"kind":
"watch", "pid"}``) watches a process like ``POST /v1/agent/watch``.

Standard library only, threads not asyncio (see ``server.py``).
"""

import _queue
import _socket

from .. import fastos as os
from .. import protocol, threads
from ..deferred import DEFERRED
from ..errors import OpError
from . import messages as chatwire_messages, responses as chatwire_responses
from .wire import Http, sse_from_completion

HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # ROCK's model service port
MAX_BODY = 8 << 20
# Answers up to this size are written to the call's client from the thread that receives them
# (a loopback socket's buffer takes them without blocking): handing them to the call's own
# thread first would put one more thread wake-up on every call's path.
DIRECT_MAX = 64 << 10


class _Slot:
    """One call waiting for its answer.

    A small answer (a whole completion the client takes as JSON, or an error) is written to the
    client by the thread it arrives on, the agent connection's reader: a non-streaming call's
    own thread does not wait for it but goes back to read the connection's next request (and
    waits for ``done`` only if that request comes first), so a call costs no thread hand-off.
    Anything else (streams, large bodies) goes through ``answers`` to a thread that writes it:
    the call's own for a streaming call, a helper otherwise; once one answer frame has gone that
    way, the rest follow it, in order."""

    __slots__ = ("answers", "stream", "http", "keep", "queued", "done", "api")

    def __init__(self, stream, http, api=None):
        self.api = api  # None: chat completions; "messages" or "responses": how a stream is rendered
        self.answers = _queue.SimpleQueue()
        self.stream = stream
        self.http = http
        self.keep = http.keep  # this request's keep-alive (the connection may read the next one meanwhile)
        self.queued = False
        self.done = threads.Event()


class Endpoint:
    def __init__(self, req, listener, port, args):
        self.req = req
        self.listener = listener
        self.port = port
        self.models = args.get("models") or ["rock-policy"]
        self.max_body = int(args.get("max_body_bytes") or MAX_BODY)
        self.lock = threads.Lock()
        self.slots = {}
        self.next_index = 1
        self.closed = False
        self.watched = set()

    # -- the admin's side ------------------------------------------------------------------

    def on_answer(self, body):
        try:
            self.dispatch(body)
        except (ValueError, KeyError, TypeError) as exc:
            import sys

            sys.stderr.write("rock agent: bad chat answer frame: %s\n" % exc)

    def dispatch(self, body):
        head, _, payload = body.partition(b"\n")
        meta = protocol.loads(head)
        if meta.get("kind") == "watch":
            self.watch(int(meta["pid"]))
            return
        self.deliver(meta.get("index"), meta, payload)

    def deliver(self, index, meta, payload):
        kind, status = meta.get("kind"), int(meta.get("status") or 200)
        with self.lock:
            slot = self.slots.get(index)
            if slot is None:
                return
            direct = not slot.queued and len(payload) <= DIRECT_MAX and (
                kind == "error" or (kind == "json" and (not slot.stream or status >= 400)))
            if direct:  # its last answer: close() must not send it another
                del self.slots[index]
            helper = not direct and not slot.queued and not slot.stream
            slot.queued = not direct
        if direct:
            try:
                slot.keep = slot.http.send_raw(status, payload, slot.keep)
            except OSError:
                slot.keep = False
            if slot.stream:
                slot.answers.put((None, slot.keep))  # the call's thread goes on to the connection's next request
            else:
                slot.done.set()
            return
        slot.answers.put((meta, payload))
        if helper:
            threads.spawn(self._answer_later, index, slot)

    def _answer_later(self, index, slot):
        try:
            slot.keep = self._answer(slot.http, None, slot)
        except OSError:
            slot.keep = False
        finally:
            with self.lock:
                self.slots.pop(index, None)
            slot.done.set()

    def close(self, reason):
        with self.lock:
            self.closed = True
            indexes = list(self.slots)
        try:
            self.listener.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        body = _error_body(reason, "service_unavailable")
        for index in indexes:
            slot = self.slots.get(index)
            api = slot.api if slot is not None else None
            self.deliver(index, {"kind": "error", "status": 503}, _api_error(api, reason, 503) if api else body)

    # -- the sandbox's side ----------------------------------------------------------------

    def accept_loop(self):
        while not self.closed:
            try:
                fd, _ = self.listener._accept()
            except OSError:
                return
            sock = _socket.socket(self.listener.family, _socket.SOCK_STREAM, 0, fd)
            # A stream leaves in several small writes: without this, Nagle holds each one back
            # until the client's delayed ACK (40 ms).
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            threads.spawn(self.serve_connection, sock)

    def serve_connection(self, sock):
        http = Http(sock, self.max_body)
        last = None  # the connection's non-streaming call still being answered, if any
        try:
            while not self.closed:
                request = http.read_request()
                if request is None:
                    return
                if last is not None:  # answers leave in the order of their requests
                    last.done.wait()
                    if not last.keep:
                        return
                try:
                    last = self.route(http, *request)
                except OSError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a request we failed to handle is answered, never dropped
                    http.send_error(500, "the model endpoint failed on this request: %s: %s" % (type(exc).__name__, exc))
                    return
                if last is False:
                    return
                if last is True:
                    last = None
        except OSError:
            pass
        finally:
            if isinstance(last, _Slot):  # its answer is written to this socket: close it after
                last.done.wait()
            http.close()

    def route(self, http, method, path, headers, body):
        """Answer one request; False closes the connection; a _Slot: a call answered later."""
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path in ("/health", ""):
            return http.send_json(200, {"status": "healthy"})
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "rock"} for m in self.models]
            return http.send_json(200, {"object": "list", "data": data})
        if method == "POST" and path == "/v1/chat/completions":
            return self.complete(http, body)
        if method == "POST" and path in ("/v1/messages", "/v1/responses"):  # Anthropic's and OpenAI's newer APIs
            return self.complete(http, body, path[4:])
        if method == "POST" and path == "/v1/messages/count_tokens":
            return self.count_tokens(http, body)
        if method == "POST" and path == "/v1/agent/watch":
            return self.watch_request(http, body)
        return http.send_json(404, protocol.loads(_error_body("no route %s %s on the model endpoint; it serves POST "
                                                              "/v1/chat/completions, /v1/messages, /v1/responses, "
                                                              "GET /v1/models, GET /health and "
                                                              "POST /v1/agent/watch" % (method, path), "not_found")))

    def complete(self, http, body, api=None):
        """A model call (``api``: None for chat completions, else "messages" or "responses"),
        passed to the admin as it came; the admin turns a native one into the trainer's form."""
        try:
            call = protocol.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return http.send_raw(400, _api_error(api, "the request body is not JSON: %s" % exc, 400))
        if not isinstance(call, dict):
            return http.send_raw(400, _api_error(api, "the request body must be a JSON object", 400))
        stream = call.get("stream") is True
        slot = _Slot(stream, http, api)
        with self.lock:
            if self.closed:
                return http.send_raw(503, _api_error(api, "the model endpoint is closing", 503))
            index = self.next_index
            self.next_index += 1
            self.slots[index] = slot
        self.req.event("call", {"index": index, "stream": stream, "api": api} if api else
                       {"index": index, "stream": stream}, body)
        if not stream:
            return slot  # answered by deliver()
        try:
            return self._answer(http, call, slot)
        finally:
            with self.lock:
                self.slots.pop(index, None)

    def _answer(self, http, call, slot):
        meta, payload = slot.answers.get()
        if meta is None:  # answered already (see deliver); payload: keep the connection
            return payload
        kind, status = meta.get("kind"), int(meta.get("status") or 200)
        if kind == "sse":
            http.start_chunked(status, "text/event-stream", slot.keep)
            while True:
                if payload:
                    http.send_chunk(payload)
                if meta.get("final"):
                    return http.end_chunked(slot.keep)
                meta, payload = slot.answers.get()
                if meta.get("kind") == "error":  # the upstream broke off mid-stream
                    return http.end_chunked(slot.keep) and False
        if kind == "json" and slot.stream and status < 400 and call is not None:
            completion = protocol.loads(payload)
            if slot.api == "messages":
                events = chatwire_messages.sse_from_message(completion)
            elif slot.api == "responses":
                events = chatwire_responses.sse_from_response(completion)
            else:
                include_usage = (call.get("stream_options") or {}).get("include_usage") is True
                events = sse_from_completion(completion, include_usage)
            http.start_chunked(200, "text/event-stream", slot.keep)
            for event in events:
                http.send_chunk(event)
            return http.end_chunked(slot.keep)
        return http.send_raw(status, payload, slot.keep)

    def count_tokens(self, http, body):
        try:
            request = protocol.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return http.send_raw(400, _api_error("messages", "the request body is not JSON: %s" % exc, 400))
        if not isinstance(request, dict):
            return http.send_raw(400, _api_error("messages", "the request body must be a JSON object", 400))
        return http.send_json(200, chatwire_messages.count_tokens(request))

    def watch_request(self, http, body):
        try:
            pid = protocol.loads(body).get("pid")
            pid = int(pid)
        except (ValueError, TypeError, AttributeError, OverflowError):
            return http.send_raw(400, _error_body("send {\"pid\": <the agent's process id>}", "invalid_request_error"))
        self.watch(pid)
        return http.send_json(200, {"status": "watching", "pid": pid})

    def watch(self, pid):
        with self.lock:
            if pid in self.watched:
                return
            self.watched.add(pid)
        threads.spawn(self._watch, pid)

    def _watch(self, pid):
        alive = _process_waiter(pid)
        alive()
        if not self.closed:
            self.req.event("session_end", {"pid": pid})


def _process_waiter(pid):
    """A function that returns once ``pid`` has exited (a zombie counts as exited)."""
    try:
        import select

        fd = os.pidfd_open(pid)
    except (AttributeError, OSError, ImportError):
        fd = None
    if fd is not None:
        def wait_fd():
            try:
                select.select([fd], [], [])
            finally:
                os.close(fd)
        return wait_fd

    def poll():
        import time

        while _running(pid):
            time.sleep(0.05)
    return poll


def _running(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except OSError:
            return True


def _api_error(api, message, status):
    """An error body in the shape the call's API's clients parse."""
    if api == "messages":
        return chatwire_messages.error_body(message, status)
    if api == "responses":
        return chatwire_responses.error_body(message, status)
    return _error_body(message, "invalid_request_error" if status < 500 else "service_unavailable")


def _error_body(message, kind):
    return protocol.dumps({"error": {"message": message, "type": kind, "code": None}}).encode()


def _bind(host, port):
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OpError("PortInUse" if exc.errno == 98 else "BadRequest",
                      "cannot serve the model endpoint on %s:%d inside the sandbox: %s" % (host, port, exc.strerror))
    sock.listen(256)
    return sock


def _serve(req):
    host = req.args.get("host") or HOST
    port = req.args.get("port")
    port = DEFAULT_PORT if port is None else port
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise OpError("BadRequest", "port must be an integer from 0 to 65535, not %r" % (port,))
    listener = _bind(host, port)
    endpoint = Endpoint(req, listener, listener.getsockname()[1], req.args)
    threads.spawn(endpoint.accept_loop)
    req.on_chunk = endpoint.on_answer  # answers go to their calls on the connection's thread
    req.event("listening", {"port": endpoint.port, "host": host})
    try:
        for _ in req.chunks():  # nothing but the end: the admin stops the endpoint (eof, or cancel)
            pass
    finally:
        endpoint.close("the model endpoint was stopped (its trainer side went away)")
    return {"calls": endpoint.next_index - 1}


# -- the in-sandbox ``rock model-service`` command's requests, answered by the admin ----------

_tickets = {}
_ticket_lock = threads.Lock()
_ticket_next = [1]


def _cli(req):
    """A request of ``rock model-service start|stop|anti-call-llm``, run inside the sandbox: sent
    up to the admin as a notice; the admin does it (the same operation as its API) and answers
    with ``chat.cli_reply``. Nothing is decided or recorded here."""
    action = req.args.get("action")
    if action not in ("start", "stop", "anti_call"):
        raise OpError("BadRequest", "unknown model-service action %r" % (action,))
    with _ticket_lock:
        ticket = _ticket_next[0]
        _ticket_next[0] += 1
        _tickets[ticket] = req
    meta = {"event": "chat.cli", "ticket": ticket, "action": action, "args": req.args.get("args") or {}}
    if not req.conn.agent.notify(meta, req.body, exclude=req.conn):
        _tickets.pop(ticket, None)
        raise OpError("Unavailable", "no admin is connected to this sandbox's agent")
    return DEFERRED  # answered by _cli_reply; a command that gave up meanwhile is simply not answered


def _cli_reply(req):
    with _ticket_lock:
        waiting = _tickets.pop(req.args.get("ticket"), None)
    if waiting is None:
        return {"delivered": False}
    if req.args.get("ok"):
        waiting.reply({"message": req.args.get("message") or ""}, req.body)
    else:
        waiting.fail(req.args.get("type") or "AdminError", req.args.get("message") or "refused")
    return {"delivered": True}


OPS = {"chat.serve": _serve, "chat.cli": _cli, "chat.cli_reply": _cli_reply}
