"""Images: a private image pulled from a real local registry with a login, pull policies, and a
failed pull that names the registry and the reason; on docker and bwrap."""

from __future__ import annotations

import uuid

import docker
import pytest

from rock.errors import SandboxStartError
from rock.runtime.docker.images import push
from rock.sdk.sandbox import Sandbox
from tests.registry import PASSWORD, USER, Registry
from tests.sdk.test_sandbox import config


@pytest.fixture(scope="module")
def private_image():
    """python:3.11 pushed to a registry that wants a login, and not present locally any more."""
    registry = Registry()
    api = docker.from_env().api
    image = f"{registry.host}/rock-test/private-{uuid.uuid4().hex[:6]}:v1"
    api.tag("python:3.11", image.rsplit(":", 1)[0], "v1")
    try:
        push(image, USER, PASSWORD)
    finally:
        api.remove_image(image)
    yield image
    try:
        api.remove_image(image, force=True)
    except docker.errors.ImageNotFound:
        pass
    registry.close()


def _untag(image: str) -> None:
    try:
        docker.from_env().api.remove_image(image)
    except docker.errors.ImageNotFound:
        pass


async def test_private_image_pulled_with_a_login(admin, private_image):
    _untag(private_image)
    host = private_image.split("/")[0]
    with pytest.raises(SandboxStartError, match=f"registry {host}.*(no basic auth|unauthorized|authentication)"):
        await Sandbox(config(admin, image=private_image)).start()
    with pytest.raises(SandboxStartError, match=f"registry {host}"):
        await Sandbox(config(admin, image=private_image, registry_username=USER, registry_password="wrong")).start()
    with pytest.raises(SandboxStartError, match="pull_policy is 'never'"):
        await Sandbox(config(admin, image=private_image, pull_policy="never")).start()
    sandbox = Sandbox(config(admin, image=private_image, registry_username=USER, registry_password=PASSWORD))
    await sandbox.start()
    try:
        assert (await sandbox.arun("python3 -c 'print(6*7)'")).output.strip() == "42"
        status = await sandbox.get_status()
        assert status.image == private_image and "registry_password" not in (status.metadata or {})
    finally:
        await sandbox.delete()
    # present now: `missing` does not pull again (no login needed), `always` does (and needs one)
    again = Sandbox(config(admin, image=private_image))
    await again.start()
    await again.delete()
    with pytest.raises(SandboxStartError, match=f"registry {host}"):
        await Sandbox(config(admin, image=private_image, pull_policy="always")).start()


async def test_unknown_registry_is_named(admin):
    with pytest.raises(SandboxStartError, match=r"registry 127\.0\.0\.1:1 failed"):
        await Sandbox(config(admin, image="127.0.0.1:1/nothing/here:v1")).start()
