"""The Chat protocol: what a model call made inside a sandbox costs, and how many one trainer answers.

model_call_added_ms: one client (``http.client`` on a keep-alive connection, timing each call)
makes chat completions in alternating blocks: on the host straight to a scripted upstream (the
floor), inside a sandbox through the fast path (the trainer's loop, over HTTP long-poll and over
its WebSocket, forwards each call to the same upstream), and inside a sandbox in proxy mode (the
admin forwards it). The record's p50 is the added latency: p50(path) - p50(floor). Target: p50
added <= 0.5 ms. Each record also gives ``two_relays_added_p50_ms``, timed in the same blocks: what
two bare relays in a row add to the same client and upstream (as many hops as proxy mode), the
machine's own floor for any relayed call; ``three_relays_added_p50_ms`` (on the paths a trainer
forwards to the upstream) is the same with three relays, as many processes as such a call
crosses between the client and the upstream (the sandbox's agent, the admin, the trainer);
``ws_instant``'s floor is two relays (its trainer is the upstream). The trainer's policy
forwards with a lean keep-alive client (``bench/rawhttp.py``)
whose round trip costs about what the floor's does: with httpx the policy's own client added
~0.27 ms per call on this VM, a cost of the trainer's choice of client, not of the path (each
record gives ``policy_call_p50_ms``, the policy's own round trip to the upstream). A fourth path,
``ws_instant``, has the trainer answer at once without an upstream: the chain's own cost
(sandbox -> agent -> admin -> trainer and back) beside a whole model call.

model_calls_per_s: 256 sandboxes (64 with --quick) whose agents each make calls in a loop, one
trainer answering all of them over one WebSocket; the record names the backend (bwrap where it is
available: the cheap one for many sandboxes) and the sandbox count, and the CPU each call cost
the admin, the trainer and the sandboxes (read from the sandboxes' cgroups, so a client that has
exited still counts), split into the agents and the rest (``clients``: the workload's own calls,
and the exit of a client that ends inside the window). Its floor, timed before and after it
(alternating blocks): as many of the same clients on the host, each through a bare relay of its
own (where each sandbox has its agent) and one shared bare relay (the admin) to an upstream that
answers at once (the trainer), with the same start line; ``floor_per_s`` is the better block's
rate, and the record gives the floor's CPU per call (the clients' own count, after their first
call; the relays' and the upstream's). Target: >= 3,000 calls/s on a 2-core VM.

rock_cli_call_ms: ROCK's own flow for one call, as a reference: rl-rock 1.11's
``ModelService.anti_call_llm`` (a nohup'd ``rock model-service anti-call-llm`` per call,
``check_interval=1``), against the same admin; rl-rock runs in its own venv (``bench/venvs.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.admin import AdminProcess
from bench.rawhttp import Connection
from bench.report import Context, percentile, process_cpu_s, record
from bench.venvs import VenvError, rlrock_python

# The client, the same on the host and inside a sandbox: N calls on one connection, each timed.
CLIENT = r'''
import http.client, json, sys, time
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}], "temperature": 0.5})
if path.endswith("/messages"):  # Anthropic's Messages
    body = json.dumps({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]})
elif path.endswith("/responses"):  # OpenAI's Responses
    body = json.dumps({"model": "m", "input": "hello", "temperature": 0.5})
conn = http.client.HTTPConnection(host, port)
out = []
for i in range(n):
    t = time.perf_counter()
    conn.request("POST", path, body, {"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    out.append(time.perf_counter() - t)
    assert r.status == 200, r.status
    if i == 0:
        cpu = time.process_time()
print("CPU%.6f" % (time.process_time() - cpu))  # this process's CPU seconds after its first call
print("TIMES" + json.dumps(out))
'''
# A scripted upstream: a fixed completion, HTTP/1.1 keep-alive, in its own process.
UPSTREAM = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
REPLY = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}).encode()
NATIVE = {"/v1/messages": json.dumps({"id": "msg_x", "type": "message", "role": "assistant", "model": "m",
                                      "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                                      "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}).encode(),
          "/v1/responses": json.dumps({"id": "resp_x", "object": "response", "created_at": 1, "status": "completed",
                                       "model": "m", "output": [{"type": "message", "id": "msg_x", "status": "completed",
                                       "role": "assistant", "content": [{"type": "output_text", "text": "hi",
                                       "annotations": []}]}]}).encode()}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave in two writes
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        reply = NATIVE.get(self.path, REPLY)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
'''
# The floor of a relayed call: a bare relay (raw HTTP/1.1 keep-alive on uvloop, no parsing past the
# framing) in front of the upstream; two of them in a row cross as many processes as proxy mode
# (the sandbox's agent, the admin), so their added p50 is what any relay adds on this machine.
RELAY = r'''
import asyncio, sys, uvloop
def length(head):
    return int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
async def handle(r, w):
    ur, uw = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            uw.write(head + await r.readexactly(length(head)))
            head = await ur.readuntil(b"\r\n\r\n")
            w.write(head + await ur.readexactly(length(head)))
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
        uw.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
uvloop.run(main())
'''
LOOP = "uvloop"
# The floor's upstream, standing where the trainer stands: answers every call at once (raw HTTP/1.1
# keep-alive on uvloop), except each connection's first call, held until ``clients`` first calls
# have come (the start line, as in ``throughput``); prints the start line's time, the 10% and 90%
# marks and the last answer's, as JSON, once the last of ``total`` calls after it is answered.
INSTANT_UPSTREAM = r'''
import asyncio, json, sys, time, uvloop
BODY = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                "finish_reason": "stop"}]}).encode()
REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)
clients, total = int(sys.argv[1]), int(sys.argv[2])
marks, stamps, firsts, answered = {total // 10: "p10", total * 9 // 10: "p90", total: "last"}, {}, [0], [0]
line = None
def length(head):
    return int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
async def handle(r, w):
    first = True
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            await r.readexactly(length(head))
            if first:
                first = False
                firsts[0] += 1
                if firsts[0] == clients:
                    stamps["t0"] = time.perf_counter()
                    line.set()
                await line.wait()
                w.write(REPLY)
                continue
            w.write(REPLY)
            answered[0] += 1
            if answered[0] in marks:
                stamps[marks[answered[0]]] = time.perf_counter()
                if answered[0] == total:
                    print(json.dumps(stamps), flush=True)
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    global line
    line = asyncio.Event()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
uvloop.run(main())
'''
# What the trainer answers on the ``ws_instant`` path: the upstream's reply, without the upstream.
INSTANT = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}


def _times(output: str) -> list[float]:
    return json.loads(output.split("TIMES", 1)[1])


def _machine() -> dict:
    """How busy the machine was as a record was taken: the 1-minute load average and the share of
    the last 10 s in which some task waited for a CPU (PSI). Latencies of a chain of four or five
    processes on 2 cores are mostly run-queue waits when that share is high."""
    out = {"loadavg_1m": round(os.getloadavg()[0], 2)}
    try:
        with open("/proc/pressure/cpu") as f:
            out["cpu_pressure_some_avg10"] = float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        pass
    return out


async def added_latency(ctx: Context, backend: str) -> list[dict]:
    from rock.sdk.model import ChatTrainer
    from rock.sdk.sandbox import Sandbox, SandboxConfig


    up = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    port = int(up.stdout.readline())
    relays = [subprocess.Popen([sys.executable, "-c", RELAY, str(port)], stdout=subprocess.PIPE, text=True)]
    relays.append(subprocess.Popen([sys.executable, "-c", RELAY, relays[0].stdout.readline().strip()],
                                   stdout=subprocess.PIPE, text=True))
    relayed = int(relays[1].stdout.readline())
    relays.append(subprocess.Popen([sys.executable, "-c", RELAY, str(relayed)], stdout=subprocess.PIPE, text=True))
    relayed3 = int(relays[2].stdout.readline())
    upstream = f"http://127.0.0.1:{port}/v1"
    admin = AdminProcess(backend, prefix="rock-bench-chat-")
    url = admin.start()
    script = Path(tempfile.mkdtemp()) / "client.py"
    script.write_text(CLIENT)
    blocks, per = ctx.n(4, 10), ctx.n(100, 200)
    # Messages and Responses calls: the trainer forwards the native request over its WebSocket, or
    # the admin forwards it (proxy); each against its own floor (the same client, the same API,
    # straight to the upstream).
    paths = ("http", "ws", "proxy", "ws_instant", "messages_ws", "messages_proxy", "responses_ws", "responses_proxy")
    api_path = {p: "/v1/" + p.split("_")[0] if p.startswith(("messages", "responses")) else "/v1/chat/completions"
                for p in paths}
    floors = {"/v1/chat/completions": "direct", "/v1/messages": "direct_messages", "/v1/responses": "direct_responses"}
    samples: dict[str, list[float]] = {"policy": [], "two_relays": [], "three_relays": [], **{f: [] for f in floors.values()},
                                       **{p: [] for p in paths}}
    try:
        boxes = {p: Sandbox(SandboxConfig(base_url=url, memory="512m", cpus=1)) for p in paths}
        await asyncio.gather(*(b.start() for b in boxes.values()))
        trainer = ChatTrainer(url)
        for path, box in boxes.items():
            await box.write_bytes("/tmp/client.py", CLIENT.encode())
            extra = {"type": "proxy", "proxy_base_url": upstream} if path.endswith("proxy") else {}
            await trainer.start(box.sandbox_id, **extra)
        served_by_trainer = ("http", "ws", "messages_ws", "responses_ws")
        conns = {p: Connection("127.0.0.1", port) for p in served_by_trainer}  # one per loop: one call at a time each

        def forwarder(path: str):
            async def policy(call):  # the trainer's policy is the same upstream, one hop further
                t = time.perf_counter()
                body = call.request if call.native is None else call.native["request"]  # native: answered natively
                status, body = await conns[path].request("POST", api_path[path], body)
                samples["policy"].append(time.perf_counter() - t)
                assert status == 200, status
                return json.loads(body)
            return policy

        def instant(call):
            return INSTANT

        stop = False
        serving = [asyncio.ensure_future(trainer.serve(forwarder(p) if p != "ws_instant" else instant,
                                                       sandbox_ids=[boxes[p].sandbox_id], wait=1,
                                                       until=lambda: stop, websocket=p != "http"))
                   for p in (*served_by_trainer, "ws_instant")]
        try:
            for _ in range(blocks):
                for where, floor, to in (*((w, f, port) for w, f in floors.items()),
                                         ("/v1/chat/completions", "two_relays", relayed),
                                         ("/v1/chat/completions", "three_relays", relayed3)):
                    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), "127.0.0.1", str(to),
                                                                where, str(per), stdout=asyncio.subprocess.PIPE)
                    samples[floor] += _times((await proc.communicate())[0].decode())[5:]
                for path in paths:
                    cmd = f'"$ROCK_HOST_PYTHON" /tmp/client.py 127.0.0.1 8080 {api_path[path]} {per}'
                    samples[path] += _times((await boxes[path].arun(cmd, timeout=300)).output)[5:]
        finally:
            stop = True
            await asyncio.gather(*serving, return_exceptions=True)
            for conn in conns.values():
                conn.close()
        await trainer.aclose()
        for box in boxes.values():
            await box.delete()
    finally:
        admin.stop()
        up.terminate()
        for relay in relays:
            relay.terminate()
    out = []
    relay_added = round((percentile(samples["two_relays"], 0.5) - percentile(samples["direct"], 0.5)) * 1e3, 4)
    relay3_added = round((percentile(samples["three_relays"], 0.5) - percentile(samples["direct"], 0.5)) * 1e3, 4)
    policy_p50 = round(percentile(samples["policy"], 0.5) * 1e3, 4)
    for path, label in (("http", "local mode, trainer's exchange loop (HTTP long-poll)"),
                        ("ws", "local mode, trainer's WebSocket"), ("proxy", "proxy mode"),
                        ("ws_instant", "local mode, trainer's WebSocket, answered at once without an upstream: "
                                       "the chain's own cost"),
                        ("messages_ws", "Anthropic Messages, local mode, trainer's WebSocket (native answer)"),
                        ("messages_proxy", "Anthropic Messages, proxy mode (forwarded natively)"),
                        ("responses_ws", "OpenAI Responses, local mode, trainer's WebSocket (native answer)"),
                        ("responses_proxy", "OpenAI Responses, proxy mode (forwarded natively)")):
        extra = {"policy_call_p50_ms": policy_p50} if path in served_by_trainer else {}
        extra["two_relays_added_p50_ms"] = relay_added  # the floor: what two bare relays add (proxy mode's hops)
        if path in served_by_trainer:  # agent, admin, trainer: three processes before the upstream
            extra["three_relays_added_p50_ms"] = relay3_added
        direct = samples[floors[api_path[path]]]
        rec = record("model_call_added_ms", backend, samples[path], floor_s=direct, label=label,
                     target_p50_added_ms=0.5, sandboxes=1, path=path, api=api_path[path], **extra, **_machine())
        rec["added_p50_ms"] = round((percentile(samples[path], 0.5) - percentile(direct, 0.5)) * 1e3, 4)
        out.append(rec)
    return out


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (up to 16 levels: a bwrap sandbox's agent is a few below)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                pass
    out = []
    for child in parents:
        p, hops = parents.get(child), 0
        while p and p != pid and hops < 16:
            p, hops = parents.get(p), hops + 1
        if p == pid:
            out.append(child)
    return out


def _sandboxes(admin_pid: int | None) -> tuple[list[str], list[int]]:
    """The owner group of the admin's sandboxes (``rock/<owner>``, above each ``rock/<owner>/<id>``
    of the CPU hierarchy's line in a descendant's ``/proc/<pid>/cgroup``: its counter holds every
    sandbox's) and the pids of their agents (the sandboxes' processes that run the agent's code;
    the others are the workload's)."""
    groups: set[str] = set()
    agents = []
    for pid in _descendants(admin_pid) if admin_pid else []:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                lines = f.read().splitlines()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if (controllers == "" or "cpuacct" in controllers.split(",")) and path.startswith("/rock/"):
                groups.add(path[1:].rsplit("/", 1)[0])
                if b"rock/agent/" in cmdline:
                    agents.append(pid)
                break
    return sorted(groups), agents


