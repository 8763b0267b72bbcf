"""What the egress gate reads of a connection's first bytes: the SNI of a real ClientHello (made
by Python's own TLS stack), the HTTP Host, and requests that name two hosts."""

from __future__ import annotations

import ssl

import pytest

from rock.actions.egress import EgressRules
from rock.runtime.egress.peek import Mismatch, http_host, sni, tls_length
from rock.runtime.egress.rules import Compiled


def client_hello(server_name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = server_name is not None
    if server_name is None:
        ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def test_sni_of_a_real_client_hello():
    hello = client_hello("Allowed.Test")
    assert tls_length(hello) == len(hello)
    assert sni(hello) == "allowed.test"
    assert sni(client_hello(None)) is None  # no server_name extension: nothing to match by name
    assert sni(hello[:40]) is None and sni(b"GET / HTTP/1.1\r\n\r\n") is None


def test_http_host_and_mismatches():
    assert http_host(b"GET /x HTTP/1.1\r\nHost: a.test:8080\r\n\r\n") == "a.test"
    assert http_host(b"GET /r?to=http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n") == "a.test"  # a URL in the query
    assert http_host(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n") == "a.test"
    assert http_host(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n") == "a.test"
    for two in (b"GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"CONNECT b.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"):
        with pytest.raises(Mismatch):
            http_host(two)
    assert http_host(b"SSH-2.0-OpenSSH\r\n") is None


def test_policy_matching():
    p = Compiled(EgressRules(allow=["*.pkg.test", "exact.test", "10.9.0.0/16"], deny=["bad.pkg.test"], ports=[443, "8000-8100"]))
    assert p.host_allowed("a.pkg.test") and p.host_allowed("b.a.pkg.test") and p.host_allowed("EXACT.test.")
    assert not p.host_allowed("pkg.test") and not p.host_allowed("bad.pkg.test") and not p.host_allowed("x.exact.test")
    assert p.port_allowed(443) and p.port_allowed(8050) and not p.port_allowed(80)
    import ipaddress
    assert p.address_allowed(ipaddress.ip_address("10.9.1.1")) and not p.address_allowed(ipaddress.ip_address("10.8.1.1"))
    assert not Compiled(EgressRules(default="allow")).address_allowed(ipaddress.ip_address("127.0.0.1"))


def test_the_schemas_port_grammar_is_the_ports_the_policy_takes():
    """A port string the schema allows is one the model takes (Schemathesis found "0" passing the
    schema and then refused); a range whose ends are reversed is the one rule left to the model."""
    import re

    import pydantic

    from rock.actions.egress import PORT_PATTERN

    schema = EgressRules.model_json_schema()["properties"]["ports"]["items"]["anyOf"]
    assert {"type": "string", "pattern": PORT_PATTERN} in [{k: v for k, v in s.items() if k in ("type", "pattern")}
                                                         for s in schema]
    for good in ("1", "80", "65535", "443-8443", "1-65535"):
        assert re.match(PORT_PATTERN, good) and EgressRules(ports=[good])
    for bad in ("0", "65536", "70000", "0-5", "80-", "-80", "00080"):
        assert not re.match(PORT_PATTERN, bad), bad
        with pytest.raises(pydantic.ValidationError):
            EgressRules(ports=[bad])
    assert EgressRules(ports=[80.0]).ports == [80]  # JSON Schema's integer, as the schema says
    for bad in (True, 0, 65536, 80.5):
        with pytest.raises(pydantic.ValidationError):
            EgressRules(ports=[bad])
    with pytest.raises(pydantic.ValidationError, match="not a port"):
        EgressRules(ports=["90-80"])  # the control: what the grammar passes, the model still checks
