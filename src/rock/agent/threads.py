"""Threads from ``_thread`` directly, reused.

``import threading`` pulls in functools and collections, ~5 ms on every sandbox start; the agent
needs only locks, a one-shot event and fire-and-forget threads.

Every thread the agent runs work on comes from one pool (``POOL``): a thread that has finished
its work waits for the next instead of ending. An ``exec`` alone wants four (its reaper, two
output readers and its stdin's feeder), and a new thread costs a ``clone``, a stack to map and
a first run on it; a waiting one takes a lock hand-off.
"""

import _thread
import posix
import sys

Lock = _thread.allocate_lock
# Idle threads kept for the next work; more finish once theirs is done (a burst's leftovers).
IDLE_MAX = 16


class Pool:
    """Reusable threads: work goes to an idle one, or to a new one when none is idle (the work
    may block for long: a reader until its pipe's end, a session's loop for its life)."""

    def __init__(self, idle_max=IDLE_MAX):
        self.idle_max = idle_max
        self._lock = _thread.allocate_lock()
        self._idle = []

    def prestart(self, count):
        """Start idle threads ahead of the first work, off its critical path."""
        for _ in range(count):
            slot = [Event(), None]
            _thread.start_new_thread(self._run, (slot,))
            with self._lock:
                self._idle.append(slot)

    def submit(self, fn, args=()):
        """Run ``fn(*args)`` on an idle thread, or a new one when none is idle."""
        with self._lock:
            slot = self._idle.pop() if self._idle else None
        if slot is None:
            _thread.start_new_thread(self._run, ([Event(), (fn, args)],))
            return
        slot[1] = (fn, args)
        slot[0].set()

    def _run(self, slot):
        if slot[1] is not None:  # started for this work: no hand-off to wait for
            slot[0].set()
        while True:
            slot[0].wait()
            slot[0].clear()
            fn, args = slot[1]
            slot[1] = None
            try:
                fn(*args)
            except SystemExit:  # as on a thread of its own: it ends that thread, quietly
                return
            except BaseException:  # noqa: BLE001 - reported as a thread's uncaught error is, then the next work
                _report()
            with self._lock:
                if len(self._idle) >= self.idle_max:
                    return
                self._idle.append(slot)

    def _forget(self):
        """In a forked child: the parent's idle threads are not there."""
        self._lock = _thread.allocate_lock()
        self._idle = []


POOL = Pool()
posix.register_at_fork(after_in_child=POOL._forget)


def _report():
    import traceback

    sys.stderr.write("rock agent: unhandled error on a thread:\n")
    traceback.print_exc()


def spawn(fn, *args):
    """Run ``fn(*args)`` on a thread of the pool."""
    POOL.submit(fn, args)


def spawn_joinable(fn, *args):
    """``spawn``, and the ``Event`` that is set once ``fn`` has returned (or raised): a join
    with a timeout, as ``Thread.join`` gives."""
    ended = Event()

    def run():
        try:
            fn(*args)
        finally:
            ended.set()

    POOL.submit(run)
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
