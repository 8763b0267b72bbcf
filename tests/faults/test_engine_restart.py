"""The Docker engine restarts under running sandboxes. Never the machine's shared engine: a
private dockerd of this test's own (tests/faults/engine.py), which the admin reaches through
DOCKER_HOST; with and without live-restore.

Without live-restore the engine stops every container when it stops: the admin reports those
sandboxes failed with the reason and fails calls into them at once. With it, the containers and
their agents run on and a command running across the restart completes. Either way a start
while the engine is away gets a clear error, and starts work again once it is back."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from tests.faults.engine import PrivateEngine

pytestmark = pytest.mark.docker


@pytest.fixture(params=[False, True], ids=["plain", "live-restore"])
def engine(request):
    if not shutil.which("dockerd"):
        pytest.skip("dockerd is not installed")
    e = PrivateEngine(live_restore=request.param)
    try:
        e.start()
        e.load_tiny_image()
        yield e
    finally:
        e.remove()


def test_engine_restart_under_running_sandboxes(engine, admin_process):  # the admin goes first
    admin = admin_process("docker", env={"DOCKER_HOST": engine.host}).start()
    image = "rock-fault-tiny:1"
    boxes = [admin.start_sandbox(image=image) for _ in range(2)]
    admin.ok("/write_file", sandbox_id=boxes[0], path="/root/before.txt", content="before")
    assert admin.run(boxes[1], "echo up").json()["result"]["output"].strip() == "up"
    answer: dict = {}

    def long_call():
        answer["response"] = admin.run(boxes[0], "sleep 3; echo survived", timeout=60, http_timeout=70)

    caller = threading.Thread(target=long_call)
    caller.start()
    time.sleep(0.5)

    engine.stop()
    if not engine.live_restore:
        caller.join(30)
        assert not caller.is_alive(), "a command call hangs after the engine stopped its container"
        r = answer["response"]
        assert r.status_code >= 400 and "agent went away" in r.text, r.text
        for sid in boxes:
            status = admin.status(sid)
            assert status["lifecycle_state"] == "failed" and "agent went away" in status["failure_reason"], status
            assert [h["event"] for h in status["state_history"]][:2] == ["create", "started"]  # records kept
    # While the engine is away: a start fails at once, saying why; the admin answers.
    t0 = time.monotonic()
    r = admin.post("/start_async", {"image": image, "memory": "256m", "wait": True}, http_timeout=60)
    assert r.status_code == 503 and "Docker engine" in r.text, r.text
    assert time.monotonic() - t0 < 20
    assert admin.healthy()

    engine.start()
    if engine.live_restore:  # the sandboxes never noticed
        caller.join(30)
        out = answer["response"].json()["result"]
        assert out["output"].strip() == "survived", out
        assert admin.ok("/read_file", sandbox_id=boxes[0], path="/root/before.txt")["content"] == "before"
        assert all(admin.status(sid)["is_alive"] for sid in boxes)
    fresh = admin.start_sandbox(image=image)
    assert admin.run(fresh, "echo again").json()["result"]["output"].strip() == "again"
    for sid in boxes:  # stopped or not, they can be deleted, and their containers go
        admin.ok("/delete", sandbox_id=sid)
    client = engine.client()
    try:
        left = client.containers.list(all=True)
    finally:
        client.close()
    assert len(left) == 1 and left[0].status == "running", left  # only the fresh sandbox's
