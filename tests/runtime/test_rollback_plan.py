"""The restore planner (``rock.runtime.rollback.plan``) on plain directories: what it rewrites
when two files can be told apart only by their bytes (an engine's commit keeps mtimes to the
second), and the compare budget that bounds how much it reads to tell."""

from __future__ import annotations

import os

from rock.runtime import rollback


def _file(path, data: bytes, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_files_told_apart_by_their_bytes_within_the_compare_budget_then_rewritten(tmp_path, monkeypatch):
    cur, tgt, lower = tmp_path / "cur", tmp_path / "tgt", tmp_path / "lower"
    lower.mkdir()
    second = 1_700_000_000 * 10**9
    for name in ("a", "b", "c"):  # the same bytes, the same second, other nanoseconds: only a read tells
        _file(cur / name, name.encode() * 100, second + 1)
        _file(tgt / name, name.encode() * 100, second + 2)
    monkeypatch.setattr(rollback, "COMPARE_BYTES", 250)  # room to read two pairs of 100 bytes, not three

    plan = rollback.plan(cur, tgt, [lower])
    written = sorted(op["path"] for op in plan.ops if op["op"] == "file")
    assert written == ["c"], plan.ops  # a and b read and found the same; c past the budget: rewritten

    monkeypatch.setattr(rollback, "COMPARE_BYTES", 1000)  # the control: with room for all, none is rewritten
    assert [op for op in rollback.plan(cur, tgt, [lower]).ops if op["op"] == "file"] == []
