"""Upstream's own examples (alibaba/ROCK, ``examples/``), the ones that can run offline, kept here
byte for byte and run with the real rl-rock SDK against a real admin, once per backend (local_demo.py
on bwrap only: see its test), so they cannot rot: a change of ours that breaks what upstream's
users run fails here.

Each copy's SHA-256 is pinned to upstream's file at ``UPSTREAM``: a copy edited to make it pass
fails ``test_copies_are_upstreams_files``. What is set around them is only what the README
documents: ``ROCK_BASE_URL`` and rl-rock's install variables. Left out: ``sandbox_proxy_demo.py``
(fixed ports 8080/8081 and Redis), ``download_file_demo.py`` (an OSS bucket), the install-agents
and evaluation examples (agents and data from the internet). local_demo.py's agent config is ours
(its folder's ``rock_agent_config.yaml`` says why); the demo itself is upstream's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


HERE = Path(__file__).parent / "upstream_examples"
UPSTREAM = "alibaba/ROCK@4889118bde2ddba26684d4a8a5051892ad7defe9"
MODEL_DEMO = "examples/install-agents/iflow_cli/integration_with_model_service/local/local_demo.py"
COPIES = {
    "examples/sandbox_demo.py": "5b8397c0218e677a8fbbac4f49fabd32e666cea3fcaee1d453121ba22b794aa4",
    "examples/sandbox_files_demo.py": "779a1d6c60edacd6fbaf4566b9f7aa525053422c2f4149711828ad02838ca7ab",
    "examples/sokoban_demo.py": "738a8b94a50a4add4741e1a718af7d97119e7092ffd6eda3dd44765f6130b309",
    MODEL_DEMO: "2747d7cfa759e66ce13e2c5b905aa544a001f04e32bc8fd6068f3f898a97830e",
}
BIN = "/.rock/lib/rock_agent/bin"
# The README's install variables: rl-rock installs its runtime and model service from what every
# sandbox has, instead of downloading a Python and pip-installing itself.
INSTALL_VARS = {"ROCK_RTENV_PYTHON_V31114_INSTALL_CMD": f"{BIN}/rock-runtime-env",
                "ROCK_MODEL_SERVICE_INSTALL_CMD": f"{BIN}/rock-runtime-env", "ROCK_PIP_INDEX_URL": ""}
ANSWER = "Hello! I am ROCK"  # the content of local_demo.py's MODEL_PAYLOAD


def test_copies_are_upstreams_files():
    on_disk = {p.relative_to(HERE).as_posix() for p in HERE.rglob("*.py")} - {"run_example.py"}
    assert on_disk == set(COPIES), "every example kept here is pinned below, and only those"
    for path, digest in COPIES.items():
        assert hashlib.sha256((HERE / path).read_bytes()).hexdigest() == digest, f"{path} differs from {UPSTREAM}"


def run_example(path: str, admin, rlrock_python, tmp_path: Path) -> tuple[str, dict]:
    """The example run as its README says (its folder copied, so what it writes stays out of the
    checkout); its stdout and what run_example.py saw."""
    folder = tmp_path / "example"
    shutil.copytree((HERE / path).parent, folder)
    env = {**os.environ, "ROCK_BASE_URL": admin.url, **INSTALL_VARS}
    env.pop("PYTHONPATH", None)  # rl-rock's own `rock`, not ours
    proc = subprocess.run([str(rlrock_python), str(HERE / "run_example.py"), str(folder / Path(path).name)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    out, report = proc.stdout.rsplit("RESULT", 1)
    return out, json.loads(report)


def test_sandbox_demo(admin, rlrock_python, tmp_path):
    out, _ = run_example("examples/sandbox_demo.py", admin, rlrock_python, tmp_path)
    stars = "*" * 50
    assert f"\n{stars}\nHello ROCK\n{stars}\n" in out, out  # printed as upstream's runtime returns it: stripped


def test_sandbox_files_demo(admin, rlrock_python, tmp_path):
    out, _ = run_example("examples/sandbox_files_demo.py", admin, rlrock_python, tmp_path)
    assert "✓ cat command result: 'hello world'" in out and "All operations completed successfully!" in out, out


def test_sokoban_demo(admin, rlrock_python, tmp_path):
    out, _ = run_example("examples/sokoban_demo.py", admin, rlrock_python, tmp_path)
    assert "Episode finished!" in out, out


# On bwrap only: rl-rock polls each of the demo's nohup commands every 10-30 s, 70-80 s a run on
# either backend, and what differs between backends here (the runtime and model service installed
# in the sandbox, the agent run, anti_call_llm) the same SDK drives on docker in
# tests/agentic/test_model_service.py::test_the_real_rl_rock_sdk_drives_it.
@pytest.mark.bwrap
@pytest.mark.parametrize("admin", ["bwrap"], indirect=True)
def test_model_service_local_demo_ends_on_session_end(admin, rlrock_python, tmp_path):
    """local_demo.py's loop answers each model call until anti_call_llm returns exactly
    "SESSION_END"; with anything else (ROCK's runtime strips the command's output, so a trailing
    newline is a difference) it never ends."""
    out, report = run_example(MODEL_DEMO, admin, rlrock_python, tmp_path)
    returned = report["anti_call_llm"]
    assert [index for index, _ in returned] == [0, 1, 2], returned
    assert [json.loads(r)["messages"][-1]["content"] for _, r in returned[:2]] == ["Hello", "and again"], returned
    assert returned[2][1] == "SESSION_END", returned
    assert report["tasks"] == [{"name": "model_service_loop", "ended": "returned"}], report
    finished = next(line for line in out.splitlines() if line.startswith("[Agent] run finished, result="))
    assert "exit_code=0" in finished and f"output='{ANSWER}\\n{ANSWER}'" in finished, finished
