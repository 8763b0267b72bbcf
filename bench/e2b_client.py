"""The e2b SDK's side of bench/e2b.py and bench/e2b_snapshots.py, run in the SDK's own venv:
reads commands on stdin, answers each with one JSON line of latencies in seconds.

  create N   N times: Sandbox.create("base") -> commands.run("echo hi") -> kill (timed to the output)
  rt N       N times commands.run("echo hi") on one sandbox made once
  pause N    N times pause() + connect() (the resume) of that sandbox
  info2 N    N times two get_info() calls (pause's floor: the same two control-plane round trips)
  info1 N    N times one get_info() (a snapshot's floor)
  snap N     N times create_snapshot(mode="filesystem") of that sandbox (each deleted, untimed)
  fork8 N    N times fork(count=8) until all 8 children answer commands.run("echo hi") (killed, untimed)
  create8 N  N times 8 Sandbox.create at once until all 8 answer (fork8's floor), killed untimed
  tbuild N   N times Template.build of $BENCH_CONTEXT/Dockerfile (from_dockerfile; its NONCE replaced
             each time, so its RUN is built, not cached), the template deleted untimed
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from e2b import Sandbox

held = None
pool = ThreadPoolExecutor(8)


def answers(sbx) -> None:
    out = sbx.commands.run("echo hi").stdout
    assert out == "hi\n", out


def made_and_answers(_) -> Sandbox:
    sbx = Sandbox.create("base", timeout=600)
    answers(sbx)
    return sbx


def template_build() -> float:
    import os
    import uuid

    from e2b import Template
    from e2b.api.client.api.templates import delete_templates_template_id
    from e2b.api.client_sync import get_api_client
    from e2b.connection_config import ConnectionConfig

    context = os.environ["BENCH_CONTEXT"]
    with open(os.path.join(context, "Dockerfile")) as f:
        text = f.read().replace("NONCE", uuid.uuid4().hex)
    t0 = time.perf_counter()
    info = Template.build(Template(file_context_path=context).from_dockerfile(text), "bench-template")
    took = time.perf_counter() - t0
    delete_templates_template_id.sync_detailed(info.template_id, client=get_api_client(ConnectionConfig()))
    return took


def one(verb: str) -> float:
    global held
    if verb == "tbuild":
        return template_build()
    if verb == "create":
        t0 = time.perf_counter()
        sbx = Sandbox.create("base", timeout=600)
        answers(sbx)
        took = time.perf_counter() - t0
        sbx.kill()
        return took
    held = held or Sandbox.create("base", timeout=600)
    t0 = time.perf_counter()
    if verb == "rt":
        answers(held)
    elif verb == "pause":
        assert held.pause() is True
        held.connect()
    elif verb == "info2":
        held.get_info()
        held.get_info()
    elif verb == "info1":
        held.get_info()
    elif verb == "snap":
        snap = held.create_snapshot(mode="filesystem")
        took = time.perf_counter() - t0
        Sandbox.delete_snapshot(snap.snapshot_id)
        return took
    elif verb == "fork8":
        children = held.fork(count=8, timeout=600)
        list(pool.map(answers, children))
        took = time.perf_counter() - t0
        list(pool.map(lambda c: c.kill(), children))
        return took
    elif verb == "create8":
        made = list(pool.map(made_and_answers, range(8)))
        took = time.perf_counter() - t0
        list(pool.map(lambda c: c.kill(), made))
        return took
    else:
        raise SystemExit("unknown verb " + verb)
    return time.perf_counter() - t0


for line in sys.stdin:
    verb, n = line.split()
    print(json.dumps([one(verb) for _ in range(int(n))]), flush=True)
if held is not None:
    held.kill()
