"""A command in a session: its output under a cap, and who waits for its result."""

import time


class Output:
    """Collects a command's output under a cap, keeping head and tail, marking the cut."""

    def __init__(self, cap):
        self.cap = max(int(cap), 64)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data):
        """Take more output: the head is kept to half the cap, the rest keeps the newest tail."""
        room = self.cap // 2 - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            # Trimmed once the tail holds twice its share, not on every add: cutting a few bytes
            # off the front of a full tail moves all of it, and a flood of small reads made
            # that quadratic (300 MB through a 16 MiB cap: minutes of memmove).
            if len(self.tail) > self.cap:
                self._trim()

    def _trim(self):
        extra = len(self.tail) - self.cap // 2
        if extra > 0:
            del self.tail[:extra]
            self.dropped += extra

    def text(self):
        """What was kept, with a marker where the middle was cut (``dropped`` is final after this)."""
        self._trim()
        if not self.dropped:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        note = "\n[... rock: %d bytes of output truncated ...]\n" % self.dropped
        return bytes(self.head).decode("utf-8", "replace") + note + bytes(self.tail).decode("utf-8", "replace")


class Command:
    """The command a session is running, and who waits for its result."""

    def __init__(self, max_output):
        self.max_output = max_output
        self.output = Output(max_output)
        self.waiters = []  # (request, stream) pairs
        self.decoders = {}
        self.deadline = None
        self.idle_timeout = None
        self.last_output = time.monotonic()
        self.stop_reason = None  # "timeout" | "interrupted" once we started stopping it
        self.escalate_at = None
        self.escalation = 0
        self.result = None  # kept when it finished with nobody waiting

    def attach(self, req, stream, timeout, idle_timeout):
        """Add a waiter for the command's end, with its timeout and idle timeout from now."""
        self.waiters.append((req, stream))
        now = time.monotonic()
        if timeout:
            self.deadline = now + float(timeout)
        self.idle_timeout = float(idle_timeout) if idle_timeout else None
        self.last_output = now
