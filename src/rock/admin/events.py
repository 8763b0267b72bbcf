"""What changed in the admin, for whoever watches: the UI's live pages and the metrics.

The sandbox service calls ``emit`` when a record changes state or a start finishes; listeners
are plain callables run at once on the event loop (they must be quick and must not raise).
``version`` counts the changes, so a watcher can tell whether it missed any.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("rock.admin")

# kind: "state" (a record moved; info: from_state, event), "started" (info: create_s, warm),
# "start_failed" (info: reason_kind), "paused" / "resumed" (info: seconds), "snapshot" (info: mode,
# seconds), "forked" (the parent's record; info: children that came up, mode, seconds), "restored"
# (rolled back in place; info: snapshot, mode, seconds)
Listener = Callable[[str, object, dict], None]


class Events:
    def __init__(self) -> None:
        self.version = 0
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, kind: str, record, **info) -> None:
        self.version += 1
        for listener in list(self._listeners):
            try:
                listener(kind, record, info)
            except Exception:  # noqa: BLE001 - a watcher's bug must not break the lifecycle
                log.exception("event listener failed on %s", kind)
