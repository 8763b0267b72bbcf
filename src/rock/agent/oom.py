"""An OOM killer for a sandbox whose kernel has none (gVisor), in the agent: what Linux userspace
OOM killers do (Android's lmkd, systemd-oomd, earlyoom).

Why: the sentry of runsc 20221219 stores its cgroupfs memory limit and never enforces it, and
has no OOM killer; the host memcg alone bounds the sandbox, and there the sentry is the one
process to kill, so one hog took the whole sandbox with it. Here the agent watches the memory
of the sandbox's kernel and, past the limit, SIGKILLs the process with the largest resident
memory (the kernel OOM killer's choice), never itself nor PID 1, and logs it on stderr (the
sandbox's log on the host). The host memcg stays the hard bound, a little above this limit
(rock.runtime.gvisor says by how much and why): a sandbox that stops this watcher only loses
the sandbox to the host's kill, as before.

Started only where the backend names the limit in ROCK_AGENT_MEMORY_LIMIT (the agent's own
environment, fixed at its start: nothing inside can change the agent's copy, and the spec's
variables cannot name it: rock.runtime.agent_boot.MEMORY_LIMIT_ENV).

What is read: the sentry's /proc/meminfo (MemTotal - MemAvailable), one cheap read per poll;
the sentry counts there every page of its memory file (anonymous memory, tmpfs, cached files),
which is what the host memcg is charged for. Per process: /proc/<pid>/statm's resident pages,
read only once the sandbox is over its limit. Both measured right under runsc 20221219 (a
100 MiB bytearray shows as ~100 MiB more in both).
"""

import sys
import time

from . import fastos as os

LIMIT_ENV = "ROCK_AGENT_MEMORY_LIMIT"
# Polls: the next one comes when an allocation at RATE could have used the room left below the
# limit, within [FAST, SLOW]. Measured idle, over 20 s: ~0.8% of a core under a 64 MiB limit
# (~40 MiB of room: a poll every ~80 ms), ~0.1% under 1 GiB (every second), 0.03% unwatched.
FAST = 0.01
SLOW = 1.0
# bytes/s: a pipe into `tail` grows ~100 MiB/s in gVisor here, python commits up to ~2 GiB/s;
# what a poll misses is caught by the kill that follows, within the host memcg's headroom.
RATE = 512 << 20
# No second victim before the first one's memory is back: its exit, then the sentry's freeing of
# its pages (with a wait for the exit alone, a second process, its shell, was killed now and
# then); a second one only if the sandbox is still over its limit this long after the kill.
EXIT_WAIT = 2.0


def used_bytes(meminfo):
    """Memory in use in the sandbox's kernel, from an open /proc/meminfo (read again from its
    start: one syscall a poll, not three), or None where it cannot be read."""
    try:
        text = os.pread(meminfo, 4096, 0)
    except OSError:
        return None
    fields = {}
    for line in text.split(b"\n"):
        name, _, value = line.partition(b":")
        if name in (b"MemTotal", b"MemAvailable"):
            fields[name] = int(value.split()[0]) << 10
    if len(fields) < 2:
        return None
    return fields[b"MemTotal"] - fields[b"MemAvailable"]


def biggest(spare):
    """(resident bytes, pid, name) of the process with the most resident memory, not in ``spare``;
    None if there is none."""
    page = os.sysconf("SC_PAGE_SIZE")
    best = None
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in spare:
            continue
        try:
            with open("/proc/%s/statm" % name, "rb") as f:
                resident = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if resident and (best is None or resident > best[0]):
            best = (resident, int(name), _comm(name))
    return best


def _comm(pid):
    try:
        with open("/proc/%s/comm" % pid, "rb") as f:
            return f.read().strip().decode("utf-8", "replace")
    except OSError:
        return "?"


def _gone(pid):
    """Exited: no such process, or a zombie (its memory is freed)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def pause_for(used, limit):
    """Seconds until the next memory check: sooner the closer ``used`` is to ``limit``."""
    return min(SLOW, max(FAST, (limit - used) / RATE))


def watch(limit, log=None):
    """Forever: keep the sandbox's memory under ``limit`` bytes by killing its biggest process."""
    log = log or sys.stderr
    spare = {1, os.getpid()}
    try:
        meminfo = os.open("/proc/meminfo", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        meminfo = -1
    while True:
        used = used_bytes(meminfo)
        if used is None:
            log.write("rock agent: no /proc/meminfo; memory limit %d not watched\n" % limit)
            return
        if used <= limit:
            time.sleep(pause_for(used, limit))
            continue
        victim = biggest(spare)
        if victim is None:  # only the agent is left (the memory is in files: /dev/shm): no one to kill
            time.sleep(SLOW)
            continue
        resident, pid, name = victim
        try:
            os.kill(pid, 9)
        except OSError:
            continue  # it went by itself
        log.write("rock agent: out of memory (%d of %d bytes in use): killed process %d (%s) holding %d bytes\n"
                  % (used, limit, pid, name, resident))
        log.flush()
        deadline = time.monotonic() + EXIT_WAIT
        while time.monotonic() < deadline and not (_gone(pid) and (used_bytes(meminfo) or 0) <= limit):
            time.sleep(FAST)


def start():
    """At the agent's start: watch the limit the backend named, if it named one."""
    try:
        limit = int(os.environ.get(LIMIT_ENV) or 0)
    except ValueError:
        limit = 0
    if limit > 0:
        from . import threads

        threads.spawn(watch, limit)
