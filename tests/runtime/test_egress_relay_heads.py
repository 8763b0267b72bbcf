"""The egress relay's head rewriting and request framing (``rock.runtime.egress.broker``), and the
workload tokens it puts in E2B transforms (``rock.runtime.egress.identity``): each rewrite beside
the same head for a host the secret is not bound to, which must arrive untouched."""

from __future__ import annotations

import base64
import json

import pytest

from rock.runtime.egress.broker import framing, rewrite_head
from rock.runtime.egress.identity import WorkloadIdentity
from rock.runtime.egress.socks import split_address

ITEMS = [{"name": "k", "namespace": "team-a", "placeholder": "PH-k", "hosts": ["bound.test"]}]


def lookup(namespace, name, host):
    return "v a/l&x" if (namespace, name, host) == ("team-a", "k", "bound.test") else None


def test_placeholders_in_the_request_line_and_headers_of_bound_hosts_only():
    head = b"GET /a/PH-k?key=PH-k HTTP/1.1\r\nHost: bound.test\r\nX-Key: PH-k\r\nConnection: keep-alive"
    out = rewrite_head(head, ITEMS, "bound.test", lookup, close=False).decode()
    assert out.startswith("GET /a/v%20a%2Fl%26x?key=v%20a%2Fl%26x HTTP/1.1\r\n")  # encoded: stays one query value
    assert "X-Key: v a/l&x" in out and "Connection: keep-alive" in out and "PH-k" not in out
    # control: the same head to a host the secret is not bound to keeps every placeholder
    other = rewrite_head(head.replace(b"bound.test", b"other.test"), ITEMS, "other.test", lookup).decode()
    assert other.count("PH-k") == 3 and "v a/l" not in other and other.endswith("Connection: close\r\n\r\n")


def test_iam_tokens_are_minted_for_registered_names_only(tmp_path):
    identity = WorkloadIdentity(tmp_path)
    items = [{"host": "bound.test", "namespace": "team-a", "tokens": {"svc": {"audience": "aud-1", "tokenType": "JWT-SVID"}},
              "headers": {"Authorization": "Bearer ${e2b.identity.tokens.svc}",
                          "X-Typo": "${e2b.identity.tokens.nope}"}}]
    out = rewrite_head(b"GET / HTTP/1.1\r\nHost: bound.test", items, "bound.test", lookup,
                       lambda ns, sid, d: identity.mint(ns, sid, d), subject="sbx-1").decode()
    token = out.split("Authorization: Bearer ", 1)[1].split("\r\n", 1)[0]
    part = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert claims["aud"] == ["aud-1"] and claims["sub"].endswith("/ns/team-a/sandbox/sbx-1")
    assert "X-Typo: ${e2b.identity.tokens.nope}" in out  # an unregistered name is never a token
    assert (tmp_path / "identity.key").stat().st_mode & 0o077 == 0
    assert identity.jwks()["keys"][0]["kid"] == identity.kid()
    # control: another host gets no transform at all
    assert "Authorization" not in rewrite_head(b"GET / HTTP/1.1\r\nHost: o.test", items, "o.test", lookup).decode()


@pytest.mark.parametrize("head, length", [
    (b"GET / HTTP/1.1\r\nHost: a", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: 12", 12),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked", None),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6", None),  # which one the server reads is unknown
    (b"POST / HTTP/1.1\r\nContent-Length: -1", None),
    (b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade", None),
    (b"GET / HTTP/1.0\r\nHost: a", None),
])
def test_framing(head, length):
    assert framing(head) == length


def test_proxy_addresses():
    assert split_address("proxy.test:1080") == ("proxy.test", 1080)
    for bad in ("proxy.test", "proxy.test:0", "socks5://p:1080x", ":1080"):
        with pytest.raises(ValueError):
            split_address(bad)
