"""The last commands run in each sandbox, with exit codes and durations, for the UI.

Kept in memory only (bounded per sandbox and in total): recording must cost the hot path
next to nothing, and history of this kind is not worth a disk write per command. An admin
restart starts each list afresh.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

PER_SANDBOX = 50
MAX_SANDBOXES = 5000
MAX_COMMAND_CHARS = 400


class CommandLog:
    def __init__(self, per_sandbox: int = PER_SANDBOX, max_sandboxes: int = MAX_SANDBOXES):
        self.per_sandbox = per_sandbox
        self.max_sandboxes = max_sandboxes
        self._by_sandbox: OrderedDict[str, deque] = OrderedDict()

    def add(self, sandbox_id: str, via: str, session: str | None, command, exit_code: int | None, status: str,
            started: float, duration_s: float) -> None:
        """``started`` is wall-clock time; ``via`` names the route (run_in_session, execute, stream)."""
        log = self._by_sandbox.get(sandbox_id)
        if log is None:
            if len(self._by_sandbox) >= self.max_sandboxes:
                self._by_sandbox.popitem(last=False)  # the sandbox whose list was made first goes
            log = self._by_sandbox[sandbox_id] = deque(maxlen=self.per_sandbox)
        text = command if isinstance(command, str) else " ".join(map(str, command))
        log.append((started, via, session, text[:MAX_COMMAND_CHARS], exit_code, status, duration_s))

    def recent(self, sandbox_id: str) -> list[dict]:
        """Newest first."""
        return [{"started": s, "via": via, "session": session, "command": cmd, "exit_code": code, "status": status,
                 "duration_ms": round(d * 1000, 2)}
                for s, via, session, cmd, code, status, d in reversed(self._by_sandbox.get(sandbox_id, ()))]

    def forget(self, sandbox_id: str) -> None:
        self._by_sandbox.pop(sandbox_id, None)


def now() -> tuple[float, float]:
    """(wall clock, monotonic) at a command's start."""
    return time.time(), time.perf_counter()
