"""Servers inside a sandbox, reached through its agent (no sandbox network needed).

    routes.py  the routes: HTTP proxy (any method), WebSocket proxy, raw TCP over WebSocket
    proxy.py   the HTTP forwarder, and the proxy's fast path for its plain case (rock.admin.doors)
    client.py  the kept-alive HTTP/1.1 client over the agent's TCP relay
    relay.py   the target port, forwarded headers, WebSocket and TCP relays

Adding a route: in ``routes.py``; a new way to reach a port: beside ``relay.py``.
"""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.context import PREFIX, Ctx
from rock.admin.front import FrontDoor
from rock.admin.ports import routes


FRONT = FrontDoor()  # every role; no path of its own past the token gate


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount the port routes (every role: they reach running sandboxes only)."""
    app.include_router(routes.router(ctx), prefix=PREFIX)
