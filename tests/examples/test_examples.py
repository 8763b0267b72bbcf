"""Every example in examples/ and every Python snippet of the README, run as a newcomer runs them:
against a real admin started with `rock admin start` (bwrap; a proxy beside it for the read/write
example), as subprocesses of their own. An example's own asserts are its checks; a new file in
examples/ is run without being listed here, and the README must name it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.admin.harness import free_port
from tests.conftest import SESSION_ROOT
from tests.envs.test_gym_sessions import torch_dir  # noqa: F401 - the CPU torch the gym tests install

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
RUNNER = ROOT / "tests" / "sdk" / "snippet.py"
API = "/apis/envs/sandbox/v1"

pytestmark = pytest.mark.bwrap


def _rock(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def admins():
    """(admin URL, proxy URL): `rock admin start --env local-proxy`, role admin and role proxy."""
    from rock.runtime import get_runtime_class

    if reason := get_runtime_class("bwrap").available():
        pytest.skip(f"bwrap: {reason}")
    state = Path(tempfile.mkdtemp(prefix="x", dir=SESSION_ROOT))
    common = ["--env", "local-proxy", "--state-dir", str(state)]
    admin = json.loads(_rock("--json", "admin", "start", "--backend", "bwrap", "--port", str(free_port()), *common))
    try:
        proxy = json.loads(_rock("--json", "admin", "start", "--backend", "bwrap", "--role", "proxy",
                                 "--port", str(free_port()), *common))
        yield admin["url"], proxy["url"]
    finally:
        _delete_all(admin["url"])
        _rock("admin", "stop", *common)


def _delete_all(url: str) -> None:
    """What the examples stopped with their files kept (ROCK's stop), and the env sandboxes."""
    items = httpx.get(url + API + "/sandboxes", params={"page_size": 1000}, timeout=60).json()["result"]["items"]
    ids = {i["sandbox_id"] for i in items if i.get("lifecycle_state") != "deleted"}
    ids |= set(httpx.get(url + "/apis/v1/envs/gem/hosted", timeout=60).json())
    for sandbox_id in ids:
        httpx.post(url + API + "/delete", json={"sandbox_id": sandbox_id}, timeout=120)


def _run(argv: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "cluster_local_ray.py"])
def test_example_runs_against_rock_admin_start(name, admins, request):
    admin_url, proxy_url = admins
    env = {"ROCK_BASE_URL": admin_url, "ROCK_PROXY_URL": proxy_url}
    if name == "gym_torch.py":
        torch = request.getfixturevalue("torch_dir")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(torch)) if p)
    proc = _run([sys.executable, f"examples/{name}"], env)
    assert proc.stdout.strip(), "an example shows what it did"


@pytest.mark.ray
def test_cluster_example_on_local_ray_nodes():
    pytest.importorskip("ray", reason="the cluster extra (ray)")
    env = {"ROCK_EXAMPLE_RAY_PORT": str(free_port()), "ROCK_EXAMPLE_ADMIN_PORT": str(free_port())}
    proc = _run([sys.executable, "examples/cluster_local_ray.py"], env)
    assert "placement (spread)" in proc.stdout


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_python_snippet_runs(index, admins, tmp_path):
    """As written (top-level await allowed, as a notebook cell runs it: tests/sdk/snippet.py)."""
    script = tmp_path / f"readme_{index}.py"
    script.write_text(SNIPPETS[index])
    _run([sys.executable, str(RUNNER), str(script)], {"ROCK_BASE_URL": admins[0]})


def test_readme_names_every_example():
    named = set(re.findall(r"examples/([\w.]+\.py)", README))
    assert set(EXAMPLES) <= named, f"not in README.md: {sorted(set(EXAMPLES) - named)}"
    assert named <= set(EXAMPLES), f"README.md names examples that do not exist: {sorted(named - set(EXAMPLES))}"
