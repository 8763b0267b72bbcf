"""Credential brokering in the egress gate: a sandbox holds placeholders, the relay sends values.

For a connection whose name (HTTP ``Host``, TLS SNI) is a host one of the sandbox's secrets is
bound to, the gate hands the connection here instead of piping it:

- plain HTTP: each request head is rewritten (each bound placeholder in a header value or in the
  request line's path and query becomes the secret's value; E2B's per-host ``transform`` headers
  are set, their secrets and workload tokens resolved now). A connection carries as many requests
  as the client sends while their bodies have a ``Content-Length`` (keep-alive); after a chunked
  body, an upgrade or HTTP/1.0 the rest is piped as it comes and ``Connection: close`` is added.
  Bodies are never rewritten: they are what the agent writes, and a bound host that echoes them
  (a model, a paste service) would hand the value to the agent;
- TLS: the connection is terminated with a certificate for that name signed by this admin's CA
  (``EgressCA``: its certificate is in the sandbox's trust, its key never leaves the admin's state
  dir), the head is rewritten the same way, and a new TLS connection goes upstream, verified
  against the system's trust plus the operator's ``egress_ca_file``.

The upstream connection is the gate's (``Gate.dial``): through the policy's SOCKS5 proxy where
it names one. Connections to every other host are never terminated or rewritten: a placeholder sent there
arrives as the placeholder. Values come from the admin's vault at the moment of the request
(``lookup(namespace, name, host)``), so a deleted secret is no longer sent.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import re
import ssl
import tempfile
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rock.runtime.egress.identity import WorkloadIdentity

log = logging.getLogger("rock.runtime.egress")

MAX_HEAD = 65536
MAX_LEAVES = 1024
_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?$")  # what a certificate is minted for
HANDSHAKE_TIMEOUT = 10.0
DRAIN_IDLE, DRAIN_MAX = 2.0, 30.0  # after the client stopped sending: how long its answers may pause, last
# Where a sandbox with secrets finds the admin's CA, and the bundle (the image's own trust plus
# that CA) its TLS clients are pointed at through the variables below.
CA_DIR = "/etc/rock-egress"
CA_FILE = CA_DIR + "/ca.pem"
BUNDLE_FILE = CA_DIR + "/ca-bundle.pem"
TRUST_ENV = {"SSL_CERT_FILE": BUNDLE_FILE, "REQUESTS_CA_BUNDLE": BUNDLE_FILE, "CURL_CA_BUNDLE": BUNDLE_FILE,
             "NODE_EXTRA_CA_CERTS": CA_FILE}
# The image's own bundle, the first of these that exists, is the start of the sandbox's bundle.
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")

Lookup = Callable[[str | None, str, str], "str | None"]
Mint = Callable[[str | None, str, dict], str]  # (namespace, sandbox id, token definition) -> a token
Dial = Callable[["ssl.SSLContext | None", "str | None"],
                Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def bound_to(hosts: list[str], name: str) -> bool:
    """Whether host ``name`` is one of ``hosts`` (exact names, and ``*.`` wildcards of the names below one)."""
    name = name.rstrip(".").lower()
    return any(name.endswith(h[1:]) if h.startswith("*.") else name == h for h in hosts)


def bound(item: dict, name: str) -> bool:
    """Whether a brokered item (a secret's hosts, or a transform's host) applies to host ``name``."""
    return bound_to([item["host"]] if "host" in item else item.get("hosts", []), name)


class EgressCA:
    """This admin's CA for the relay (made on first use under ``directory``, the key mode 0600)
    and the leaf certificates it signs, one per host name, cached."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._cert: x509.Certificate | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _ensure(self) -> None:
        if self._cert is not None:
            return
        key_path, cert_path = self.directory / "ca.key", self.directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            self._key, self._cert = loaded, x509.load_pem_x509_certificate(cert_path.read_bytes())
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ROCK egress relay CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key, self._cert = key, cert

    def certificate_pem(self) -> str:
        """The CA's certificate (public), for the sandbox's trust."""
        self._ensure()
        assert self._cert is not None
        return self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server context presenting a certificate for ``host`` (HTTP/1.1 only: the relay
        rewrites HTTP/1 heads)."""
        found = self._contexts.get(host)
        if found is not None:
            return found
        self._ensure()
        assert self._key is not None and self._cert is not None
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(self._cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self._key, hashes.SHA256()))
        # ssl loads a chain from a file only: a private one, gone once loaded (never named after the host)
        fd, path = tempfile.mkstemp(prefix="leaf-", suffix=".pem", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
                f.write(cert.public_bytes(serialization.Encoding.PEM))
                f.write(self._cert.public_bytes(serialization.Encoding.PEM))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        ctx.set_alpn_protocols(["http/1.1"])
        if len(self._contexts) >= MAX_LEAVES:  # many names under one wildcard: the oldest goes
            self._contexts.pop(next(iter(self._contexts)))
        self._contexts[host] = ctx
        return ctx


def trust_script(ca_pem: str) -> list[str]:
    """The command that writes the CA and the sandbox's bundle (image trust + the CA)."""
    bundles = " ".join(SYSTEM_BUNDLES)
    return ["sh", "-c",
            f'mkdir -p {CA_DIR} && printf "%s" "$1" > {CA_FILE} && : > {BUNDLE_FILE} && '
            f'for b in {bundles}; do if [ -f "$b" ]; then cat "$b" >> {BUNDLE_FILE}; echo >> {BUNDLE_FILE}; break; fi; done; '
            f'cat {CA_FILE} >> {BUNDLE_FILE} && chmod 644 {CA_FILE} {BUNDLE_FILE}', "sh", ca_pem]


