"""API tokens and namespaces.

Tokens come from ``Settings.tokens`` (token -> namespace; config file or ``ROCK_TOKENS``).
Without tokens the admin serves loopback only and everyone is one principal (``None``).
With tokens every request needs one; the sandbox belongs to the token's namespace and any
other namespace is told it does not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from rock.errors import RockError, Unauthorized

# Headers that carry a token: ours, and the ones rl-rock users already set via extra_headers.
_BEARER_HEADERS = ("authorization", "xrl-authorization")
# E2B's control plane sends the token as X-API-KEY (rock.admin.e2b.common.owner_of); envd's data
# plane proves a sandbox with its access token (X-Access-Token, or the traffic token).
E2B_KEY_HEADER = "x-api-key"
E2B_SANDBOX_TOKEN_HEADERS = ("x-access-token", "e2b-traffic-access-token")
# The browser UI's login keeps the token in this cookie (HttpOnly, SameSite=Strict): a browser
# cannot set headers on a page load or a WebSocket, and a cross-site request never carries it.
COOKIE = "rock_token"
# Every header that carries a credential some door of the admin accepts: the port proxy strips
# them all before a request enters a sandbox (rock.admin.ports.relay), so a server there never sees
# one. One list with the code that reads them: a header the auth code learns is stripped too.
# (Credentials are never read from query parameters, so none are stripped there.)
CREDENTIAL_HEADERS = frozenset((*_BEARER_HEADERS, "x-key", E2B_KEY_HEADER, *E2B_SANDBOX_TOKEN_HEADERS))
CREDENTIAL_COOKIES = frozenset((COOKIE,))


def without_credential_cookies(value: str) -> str:
    """A Cookie header's value less the cookies that carry our credentials (the rest are the
    server's own: a web app in the sandbox keeps its session)."""
    kept = [part for part in value.split(";")
            if part.strip() and part.split("=", 1)[0].strip() not in CREDENTIAL_COOKIES]
    return ";".join(kept).strip()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_bind(host: str, tokens: dict[str, str]) -> None:
    """Refuse to listen beyond loopback without tokens: that would be an open shell for anyone."""
    if not tokens and not is_loopback(host):
        raise RockError(
            f"refusing to listen on {host} without API tokens: anyone who can reach it could run commands. "
            "Configure tokens (ROCK_TOKENS='{\"<token>\": \"<namespace>\"}' or 'tokens' in the config file) "
            "or bind 127.0.0.1."
        )


class Auth:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = dict(tokens)
        self.enabled = bool(tokens)

    def token_of(self, headers) -> str | None:
        for name in _BEARER_HEADERS:
            value = headers.get(name)
            if value:
                scheme, _, rest = value.partition(" ")
                return rest.strip() if scheme.lower() == "bearer" and rest else value.strip()
        key = headers.get("x-key")
        if key:
            return key
        cookies = headers.get("cookie")
        return cookie_parser(cookies).get(COOKIE) or None if cookies else None

    def principal(self, headers) -> str | None:
        """The caller's namespace, or None when auth is off. Raises Unauthorized."""
        if not self.enabled:
            return None
        token = self.token_of(headers)
        if token:
            for known, namespace in self.tokens.items():
                # constant-time compare: a timing side channel must not reveal a token prefix
                if hmac.compare_digest(known.encode(), token.encode()):
                    return namespace
        raise Unauthorized("missing or unknown API token; send 'Authorization: Bearer <token>'")


class AuthGate:
    """ASGI middleware: with tokens on, an HTTP request is refused before any route runs, unless
    it is ``public`` ((METHOD, path) pairs) or under ``open_paths``.

    Routes still ask for the caller's namespace to scope what they touch; the gate makes a route
    that forgets to ask closed anyway. The refusal is the error envelope's 401, or what
    ``refusals`` ((path prefix, fn(path, query, error) -> Response)) gives for routes that answer
    another way (AgentScope's error shape, the UI's login redirect). The hot paths mounted outside
    the gate authenticate themselves; WebSockets pass through (their handlers refuse on the socket)."""

    def __init__(self, app, auth: Auth, public: set[tuple[str, str]], open_paths: tuple[str, ...] = (),
                 refusals: tuple[tuple[str, Callable], ...] = ()):
        self.app = app
        self.auth = auth
        self.public = {(method.upper(), path) for method, path in public}
        self.open_paths = open_paths
        self.refusals = refusals

    def _open(self, scope) -> bool:
        path = scope["path"]
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        return (method, path) in self.public or any(_covers(entry, path) for entry in self.open_paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.auth.enabled and not self._open(scope):
            headers = Headers(scope=scope)
            try:
                self.auth.principal(headers)
            except Unauthorized as exc:
                response = self._refusal(scope, exc)
                if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
                    response.headers["connection"] = "close"  # the body is left unread
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    def _refusal(self, scope, exc: Unauthorized):
        from rock.admin.errors import error_response

        path = scope["path"]
        for prefix, refuse in self.refusals:
            if _covers(prefix, path):
                return refuse(path, scope.get("query_string", b"").decode("latin-1"), exc)
        return error_response(exc.status_code, exc.message, "Unauthorized")


def _covers(entry: str, path: str) -> bool:
    """An entry ending in '/' covers what is under it ('/' itself: only the root page)."""
    return path == entry or (entry != "/" and entry.endswith("/") and path.startswith(entry))
