"""The agent's wait for SIGUSR2 after it made way for a gVisor checkpoint (``rock.agent.checkpoint``):
a signal taken by one of its other threads still wakes it. The worker sends SIGUSR2 to the
process; the kernel may give it to any thread, and Python runs its handler only on the main
thread, which is blocked in a read meanwhile. Run in a child process of the host's Python, so a
wait that never ends is a timeout here, not a hung suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = r"""
import os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
from rock.agent import checkpoint

checkpoint.install()
main = threading.main_thread().native_id
fd = checkpoint._wake[0]

def blocked_in_read():
    # /proc/self/task/TID/syscall: "<nr> <arg0> ..." while in a syscall; arg0 of read is the fd
    with open("/proc/self/task/%d/syscall" % main) as f:
        fields = f.read().split()
    return len(fields) > 1 and fields[0] != "running" and int(fields[1], 16) == fd

def other():
    deadline = time.monotonic() + 10
    while not blocked_in_read():
        if time.monotonic() > deadline:
            print("main never blocked", flush=True)
            os._exit(2)
        time.sleep(0.001)
    print("signalled while the main thread waits", flush=True)
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)  # taken by this thread, not the main one

threading.Thread(target=other, daemon=True).start()
checkpoint.wait_for_wake()
print("woken", flush=True)
"""


def test_sigusr2_taken_by_another_thread_wakes_the_wait():
    try:
        done = subprocess.run([sys.executable, "-I", "-c", SCRIPT, SRC], capture_output=True, text=True, timeout=20)
        out, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as exc:  # the child is killed by run() before this
        out, code = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), None
    assert "signalled while the main thread waits" in out, out  # the attempt ran as meant
    assert code == 0 and out.endswith("woken\n"), (code, out)
