"""E2B's template API with the real, unmodified e2b SDK (2.63, in a venv of its own) on docker and
bwrap: templates built from steps by the admin's checked image build, used by Sandbox.create,
tagged, looked up and deleted per tenant; a failing build and a build reaching for the network;
E2B's error shape on routes ROCK does not serve. The scenario (scenario_templates.py) runs inside
the venv and prints its OK line."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from bench.venvs import VenvError, client_python

HERE = Path(__file__).parent
VENV_ROOT = Path(os.environ.get("ROCK_TEST_E2B_VENVS") or "/tmp")
SDK = "2.63.0"


def e2b_python() -> Path:
    try:
        return client_python(VENV_ROOT / f"e2b-{SDK}", [f"e2b=={SDK}"], "import e2b.template_sync")
    except VenvError as exc:
        pytest.fail(str(exc))


def _bridge_gateway() -> str:
    """An address of this host that a build container would reach if it had a network."""
    from rock.runtime.docker.engine import client

    config = client().inspect_network("bridge")["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def _leftovers(name: str) -> tuple[list, list]:
    """The engine's containers whose command names this test's templates (a RUN step's build
    container), and the template images there are."""
    from rock.runtime.docker.engine import client

    api = client()
    containers = [c["Id"] for c in api.containers(all=True) if name in (c.get("Command") or "")]
    images = [t for i in api.images() for t in (i.get("RepoTags") or []) if t.startswith("rock-template/")]
    return containers, images


def test_templates_with_the_real_sdk(e2b_admin, tmp_path):
    python = e2b_python()
    name = f"tpl-{uuid.uuid4().hex[:8]}"
    before = _leftovers(name)[1]
    with socket.create_server(("0.0.0.0", 0)) as probe:  # what a build with a network would reach
        probe.settimeout(0)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("E2B_")}
        env.update(E2B_API_KEY="e2b-token-a", OTHER_KEY="e2b-token-b", E2B_API_URL=e2b_admin.url,
                   E2B_SANDBOX_URL=e2b_admin.url, BASE_IMAGE=e2b_admin.settings.default_image, TEMPLATE_NAME=name,
                   PROBE_HOST=_bridge_gateway(), PROBE_PORT=str(probe.getsockname()[1]))
        proc = subprocess.run([str(python), "-I", str(HERE / "scenario_templates.py")], env=env, capture_output=True,
                              text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0 and "E2B TEMPLATES OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
        with pytest.raises(BlockingIOError):  # the refused build never connected
            probe.accept()
    # nothing left behind: no sandbox, no build container, no template image (all were deleted or failed)
    live = [r for r in e2b_admin.ctx.sandboxes.records.values() if r.state in ("pending", "running")]
    assert live == [], [r.sandbox_id for r in live]
    containers, images = _leftovers(name)
    assert containers == [] and sorted(images) == sorted(before), (containers, images)


def _call(admin, method: str, path: str, key: str | None = "e2b-token-a", body: dict | None = None):
    headers = {"X-API-KEY": key} if key else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(admin.url + path, data=data, method=method,
                                     headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/volumes", None),  # served or not, never ROCK's envelope or a false 401
    ("GET", "/api-keys", 404),
    ("GET", "/teams", 404),
    ("GET", "/v2/templates", 404),
    ("PUT", "/templates/base", 405),
    ("PATCH", "/templates/tags", 405),
    ("GET", "/v3/templates", 405),
])
def test_unserved_e2b_routes_answer_in_e2bs_shape(e2b_admin, method, path, status):
    code, body = _call(e2b_admin, method, path)
    if status is None:
        assert code == 200 or set(body) == {"code", "message"} and body["code"] == code, (code, body)
        return
    assert (code, set(body)) == (status, {"code", "message"}) and body["code"] == status, (code, body)
    # without a key, or with a bad one: E2B's 401, before anything else
    for key in (None, "not-a-token"):
        code, body = _call(e2b_admin, method, path, key=key)
        assert (code, set(body), body["code"]) == (401, {"code", "message"}, 401), (key, code, body)


def test_template_requests_are_checked(e2b_admin):
    code, body = _call(e2b_admin, "GET", "/templates/base")
    assert code == 200 and body["templateID"] == "base" and body["public"] is True, body
    code, body = _call(e2b_admin, "POST", "/v3/templates", body={"name": "Bad Name!"})
    assert code == 400 and "template name" in body["message"], body
    code, body = _call(e2b_admin, "POST", "/v3/templates", body={"name": "base"})
    assert code == 409, body
    name = f"chk-{uuid.uuid4().hex[:8]}"
    code, abandoned = _call(e2b_admin, "POST", "/v3/templates", body={"name": name})
    assert code == 202, abandoned
    code, made = _call(e2b_admin, "POST", "/v3/templates", body={"name": name})  # a build never started holds nothing
    assert code == 202 and made["templateID"] == abandoned["templateID"], made
    code, body = _call(e2b_admin, "GET", f"/templates/{name}/builds/{abandoned['buildID']}/status")
    assert code == 404, body
    start = f"/v2/templates/{made['templateID']}/builds/{made['buildID']}"
    for bad, words in [({"fromImage": "x", "fromTemplate": "y"}, "exactly one"),
                       ({"fromImage": "python:3.11", "steps": [{"type": "RUN", "args": ["echo hi", "bad user!"]}]},
                        "not a user name"),
                       ({"fromImage": "python:3.11", "steps": [{"type": "COPY", "args": ["../etc/passwd", "/x"],
                                                                "filesHash": "0" * 64}]}, "relative path"),
                       ({"fromImage": "python:3.11", "steps": [{"type": "ENV", "args": ["A B", "x"]}]},
                        "environment variable name"),
                       ({"fromImage": "python:3.11", "steps": [{"type": "WORKDIR", "args": ["/a\nRUN id"]}]},
                        "on one line")]:
        code, body = _call(e2b_admin, "POST", start, body=bad)
        assert code == 400 and words in body["message"], (bad, body)
    # another tenant's build is missing, and so are its upload links
    code, body = _call(e2b_admin, "POST", start, key="e2b-token-b", body={"fromImage": "python:3.11"})
    assert code == 404, body
    code, body = _call(e2b_admin, "GET", f"/templates/{made['templateID']}/files/{'a' * 64}", key="e2b-token-b")
    assert code == 404, body
    code, link = _call(e2b_admin, "GET", f"/templates/{made['templateID']}/files/{'a' * 64}")
    assert code == 201 and link["present"] is False, link
    forged = link["url"].replace("token=", "token=0")
    request = urllib.request.Request(forged, data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 404


def test_steps_become_one_checked_dockerfile():
    """The SDK's Dockerfile parser brackets the steps with USER/WORKDIR; a USER replaced before any
    RUN or COPY is no step of its own, a RUN's user applies to it alone, the image ends as root."""
    from rock.admin.templates.steps import plan

    made = plan("python:3.11", [{"type": "USER", "args": ["root"]}, {"type": "WORKDIR", "args": ["/"]},
                                {"type": "ENV", "args": ["A", 'b "c"']}, {"type": "RUN", "args": ["id -un", "nobody"]},
                                {"type": "USER", "args": ["user"]}, {"type": "WORKDIR", "args": ["/home/user"]}])
    assert made.dockerfile.splitlines() == ["FROM python:3.11", "WORKDIR /", 'ENV A="b \\"c\\""', "USER nobody",
                                            'RUN ["/bin/sh", "-c", "id -un"]', "WORKDIR /home/user", "USER root"]
    assert made.step_of == ["base", "2", "3", "4", "4", "6", "finalize"]
