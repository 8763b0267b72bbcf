"""One sandbox with an E2B volume mounted, through the unmodified e2b SDK: what the content API
wrote is read inside the sandbox, what the sandbox wrote (by a command and by the SDK's files API)
is read back by the content API, and another tenant finds no volume. Run in the newest SDK's own
venv by tests/e2b/test_e2b_volumes.py against a gVisor admin (one sandbox: runsc boots are costly).

Environment: as scenario_volumes.py. Prints "E2B VOLUME ONE SANDBOX OK" when every check passed.
"""

import contextlib
import os

os.environ.setdefault("E2B_VOLUME_API_URL", os.environ["E2B_API_URL"])

import e2b
from e2b import Sandbox, Volume
from e2b.exceptions import VolumeNotFoundException

assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
NAME = f"vol-{os.getpid()}"
vol = Volume.create(NAME)
sbx = None
try:
    vol.write_file("/seed/hello.txt", "hi from the api")
    sbx = Sandbox.create(os.environ["TEMPLATE"], timeout=180, volume_mounts={"/data": vol})
    assert sbx.commands.run("cat /data/seed/hello.txt").stdout == "hi from the api"
    assert sbx.get_info().volume_mounts == [{"name": NAME, "path": "/data"}], sbx.get_info()
    assert sbx.files.read("/data/seed/hello.txt") == "hi from the api"
    sbx.commands.run("echo by a command > /data/cmd.txt && mkdir -p /data/sub")
    sbx.files.write("/data/sub/sdk.txt", "by the files api")
    assert sbx.files.read("/data/cmd.txt") == "by a command\n"
    # the sandbox's writes reach the volume itself, not a layer of the sandbox's own
    assert vol.read_file("/cmd.txt") == "by a command\n"
    assert vol.read_file("/sub/sdk.txt") == "by the files api"
    assert sorted(e.path for e in vol.list("/", depth=2)) == ["/cmd.txt", "/seed", "/seed/hello.txt", "/sub",
                                                               "/sub/sdk.txt"]
    try:
        Volume.get_info(vol.volume_id, api_key=os.environ["OTHER_KEY"])
        raise AssertionError("another tenant got the volume")
    except VolumeNotFoundException:
        pass
    sbx.kill()
    sbx = None
    assert vol.read_file("/sub/sdk.txt") == "by the files api"  # it outlives the sandbox
    assert Volume.destroy(vol.volume_id) is True
finally:
    if sbx is not None:
        with contextlib.suppress(Exception):  # already gone
            sbx.kill()
    with contextlib.suppress(Exception):  # already destroyed
        Volume.destroy(vol.volume_id)
print("E2B VOLUME ONE SANDBOX OK")
