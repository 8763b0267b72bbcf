"""HTTP/1.1 on a socket, just what the model endpoint needs, and completions as SSE chunks.

Hand-written rather than ``http.server``: that module parses headers with the ``email``
package and costs tens of milliseconds to import and ~0.1 ms a request, which the model-call
path (target: under 1 ms added per call) cannot afford. Keep-alive, Content-Length and chunked
request bodies; answers with Content-Length or chunked (for streams).
"""

from . import protocol

MAX_HEAD = 64 << 10
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 411: "Length Required",
           413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Http:
    def __init__(self, sock, max_body):
        self.sock = sock
        self.max_body = max_body
        self.buf = b""
        self.keep = True

    def _fill(self):
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
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_request(self):
        """(method, path, headers, body), or None when the client closed (or was answered an error)."""
        try:
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(self.buf) > MAX_HEAD:
                    self.send_error(431, "the request head is larger than %d bytes" % MAX_HEAD)
                    return None
                self._fill()
        except EOFError:
            return None
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
        except EOFError:
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
            self.send_error(400, "Content-Length is not a number")
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
        self.keep = False
        body = protocol.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
        self.send_raw(status, body.encode())

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
