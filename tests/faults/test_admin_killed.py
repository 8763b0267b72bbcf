"""SIGKILL of the admin in the middle of a stream and an upload, and in the middle of a start;
then the admin starts again on the same state directory."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from websockets.sync.client import connect

from rock.admin.context import PREFIX
from tests.faults.conftest import backends, sandbox_upper

CHUNK = 4 << 20
CHUNKS = 16


def _body(pause: float = 0.25):
    """CHUNKS chunks, each of its own letter, ``pause`` seconds apart."""
    for i in range(CHUNKS):
        yield bytes([65 + i]) * CHUNK
        time.sleep(pause)


def _in_background(fn) -> threading.Thread:
    def quiet():
        try:
            fn()
        except (httpx.HTTPError, OSError):
            pass  # the admin died under it: expected

    t = threading.Thread(target=quiet, daemon=True)
    t.start()
    return t


def _wait_for(predicate, what: str, timeout: float = 30, step: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("backend", backends())
def test_admin_killed_mid_stream_and_upload(admin_process, backend):
    admin = admin_process(backend).start()
    sid = admin.start_sandbox()
    admin.ok("/write_file", sandbox_id=sid, path="/root/before.txt", content="written before the fault")

    with connect(f"ws://127.0.0.1:{admin.port}{PREFIX}/stream?sandbox_id={sid}&session=st&create=true",
                 open_timeout=10) as ws:
        ws.send(json.dumps({"type": "run", "command": "for i in $(seq 1 100); do echo line$i; sleep 0.05; done; "
                                                      "echo done > /root/streamed"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "output"

        upload = _in_background(lambda: admin.http.put("/files/write", params={"sandbox_id": sid, "path": "/root/up.bin"},
                                                       content=_body(), timeout=60))
        upper = sandbox_upper(admin, sid) / "root"
        # Kill once part of the upload is in the sandbox, wherever the admin puts it meanwhile.
        _wait_for(lambda: [p for p in upper.glob("*up.bin*") if p.stat().st_size > 0], "the upload's first bytes")
        admin.kill()
        with pytest.raises(Exception):  # the stream ends: the client learns its server is gone
            while True:
                ws.recv(timeout=10)
    upload.join(30)

    admin.start()
    status = admin.status(sid)
    assert status["is_alive"] and status["lifecycle_state"] == "running", status
    assert admin.ok("/read_file", sandbox_id=sid, path="/root/before.txt")["content"] == "written before the fault"
    # No half upload at the target: it is absent (the client must send it again), never truncated.
    target = upper / "up.bin"
    assert not target.exists() or target.stat().st_size == CHUNK * CHUNKS, target.stat().st_size
    # The command the stream ran went on in the sandbox; the sandbox serves new streams and commands.
    _wait_for(lambda: admin.run(sid, "cat /root/streamed 2>/dev/null").json()["result"]["output"].strip() == "done",
              "the streamed command to finish in the sandbox", step=0.3)
    with connect(f"ws://127.0.0.1:{admin.port}{PREFIX}/stream?sandbox_id={sid}&session=st2&create=true",
                 open_timeout=10) as again:
        again.send(json.dumps({"type": "run", "command": "echo after"}))
        messages = [json.loads(again.recv(timeout=20)) for _ in range(2)]
    assert messages[-1]["type"] == "result" and "after" in messages[-1]["output"], messages
    # And a whole upload now lands complete, leaving no temporary file of its own.
    temporaries = sorted(p.name for p in upper.glob(".up.bin*"))  # the killed upload's, hidden
    r = admin.http.put("/files/write", params={"sandbox_id": sid, "path": "/root/up.bin"}, content=_body(0), timeout=60)
    assert r.status_code == 200 and r.json()["result"]["size"] == CHUNK * CHUNKS, r.text
    assert sorted(p.name for p in upper.glob(".up.bin*")) == temporaries
    assert (upper / "up.bin").read_bytes()[-1:] == bytes([65 + CHUNKS - 1])


@pytest.mark.parametrize("backend", backends())
def test_admin_killed_mid_start(admin_process, backend):
    admin = admin_process(backend).start()
    kept = admin.start_sandbox()
    admin.ok("/write_file", sandbox_id=kept, path="/root/before.txt", content="kept")
    sid = "k" + uuid.uuid4().hex[:10]
    starting = _in_background(lambda: admin.start_sandbox(sandbox_id=sid))
    _wait_for(lambda: (admin.state_dir / "sandboxes" / sid).exists(), "the start to begin", step=0.001)
    admin.kill()
    starting.join(30)

    admin.start()
    assert admin.status(kept)["is_alive"]
    assert admin.ok("/read_file", sandbox_id=kept, path="/root/before.txt")["content"] == "kept"
    r = admin.http.get("/get_status", params={"sandbox_id": sid}, timeout=30)
    if r.status_code == 200 and r.json()["result"]["is_alive"]:
        # the start got far enough to finish: the sandbox is re-attached and works
        out = admin.run(sid, "echo up").json()
        assert out["result"]["output"].strip() == "up", out
    else:
        # or it is cleaned up: no record claims it runs, nothing of it is left on disk
        assert r.status_code == 404 or (r.json()["result"]["lifecycle_state"] == "failed"
                                        and "admin restart" in r.json()["result"]["failure_reason"]), r.text
        assert not (admin.state_dir / "sandboxes" / sid).exists()
        assert not (admin.state_dir / "records" / f"{sid}.json").exists()
        # the same id can be started again
        assert admin.start_sandbox(sandbox_id=sid) == sid
    assert admin.healthy()


@pytest.mark.parametrize("backend", backends())
def test_a_whole_upload_keeps_the_targets_mode_and_reaches_mounted_files(admin_process, backend):
    """Landing by rename must not change what a plain overwrite kept: the mode of the file it
    replaces, and files that are mount points (docker's /etc/hosts)."""
    admin = admin_process(backend).start()
    sid = admin.start_sandbox()
    admin.run(sid, "printf 'old' > /root/tool.sh && chmod 750 /root/tool.sh")
    r = admin.http.put("/files/write", params={"sandbox_id": sid, "path": "/root/tool.sh"}, content=b"echo new")
    assert r.status_code == 200, r.text
    assert admin.run(sid, "stat -c %a /root/tool.sh; cat /root/tool.sh").json()["result"]["output"].split() == ["750", "echo", "new"]
    hosts = admin.ok("/read_file", sandbox_id=sid, path="/etc/hosts")["content"]
    r = admin.http.put("/files/write", params={"sandbox_id": sid, "path": "/etc/hosts"}, content=(hosts + "127.0.0.1 x\n").encode())
    assert r.status_code == 200, r.text
    assert admin.ok("/read_file", sandbox_id=sid, path="/etc/hosts")["content"].endswith("127.0.0.1 x\n")
