"""Threads from ``_thread`` directly.

``import threading`` pulls in functools and collections, ~5 ms on every sandbox start; the agent
needs only locks, a one-shot event and fire-and-forget threads.
"""

import _thread

Lock = _thread.allocate_lock


def spawn(fn, *args):
    """Run ``fn(*args)`` on a new thread (without importing ``threading``)."""
    _thread.start_new_thread(fn, args)


def spawn_joinable(fn, *args):
    """``spawn``, and the ``Event`` that is set once ``fn`` has returned (or raised): a join
    with a timeout, as ``Thread.join`` gives."""
    ended = Event()

    def run():
        try:
            fn(*args)
        finally:
            ended.set()

    _thread.start_new_thread(run, ())
    return ended


class Event:
    """threading.Event's contract (set / clear / wait / is_set) on one lock held while unset."""

    __slots__ = ("_flag", "_lock")

    def __init__(self):
        self._flag = False
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def is_set(self):
        """Whether the event is set."""
        return self._flag

    def set(self):
        """Set the event, waking every waiter."""
        if not self._flag:
            self._flag = True
            self._lock.release()

    def clear(self):
        """Clear the event."""
        if self._flag:
            self._lock.acquire()
            self._flag = False

    def wait(self, timeout=None):
        """Wait until the event is set or ``timeout`` passes; whether it is set."""
        if self._flag:
            return True
        # Every waiter takes the lock and hands it straight back, so one set() wakes them all.
        if self._lock.acquire(True, -1 if timeout is None else timeout):
            self._lock.release()
            return True
        return self._flag
