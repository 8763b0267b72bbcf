"""The Chat front door's record log: finished model-call records (rock.actions.records) on disk,
one JSONL file per sandbox under the admin's state directory."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from rock.actions.records import CallRecord

log = logging.getLogger("rock.agentic")  # the name it always had: operators filter on it


class RecordLog:
    """Finished records appended to ``<dir>/<sandbox_id>.jsonl`` by a background writer, so the
    event loop never waits on the disk and a burst of calls is one write. The writer gathers
    what finishes within ``FLUSH_DELAY`` into one batch (one thread hop and one append per
    sandbox), not a batch per call: a call's answer is on its way before its record is written,
    and a per-call hop would contend with the next call for the interpreter. ``close`` writes
    what is left; readers of a live session use the records in memory."""

    FLUSH_DELAY = 0.2

    def __init__(self, directory: Path):
        self.dir = directory
        self._pending: list[CallRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def add(self, record: CallRecord) -> None:
        self._pending.append(record)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rock-chat-records")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.FLUSH_DELAY)
            self._wake.clear()
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._write, batch)
            except OSError as exc:
                log.warning("could not persist %d model-call records under %s: %s", len(batch), self.dir, exc)

    def _write(self, batch: list[CallRecord]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        by_sandbox: dict[str, list[str]] = {}
        for r in batch:
            by_sandbox.setdefault(r.sandbox_id, []).append(r.model_dump_json() + "\n")
        for sandbox_id, lines in by_sandbox.items():
            with open(self.dir / f"{sandbox_id}.jsonl", "a", encoding="utf-8") as f:
                f.write("".join(lines))

    def read(self, sandbox_id: str) -> list[CallRecord]:
        path = self.dir / f"{sandbox_id}.jsonl"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [CallRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]

    async def close(self) -> None:
        if self._task is not None:
            if self._pending:
                self._wake.set()
                await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                await asyncio.to_thread(self._write, batch)
            self._task.cancel()
