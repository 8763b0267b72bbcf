"""A real HTTP/1.1 server on loopback for the client's tests, in a thread of the test's process."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """Answers GET and POST with JSON: ``answer(body)`` gives (status, object, extra headers)."""

    protocol_version = "HTTP/1.1"

    def answer(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _reply(self) -> None:
        status, obj, headers = self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        out = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _reply

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` serving on a free loopback port: its base URL, shut down on leaving."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
