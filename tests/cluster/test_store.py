"""The store's contract, the same for SQLite and PostgreSQL (a real server): records and history,
revisions, changes since a time, uses only moving forward, and the lease two holders compete for."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from rock.admin.store import SandboxRecord
from rock.admin.store.backends import open_store
from tests.conftest import SESSION_ROOT


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request):
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres")
        url = pg.url.rsplit("/", 1)[0] + "/" + (db := f"t{id(request) % 10**8}")
        import psycopg

        async with await psycopg.AsyncConnection.connect(pg.url, autocommit=True) as conn:
            await conn.execute(f"CREATE DATABASE {db}")
    else:
        url = str(Path(tempfile.mkdtemp(prefix="st", dir=SESSION_ROOT)) / "admin.db")
    made = []

    async def make():
        s = open_store(url, SESSION_ROOT)
        await s.open()
        made.append(s)
        return s

    yield make
    for s in made:
        await s.close()


async def test_records_history_and_revisions(store):
    s = await store()
    record = SandboxRecord(sandbox_id="a", image="python:3.11", spec={"cpus": 1}, node_id="n1")
    rev1 = await s.save(record, None, "create")
    record.state = "running"
    rev2 = await s.save(record, "pending", "started")
    assert rev2 > rev1
    got = await s.get("a")
    assert (got.state, got.node_id, got.spec, got.rev) == ("running", "n1", {"cpus": 1}, rev2)
    assert [h["event"] for h in await s.history("a")] == ["create", "started"]
    assert await s.get("missing") is None


async def test_changed_since_and_uses_move_forward(store):
    writer, reader = await store(), await store()  # two processes' views of one database
    await writer.save(SandboxRecord(sandbox_id="b", last_used_at=100.0))
    rows, now = await reader.changed_since(0.0)
    assert [r.sandbox_id for r in rows] == ["b"]
    first_rev = rows[0].rev
    assert await reader.changed_since(now + 60) == ([], pytest.approx(now, abs=60))
    await writer.flush_last_used({"b": 500.0})
    await writer.flush_last_used({"b": 200.0})  # an older use from a slower process
    again, _ = await reader.changed_since(now - 1)
    assert again[0].last_used_at == 500.0 and again[0].rev > first_rev


async def test_saves_queued_together_land_in_order(store):
    """Saves made without waiting go to the database together (one statement per kind on
    PostgreSQL): the last save of a record is what is stored, every history line is kept in order,
    and the values come back as they went in (an int cpus, a 64-bit TTL, a nested spec)."""
    s = await store()
    record = SandboxRecord(sandbox_id="burst", cpus=1, auto_clear_seconds=1 << 40, spec={"env": {"A": "b"}, "n": [1, 2.5]})
    writes = [s.save(record, None, "create")]
    record.state = "running"
    writes.append(s.save(record, "pending", "started"))
    writes.append(s.save(SandboxRecord(sandbox_id="other", cpus=0.5, memory="1g"), None, "create"))
    record.state, record.failure_reason = "failed", "it's 'quoted', {braced} and \\ escaped"
    writes.append(s.save(record, "running", "agent_lost", "a message"))
    revs = await asyncio.gather(*writes)
    got, other = await s.get("burst"), await s.get("other")
    assert (got.state, got.cpus, got.auto_clear_seconds, got.spec, got.failure_reason, got.rev) == (
        "failed", 1, 1 << 40, {"env": {"A": "b"}, "n": [1, 2.5]}, record.failure_reason, revs[3])
    assert (other.cpus, other.memory, other.rev) == (0.5, "1g", revs[2])
    assert [(h["event"], h["to_state"], h["message"]) for h in await s.history("burst")] == [
        ("create", "pending", None), ("started", "running", None), ("agent_lost", "failed", "a message")]


async def test_changes_since_are_what_others_wrote(store):
    """A refresh needs what other processes wrote; PostgreSQL's store leaves out rows whose last
    write was its own (the process holds them), SQLite's returns every row."""
    mine, other = await store(), await store()
    await mine.save(SandboxRecord(sandbox_id="own"))
    await other.save(SandboxRecord(sandbox_id="theirs"))
    rows, _ = await mine.changed_since(0.0)
    assert {r.sandbox_id for r in rows} == ({"theirs"} if mine.shared else {"own", "theirs"})
    await other.save(SandboxRecord(sandbox_id="own", state="running"))  # written over by the other process
    rows, _ = await mine.changed_since(0.0)
    assert {r.sandbox_id: r.state for r in rows} == {"own": "running", "theirs": "pending"}


async def test_one_lease_holder_until_it_expires(store):
    a, b = await store(), await store()
    assert await a.acquire_lease("reaper", "A", 0.5)
    assert not await b.acquire_lease("reaper", "B", 0.5)
    assert await a.acquire_lease("reaper", "A", 0.5)  # renewal
    assert await b.lease_holder("reaper") == "A"
    await asyncio.sleep(0.7)  # A stops renewing (as if it died)
    assert await b.acquire_lease("reaper", "B", 5)
    assert not await a.acquire_lease("reaper", "A", 5)
    await b.release_lease("reaper", "B")
    assert await a.lease_holder("reaper") is None


async def test_a_claim_has_one_owner_whoever_asks_at_once(store):
    """Two processes claim one name at once, many times over: each name ends with one owner, and
    every caller is told that owner (tags: rock.admin.claims)."""
    a, b = await store(), await store()
    for i in range(20):
        got = await asyncio.gather(a.claim(f"image:t{i}:v1", "A"), b.claim(f"image:t{i}:v1", "B"))
        assert got[0] == got[1] in ("A", "B"), got
        assert await b.claim(f"image:t{i}:v1", "B") == got[0]  # kept


