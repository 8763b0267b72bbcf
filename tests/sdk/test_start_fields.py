"""No silent drops: every start field rl-rock sends either takes effect or is refused by name."""

from __future__ import annotations

import httpx
import pytest

from rock.errors import BadRequest
from rock.sdk.sandbox import Sandbox
from tests.sdk.test_sandbox import config


async def _refused(admin, match: str, **fields) -> None:
    with pytest.raises(BadRequest, match=match):
        await Sandbox(config(admin, **fields)).start()


async def test_fields_this_machine_cannot_honour_are_refused_by_name(admin):
    # this machine has no GPU and no kata runtime (checked by the test itself, not assumed)
    import glob

    assert not glob.glob("/dev/nvidia[0-9]*")
    await _refused(admin, r"asks for 1 GPU\(s\); this machine has 0", num_gpus=1)
    await _refused(admin, r"accelerator_type='A100': this machine has no GPU", accelerator_type="A100")
    await _refused(admin, r"use_kata_runtime: (no kata runtime is installed|kata containers need the docker)",
                   use_kata_runtime=True)
    await _refused(admin, r"image_os='windows'", image_os="windows")
    await _refused(admin, "exclusive", auto_archive_seconds=5, auto_delete_seconds=5)
    await _refused(admin, "go together", registry_username="only-a-user")
    url = f"{admin.url}/apis/envs/sandbox/v1/start_async"
    async with httpx.AsyncClient() as http:
        r = await http.post(url, json={"image": "python:3.11", "use_kata": True})  # a typo is not a no-op
        assert r.status_code == 422 and "use_kata" in r.json()["message"]
        r = await http.post(url, json={"image": "python:3.11", "disk": "lots"})
        assert r.status_code == 422 and "disk" in r.json()["message"]


async def test_rl_rock_defaults_start_and_are_reported(admin):
    # rl-rock sends all of these on every start, with these defaults
    sandbox = Sandbox(config(admin, num_gpus=None, use_kata_runtime=False, disk="50G", image_os="linux"))
    await sandbox.start()
    try:
        status = await sandbox.get_status()
        assert status.disk == "50G" and status.metadata["disk"] == "50G"
        assert "registry_password" not in status.metadata
    finally:
        await sandbox.delete()


async def test_disk_limit_stops_a_sandbox_that_writes_more(admin):
    sandbox = Sandbox(config(admin, disk="2m"))
    await sandbox.start()
    try:
        await sandbox.arun("head -c 1000000 /dev/urandom > /root/small.bin")
        assert admin.call(admin.app.state.rock.lifecycle.check_disk) == []  # under the limit
        await sandbox.arun("head -c 4000000 /dev/urandom > /root/big.bin")
        assert admin.call(admin.app.state.rock.lifecycle.check_disk) == [sandbox.sandbox_id]
        status = await sandbox.get_status(include_all_states=True)
        assert status.state == "stopped" and status.state_history[-1].event == "disk_limit"
        assert "disk limit exceeded" in status.failure_reason and "2m" in status.failure_reason
        await sandbox.restart()  # its files were kept: free some space and go on
        assert (await sandbox.arun("rm /root/big.bin && echo ok")).output.strip() == "ok"
    finally:
        await sandbox.delete()
