"""Env calls contained: in the env host (``host.py``) each call gets its env's own RNG state
(``rng.py``), its timeout, and its errors turned into that call's ``Failure``.

Timeouts: SIGALRM interrupts Python code and blocking syscalls; the env is then marked broken,
the other envs carry on. Code stuck inside a C extension cannot be interrupted: the host marks
the running call's start and timeout in a memory block (``BUSY``) shared with the agent, whose
watchdog (``watch``, the agent's side, run by ``ops.py``) kills the whole host then.

Standard library only. The env host loads it by path, like its other siblings.
"""

import os
import signal
import struct
import time
import traceback

BUSY = struct.Struct("=dd")  # shared with the agent's watchdog: (monotonic start, timeout)
_pack_busy = BUSY.pack_into
_monotonic = time.monotonic  # bound once: every env call reads it
# Extra time the watchdog allows beyond a call's own timeout before it declares the host stuck.
GRACE = float(os.environ.get("ROCK_ENV_GRACE", "5"))


class CallTimeout(BaseException):
    """Raised by the SIGALRM handler inside env code that overstays its deadline; a BaseException
    so ``except Exception`` in env code cannot swallow it."""


class Failure(Exception):
    """An env call's failure as the admin sees it: ``type`` (EnvTimeout, EnvMakeError, ...) and message."""

    def __init__(self, type_, message):
        Exception.__init__(self, message)
        self.type = type_
        self.message = message


def describe(exc):
    """'Type: message (at file:line in func)' naming the innermost frame of the env's code."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        text += " (at %s:%d in %s)" % (frame.filename, frame.lineno, frame.name)
    return text[:4000]


class Guard:
    """One per host: runs its env calls contained; ``on_alarm`` is the host's SIGALRM handler."""

    # The watchdog's view of the running call may lag its real start by this much (a vector
    # step makes one call per env; writing the shared block each time costs more than the
    # bookkeeping of the call itself): it only ever makes the watchdog act this much earlier,
    # well inside its GRACE.
    MARK_S = min(1.0, GRACE / 4)

    def __init__(self, rng, busy=None):
        self.rng = rng
        # Shared with the agent's watchdog: (monotonic start, timeout) of the running env call.
        self.busy = busy
        self.marked = (0.0, 0.0)  # what busy holds
        # Timeouts without a syscall per call (a setitimer costs as much as a simple game's
        # step): while a request runs, SIGALRM ticks at a quarter of the shortest timeout and the
        # handler interrupts the env call only once its own deadline has passed.
        self.deadline = None
        self.tick = None

    def on_alarm(self, signum, frame):
        """The timer's signal: raise ``CallTimeout`` in the env's code once the call is past its deadline."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline = None
            raise CallTimeout()

    def guarded(self, env, what, fn, *args):
        """Run env code with its own RNG state, its timeout, and its errors contained."""
        if env.broken:
            raise Failure("EnvBroken", "env %s (%s) is unusable: %s; close it and make a new one" % (env.id, env.env_id, env.broken))
        if self.rng.owner is not env:
            self.rng.enter(env)
        start = _monotonic()
        env.last_used = start
        timeout = env.timeout or 0.0
        try:
            if timeout:
                if self.tick is None or timeout < 4 * self.tick:
                    self.tick = min(0.25, timeout / 4)
                    signal.setitimer(signal.ITIMER_REAL, self.tick, self.tick)
                self.deadline = start + timeout
            marked = self.marked
            if start - marked[0] > self.MARK_S or timeout != marked[1]:
                self._mark(start, timeout)
            try:
                return fn(*args)
            finally:
                self.deadline = None
        except CallTimeout:
            env.broken = "%s timed out after %gs" % (what, timeout)
            raise Failure("EnvTimeout", "env %s (%s): %s; the env was marked broken, the other envs are unaffected"
                          % (env.id, env.env_id, env.broken))
        except Failure:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt from env code too
            raise Failure("EnvError", "env %s (%s) raised in %s: %s" % (env.id, env.env_id, what, describe(exc)))

    def _mark(self, start, timeout):
        self.marked = (start, timeout)
        if self.busy is not None:
            _pack_busy(self.busy, 0, start, timeout)

    def idle(self):
        """End of a request: stop the tick, tell the watchdog nothing runs."""
        if self.tick is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.tick = None
        self._mark(0.0, 0.0)


# -- the agent's side -------------------------------------------------------------------


def watch(busy, gone, kill):
    """Call ``kill(reason)`` when one env call overstays its timeout plus GRACE; return once
    ``gone`` is set. Between calls it looks once a second; during a call it sleeps until that
    call's deadline."""
    while not gone.is_set():
        start, timeout = BUSY.unpack_from(busy, 0)
        if not start or not timeout:
            gone.wait(min(1.0, GRACE))
            continue
        left = start + timeout + GRACE - time.monotonic()
        if left > 0:
            gone.wait(left)
        elif BUSY.unpack_from(busy, 0) == (start, timeout):
            kill("an env call ran %.0fs, beyond its %gs timeout, where the timeout cannot interrupt it "
                 "(e.g. inside a C extension); the host was killed" % (time.monotonic() - start, timeout))
            return
