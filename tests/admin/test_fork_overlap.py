"""A fork through the admin starts its children as soon as the snapshot is whole, while the parent
is still on its way back (a full snapshot on gVisor restores the parent from the image the children
start from), and stays all or none: if the parent does not come back, its children go too.

The admin here is the real composition root on a real worker; the worker below only notes the
order of its calls (and, where a test asks, fails the parent's way back: nothing on this machine
makes a real restore fail on cue)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest

from rock.actions.sandbox import SandboxStartRequest
from rock.admin.root import Root
from rock.config import Settings
from rock.errors import SandboxNotFound, SandboxStartError
from rock.runtime import get_runtime_class
from rock.worker.worker import Worker
from tests.conftest import SESSION_ROOT


class Watched(Worker):
    """A real worker that notes each child's start and the parent's return, in order."""

    def __init__(self, settings: Settings, backend: str):
        super().__init__(settings, backend)
        self.seen: list[tuple[str, str]] = []
        self.fail_back = False

    async def start_from(self, name, owner, spec, node_id=None):
        self.seen.append(("child starts", spec.sandbox_id))
        return await super().start_from(name, owner, spec, node_id)

    async def back(self, sandbox_id, node_id=None):
        await super().back(sandbox_id, node_id)
        self.seen.append(("parent back", sandbox_id))
        if self.fail_back:
            raise SandboxStartError(f"sandbox {sandbox_id} did not come back from its snapshot (injected)")


@contextlib.asynccontextmanager
async def _admin(backend: str):
    """The admin's service on a ``Watched`` worker, and a running parent sandbox; all of it
    removed afterwards."""
    reason = get_runtime_class(backend).available()
    if reason:
        pytest.skip(f"{backend}: {reason}")
    state = Path(tempfile.mkdtemp(prefix="fo", dir=SESSION_ROOT))
    worker = Watched(Settings(state_dir=state, backend=backend, default_memory="512m"), backend)
    await worker.start()
    root = Root(worker.settings, worker=worker)
    try:
        async with root.running():
            parent = await root.sandboxes.start(SandboxStartRequest(), None, {}, wait=True)
            assert parent.state == "running"
            yield root.sandboxes, worker, parent
    finally:
        await worker.close(stop_sandboxes=True)
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.bwrap
async def test_a_fork_whose_parent_does_not_come_back_leaves_no_child_and_no_reservation():
    async with _admin("bwrap") as (svc, worker, parent):
        worker.fail_back = True
        with pytest.raises(SandboxStartError, match="did not come back"):
            await svc.fork(parent.sandbox_id, None, 2)
        children = [sid for what, sid in worker.seen if what == "child starts"]
        # the control: the children did start (a filesystem snapshot's parent is back at once)
        assert sorted(what for what, _ in worker.seen) == ["child starts", "child starts", "parent back"]
        for sid in children:
            record = await svc.lookup(sid, None)
            assert record.state == "deleted", (sid, record.state)
            with pytest.raises(SandboxNotFound):
                worker.get(sid)  # gone from the worker too
            assert sid not in svc.admission._held
        assert set(svc.admission._held) == {parent.sandbox_id}
        assert await svc.snapshots(None) == []  # nor the fork's snapshot
        assert (await svc.lookup(parent.sandbox_id, None)).state == "running"
        assert (await (await svc.agent(parent.sandbox_id, None)).exec("echo up", shell=True)).stdout == "up\n"

        worker.fail_back, worker.seen[:] = False, []
        kids, kept = await svc.fork(parent.sandbox_id, None, 2)
        assert [c.state for c in kids] == ["running", "running"] and kept is None
        assert sorted(what for what, _ in worker.seen) == ["child starts", "child starts", "parent back"]
        for child in kids:
            await svc.delete(child.sandbox_id, None)
        await svc.delete(parent.sandbox_id, None)


@pytest.mark.gvisor
async def test_a_full_forks_children_start_while_the_parent_is_on_its_way_back():
    async with _admin("gvisor") as (svc, worker, parent):
        await (await svc.agent(parent.sandbox_id, None)).exec("echo 41 > /tmp/x", shell=True)
        kids, _ = await svc.fork(parent.sandbox_id, None, 2, mode="full")
        assert [c.state for c in kids] == ["running", "running"]
        # both children's starts began before the parent was back
        assert [what for what, _ in worker.seen] == ["child starts", "child starts", "parent back"]
        for sandbox_id in (parent.sandbox_id, *(c.sandbox_id for c in kids)):
            got = await (await svc.agent(sandbox_id, None)).exec("cat /tmp/x", shell=True)
            assert got.stdout == "41\n", sandbox_id
        assert await svc.snapshots(None) == []  # the fork's own snapshot went once the children ran
        for sandbox_id in (parent.sandbox_id, *(c.sandbox_id for c in kids)):
            await svc.delete(sandbox_id, None)
