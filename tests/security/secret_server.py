"""An HTTP server on one host address that serves a secret and records who asked: the target of
red-team tests (a service on the host's loopback, on a bridge's gateway, in a sandbox)."""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class SecretServer:
    """Serves ``secret`` on every GET at ``url``; ``hits`` lists the paths asked for."""

    def __init__(self, host: str = "127.0.0.1", label: str = "secret"):
        self.secret = f"{label}-{uuid.uuid4().hex}"
        self.hits: list[str] = []
        secret, hits = self.secret, self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("content-length", str(len(secret)))
                self.end_headers()
                self.wfile.write(secret.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def control(self) -> None:
        """The server answers the host: an empty ``hits`` later means nobody asked, not a dead server."""
        assert httpx.get(self.url, timeout=5).text == self.secret
        self.hits.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
