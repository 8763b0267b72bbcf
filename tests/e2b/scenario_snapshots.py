"""The e2b SDK's pause, connect (resume), create_snapshot, Sandbox.create(snapshot_id), fork,
lifecycle and snapshot listing against ROCK: run in the newest SDK's own venv by
tests/e2b/test_e2b_snapshots.py.

Environment: E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL, OTHER_KEY (a second tenant's token),
TEMPLATE, BACKEND (``full`` snapshots are checked where it is gvisor, refused elsewhere).
Prints "E2B SNAPSHOTS OK" when every check passed.
"""

import os
import time

import e2b
from e2b import (InvalidArgumentException, NotFoundException, Sandbox, SandboxException, SandboxNotFoundException,
                 SandboxNotRunningException, SandboxQuery, SandboxState)

print("e2b", e2b.__file__)
assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
OTHER = os.environ["OTHER_KEY"]
FULL = os.environ["BACKEND"] == "gvisor"
TAG = "snap-%d" % os.getpid()
# Files go under /root: gVisor mounts a tmpfs of its own on /tmp, which a filesystem snapshot
# (the sandbox's writable layer) does not hold there.
made = []  # every sandbox made here, killed at the end whatever happens
snapshots = []


def create(*args, **kwargs) -> Sandbox:
    sbx = Sandbox.create(*args, **kwargs)
    made.append(sbx)
    return sbx


def listed(state) -> set:
    query = SandboxQuery(metadata={"suite": TAG}, state=[state])
    return {s.sandbox_id for s in Sandbox.list(query=query).next_items()}


