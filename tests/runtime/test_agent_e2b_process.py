"""The in-sandbox agent's envd process table (``rock.agent.e2b.process``), run directly: what a
deadline does to a process that never stops writing. The end-to-end cases (order of output,
keepalives, a process that closes its outputs) are in tests/e2b/test_e2b_wire.py."""

from __future__ import annotations

import fcntl
import threading
import time

from rock.agent.e2b.process import Proc


def test_a_process_that_writes_without_pause_is_killed_at_its_deadline():
    # `yes` fills its pipe faster than the agent passes it on (here a subscriber that takes 2 ms a
    # read, as a busy socket to the admin can), and the pipe holds more than one read takes, so
    # the agent never finds its outputs idle: the deadline must be kept between reads, not only
    # when a wait for output times out.
    got = [0]
    seen = threading.Event()

    def sub(event, fields, body):
        got[0] += len(body)
        seen.set()
        time.sleep(0.002)

    proc = Proc({"cmd": "/bin/sh", "args": ["-c", "exec yes flood"], "deadline": 0.5})
    proc.subs.append(sub)
    fcntl.fcntl(proc.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    proc.run()
    try:
        assert seen.wait(10), "no output came"  # the control: it did write, without pause
        assert proc.done.wait(30), "still running well past its deadline of 0.5 s"
        assert proc.end["expired"] and proc.end["status"] == "signal: killed", proc.end
        assert got[0] > 65536, got  # more than one read's worth: it was writing as the deadline came
    finally:
        if not proc.done.is_set():
            proc.kill_group(9)
            proc.done.wait(10)