class _TlsStream:
    """TLS over an asyncio stream pair through memory BIOs, so that the ClientHello the gate
    already read (to learn the SNI) is fed to the handshake first."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext,
                 first: bytes):
        self.reader, self.writer = reader, writer
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.incoming.write(first)

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _fill(self) -> None:
        data = await self.reader.read(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                await self._flush()
                return
            except ssl.SSLWantReadError:
                await self._flush()
                if self.incoming.eof:
                    raise ConnectionResetError("the client left during the handshake") from None
                await self._fill()

    async def read(self, n: int = 65536) -> bytes:
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                await self._flush()
                if self.incoming.eof:
                    return b""
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def write(self, data: bytes) -> None:
        self.obj.write(data)
        await self._flush()

    def close(self) -> None:
        try:
            self.obj.unwrap()
        except ssl.SSLError:
            pass
        self.writer.write(self.outgoing.read())


def _hop_by_hop(key: str) -> bool:
    return key in ("connection", "proxy-connection", "keep-alive")


def rewrite_head(head: bytes, items: list[dict], name: str, lookup: Lookup, mint: Mint | None = None,
                 subject: str = "", close: bool = True) -> bytes:
    """The request head with each bound placeholder replaced by its value (in header values and
    in the request line's path and query, percent-encoded there), E2B's transform headers set
    (their ``${e2b.secrets.<name>}`` and ``${e2b.identity.tokens.<name>}`` resolved now), and
    ``Connection: close`` where ``close``. Placeholders of secrets not bound to ``name`` stay."""
    lines = head.decode("latin-1").split("\r\n")
    values: dict[str, str] = {}
    setters: dict[str, str] = {}
    for item in items:
        if not bound(item, name):
            continue
        if "headers" in item:
            for key, template in item["headers"].items():
                setters[key.lower()] = f"{key}: {_fill(template, item, name, lookup, mint, subject)}"
            continue
        value = lookup(item.get("namespace"), item["name"], name)
        if value is not None:
            values[item["placeholder"]] = value
    method, _, target = lines[0].partition(" ")
    for ph, value in values.items():
        target = target.replace(ph, quote(value, safe="-._~"))
    out = [f"{method} {target}"]
    for line in lines[1:]:
        key = line.partition(":")[0].strip().lower()
        if key in setters or (close and _hop_by_hop(key)) or key == "proxy-connection":
            continue
        for ph, value in values.items():
            line = line.replace(ph, value)
        out.append(line)
    out.extend(setters.values())
    if close:
        out.append("Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def framing(head: bytes) -> int | None:
    """How many body bytes follow a request head (0 without a body), None where the body is not
    delimited by a length (chunked, an upgrade, HTTP/1.0): the rest of the connection is then
    piped as it comes, after this one request."""
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].endswith("HTTP/1.1"):
        return None
    lengths = set()
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("transfer-encoding", "upgrade"):
            return None
        if key == "content-length":
            if not value.isdigit():
                return None
            lengths.add(int(value))
    if len(lengths) > 1:  # where the server may read another length than ours: no further head is ours to read
        return None
    return lengths.pop() if lengths else 0


E2B_REF = "${e2b.secrets."
IAM_REF = "${e2b.identity.tokens."


def _fill(template: str, item: dict, host: str, lookup: Lookup, mint: Mint | None, subject: str) -> str:
    """E2B's references in a transform header, resolved for ``host``: ``${e2b.secrets.<name>}``
    (the caller's secret) and ``${e2b.identity.tokens.<name>}`` (a token of the sandbox's ``iam``
    minted now). A reference to a missing or unbound secret, or an unregistered token, stays as
    written."""
    namespace, tokens = item.get("namespace"), item.get("tokens") or {}
    out, i = [], 0
    while True:
        j = template.find("${e2b.", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        k = template.find("}", j)
        if k < 0:
            out.append(template[i:])
            return "".join(out)
        ref, value = template[j:k + 1], None
        if ref.startswith(E2B_REF):
            value = lookup(namespace, ref[len(E2B_REF):-1].lower(), host)
        elif ref.startswith(IAM_REF) and mint is not None and ref[len(IAM_REF):-1] in tokens:
            value = mint(namespace, subject, tokens[ref[len(IAM_REF):-1]])
        out.append(template[i:j])
        out.append(value if value is not None else ref)
        i = k + 1


def secret_names(brokered: list[dict] | None) -> set[tuple[str, str]]:
    """The (namespace, name) of every secret a sandbox's brokered items use: those it holds a
    placeholder of and those its transform headers refer to (namespace "" for none)."""
    out: set[tuple[str, str]] = set()
    for item in brokered or ():
        ns = item.get("namespace") or ""
        if "headers" in item:
            for template in item["headers"].values():
                j = template.find(E2B_REF)
                while j >= 0:
                    k = template.find("}", j)
                    if k < 0:
                        break
                    out.add((ns, template[j + len(E2B_REF):k].lower()))
                    j = template.find(E2B_REF, k)
        elif item.get("name"):
            out.add((ns, item["name"]))
    return out


class HeldSecrets:
    """Secret values a cluster node's relay was given by the admin for the sandboxes it runs, in
    this process's memory only (never a file, a record or a log): the relay's ``lookup`` there.
    A value is bound to its hosts as in the admin's vault (none: E2B's transform-only secrets)."""

    def __init__(self):
        self._values: dict[tuple[str, str], tuple[str, list[str]]] = {}

    def put(self, items: list[dict]) -> None:
        """Take ``{"namespace", "name", "value", "hosts"}`` items; a value of None forgets one."""
        for item in items:
            key = (item.get("namespace") or "", item["name"])
            if item.get("value") is None:
                self._values.pop(key, None)
            else:
                self._values[key] = (item["value"], list(item.get("hosts") or ()))

    def held(self) -> set[tuple[str, str]]:
        """The (namespace, name) of the values held."""
        return set(self._values)

    def keep(self, wanted: set[tuple[str, str]]) -> None:
        """Forget every value no sandbox here uses any more."""
        for key in set(self._values) - wanted:
            del self._values[key]

    def lookup(self, namespace: str | None, name: str, host: str) -> str | None:
        """The value of a held secret if it may be sent to ``host`` (the relay's question)."""
        found = self._values.get((namespace or "", name))
        if found is None or (found[1] and not bound_to(found[1], host)):
            return None
        return found[0]


class Broker:
    """The relay's state: the CA, the upstream trust and the vault's lookup."""

    def __init__(self, ca_dir: Path, extra_ca_file: str | None = None):
        self.ca = EgressCA(ca_dir)
        self.extra_ca_file = extra_ca_file
        self.lookup: Lookup | None = None  # the admin's vault (``SecretVault.value_for``)
        self.identity = WorkloadIdentity(ca_dir)  # E2B's ``iam`` tokens, issued by this admin
        self._upstream: ssl.SSLContext | None = None

    def upstream_context(self) -> ssl.SSLContext:
        if self._upstream is None:
            ctx = ssl.create_default_context()
            if self.extra_ca_file:
                ctx.load_verify_locations(self.extra_ca_file)
            ctx.set_alpn_protocols(["http/1.1"])
            self._upstream = ctx
        return self._upstream

    def mint(self, namespace: str | None, sandbox_id: str, definition: dict) -> str:
        return self.identity.mint(namespace, sandbox_id, definition)

    @staticmethod
    def wants(items: list[dict], name: str | None) -> bool:
        """Whether a connection naming ``name`` carries a secret of this sandbox's."""
        return bool(name and _NAME.match(name)) and any(bound(i, name) for i in items)  # type: ignore[arg-type]

    async def relay(self, items: list[dict], name: str, first: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, target: str, port: int, tls: bool, dial: Dial | None = None,
                    subject: str = "") -> None:
        """Serve one client connection to a bound host: each request's head rewritten, as many
        requests as the client sends on it (keep-alive) while their bodies have a length."""
        lookup = self.lookup or (lambda *_: None)
        if tls:
            client = _TlsStream(reader, writer, self.ca.context_for(name), first)
            await asyncio.wait_for(client.handshake(), HANDSHAKE_TIMEOUT)
            read, write = client.read, client.write
            data = b""
        else:
            client = None
            read = reader.read

            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()
            data = first
        if dial is None:
            async def dial(ctx, host):
                return await asyncio.wait_for(asyncio.open_connection(target, port, ssl=ctx, server_hostname=host), 10)
        async def head_of(data: bytes) -> tuple[bytes, bytes] | None:
            while b"\r\n\r\n" not in data:
                if len(data) > MAX_HEAD:
                    return None
                chunk = await read(65536)
                if not chunk:
                    return None
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            return head, rest

        got = await head_of(data)
        if got is None:
            return
        up_reader, upstream = await dial(self.upstream_context() if tls else None, name if tls else None)

        async def upward(head: bytes, data: bytes) -> None:
            while True:
                length = framing(head)
                upstream.write(rewrite_head(head, items, name, lookup, self.mint, subject,
                                            close=length is None and b"\nupgrade:" not in head.lower()))
                if length is None:  # the rest as it comes: no further head is looked at
                    upstream.write(data)
                    await upstream.drain()
                    await _forward(read, upstream)
                    return
                while length > len(data):
                    upstream.write(data)
                    length -= len(data)
                    await upstream.drain()
                    data = await read(65536)
                    if not data:
                        return
                upstream.write(data[:length])
                await upstream.drain()
                got = await head_of(data[length:])
                if got is None:
                    return
                head, data = got

        moved = [0]  # bytes sent down so far

        async def downward() -> None:
            while True:
                chunk = await up_reader.read(65536)
                if not chunk:
                    break
                moved[0] += len(chunk)
                await write(chunk)

        down, up = asyncio.ensure_future(downward()), asyncio.ensure_future(upward(*got))
        try:
            await asyncio.wait((down, up), return_when=asyncio.FIRST_COMPLETED)
            if up.done() and not down.done():  # the client is done sending: the last answers still come
                if upstream.can_write_eof():
                    upstream.write_eof()  # the server closes after them
                # TLS has no half-close: a server keeping the connection alive is left once its
                # answers stop coming (DRAIN_IDLE s without a byte), or after DRAIN_MAX s
                deadline = asyncio.get_running_loop().time() + DRAIN_MAX
                while not down.done() and asyncio.get_running_loop().time() < deadline:
                    before = moved[0]
                    await asyncio.wait((down,), timeout=DRAIN_IDLE)
                    if moved[0] == before:
                        break
            for task in (up, down):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    if not isinstance(exc, OSError):
                        raise exc  # type: ignore[misc]
        finally:
            for task in (up, down):
                task.cancel()
            if client is not None:
                client.close()
                try:
                    await writer.drain()
                except OSError:
                    pass
            upstream.close()


async def _forward(read: Callable[[int], Awaitable[bytes]], up: asyncio.StreamWriter) -> None:
    while True:
        chunk = await read(65536)
        if not chunk:
            return
        up.write(chunk)
        await up.drain()
