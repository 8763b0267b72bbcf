"""The e2b SDK's side of bench/e2b.py, run in the SDK's own venv: reads commands on stdin,
answers each with one JSON line of latencies in seconds.

  create N   N times: Sandbox.create("base") -> commands.run("echo hi") -> kill (timed to the output)
  rt N       N times commands.run("echo hi") on one sandbox made once
"""

import json
import sys
import time

from e2b import Sandbox

held = None
for line in sys.stdin:
    verb, n = line.split()
    samples = []
    for _ in range(int(n)):
        if verb == "create":
            t0 = time.perf_counter()
            sbx = Sandbox.create("base", timeout=600)
            out = sbx.commands.run("echo hi").stdout
            samples.append(time.perf_counter() - t0)
            sbx.kill()
        else:
            held = held or Sandbox.create("base", timeout=600)
            t0 = time.perf_counter()
            out = held.commands.run("echo hi").stdout
            samples.append(time.perf_counter() - t0)
        assert out == "hi\n", out
    print(json.dumps(samples), flush=True)
if held is not None:
    held.kill()