async def test_concurrent_writes_keep_each_processs_order(store):
    s = await store()
    record = SandboxRecord(sandbox_id="c")
    saves = []
    for state in ("pending", "running", "stopped"):
        record.state = state
        saves.append(s.save(record, None, state))
    revs = await asyncio.gather(*saves)
    assert revs == sorted(revs)
    assert (await s.get("c")).state == "stopped"


async def test_training_instance_ids_are_kept_replaced_and_deleted(store):
    s = await store()
    row = {"instance_id": "inst-1", "owner": None, "env_type": "bfcl", "task_id": "multi_turn_base_0",
           "handle": "env-a:e1", "created": 1.5}
    await s.save_instance(row)
    await s.save_instance({**row, "instance_id": "inst-2", "owner": "team", "created": 2.5})
    await s.save_instance({**row, "handle": "env-b:e7"})  # the same id again replaces its row
    assert await (await store()).instances() == [{**row, "handle": "env-b:e7"},  # another process reads them
                                                {**row, "instance_id": "inst-2", "owner": "team", "created": 2.5}]
    await s.delete_instance("inst-1")
    await s.delete_instance("inst-1")  # deleting twice is fine
    assert [r["instance_id"] for r in await s.instances()] == ["inst-2"]
    # Several at once (the training service batches them): saves first, then deletes.
    await s.write_instances([{**row, "instance_id": "inst-3"}, {**row, "instance_id": "inst-4"}], ["inst-2", "inst-4"])
    assert [r["instance_id"] for r in await s.instances()] == ["inst-3"]


async def test_pages_counts_and_due_records(store):
    """What the admin reads of ended sandboxes, which it no longer holds in memory."""
    s = await store()
    rows = [SandboxRecord(sandbox_id=f"r{i}", owner="ns" if i % 2 else None, state=state, image=f"img{i % 3}",
                          backend="bwrap", created_at=1000.0 + i, due_at=due)
            for i, (state, due) in enumerate([("running", None), ("stopped", 50.0), ("stopped", 5000.0),
                                              ("deleted", None), ("failed", None), ("archived", 70.0)])]
    for r in rows:
        await s.save(r)
    page, total = await s.query(owner=None, exclude_deleted=True, offset=0, limit=2)
    assert [r.sandbox_id for r in page] == ["r0", "r2"] and total == 3  # owner None: r0, r2, r4 (none deleted)
    page, total = await s.query(owner="ns", newest_first=True, offset=1, limit=10)
    assert [r.sandbox_id for r in page] == ["r3", "r1"] and total == 3
    page, total = await s.query(filters={"state": "stopped", "image": "img1"})
    assert [r.sandbox_id for r in page] == ["r1"] and total == 1
    counts = {(c["state"], c["backend"], c["node_id"]): c["n"] for c in await s.counts()}
    assert counts[("stopped", "bwrap", None)] == 2 and sum(counts.values()) == 6
    assert sum(c["n"] for c in await s.counts(owner="ns")) == 3
    assert await s.distinct("image", owner=None) == ["img0", "img1", "img2"]
    assert [r.sandbox_id for r in await s.due(100.0)] == ["r1", "r5"]
    assert await s.next_due() == 50.0
    assert await s.query(offset=10**21, limit=10) == ([], 6)  # past any table: empty, not an overflow


async def test_counts_follow_every_change_and_fold(store):
    """The counts and a listing's total (kept by PostgreSQL's trigger, folded by the reaper) stay
    what a count over the records says, through state, node and owner changes, and a fold."""
    s = await store()

    async def by_key(owner=None) -> dict:
        return {(c["state"], c["backend"], c["node_id"]): c["n"] for c in await s.counts(owner) if c["n"]}

    records = [SandboxRecord(sandbox_id=f"c{i}", owner=None if i % 3 else "ns", created_at=float(i)) for i in range(9)]
    for r in records:
        await s.save(r, None, "create")
    for r in records[:6]:  # started on a node
        r.state, r.backend, r.node_id = "running", "bwrap", f"n{int(r.sandbox_id[1:]) % 2}"
        await s.save(r, "pending", "started")
    await s.fold_counts()
    for r in records[:2]:
        r.state = "stopped"
        await s.save(r, "running", "stop")
    records[2].state = "deleted"
    await s.save(records[2], "running", "delete")
    await s.flush_last_used({"c3": 99.0})  # a use changes no count
    # owner None: c1 stopped, c2 deleted, c4 and c5 running, c7 and c8 pending; "ns": c0 stopped, c3 running, c6 pending
    expected = {("running", "bwrap", "n0"): 1, ("running", "bwrap", "n1"): 1, ("stopped", "bwrap", "n1"): 1,
                ("deleted", "bwrap", "n0"): 1, ("pending", None, None): 2}
    assert await by_key() == expected
    assert await by_key("ns") == {("stopped", "bwrap", "n0"): 1, ("running", "bwrap", "n1"): 1, ("pending", None, None): 1}
    assert (await s.query(owner=None, exclude_deleted=True, limit=1))[1] == 5
    assert (await s.query(owner=None, limit=1))[1] == 6
    assert (await s.query(owner=None, filters={"state": "running"}, limit=1))[1] == 2
    assert (await s.query(owner="ns", exclude_deleted=True, limit=1))[1] == 3
    await s.fold_counts()
    assert await by_key() == expected
    again = await store()  # another process on the same database (opening it again) counts the same
    everyone = {(c["state"], c["backend"], c["node_id"]): c["n"] for c in await again.counts() if c["n"]}
    assert everyone[("pending", None, None)] == 3 and sum(everyone.values()) == 9
