"""A scripted OpenAI-compatible server on the host's loopback (the 'inference engine' of proxy
mode): it answers with token ids and logprobs like vLLM does, streams when asked, drops the
connection of the first ``drop_first`` requests without an answer, then fails the next
``fail_first`` with ``fail_status`` (503 unless told), to exercise retries; ``sized_streams`` sends a
stream whole, with a content-length."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no access log, ``_json`` for the request's JSON body and ``_send`` for a whole answer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self):
        return json.loads(self.rfile.read(int(self.headers["content-length"])))

    def _sse(self, parts: list[bytes]) -> None:
        """A 200 text/event-stream answer written chunk by chunk (chunked encoding), as inference servers stream."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for data in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()  # each event goes out on its own, as a server streaming tokens sends them
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(self, status, data, ctype):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LoopbackServer:
    """A threaded server on a free loopback port (``url`` ends in /v1); subclasses give
    ``_handler()``, a QuietHandler class that sees the server as its closure."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        raise NotImplementedError


class Upstream(LoopbackServer):
    def __init__(self, fail_first: int = 0, fail_status: int = 503, drop_first: int = 0, sized_streams: bool = False,
                 always_stream: bool = False):
        self.fail_first, self.fail_status, self.drop_first = fail_first, fail_status, drop_first
        self.sized_streams = sized_streams  # a stream sent whole with a content-length, as a buffering server does
        self.always_stream = always_stream  # streams even when the call did not ask to
        self.requests: list[dict] = []
        super().__init__()

    def _handler(self):
        up = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self._json()
                up.requests.append(body)
                if up.drop_first > 0:  # the connection ends without a status line: a transport error
                    up.drop_first -= 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if up.fail_first > 0:
                    up.fail_first -= 1
                    return self._send(up.fail_status, b'{"error": {"message": "overloaded"}}', "application/json")
                n = len(up.requests)
                text = f"answer {n}"
                logprobs = {"content": [{"token": "answer", "logprob": -0.5, "bytes": None, "top_logprobs": []}]}
                if not body.get("stream") and not up.always_stream:
                    out = {"id": f"up-{n}", "object": "chat.completion", "created": 1, "model": body["model"],
                           "prompt_token_ids": [1, 2, 3],
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop", "token_ids": [10, 11], "logprobs": logprobs}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
                    return self._send(200, json.dumps(out).encode(), "application/json")
                base = {"id": f"up-{n}", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
                chunks = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": "answer"},
                                               "token_ids": [10], "logprobs": logprobs, "finish_reason": None}]),
                          dict(base, choices=[{"index": 0, "delta": {"content": f" {n}"}, "token_ids": [11],
                                               "finish_reason": "stop"}])]
                events = [b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks] + [b"data: [DONE]\n\n"]
                if up.sized_streams:
                    return self._send(200, b"".join(events), "text/event-stream")
                self._sse(events)

        return Handler
