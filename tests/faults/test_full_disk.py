"""A full disk inside a sandbox and under the admin's state directory (a small tmpfs mounted for
the test): writes fail with a clear error, the store keeps its records, the admin serves on and
recovers once space is freed."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import SESSION_ROOT
from tests.faults.conftest import backends

SIZE_MB = 64


@pytest.fixture
def small_disk():
    path = Path(tempfile.mkdtemp(prefix="disk", dir=SESSION_ROOT))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0755", "rock-fault-disk", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)
    path.rmdir()


def _fill(directory: Path) -> Path:
    """Write until the disk is full; the file that did it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def _failed_clearly(r) -> None:
    assert r.status_code >= 400 or r.json()["status"] != "Success", r.text
    assert "Traceback" not in r.text and ("No space left" in r.text or "full" in r.text), r.text


@pytest.mark.parametrize("backend", backends())
def test_full_disks(small_disk, admin_process, backend):  # the admin is torn down before its disk
    admin = admin_process(backend, state_dir=small_disk).start()
    sid = admin.start_sandbox()
    admin.ok("/write_file", sandbox_id=sid, path="/root/before.txt", content="written before the disk filled")

    # Inside the sandbox: bwrap's writable layer lives under the state dir (this small disk);
    # docker's lives in the engine's data root (shared, never filled here): its /dev/shm is a
    # 64 MB tmpfs of its own.
    place = "/root" if backend == "bwrap" else "/dev/shm"
    out = admin.run(sid, f"head -c {2 * SIZE_MB}M /dev/zero > {place}/fill; echo rc=$?", timeout=60).json()["result"]
    assert "No space left on device" in out["output"] and "rc=0" not in out["output"], out
    r = admin.post("/write_file", {"sandbox_id": sid, "path": f"{place}/more.txt", "content": "x" * (1 << 20)})
    _failed_clearly(r)
    # The state directory full as well (the admin's SQLite store and the worker's records live there).
    filler = _fill(small_disk)
    r = admin.post("/start_async", {"memory": "512m", "cpus": 1, "wait": True}, http_timeout=120)
    assert r.status_code == 507 and "out of disk space" in r.json()["message"], r.text
    # and the half-made sandbox is not left behind
    assert len(os.listdir(small_disk / "sandboxes")) == 1, os.listdir(small_disk / "sandboxes")
    # What was written before is served; the admin answers.
    assert admin.healthy()
    assert admin.status(sid)["is_alive"]
    assert admin.ok("/read_file", sandbox_id=sid, path="/root/before.txt")["content"] == "written before the disk filled"

    # Space freed: everything works again, and survives a restart (the store is intact).
    filler.unlink()
    admin.run(sid, f"rm -f {place}/fill")
    second = admin.start_sandbox()
    admin.ok("/write_file", sandbox_id=second, path="/root/after.txt", content="after")
    admin.stop()
    admin.start()
    for box, name, text in ((sid, "before.txt", "written before the disk filled"), (second, "after.txt", "after")):
        assert admin.status(box)["is_alive"], box
        assert admin.ok("/read_file", sandbox_id=box, path=f"/root/{name}")["content"] == text
    with sqlite3.connect(small_disk / "admin.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
