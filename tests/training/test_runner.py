"""``rock job run`` against a real admin: oracle, null, and the openai policy talking to a small
scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.docker


def job(admin, *args, tmp_path):
    out = tmp_path / "traj.jsonl"
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "--json", "job", "run", "--url", admin.url,
                           "--out", str(out), *args], capture_output=True, text=True, timeout=600, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout), [json.loads(line) for line in out.read_text().splitlines()]


def test_oracle_and_null_jobs(training_admin, tmp_path):
    summary, records = job(training_admin, "--env", "bfcl", "--categories", "multi_turn_base,simple_python",
                           "--split", "val", "--policy", "oracle", "--limit", "12", "--concurrency", "4",
                           tmp_path=tmp_path)
    assert summary["tasks"] == 12 and summary["mean_reward"] == 1.0 and summary["pass_rate"] == 1.0
    assert summary["by_category"]["multi_turn_base"]["tasks"] == 12
    rec = records[0]
    assert rec["messages"][0]["role"] == "system" and rec["rewards"][-1] == 1.0
    assert rec["timings"]["create_ms"] > 0 and len(rec["timings"]["steps_ms"]) == len(rec["rewards"])
    summary, _ = job(training_admin, "--env", "humaneval", "--policy", "null", "--limit", "2", tmp_path=tmp_path)
    assert summary["tasks"] == 2 and summary["mean_reward"] == 0.0 and summary["errors"] == 0
    # Answered at the app's door, the per-task calls still time themselves into /metrics, by path.
    counts = {s.labels["route"]: s.value for f in text_string_to_metric_families(httpx.get(training_admin.url + "/metrics").text)
              if f.name == "rock_http_request_duration_seconds" for s in f.samples
              if s.name.endswith("_count") and s.labels["status"] == "200"}
    assert counts.get("/apis/v1/training/create", 0) >= 14 and counts.get("/apis/v1/training/release", 0) >= 14
    assert counts.get("/apis/v1/training/step", 0) >= sum(len(r["rewards"]) for r in records)


class Scripted(BaseHTTPRequestHandler):
    """Answers every chat completion with the next scripted message; records the requests."""

    script: list[dict] = []
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Scripted.seen.append(body)
        message = Scripted.script.pop(0) if Scripted.script else {"role": "assistant", "content": "no idea"}
        data = json.dumps({"id": "c1", "object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_policy_against_a_scripted_server(training_admin, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Scripted.script = [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {
            "name": "calculate_triangle_area", "arguments": json.dumps({"base": 10, "height": 5})}}]},
        {"role": "assistant", "content": "The area is 25."},  # simple_python_1: a wrong answer
    ]
    try:
        summary, records = job(training_admin, "--env", "bfcl", "--categories", "simple_python", "--split", "all",
                               "--limit", "2", "--concurrency", "1", "--policy", "openai", "--model", "scripted",
                               "--policy-url", f"http://127.0.0.1:{server.server_port}/v1", tmp_path=tmp_path)
    finally:
        server.shutdown()
    rewards = {r["task_id"]: r["reward"] for r in records}
    assert rewards == {"simple_python_0": 1.0, "simple_python_1": 0.0}
    assert summary["mean_reward"] == 0.5
    first = Scripted.seen[0]
    assert first["model"] == "scripted" and first["tools"][0]["function"]["name"] == "calculate_triangle_area"
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
