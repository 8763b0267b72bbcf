"""The e2b SDK's ``Volume`` against ROCK: create, list, get, the content API (write, read, list,
make_dir, stat, metadata, remove), ``volume_mounts`` at ``Sandbox.create``, a volume in use refused
deletion, another tenant's volume missing. Run in the newest SDK's own venv by
tests/e2b/test_e2b_volumes.py.

Environment: E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL, OTHER_KEY (a second tenant's token),
TEMPLATE. The content API's address is the same server: E2B_VOLUME_API_URL, set here from
E2B_API_URL as a user of a self-hosted server sets it. Prints "E2B VOLUMES OK" when every check passed.
"""

import contextlib
import os

os.environ.setdefault("E2B_VOLUME_API_URL", os.environ["E2B_API_URL"])

import e2b
from e2b import NotFoundException, Sandbox, SandboxException, Volume
from e2b.exceptions import VolumeNotFoundException, VolumePathNotFoundException

print("e2b", e2b.__file__)
assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
OTHER = os.environ["OTHER_KEY"]
TEMPLATE = os.environ["TEMPLATE"]
NAME = f"vol-{os.getpid()}"
made = []

try:
    vol = Volume.create(NAME)
    assert vol.name == NAME and vol.volume_id and vol.token, vol
    assert NAME in [v.name for v in Volume.list()]
    info = Volume.get_info(vol.volume_id)
    assert info.name == NAME and info.token == vol.token, info
    again = Volume.connect(vol.volume_id)
    assert again.token == vol.token

    # the content API, without a sandbox
    entry = vol.write_file("/seed/hello.txt", "hi from the api")
    assert entry.type.value == "file" and entry.size == len("hi from the api") and entry.path == "/seed/hello.txt", entry
    assert vol.read_file("/seed/hello.txt") == "hi from the api"
    assert vol.read_file("/seed/hello.txt", format="bytes") == b"hi from the api"
    assert b"".join(vol.read_file("/seed/hello.txt", format="stream")) == b"hi from the api"
    made_dir = vol.make_dir("/deep/er/dir", force=True)
    assert made_dir.type.value == "directory", made_dir
    names = sorted(e.path for e in vol.list("/", depth=2))
    assert names == ["/deep", "/deep/er", "/seed", "/seed/hello.txt"], names
    assert vol.exists("/seed/hello.txt") and not vol.exists("/nope")
    assert vol.update_metadata("/seed/hello.txt", mode=0o600).mode == 0o600
    vol.remove("/deep")
    assert not vol.exists("/deep")
    try:
        vol.read_file("/deep/er/dir/x")
        raise AssertionError("a missing file was read")
    except VolumePathNotFoundException:
        pass
    try:
        vol.read_file("/../../etc/passwd")
        raise AssertionError("a path outside the volume was read")
    except NotFoundException:
        raise AssertionError("'..' must be refused, not looked up") from None
    except Exception as exc:  # noqa: BLE001 - the SDK's VolumeException for a 400
        assert "'..'" in str(exc), exc

    # mounted into a sandbox (by the object and by name): the files are there both ways
    sbx = Sandbox.create(TEMPLATE, timeout=120, volume_mounts={"/data": vol})
    made.append(sbx)
    assert sbx.commands.run("cat /data/seed/hello.txt").stdout == "hi from the api"
    assert sbx.get_info().volume_mounts == [{"name": NAME, "path": "/data"}], sbx.get_info()
    sbx.commands.run("echo from the sandbox > /data/from-sbx.txt")
    try:
        Volume.destroy(vol.volume_id)
        raise AssertionError("a volume in use was deleted")
    except Exception as exc:  # noqa: BLE001 - the SDK's VolumeException for the 409
        assert "stop them first" in str(exc), exc
    sbx.kill()
    # it outlives the sandbox: the content API and a second sandbox see what the first wrote
    assert vol.read_file("/from-sbx.txt") == "from the sandbox\n"
    sbx2 = Sandbox.create(TEMPLATE, timeout=120, volume_mounts={"/mnt/v": NAME})
    made.append(sbx2)
    assert sbx2.commands.run("cat /mnt/v/from-sbx.txt").stdout == "from the sandbox\n"
    sbx2.kill()

    # another tenant: the volume is missing everywhere (control plane, mounts), its token is not theirs to use
    try:
        Volume.get_info(vol.volume_id, api_key=OTHER)
        raise AssertionError("another tenant got the volume")
    except VolumeNotFoundException:
        pass
    assert NAME not in [v.name for v in Volume.list(api_key=OTHER)]
    assert Volume.destroy(vol.volume_id, api_key=OTHER) is False
    try:
        made.append(Sandbox.create(TEMPLATE, timeout=60, volume_mounts={"/data": NAME}, api_key=OTHER))
        raise AssertionError("another tenant mounted the volume")
    except SandboxException as exc:  # the SDK's create turns every status into this one
        assert "404" in str(exc) and "not found" in str(exc), exc
    try:
        Volume(vol.volume_id, NAME, token="not-the-token").read_file("/seed/hello.txt")
        raise AssertionError("a wrong token read the volume")
    except VolumePathNotFoundException:
        pass

    assert Volume.destroy(vol.volume_id) is True
    assert Volume.destroy(vol.volume_id) is False
    assert NAME not in [v.name for v in Volume.list()]
finally:
    for s in made:
        with contextlib.suppress(Exception):  # already gone
            s.kill()
    for v in Volume.list():
        if v.name == NAME:
            Volume.destroy(v.volume_id)
print("E2B VOLUMES OK")
