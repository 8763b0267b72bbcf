"""A real job's traces, phase metrics and terminal view, on an admin with two tenants (bwrap: the
phases do not depend on the backend). One rollout of harness ``ours`` with the oracle on a user's
Harbor task: its OTLP/JSON file holds the rollout's span and a child span for every phase (each
model call one), the same spans reach an OTLP/HTTP collector the test runs on loopback, ``/metrics``
shows the phases to the job's tenant only, and ``rock job view`` shows the job and the rollout to
its tenant while another's token gets the API's 404."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from prometheus_client.parser import text_string_to_metric_families

from rock.agentic import tracing
from rock.agentic.tasks.jobs import run_job
from rock.agentic.tasks.rollout import RolloutOptions
from rock.cli.main import main
from tests.admin.harness import Admin
from tests.agentic_tasks.conftest import harbor_task

TOKENS = {"token-alice": "alice", "token-bob": "bob"}
PHASES = {"queue", "image", "agent_sandbox_start", "harness_install", "harness_run", "model_call", "diff",
          "verifier_queue", "verifier_start", "tests", "grading"}


@pytest.fixture(scope="module")
def tenants_admin():
    server = Admin("bwrap", tokens=TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


class Collector:
    """An OTLP/HTTP trace receiver on loopback: each POST /v1/traces parsed as protobuf and kept."""

    def __init__(self):
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.paths.append(self.path)
                outer.requests.append(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list:
        return [s for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def file_spans(path) -> tuple[list[dict], list[dict]]:
    """The spans and resources of an OTLP/JSON lines file."""
    spans, resources = [], []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            resources.append(rs["resource"])
            spans += [s for ss in rs["scopeSpans"] for s in ss["spans"]]
    return spans, resources


def attrs(span: dict) -> dict:
    return {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}


def scrape(admin, token: str) -> dict:
    text = httpx.get(f"{admin.url}/metrics", headers={"authorization": f"Bearer {token}"}).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("rock_rollout_phase_duration_seconds")}


def test_a_jobs_traces_metrics_and_view(tenants_admin, tmp_path, capsys):
    assert tracing.Tracing.open(None, None) is None and tracing.phase("x") is tracing.phase("y")  # off: no-ops
    task = harbor_task(tmp_path / "tasks")
    collector = Collector()
    out = tmp_path / "job.jsonl"
    try:
        options = RolloutOptions(base_url=tenants_admin.url, token="token-alice", harness="ours", policy="oracle")
        summary = asyncio.run(run_job(str(task.parent), options, concurrency=1, out=out, otlp=collector.url))
    finally:
        collector.close()
    [rec] = summary["records"]
    assert (rec["reward"], rec["error"]) == (1.0, None) and len(rec["model_calls"]) == 2, rec["error"]
    assert summary["traces"] == str(tmp_path / "job.traces.jsonl")

    # the file: OTLP/JSON, a rollout span and every phase as its child
    spans, resources = file_spans(tmp_path / "job.traces.jsonl")
    assert {attrs(r)["service.name"] for r in resources} == {"rock-rollouts"}
    [root] = [s for s in spans if s["name"] == "rollout"]
    assert attrs(root)["rock.task_id"] == "fix-add" and attrs(root)["rock.reward"] == 1.0
    assert attrs(root)["rock.job_id"] == summary["job_id"] and "parentSpanId" not in root
    children = [s for s in spans if s is not root]
    assert {s["name"] for s in children} == PHASES
    assert sum(s["name"] == "model_call" for s in children) == 2
    assert [attrs(s)["rock.call.index"] for s in children if s["name"] == "model_call"] in (["1", "2"], [1, 2])
    for s in children:
        assert s["traceId"] == root["traceId"] and s["parentSpanId"] == root["spanId"], s["name"]
        assert len(s["traceId"]) == 32 and len(s["spanId"]) == 16 and int(s["spanId"], 16)  # hex, as OTLP/JSON says
        assert int(root["startTimeUnixNano"]) <= int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"]) \
            <= int(root["endTimeUnixNano"]), s["name"]
    # the collector got the same spans over OTLP/HTTP
    assert set(collector.paths) == {"/v1/traces"}
    assert {(s.span_id.hex(), s.name) for s in collector.spans()} == {(s["spanId"], s["name"]) for s in spans}

    # /metrics: the job's phases to its tenant; another tenant's scrape has none of them
    alice, bob = scrape(tenants_admin, "token-alice"), scrape(tenants_admin, "token-bob")
    count = "rock_rollout_phase_duration_seconds_count"
    for phase in ("queue", "image", "agent_setup", "harness_run", "diff", "verifier_start", "tests", "grading"):
        assert alice[(count, (("harness", "ours"), ("phase", phase)))] == 1, phase
    assert not [k for k, v in bob.items() if v], bob

    # rock job view: the job, then its rollout, to its tenant
    job_id = summary["job_id"]
    view = ["job", "view", "--url", tenants_admin.url, job_id]
    capsys.readouterr()
    assert main([*view, "--token", "token-alice"]) == 0
    text = capsys.readouterr().out
    assert f"job {job_id}" in text and "ours/oracle" in text and "pass rate 1.000 (1)" in text
    assert "fix-add" in text and "harness run" in text and "tests" in text
    assert main([*view, "0", "--token", "token-alice"]) == 0
    text = capsys.readouterr().out
    assert "task fix-add" in text and "reward 1.0" in text and "model calls (2)" in text
    assert text.index("#1 chat success") < text.index("#2 chat success")
    assert "[bash " in text and "-    return a - b" in text and "+    return a + b" in text  # the call, the diff
    assert "verifier" in text and "reward.txt '1'" in text
    assert main(["--json", *view, "--token", "token-alice"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"][0] == {
        "task_id": "fix-add", "runs": 1, "reward": 1.0, "passed": 1, "errors": 0, "first_error": None,
        "mean_reward": 1.0, "pass_rate": 1.0}
    # another tenant: the API's 404, for the job and for its rollout
    for extra in ([], ["0"]):
        assert main([*view, *extra, "--token", "token-bob"]) == 1
        err = capsys.readouterr().err
        assert f"job {job_id}: 404" in err, err
    # no such rollout, a malformed id: the API's answer, said in a line
    assert main([*view, "7", "--token", "token-alice"]) == 1
    assert f"job {job_id}: 404" in capsys.readouterr().err
    assert main(["job", "view", "--url", tenants_admin.url, "--token", "token-alice", "../etc"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: job ../etc: 4") and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_without_the_tracing_extra_a_job_traces_nothing(tmp_path):
    """Where the OpenTelemetry packages are missing, the module still imports, opens no tracer and its phases are
    the shared no-op (run in a fresh interpreter that cannot import them)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from rock.agentic import tracing\n"
            "from rock.agentic.tasks.jobs import traces_file\n"
            f"path = traces_file({str(tmp_path / 'j.jsonl')!r}, None)\n"
            "assert not tracing.AVAILABLE and tracing.Tracing.open(path, 'http://127.0.0.1:9') is None\n"
            "with tracing.phase('image'):\n    pass\n"
            "assert tracing.phase('a') is tracing.phase('b') and not tracing.active()\n"
            "print('ok', path)\n")
    src = str(Path(__file__).resolve().parents[2] / "src")  # this tree's package, whatever is installed
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": src})
    assert proc.returncode == 0 and proc.stdout.split() == ["ok", str(tmp_path / "j.traces.jsonl")], proc.stderr
    assert not (tmp_path / "j.traces.jsonl").exists()


