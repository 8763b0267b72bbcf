"""Red team: a tenant's commit or build must not replace the image another tenant's commit is
writing under the same tag.

The tag's owner used to be checked when a commit was accepted (by the engine's label on an image
of that name), and the commit ran later: B's commit to the tag that A's commit was still writing
was accepted too (there was no image yet) and replaced A's image, so A's next sandbox of the tag
read B's file. Claims are now taken atomically in the store when the commit is accepted, and
kept. Both backends (a docker commit and a bwrap import), two tokens on one admin.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import uuid

import docker
import httpx
import pytest

from rock.errors import Conflict
from rock.sdk.sandbox import Sandbox, SandboxConfig
from tests.admin.harness import Admin, backend_params

TENANTS = {"token-tag-a": "tag-a", "token-tag-b": "tag-b"}
MARK = "/opt/tag-race/owner.txt"


@pytest.fixture(scope="module", params=backend_params())
def tag_admin(request):
    server = Admin(request.param, tokens=TENANTS).start()
    yield server
    server.stop(stop_sandboxes=True)


def _sandbox(admin, token: str, **kw) -> Sandbox:
    return Sandbox(SandboxConfig(base_url=admin.url, token=token, memory="512m", cpus=1, **kw))


def _context(dockerfile: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    return buf.getvalue()


async def test_a_commit_in_flight_keeps_its_tag(tag_admin):
    tag = f"sec-tag-race/{uuid.uuid4().hex[:10]}:v1"
    a_mark, b_mark = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    alice, bob = _sandbox(tag_admin, "token-tag-a"), _sandbox(tag_admin, "token-tag-b")
    await asyncio.gather(alice.start(), bob.start())
    reader = None
    try:
        await asyncio.gather(alice.write_bytes(MARK, a_mark.encode()), bob.write_bytes(MARK, b_mark.encode()))
        started = await alice.commit_async(tag)
        assert started.phase == "RUNNING", started
        # Bob, while Alice's commit is still writing the tag: his commit, then a build under it
        with pytest.raises(Conflict, match="choose another tag"):
            await bob.commit_async(tag)
        async with httpx.AsyncClient(base_url=tag_admin.url, headers={"Authorization": "Bearer token-tag-b"},
                                     timeout=300) as b:
            built = await b.post("/apis/envs/sandbox/v1/images/build", params={"tag": tag},
                                 content=_context(f"FROM python:3.11\nRUN mkdir -p /opt/tag-race && echo {b_mark} > {MARK}\n"),
                                 headers={"content-type": "application/x-tar"})
        assert built.status_code == 409, built.text
        status = started
        while status.phase == "RUNNING":
            await asyncio.sleep(0.2)
            status = await alice.get_commit_status()
        assert status.phase == "SUCCEEDED", status  # control: Alice's commit ran and made the image
        reader = _sandbox(tag_admin, "token-tag-a", image=tag)
        await reader.start()
        seen = (await reader.read_bytes(MARK)).decode()
        assert seen == a_mark and b_mark not in seen
        # Bob's commit path works under a tag of his own: his refusals were about the tag
        own = f"sec-tag-race/{uuid.uuid4().hex[:10]}:v1"
        try:
            assert (await bob.commit(own, timeout=300)).phase == "SUCCEEDED"
        finally:
            docker.from_env().api.remove_image(own, force=True)
    finally:
        for sandbox in (alice, bob, reader):
            if sandbox is not None:
                await sandbox.delete()
        try:
            docker.from_env().api.remove_image(tag, force=True)
        except docker.errors.NotFound:
            pass