def wait_for(check, what: str, seconds: float = 90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError("timed out waiting for " + what)


def count(sbx: Sandbox) -> int:
    """The background counter's last value (0 before its first write)."""
    return int(sbx.files.read("/root/count").strip() or 0) if sbx.files.exists("/root/count") else 0


def refused_while_paused(sbx: Sandbox) -> None:
    try:
        sbx.commands.run("echo should-not-run")
        raise AssertionError("a command to a paused sandbox must be refused")
    except SandboxNotRunningException as exc:
        assert "paused" in str(exc), exc


try:
    sbx = create(os.environ["TEMPLATE"], timeout=300, metadata={"suite": TAG, "kind": "main"})
    sbx.files.write("/root/before.txt", "kept")
    sbx.commands.run("echo $$ > /root/shell.pid; sleep 600", background=True, timeout=0)
    wait_for(lambda: sbx.files.exists("/root/shell.pid"), "the background shell")  # running before the pause

    # -- pause: refused commands, listed as paused, connect resumes with processes alive ------
    assert sbx.pause() is True
    assert sbx.pause() is False  # already paused: the SDK's 409
    assert sbx.get_info().state == SandboxState.PAUSED
    assert sbx.sandbox_id in listed(SandboxState.PAUSED)
    assert sbx.sandbox_id not in listed(SandboxState.RUNNING)
    refused_while_paused(sbx)
    again = Sandbox.connect(sbx.sandbox_id)
    assert again.sandbox_id == sbx.sandbox_id and sbx.get_info().state == SandboxState.RUNNING
    assert sbx.files.read("/root/before.txt") == "kept"
    pid = sbx.files.read("/root/shell.pid").strip()
    assert sbx.commands.run("kill -0 %s && echo alive" % pid).stdout == "alive\n", "the paused process died"
    sbx.connect()  # connecting to a running sandbox is a no-op
    try:
        Sandbox.pause(sbx.sandbox_id, api_key=OTHER)
        raise AssertionError("another tenant's pause must be a not-found")
    except SandboxNotFoundException:
        pass

    # -- snapshot, a sandbox from it (which outlives nothing of its source) ---------------------
    info = sbx.create_snapshot(mode="filesystem")
    snapshots.append(info.snapshot_id)
    assert info.snapshot_id and info.names == [info.snapshot_id], info
    sbx.files.write("/root/after.txt", "not in the snapshot")
    mine = {s.snapshot_id for s in Sandbox.list_snapshots().next_items()}
    assert info.snapshot_id in mine, mine
    assert info.snapshot_id in {s.snapshot_id for s in sbx.list_snapshots().next_items()}
    assert info.snapshot_id not in {s.snapshot_id for s in Sandbox.list_snapshots(api_key=OTHER).next_items()}
    child = create(info.snapshot_id, timeout=120, metadata={"suite": TAG, "kind": "from-snapshot"})
    assert child.files.read("/root/before.txt") == "kept"
    assert not child.files.exists("/root/after.txt")
    assert child.get_info().template_id == info.snapshot_id
    child.kill()

    # the snapshot is another tenant's nothing: not startable, not deletable, the source not snapshottable
    try:
        Sandbox.create(info.snapshot_id, api_key=OTHER)
        raise AssertionError("another tenant's snapshot must not start")
    except SandboxException as exc:
        assert "not found" in str(exc), exc
    assert Sandbox.delete_snapshot(info.snapshot_id, api_key=OTHER) is False
    for call in (lambda: Sandbox.create_snapshot(sbx.sandbox_id, api_key=OTHER),
                 lambda: Sandbox.fork(sbx.sandbox_id, count=1, api_key=OTHER)):
        try:
            call()
            raise AssertionError("another tenant's sandbox must be a not-found")
        except NotFoundException:
            pass

    # -- fork: three children from one instant, which differ afterwards -------------------------
    for bad in (0, 21, 1000):
        try:
            sbx.fork(count=bad)
            raise AssertionError("fork count %d must be refused" % bad)
        except InvalidArgumentException:
            pass
    children = sbx.fork(count=3, timeout=120)
    assert len(children) == 3 and all(isinstance(c, Sandbox) for c in children), children
    made.extend(children)
    assert len({c.sandbox_id for c in children} | {sbx.sandbox_id}) == 4
    for i, c in enumerate(children):
        assert c.files.read("/root/after.txt") == "not in the snapshot"  # forks take the state of now
        c.files.write("/root/only-%d" % i, str(i))
    for i, c in enumerate(children):
        here = [j for j in range(3) if c.files.exists("/root/only-%d" % j)]
        assert here == [i], (i, here)
    assert not sbx.files.exists("/root/only-0")

    # -- full snapshots: a process's memory continues on gVisor, refused where it cannot --------
    if FULL:
        sbx.commands.run("i=0; while true; do i=$((i+1)); echo $i > /root/count; sleep 0.2; done",
                         background=True, timeout=0)
        wait_for(lambda: count(sbx) > 3, "the counter")
        full = sbx.create_snapshot(mode="full")
        snapshots.append(full.snapshot_id)
        at = count(sbx)
        resumed = create(full.snapshot_id, timeout=120)
        first = count(resumed)
        wait_for(lambda: count(resumed) > first + 2, "the restored counter")
        assert count(resumed) > 3 and first <= at + 50, (first, at)
        forked = sbx.fork(count=2, timeout=120)
        made.extend(forked)
        for f in forked:
            start = count(f)
            assert start > 3, start  # not a fresh counter: the process came with its memory
            wait_for(lambda: count(f) > start + 2, "the forked counter")
    else:
        try:
            sbx.create_snapshot(mode="full")
            raise AssertionError("a full snapshot must be refused on " + os.environ["BACKEND"])
        except SandboxException as exc:
            assert getattr(exc, "status_code", None) == 400 and "gvisor" in str(exc), exc

    # -- delete: the snapshot goes, sandboxes started from it stay -----------------------------
    assert Sandbox.delete_snapshot(info.snapshot_id) is True
    snapshots.remove(info.snapshot_id)
    assert Sandbox.delete_snapshot(info.snapshot_id) is False
    try:
        Sandbox.create(info.snapshot_id)
        raise AssertionError("a deleted snapshot must not start")
    except SandboxException as exc:
        assert "not found" in str(exc), exc

    # -- lifecycle: on_timeout pause, with and without auto_resume -----------------------------
    auto = create(os.environ["TEMPLATE"], timeout=2, metadata={"suite": TAG, "kind": "auto"},
                  lifecycle={"on_timeout": "pause", "auto_resume": True})
    manual = create(os.environ["TEMPLATE"], timeout=2, metadata={"suite": TAG, "kind": "manual"},
                    lifecycle={"on_timeout": "pause", "auto_resume": False})
    auto.files.write("/root/x", "auto")
    manual.files.write("/root/x", "manual")
    wait_for(lambda: {auto.sandbox_id, manual.sandbox_id} <= listed(SandboxState.PAUSED), "the timeout's pause")
    assert manual.get_info().lifecycle == {"on_timeout": "pause", "auto_resume": False}
    assert auto.commands.run("cat /root/x").stdout == "auto"  # auto-resumed by the call
    assert auto.get_info().state == SandboxState.RUNNING
    refused_while_paused(manual)
    manual.connect(timeout=120)
    assert manual.commands.run("cat /root/x").stdout == "manual"
    try:
        create(os.environ["TEMPLATE"], lifecycle={"on_timeout": {"action": "pause", "mode": "filesystem"}},
               metadata={"suite": TAG, "kind": "fs"})
    except SandboxException as exc:
        raise AssertionError("a filesystem-mode timeout pause is honoured: " + str(exc))
finally:
    for s in made:
        try:
            s.kill()
        except Exception as exc:  # noqa: BLE001 - the check below says what is left
            print("kill failed", s.sandbox_id, exc)
    for name in snapshots:
        Sandbox.delete_snapshot(name)
    # A fork's snapshot is deleted once its children run, except where they run on it (docker's
    # engine image): that one goes after its last child does (or whoever deletes it first).
    def none_left() -> bool:
        left = Sandbox.list_snapshots().next_items()
        assert all(s.snapshot_id.startswith("snap-") for s in left), left  # only forks' own
        for s in left:
            try:
                Sandbox.delete_snapshot(s.snapshot_id)
            except SandboxException as exc:  # 409 while a child's container is still going: again
                print("not yet:", exc)
        return not left

    wait_for(none_left, "the forks' snapshots to go")

print("E2B SNAPSHOTS OK")
