"""Finding 6: the port proxy never hands the admin's credentials to the server in the sandbox.

Before: ``X-API-KEY`` (E2B's name for a ROCK token) went through to the server inside."""

from __future__ import annotations

import json

from rock.admin import auth
from tests.security.conftest import TOKEN_A, execute, rock, start, wait_for

# Every header some door of the admin reads a credential from (ROCK's, the rl-rock SDK's, E2B's
# control plane and envd's): sent at once, each carrying the token.
TRIED = {"authorization", "xrl-authorization", "x-key", "x-api-key", "x-access-token", "e2b-traffic-access-token"}

# A server in the sandbox that answers every request with the headers and query it received.
ECHO = r'''
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"headers": dict(self.headers.items()), "path": self.path}).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 8000), H).serve_forever()
'''


def test_no_credential_the_admin_accepts_reaches_the_server_in_the_sandbox(tenants):
    with rock(tenants, TOKEN_A) as alice:
        sid = start(alice)
        try:
            r = alice.put("/files/write", params={"sandbox_id": sid, "path": "/tmp/echo.py"}, content=ECHO.encode())
            assert r.status_code == 200, r.text
            r = alice.post("/procs/start", json={"sandbox_id": sid, "command": "exec python3 /tmp/echo.py"})
            assert r.status_code == 200, r.text
            assert wait_for(lambda: "ok" in execute(alice, sid, "python3 -c \"import socket; "
                                                    "socket.create_connection(('127.0.0.1', 8000)); print('ok')\" 2>&1")
                            ["stdout"], 30)
            # every credential header at once, each carrying the token, and the token cookie
            headers = {name: TOKEN_A for name in TRIED - {"authorization"}}
            headers.update({"Cookie": f"rock_token={TOKEN_A}; app_session=kept", "X-Marker": "visible"})
            r = alice.get(f"/sandboxes/{sid}/proxy/port/8000/echo", params={"q": "1"}, headers=headers)
            assert r.status_code == 200, r.text
            seen = r.json()
            seen["headers"] = {k.lower(): v for k, v in seen["headers"].items()}
            raw = json.dumps(seen)
            assert TOKEN_A not in raw, seen  # the token never arrives, under any name
            assert not set(seen["headers"]) & TRIED, seen
            # control: the request itself arrived whole, with the caller's other headers and cookies
            assert seen["headers"].get("x-marker") == "visible" and seen["path"] == "/echo?q=1", seen
            assert seen["headers"].get("cookie") == "app_session=kept", seen
            # the list the proxy strips is the auth code's own, and this test tried all of it
            assert auth.CREDENTIAL_HEADERS <= TRIED and auth.COOKIE == "rock_token"
        finally:
            alice.post("/delete", json={"sandbox_id": sid})
