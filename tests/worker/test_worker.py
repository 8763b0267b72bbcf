"""The worker: idempotent create, warm pools, re-attach after a restart, many sandboxes at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from rock.errors import BadRequest, SandboxNotFound
from tests.conftest import BACKENDS, ISOLATED_BACKENDS
from tests.worker.conftest import new_worker


@pytest.fixture(params=BACKENDS)
async def fresh_worker(request):
    w = new_worker(request.param)
    await w.start()
    yield w
    await w.close(stop_sandboxes=True)


def _sid() -> str:
    return "w" + uuid.uuid4().hex[:10]


async def test_create_is_idempotent_for_a_chosen_id(fresh_worker):
    spec = fresh_worker.default_spec(_sid())
    first, second = await asyncio.gather(fresh_worker.create(spec), fresh_worker.create(spec))
    assert first.runtime_id == second.runtime_id
    again = await fresh_worker.create(spec)
    assert again.runtime_id == first.runtime_id and len(fresh_worker.list()) == 1


async def test_long_sandbox_ids_work(fresh_worker):
    sid = "a-very-long-sandbox-id-chosen-by-a-trainer-" + "x" * 80
    info = await fresh_worker.create(fresh_worker.default_spec(sid))
    agent = fresh_worker.agent(info.sandbox_id)
    await agent.create_session("s")
    assert (await agent.run("s", "echo long")).output == "long\n"
    await fresh_worker.stop(sid)


@pytest.mark.parametrize("bad", ["", "a/b", ".hidden", "x" * 129])
async def test_bad_sandbox_ids_are_refused(fresh_worker, bad):
    with pytest.raises(BadRequest):
        await fresh_worker.create(fresh_worker.default_spec(bad))


async def test_unknown_sandbox(fresh_worker):
    with pytest.raises(SandboxNotFound):
        fresh_worker.agent("nope")
    with pytest.raises(SandboxNotFound):
        await fresh_worker.stop("nope")


async def test_warm_pool_hands_out_ready_sandboxes_and_refills(fresh_worker):
    template = fresh_worker.default_spec()
    fresh_worker.pool.configure(template, 2)
    await asyncio.wait_for(fresh_worker.pool.filled.wait(), 120)
    assert fresh_worker.pool.size() == 2
    info = await fresh_worker.create(template.model_copy(update={"sandbox_id": _sid()}))
    assert info.warm
    agent = fresh_worker.agent(info.sandbox_id)
    assert await agent.spare_ready(timeout=0)  # handed out with its spare bash up, not starting
    await agent.create_session("s")
    assert (await agent.run("s", "echo warm")).output == "warm\n"
    await asyncio.wait_for(fresh_worker.pool.filled.wait(), 120)
    assert fresh_worker.pool.size() == 2
    other = template.model_copy(update={"sandbox_id": _sid(), "cpus": 0.5})  # a spec the pool was not made for
    assert not (await fresh_worker.create(other)).warm


async def _worker_with_a_sandbox(backend):
    """A started worker holding one new sandbox: (worker, its id, its agent)."""
    worker = new_worker(backend)
    await worker.start()
    sid = _sid()
    await worker.create(worker.default_spec(sid))
    return worker, sid, worker.agent(sid)


async def _restarted(first, backend):
    """``first`` goes away leaving its sandboxes; a new worker on the same state dir, started."""
    await first.close(stop_sandboxes=False)
    second = new_worker(backend, state_dir=first.settings.state_dir)
    await second.start()
    return second


@pytest.mark.parametrize("backend", BACKENDS)
async def test_restarted_worker_reattaches_running_sandboxes(backend):
    first, sid, agent = await _worker_with_a_sandbox(backend)
    await agent.write_file("/root/work.txt", b"precious")
    started = await agent.proc_start("sleep 600", name="survivor")
    second = await _restarted(first, backend)  # the worker goes away; the sandbox must not
    try:
        assert [s.sandbox_id for s in second.list()] == [sid]
        agent = second.agent(sid)
        assert await agent.read_file("/root/work.txt") == b"precious"
        if backend != "local":
            assert (await agent.proc_status(started["proc_id"]))["running"]
    finally:
        await second.close(stop_sandboxes=True)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_paused_sandbox_stays_paused_across_a_worker_restart(backend):
    from rock.errors import SandboxPaused

    first, sid, agent = await _worker_with_a_sandbox(backend)
    await agent.create_session("s")
    await agent.run("s", "x=41")  # a shell variable: memory only the running bash holds
    await first.pause(sid)
    assert first.get(sid).state == "paused"
    with pytest.raises(SandboxPaused):
        await first.agent(sid).run("s", "echo $x")
    second = await _restarted(first, backend)
    try:
        assert [(s.sandbox_id, s.state) for s in second.list()] == [(sid, "paused")]
        with pytest.raises(SandboxPaused):
            await second.agent(sid).run("s", "echo $x")
        await second.unpause(sid)
        assert second.get(sid).state == "running"
        assert (await second.agent(sid).run("s", "echo $((x + 1))")).output.strip() == "42"
    finally:
        await second.close(stop_sandboxes=True)


@pytest.mark.parametrize("backend", ISOLATED_BACKENDS)
async def test_restart_reaps_sandboxes_that_died(backend):
    first = new_worker(backend)
    await first.start()
    sid = _sid()
    await first.create(first.default_spec(sid))
    handle = first._sandboxes[sid].handle
    await first.close(stop_sandboxes=False)
    await first.runtime.destroy(handle)  # it died while no worker watched

    second = new_worker(backend, state_dir=first.settings.state_dir)
    await second.start()
    try:
        assert second.list() == []
    finally:
        await second.close(stop_sandboxes=True)


async def test_fifty_sandboxes_at_once(fresh_worker):
    specs = [fresh_worker.default_spec(_sid()) for _ in range(50)]
    await asyncio.gather(*(fresh_worker.create(s) for s in specs))

    async def hello(sid: str) -> str:
        agent = fresh_worker.agent(sid)
        await agent.create_session("s")
        return (await agent.run("s", f"echo {sid}")).output

    outputs = await asyncio.gather(*(hello(s.sandbox_id) for s in specs))
    assert outputs == [f"{s.sandbox_id}\n" for s in specs]
    await asyncio.gather(*(fresh_worker.stop(s.sandbox_id) for s in specs))
    assert fresh_worker.list() == []
