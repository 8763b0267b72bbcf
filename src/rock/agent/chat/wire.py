"""HTTP/1.1 on a socket, just what the model endpoint needs, and completions as SSE chunks.

Hand-written rather than ``http.server``: that module parses headers with the ``email``
package and costs tens of milliseconds to import and ~0.1 ms a request, which the model-call
path (target: under 1 ms added per call) cannot afford. Keep-alive, Content-Length and chunked
request bodies; answers with Content-Length or chunked (for streams).

Every malformed request is answered (a 4xx with a message) before the connection closes, and a
refused body is drained for a moment first (a "lingering close"), so a client still sending it
reads the answer instead of a reset. A request's head must arrive within ``HEAD_TIMEOUT`` of its
first byte and its body may pause at most ``BODY_IDLE_TIMEOUT`` (else a 408): a half-sent
request holds its connection's thread only that long. Waiting for a request's first byte has no
limit: a client waiting for a slow model's answer keeps its connection open.
"""

import _socket
import time

from .. import protocol

MAX_HEAD = 64 << 10
HEAD_TIMEOUT = 30.0
BODY_IDLE_TIMEOUT = 60.0
# A refused request's body is read and dropped for at most this long and this much before the
# connection closes: closing with unread data makes the kernel send a reset, which the client
# then sees in place of the answer.
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 << 20
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 411: "Length Required",
           413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Http:
    def __init__(self, sock, max_body):
        self.sock = sock
        self.max_body = max_body
        self.buf = b""
        self.keep = True
        self.deadline = None  # while a request's head is read: when it must be whole
        self.timed = False  # the socket has a timeout set (the slow path only)

    def _fill(self):
        # A request that came whole in one read never gets here with a deadline: no timeout is
        # set on the fast path (one syscall less per call).
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _socket.timeout("head")
            self.sock.settimeout(left)
            self.timed = True
        # 64 KiB, under glibc's mmap threshold: a larger recv buffer is an mmap, an mremap (cut to
        # what arrived) and an munmap for every request.
        data = self.sock.recv(64 << 10)
        if not data:
            raise EOFError
        self.buf += data

    def _read_line(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                return line
            if len(self.buf) > MAX_HEAD:
                raise ValueError("line too long")
            if not self.timed and self.deadline is None:
                self.sock.settimeout(BODY_IDLE_TIMEOUT)
                self.timed = True
            self._fill()

    def _read_exact(self, n):
        if len(self.buf) < n and not self.timed:
            self.sock.settimeout(BODY_IDLE_TIMEOUT)  # a body that did not come whole: it may pause only so long
            self.timed = True
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_request(self):
        """(method, path, headers, body), or None when the client closed (or was answered an error)."""
        try:
            return self._read_request()
        except EOFError:
            return None
        except _socket.timeout as exc:
            what = "head" if str(exc) == "head" or self.deadline is not None else "body"
            self.send_error(408, "the request %s did not arrive in time (%s)" % (what, (
                "whole within %gs" % HEAD_TIMEOUT) if what == "head" else "%gs without a byte" % BODY_IDLE_TIMEOUT))
            return None
        finally:
            self.deadline = None
            if self.timed:  # answers are written without a timeout (a long stream to a slow reader)
                self.timed = False
                self.sock.settimeout(None)

    def _read_request(self):
        if not self.buf:
            self._fill()  # the first byte: no limit on how long a kept-alive connection waits
        self.deadline = time.monotonic() + HEAD_TIMEOUT
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                self.send_error(431, "the request head is larger than %d bytes" % MAX_HEAD)
                return None
            self._fill()
        self.deadline = None
        if self.timed:  # the head came slowly: its body gets the body's own limit
            self.sock.settimeout(BODY_IDLE_TIMEOUT)
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        lines = head.split("\r\n")
        try:
            method, path, version = lines[0].split(" ", 2)
        except ValueError:
            self.send_error(400, "malformed request line")
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        conn = headers.get("connection", "").lower()
        self.keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        try:
            body = self._read_body(headers)
        except ValueError as exc:  # a chunk size that is not hex, a line past MAX_HEAD
            self.send_error(400, "malformed chunked body: %s" % exc)
            return None
        if body is None:
            return None
        return method, path, headers, body

    def _read_body(self, headers):
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts, size = [], 0
            while True:
                n = int(self._read_line().split(b";", 1)[0], 16)
                if n == 0:
                    while self._read_line():  # trailers
                        pass
                    return b"".join(parts)
                size += n
                if size > self.max_body:
                    return self._too_large()
                parts.append(self._read_exact(n))
                self._read_line()
        length = headers.get("content-length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            n = -1
        if n < 0:
            self.send_error(400, "Content-Length is not a non-negative number")
            return None
        if n > self.max_body:
            return self._too_large()
        return self._read_exact(n)

    def _too_large(self):
        self.keep = False
        self.send_error(413, "the request body is larger than this endpoint's limit of %d bytes" % self.max_body)
        return None

    # -- answers ---------------------------------------------------------------------------

    def _head(self, status, ctype, extra, keep=None):
        keep = self.keep if keep is None else keep
        return ("HTTP/1.1 %d %s\r\ncontent-type: %s\r\n%s%s\r\n" % (
            status, REASONS.get(status, "Status"), ctype, extra,
            "" if keep else "connection: close\r\n")).encode("latin-1")

    def send_raw(self, status, body, keep=None, ctype="application/json"):
        """``keep``: the keep-alive of the request this answers (default: the last one read)."""
        keep = self.keep if keep is None else keep
        self.sock.sendall(self._head(status, ctype, "content-length: %d\r\n" % len(body), keep) + body)
        return keep

    def send_json(self, status, obj):
        return self.send_raw(status, protocol.dumps(obj).encode())

    def send_error(self, status, message):
        """Answer ``status`` and end the connection, reading what the client still sends for a
        moment first (see LINGER_SECONDS)."""
        self.keep = False
        body = protocol.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
        try:
            self.send_raw(status, body.encode())
            self.sock.shutdown(_socket.SHUT_WR)
            self.sock.settimeout(LINGER_SECONDS)
            self.timed = True
            end, drained = time.monotonic() + LINGER_SECONDS, 0
            while drained < LINGER_BYTES and time.monotonic() < end:
                data = self.sock.recv(64 << 10)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    def start_chunked(self, status, ctype, keep=None):
        extra = "transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
        self.sock.sendall(self._head(status, ctype, extra, keep))

    def send_chunk(self, data):
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self, keep=None):
        self.sock.sendall(b"0\r\n\r\n")
        return self.keep if keep is None else keep

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _event(obj):
    return b"data: " + protocol.dumps(obj).encode() + b"\n\n"


def sse_from_completion(completion, include_usage=False):
    """A whole chat completion as the server-sent events a streaming call expects.

    Per choice: the role with the content (and any extra message fields, e.g.
    ``reasoning_content``), one delta per tool call, then the finish reason; a usage chunk
    when the call asked for it; ``[DONE]``. Logprobs and token ids ride on the first delta.
    """
    base = {"id": completion.get("id") or "chatcmpl-rock", "object": "chat.completion.chunk",
            "created": completion.get("created") or 0, "model": completion.get("model") or ""}
    for key in ("system_fingerprint",):
        if key in completion:
            base[key] = completion[key]
    for choice in completion.get("choices") or []:
        i = choice.get("index", 0)
        message = choice.get("message") or {}
        delta = {"role": message.get("role") or "assistant"}
        for key, value in message.items():
            if key not in ("role", "tool_calls") and value is not None:
                delta[key] = value
        first = {"index": i, "delta": delta, "finish_reason": None}
        for key in ("logprobs", "token_ids"):
            if choice.get(key) is not None:
                first[key] = choice[key]
        yield _event(dict(base, choices=[first]))
        for j, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function") or {}
            part = {"index": j, "id": call.get("id"), "type": call.get("type") or "function",
                    "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""}}
            yield _event(dict(base, choices=[{"index": i, "delta": {"tool_calls": [part]}, "finish_reason": None}]))
        yield _event(dict(base, choices=[{"index": i, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}]))
    if include_usage and completion.get("usage") is not None:
        yield _event(dict(base, choices=[], usage=completion["usage"]))
    yield b"data: [DONE]\n\n"