def _cpu(admin_pid: int | None, groups: list[str], agents: list[int]) -> dict[str, float]:
    """CPU seconds so far of the admin, this process (the trainer), the sandboxes' owner group
    (every process that ran in them, exited or not) and their agents."""
    from rock.runtime.cgroups import Cgroup

    out = {"admin": process_cpu_s(admin_pid) if admin_pid else 0.0, "trainer": process_cpu_s(os.getpid())}
    if groups:
        out["sandboxes"] = sum(Cgroup(g).stats()["cpu_seconds"] or 0.0 for g in groups)
        out["agents"] = sum(process_cpu_s(pid) for pid in agents)
    return out


async def _throughput_floor(clients: int, calls: int) -> dict:
    """One block of ``throughput``'s floor: ``clients`` copies of the client on the host, each
    making ``calls`` + 1 calls through a bare relay of its own (where each sandbox has its agent)
    and one shared bare relay (the admin) to an upstream that answers at once (the trainer;
    ``INSTANT_UPSTREAM``: the start line and the marks are its own). Gives the rate after the
    start line, the steady rate (10% to 90%) and the CPU per call of the clients and of the rest."""
    total = clients * calls
    up = subprocess.Popen([sys.executable, "-c", INSTANT_UPSTREAM, str(clients), str(total)], stdout=subprocess.PIPE,
                          text=True)
    procs = [up]
    try:
        port = up.stdout.readline().strip()
        procs.append(subprocess.Popen([sys.executable, "-c", RELAY, port], stdout=subprocess.PIPE, text=True))
        shared = procs[-1].stdout.readline().strip()
        own = [subprocess.Popen([sys.executable, "-c", RELAY, shared], stdout=subprocess.PIPE, text=True)
               for _ in range(clients)]
        procs += own
        ports = [relay.stdout.readline().strip() for relay in own]
        script = Path(tempfile.mkdtemp()) / "client.py"
        script.write_text(CLIENT)
        servers0 = sum(process_cpu_s(p.pid) for p in procs)
        runs = [await asyncio.create_subprocess_exec(sys.executable, str(script), "127.0.0.1", port,
                                                     "/v1/chat/completions", str(calls + 1),
                                                     stdout=asyncio.subprocess.PIPE)
                for port in ports]
        outs = [out.decode() for out, _ in await asyncio.gather(*(r.communicate() for r in runs))]
        codes = [r.returncode for r in runs]
        servers = sum(process_cpu_s(p.pid) for p in procs) - servers0
        stamps = json.loads(await asyncio.wait_for(asyncio.to_thread(up.stdout.readline), 30))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    if any(codes):
        raise RuntimeError(f"the floor's clients failed: exit codes {sorted(set(codes))}")
    clients_cpu = sum(float(out.split("CPU", 1)[1].split()[0]) for out in outs)  # after each one's first call
    window = total * 9 // 10 - total // 10
    return {"per_s": total / (stamps["last"] - stamps["t0"]), "steady_per_s": window / (stamps["p90"] - stamps["p10"]),
            "clients_cpu_us_per_call": clients_cpu / total * 1e6,
            "relays_and_upstream_cpu_us_per_call": servers / (total + clients) * 1e6}