class Silent:
    """A collector that accepts connections, reads what is sent and never answers."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list = []
        self.got = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.settimeout(10)
            try:
                while b"\r\n\r\n" not in conn.recv(65536, socket.MSG_PEEK):  # MSG_PEEK: the request's head has come
                    pass
            except OSError:
                return
            self.got.set()

    def still_waiting(self) -> bool:
        """Whether the first connection is still open on the client's side (it has not given up waiting)."""
        conn = self.conns[0]
        conn.setblocking(False)
        try:
            while conn.recv(65536):  # drain the request: what is left is the client's close or nothing
                pass
            return False  # EOF: the client closed it
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            conn.setblocking(True)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def _trace_a_rollout(path, endpoint) -> tuple[tracing.Tracing, int]:
    tracer = tracing.Tracing.open(path, endpoint)
    assert tracer is not None
    with tracer.rollout("t-1", queued_at=None):
        for name in ("image", "diff", "tests"):
            with tracing.phase(name):
                pass
    return tracer, 4


def test_a_collector_that_never_answers_does_not_hold_the_jobs_end(tmp_path, caplog):
    """The spans go to the collector in the background; at the end it gets a short bounded flush: one that accepts
    and never answers is still waiting when ``close`` returns (close did not wait out the exporter's timeout), the
    spans it did not take are counted and logged, and the trace file has every span. Control: a collector that
    answers gets every span and nothing is counted undelivered."""
    silent, working = Silent(), Collector()
    try:
        tracer, n = _trace_a_rollout(tmp_path / "silent.jsonl", silent.url)
        with caplog.at_level("WARNING", logger="rock.agentic"):
            out = tracer.close(flush_s=0.5)
        assert silent.got.wait(10), "the exporter never reached the silent collector"
        assert silent.still_waiting(), "close returned only after the exporter gave up on the collector"
        assert out == {"spans": n, "delivered": 0, "undelivered": n}
        assert f"did not take {n} of {n} spans" in caplog.text and silent.url in caplog.text
        spans, _ = file_spans(tmp_path / "silent.jsonl")
        assert sorted(s["name"] for s in spans) == ["diff", "image", "rollout", "tests"]

        tracer, n = _trace_a_rollout(tmp_path / "working.jsonl", working.url)
        assert tracer.close() == {"spans": n, "delivered": n, "undelivered": 0}
        assert sorted(s.name for s in working.spans()) == ["diff", "image", "rollout", "tests"]
    finally:
        silent.close()
        working.close()
