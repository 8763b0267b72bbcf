"""Schemathesis over a running admin: ``st run --checks all`` as users run it, with our hooks
(tests/fuzz/hooks.py), its JSON report read back into counts.

Shared by the bounded test (tests/fuzz/test_schema_fuzz.py) and the benchmark part (bench/fuzz.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOOKS = "tests.fuzz.hooks"
ROOT = Path(__file__).resolve().parents[2]
SANDBOX_API = "/apis/envs/sandbox/v1"
# A failure whose body carries one of these leaked a traceback to a client.
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")


# Every answer within RESPONSE_S on a busy machine, unless the operation's schema declares it
# long (rock.admin.openapi.LONG_RUNNING: the most seconds it may take): then within that, and
# its requests wait that long. A request that has had no answer by REQUEST_TIMEOUT_S is an error.
RESPONSE_S = 10
REQUEST_TIMEOUT_S = 30
LONG_RUNNING = "x-rock-long-running"
# An event stream (text/event-stream) may never end: its head and what it sends in the first
# seconds are read, then the read ends (schemathesis cuts a stream at its request timeout).
STREAM_READ_S = 3

# A schema-valid request may still be refused: 400 names what a schema cannot say (a path with
# '..', the proxy's target port given none of three ways, two settings that exclude each other,
# a name already taken by another kind); 426 is the WebSocket-only route's answer to plain GET.
# 422 is not among them: a request the schema allows must pass validation.
CONFIG = f"""
request-timeout = {REQUEST_TIMEOUT_S}

[checks]
max_response_time = {RESPONSE_S}

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "410", "426", "429", "5xx"]
"""
# Operation blocks: for an operation's request timeout schemathesis reads the first that names it.
OPERATIONS = """
# GEM's make: an env id that exists but cannot be made here (its entry point does not import,
# its corpus is missing) is ROCK's 422 (EnvUnavailable/EnvMakeError), whatever the body.
[[operations]]
include-path-regex = "/envs/gem/(vec/)?make$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "410", "422", "5xx"]

# An env call's action or seed is whatever the env takes (the schema cannot know each env's
# action space): an env whose own code raised on it is ROCK's 422 (EnvError), naming the exception.
[[operations]]
include-path-regex = "/envs/gem/(vec/)?(step|reset)$|/envs/gym/sessions/[^/]+/(step|reset)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "410", "422", "5xx"]

# The port proxy is a gateway: 502 (nothing listens on that port inside the sandbox, or it hung
# up) and 504 (it did not answer in time) are its declared answers about the sandbox's server,
# not errors of the admin.
[[operations]]
include-path-regex = "/sandboxes/[^/]+/(proxy|portforward)"
checks.not_a_server_error.expected-statuses = ["1xx", "2xx", "3xx", "4xx", "502", "504"]
"""


@dataclass
class FuzzRun:
    label: str
    exit_code: int
    operations: int = 0
    tested: int = 0
    requests: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failed_operations: dict[str, list[str]] = field(default_factory=dict)  # check -> "METHOD path"s
    errors: int = 0
    tracebacks: int = 0
    seconds: float = 0.0
    output: str = ""

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and not self.failures and not self.errors and not self.tracebacks

    def row(self) -> dict:
        return {"label": self.label, "operations": self.operations, "tested": self.tested,
                "requests": self.requests, "failures": dict(self.failures),
                "failed_operations": dict(self.failed_operations), "errors": self.errors,
                "tracebacks": self.tracebacks, "seconds": round(self.seconds, 1), "exit_code": self.exit_code}


def timed_operations(url: str) -> dict[str, float]:
    """"METHOD path" -> the seconds its requests may take, for every operation whose schema says
    it is not answered like the rest: declared long (LONG_RUNNING), or an event stream."""
    schema = httpx.get(url + "/openapi.json", timeout=60).json()
    out = {}
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            streams = any("text/event-stream" in (answer.get("content") or {})
                          for answer in (op.get("responses") or {}).values())
            if LONG_RUNNING in op:
                out[f"{method.upper()} {path}"] = float(op[LONG_RUNNING]["seconds"])
            elif streams:
                out[f"{method.upper()} {path}"] = float(STREAM_READ_S)
    return out


def config_for(url: str) -> str:
    """The run's configuration: CONFIG, each timed operation's seconds, then OPERATIONS."""
    blocks = [f'[[operations]]\ninclude-name = "{name}"\nrequest-timeout = {seconds}\n'
              + (f"checks.max_response_time = {seconds}\n" if seconds > RESPONSE_S else "")
              for name, seconds in sorted(timed_operations(url).items())]
    return CONFIG + "\n# Declared long (x-rock-long-running) or a stream\n" + "\n".join(blocks) + OPERATIONS


def start_fixture_sandbox(url: str, token: str | None) -> str:
    """One running sandbox for the fuzzer to reach into (the hooks name it in some requests).
    The env catalog is probed first: a fresh state dir's first probe (a sandbox importing every
    env, once per machine and gem version, then read from the state dir) is set-up, not the
    latency of the route that happens to ask first."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    httpx.post(url + "/apis/v1/envs/gem/list", headers=headers, timeout=600).raise_for_status()
    r = httpx.post(url + SANDBOX_API + "/start", json={"memory": "256m", "auto_clear_seconds": 600},
                   headers=headers, timeout=120)
    r.raise_for_status()
    return r.json()["result"]["sandbox_id"]


