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

from starlette.requests import cookie_parser

from rock.errors import RockError, Unauthorized

# Headers that carry a token: ours, and the ones rl-rock users already set via extra_headers.
_BEARER_HEADERS = ("authorization", "xrl-authorization")
# The browser UI's login keeps the token in this cookie (HttpOnly, SameSite=Strict): a browser
# cannot set headers on a page load or a WebSocket, and a cross-site request never carries it.
COOKIE = "rock_token"


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