async def throughput(ctx: Context, backend: str) -> dict:
    """``count`` sandboxes, each running the client for ``calls`` calls, one trainer answering all
    of them over one WebSocket. The clients' first calls are the start line: held until every
    sandbox has made one, then answered at once; the rate is over the calls after it, up to the
    last answer. CPU per call (admin, trainer, sandboxes: agents and clients) is read between 10%
    and 90% of them. The floor (``_throughput_floor``) is timed before and after, its best block
    kept: the machine's own rate for as many clients through as many relays."""
    from rock.sdk.model import ChatTrainer
    from rock.sdk.sandbox import Sandbox, SandboxConfig

    count, calls = ctx.n(64, 256), ctx.n(30, 40)
    floors = [await _throughput_floor(count, calls)]
    admin = AdminProcess(backend, prefix="rock-bench-chat-")
    url = admin.start()
    admin_pid = admin.pid()
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
    boxes = [Sandbox(SandboxConfig(base_url=url, memory="256m", cpus=0.5)) for _ in range(count)]
    trainer = ChatTrainer(url)
    total = count * calls
    marks: dict[int, tuple[float, dict]] = {}
    stamps: list[float] = []
    groups: list[str] = []
    agents: list[int] = []

    def policy(call):
        stamps.append(time.perf_counter())
        if len(stamps) in (total // 10, total * 9 // 10):
            marks[len(stamps)] = (stamps[-1], _cpu(admin_pid, groups, agents))
        return reply

    try:
        sem = asyncio.Semaphore(16)

        async def ready(box):
            async with sem:
                await box.start()
                await box.write_bytes("/tmp/client.py", CLIENT.encode())
                await trainer.start(box.sandbox_id)
                proc = await box.start_process(f'exec "$ROCK_HOST_PYTHON" /tmp/client.py 127.0.0.1 8080 '
                                               f'/v1/chat/completions {calls + 1}')
                await trainer.watch(box.sandbox_id, proc["pid"])

        ctx.progress(f"chat: starting {count} sandboxes ({backend})")
        await asyncio.gather(*(ready(b) for b in boxes))
        ids = [b.sandbox_id for b in boxes]
        groups[:], agents[:] = _sandboxes(admin_pid)
        held: list[dict] = []
        deadline = time.monotonic() + 120
        while len(held) < count and time.monotonic() < deadline:  # the start line: every client's first call
            got = await trainer.exchange(max_calls=count, wait=5, sandbox_ids=ids)
            held += [{"sandbox_id": c.sandbox_id, "index": c.index, "response": reply} for c in got.calls]
        t0 = time.perf_counter()
        await trainer.exchange(held, max_calls=0, wait=0)
        answered = await trainer.serve(policy, sandbox_ids=ids, max_calls=1024, wait=5, websocket=True)
        ended = time.perf_counter()
    finally:
        await trainer.aclose()
        await asyncio.gather(*(b.delete() for b in boxes), return_exceptions=True)
        admin.stop()  # deletes whatever is left
    floors.append(await _throughput_floor(count, calls))
    floor = max(floors, key=lambda f: f["per_s"])
    rec = {"metric": "model_calls_per_s", "backend": backend, "label": f"{count} sandboxes, one trainer WebSocket",
           "sandboxes": count, "calls_per_sandbox": calls,
           "trainer_connections": 1, "n": answered, "started": len(held),
           "per_s": round(answered / (stamps[-1] - t0), 1) if stamps else 0.0,
           "with_session_ends_per_s": round(answered / (ended - t0), 1), "target_per_s": 3000,
           "success_rate": round(answered / total, 4), **_machine(),
           "floor": "as many clients on the host, each through a bare relay of its own and a shared one to an "
                    "upstream answering at once",
           "floor_per_s": round(floor["per_s"], 1), "floor_blocks_per_s": [round(f["per_s"], 1) for f in floors],
           "floor_steady_per_s": round(floor["steady_per_s"], 1),
           **{f"floor_{k}": round(v, 1) for k, v in floor.items() if k.endswith("_cpu_us_per_call")}}
    rec["ratio_to_floor"] = round(rec["per_s"] / rec["floor_per_s"], 2) if rec["floor_per_s"] else None
    if len(marks) == 2:
        (ta, a), (tb, b) = (marks[k] for k in sorted(marks))
        n = total * 9 // 10 - total // 10
        rec["steady_per_s"] = round(n / (tb - ta), 1)
        used = {k: b[k] - a[k] for k in a}
        if "sandboxes" in used:  # the sandboxes' cgroups less their agents: the clients' calls (and exits)
            used["clients"] = used["sandboxes"] - used["agents"]
        rec.update({f"{k}_cpu_us_per_call": round(v / n * 1e6, 1) for k, v in used.items() if v > 0})
    return rec


RLROCK = r'''
import asyncio, json, sys, time
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from rock.sdk.sandbox.model_service.base import ModelService, ModelServiceConfig
AGENT = "import json,urllib.request\nfor i in range(%d):\n  urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8080/v1/chat/completions', b'{\"messages\": []}', {'content-type': 'application/json'})).read()\n"
REPLY = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]})
async def main(url, n):
    box = Sandbox(SandboxConfig(base_url=url, image="python:3.11", memory="512m", cpus=1))
    await box.start()
    try:
        ms = ModelService(box, ModelServiceConfig(enabled=True))
        await ms.install(); await ms.start()
        await box.write_file_by_path(AGENT % (n + 1), "/tmp/agent.py")
        await box.arun('nohup "$ROCK_HOST_PYTHON" /tmp/agent.py > /dev/null 2>&1 &', session=None)
        await ms.anti_call_llm(0, check_interval=1)
        times = []
        for i in range(1, n + 1):
            t = time.perf_counter()
            await ms.anti_call_llm(i, REPLY, check_interval=1)
            times.append(time.perf_counter() - t)
        print("TIMES" + json.dumps(times))
    finally:
        await box.stop()
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
'''


async def rock_cli(ctx: Context, backend: str) -> dict | None:
    try:
        python = rlrock_python()  # from PyPI on first use, shared with the tests
    except VenvError as exc:
        ctx.progress(f"chat: skipping ROCK's reference: {exc}")
        return None
    admin = AdminProcess(backend, prefix="rock-bench-chat-")
    url = admin.start()
    lib = "/.rock/lib/rock_agent/bin/rock-runtime-env"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ROCK_RTENV_PYTHON_V31114_INSTALL_CMD=lib, ROCK_MODEL_SERVICE_INSTALL_CMD=lib, ROCK_PIP_INDEX_URL="")
    try:
        proc = await asyncio.create_subprocess_exec(str(python), "-c", RLROCK, url, str(ctx.n(3, 6)), env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    cwd=tempfile.gettempdir())
        out, err = await proc.communicate()
    finally:
        admin.stop()
    if b"TIMES" not in out:
        ctx.progress(f"chat: ROCK's reference failed: {err.decode()[-500:]}")
        return None
    return record("rock_cli_call_ms", backend, _times(out.decode()), label="rl-rock 1.11 anti_call_llm, check_interval=1",
                  sandboxes=1)


async def run(ctx: Context) -> list[dict]:
    out = []
    for backend in ctx.backends:
        if backend == "local":
            continue  # one host network: every sandbox's endpoint would want port 8080
        ctx.progress(f"chat: added latency ({backend})")
        out += await added_latency(ctx, backend)
        if backend == "bwrap" or len(ctx.backends) == 1:
            ctx.progress(f"chat: calls per second ({backend})")
            out.append(await throughput(ctx, backend))
            ctx.progress(f"chat: ROCK's CLI flow ({backend})")
            ref = await rock_cli(ctx, backend)
            if ref:
                out.append(ref)
    return out