def run(url: str, label: str, *, token: str | None = None, sandbox: str = "", max_examples: int = 5, seed: int = 1,
        max_starts: int = 4, workers: int = 2, phases: str = "examples,coverage,fuzzing,stateful",
        max_time: float | None = None, exclude: tuple[str, ...] = (), mode: str = "all",
        include: tuple[str, ...] = ()) -> FuzzRun:
    """``exclude``: path regexes left out of generation (each with its reason at the caller);
    ``include``: path regexes, the only ones generated (a finding run again on its own)."""
    report = Path(tempfile.mkdtemp(prefix="rock-fuzz-"))
    (report / "schemathesis.toml").write_text(config_for(url))
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(report / "schemathesis.toml"), "run", url + "/openapi.json", "--checks", "all",
           "--max-examples", str(max_examples), "--mode", mode, "--seed", str(seed), "--workers", str(workers),
           "--phases", phases, "--no-shrink", "--generation-deterministic",
           "--report", "json", "--report-json-path", str(report / "run.json"), "--output-truncate", "false"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if max_time:
        cmd += ["--max-time", str(max_time)]
    for pattern in exclude:
        cmd += ["--exclude-path-regex", pattern]
    for pattern in include:
        cmd += ["--include-path-regex", pattern]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "FUZZ_SANDBOX": sandbox, "FUZZ_MAX_STARTS": str(max_starts),
           "FUZZ_SEED": str(seed), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "src"),
                                                                             os.environ.get("PYTHONPATH")])),
           "NO_COLOR": "1", "COLUMNS": "160"}
    import time

    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=report, timeout=1800)
    out = FuzzRun(label=label, exit_code=proc.returncode, seconds=time.perf_counter() - t0,
                  output=proc.stdout + proc.stderr)
    _read_report(report / "run.json", out)
    out.tracebacks = len(TRACEBACK.findall(out.output))
    return out


def _read_report(path: Path, out: FuzzRun) -> None:
    """The counts of schemathesis' JSON run report."""
    if not path.exists():
        return
    data = json.loads(path.read_text())
    ops = data.get("operations") or {}
    out.operations, out.tested = ops.get("total", 0), ops.get("tested", 0)
    out.requests = (data.get("test_cases") or {}).get("generated", 0)
    for f in data.get("failures") or []:
        out.failures[f"{f.get('code')} {f.get('title')}"] = f.get("count", 1)
        out.failed_operations[f"{f.get('code')} {f.get('title')}"] = list(f.get("operations") or [])
    out.errors = sum(e.get("count", 1) for e in data.get("errors") or [])
