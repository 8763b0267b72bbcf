"""Finding 4: no upload door holds a body in memory; limits hold while the body streams.

Before: E2B's ``POST /files`` read the whole body and inflated gzip in memory (a 382 KiB gzip
bomb took the admin from 98 to 866 MB), and a multipart part was read whole too. ROCK's own
upload routes are held to the same bound here."""

from __future__ import annotations

import hashlib
import uuid
import zlib

import httpx
import pytest

from rock.admin.e2b import filesystem
from tests.security.conftest import TOKEN_A, PeakRss, execute, rock

MB = 1 << 20
BOUND = 100 * MB  # far under any of the bodies below: one of them held whole breaks it


def zeros(total: int, piece: int = MB):
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        yield bytes(n)
        sent += n


def gzip_of_zeros(total: int) -> bytes:
    packer, out = zlib.compressobj(9, zlib.DEFLATED, 31), []
    for piece in zeros(total, 16 * MB):
        out.append(packer.compress(piece))
    out.append(packer.flush())
    return b"".join(out)


def multipart(name: str, total: int, boundary: str = "rockboundary"):
    yield (f"--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
           "content-type: application/octet-stream\r\n\r\n").encode()
    yield from zeros(total)
    yield f"\r\n--{boundary}--\r\n".encode()


@pytest.fixture
def e2b_sandbox(tenants):
    with httpx.Client(base_url=tenants.url, timeout=600) as client:
        r = client.post("/v2/sandboxes", headers={"X-API-KEY": TOKEN_A}, json={"templateID": "base", "timeout": 600})
        assert r.status_code == 201, r.text
        box = r.json()
        envd = {"E2b-Sandbox-Id": box["sandboxID"], "X-Access-Token": box["envdAccessToken"]}
        try:
            yield client, box["sandboxID"], envd
        finally:
            client.delete(f"/sandboxes/{box['sandboxID']}", headers={"X-API-KEY": TOKEN_A})


def size_in(tenants, sid: str, path: str) -> str:
    with rock(tenants, TOKEN_A) as alice:
        return execute(alice, sid, f"stat -c %s {path} 2>&1; rm -f {path}")["stdout"].strip()


def test_no_upload_door_holds_a_body_or_its_inflation_in_memory(tenants, e2b_sandbox):
    """E2B's /files (gzip, raw, multipart) and ROCK's /upload and /files/write."""
    client, sid, envd = e2b_sandbox
    bomb = gzip_of_zeros(400 * MB)  # ~400 KiB on the wire, 400 MiB inflated
    assert len(bomb) < MB
    for name, kwargs, size in (
            ("bomb", dict(headers={**envd, "content-type": "application/octet-stream", "content-encoding": "gzip"},
                          content=bomb), 400 * MB),
            ("raw", dict(headers={**envd, "content-type": "application/octet-stream"}, content=zeros(300 * MB)),
             300 * MB),
            ("form", dict(headers={**envd, "content-type": "multipart/form-data; boundary=rockboundary"},
                          content=multipart("form", 300 * MB)), 300 * MB)):
        path = f"/tmp/{name}-{uuid.uuid4().hex[:6]}"
        with PeakRss() as peak:
            r = client.post("/files", params={"path": path}, **kwargs)
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        assert peak.growth < BOUND, f"{name}: the admin's process grew {peak.growth / MB:.0f} MB"
        # control: every byte arrived in the sandbox
        assert size_in(tenants, sid, path) == str(size), name
    with rock(tenants, TOKEN_A) as alice:
        for route, kwargs in (
                ("/upload", dict(method="POST", url="/upload", content=_rock_form(sid, 300 * MB),
                                 headers={"content-type": "multipart/form-data; boundary=rockboundary"})),
                ("/files/write", dict(method="PUT", url="/files/write", content=zeros(300 * MB),
                                      params={"sandbox_id": sid, "path": "/tmp/upload"}))):
            with PeakRss() as peak:
                r = alice.request(**kwargs)
            assert r.status_code == 200, (route, r.text[:300])
            assert peak.growth < BOUND, f"{route}: the admin's process grew {peak.growth / MB:.0f} MB"
            assert size_in(tenants, sid, "/tmp/upload") == str(300 * MB), route


def test_a_gzip_body_past_the_inflated_limit_is_refused_while_streaming(tenants, e2b_sandbox, monkeypatch):
    client, sid, envd = e2b_sandbox
    monkeypatch.setattr(filesystem, "MAX_INFLATED", 32 * MB)
    headers = {**envd, "content-type": "application/octet-stream", "content-encoding": "gzip"}
    bomb = gzip_of_zeros(200 * MB)
    with PeakRss() as peak:
        r = client.post("/files", params={"path": "/tmp/too-big"}, headers=headers, content=bomb)
    assert r.status_code == 413 and "inflates past 32 MiB" in r.json()["message"], r.text
    assert peak.growth < 32 * MB, f"the admin's process grew {peak.growth / MB:.0f} MB"
    with rock(tenants, TOKEN_A) as alice:  # nothing left behind: no target, no temporary
        assert execute(alice, sid, "ls -a /tmp | grep -c too-big || true")["stdout"].strip() == "0"
    # control: a gzip body under the limit is inflated and written
    data = b"rock-marker " * 1000
    r = client.post("/files", params={"path": "/tmp/small"}, headers=headers, content=zlib.compress(data, wbits=31))
    assert r.status_code == 200, r.text
    r = client.get("/files", params={"path": "/tmp/small"}, headers=envd)
    assert r.status_code == 200 and hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
    # and a body that is not gzip at all is a 400 that says so
    r = client.post("/files", params={"path": "/tmp/bad"}, headers=headers, content=b"not gzip at all")
    assert r.status_code == 400 and "gzip" in r.json()["message"], r.text


def _rock_form(sid: str, total: int):
    b = "rockboundary"
    for name, value in (("sandbox_id", sid), ("target_path", "/tmp/upload")):
        yield f"--{b}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
    yield from multipart("upload", total, b)
