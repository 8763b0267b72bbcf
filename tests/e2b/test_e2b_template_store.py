"""Templates are the admin's store's records: they survive a restart, an older admin's templates
file is taken in once, and two admins sharing a PostgreSQL store serve the same templates to the
unmodified e2b SDK (2.63, in its own venv), each tenant only its own."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from rock.admin.store.localpg import Postgres
from tests.admin.harness import Admin, free_port
from tests.conftest import SESSION_ROOT
from tests.e2b.conftest import TOKENS
from tests.e2b.test_e2b_templates import HERE, _call, e2b_python

pytestmark = pytest.mark.docker


def _old_file(state_dir: Path, image: str, name: str) -> dict:
    """A templates file as an admin that kept its templates in one (per admin) wrote it."""
    build = {"build_id": str(uuid.uuid4()), "status": "ready", "logs": [{"timestamp": time.time(), "level": "info",
             "message": "built", "step": None}], "reason": None, "image": image, "created_at": time.time(),
             "start_cmd": None, "ready_cmd": None, "cpu_count": None, "memory_mb": None}
    running = dict(build, build_id=str(uuid.uuid4()), status="building", image=None)
    template = {"template_id": uuid.uuid4().hex[:20], "owner": "team-a", "name": name,
                "tags": {"latest": build["build_id"], "v1": build["build_id"]},
                "builds": {build["build_id"]: build, running["build_id"]: running}, "created_at": time.time(),
                "pending_tags": []}
    folder = state_dir / "templates"
    folder.mkdir(parents=True)
    (folder / "templates.json").write_text(json.dumps([template]))
    return template


def test_an_old_templates_file_moves_into_the_store_and_survives_restarts():
    state_dir = Path(tempfile.mkdtemp(prefix="tpl", dir=SESSION_ROOT))
    probe = Admin("docker", state_dir=state_dir, tokens=TOKENS)  # for its settings' default image
    name = f"old-{uuid.uuid4().hex[:8]}"
    old = _old_file(state_dir, probe.settings.default_image, name)
    running = next(b for b in old["builds"].values() if b["status"] == "building")
    for attempt in range(2):  # the first start takes the file in; the second finds it in the store alone
        admin = Admin("docker", state_dir=state_dir, tokens=TOKENS).start()
        try:
            assert not (state_dir / "templates" / "templates.json").exists()
            assert (state_dir / "templates" / "templates.json.migrated").is_file()
            code, tags = _call(admin, "GET", f"/templates/{name}/tags")
            assert code == 200 and {t["tag"] for t in tags} == {"latest", "v1"}, (attempt, code, tags)
            code, alias = _call(admin, "GET", f"/templates/aliases/{name}")
            assert (code, alias["templateID"]) == (200, old["template_id"]), alias
            # the build the old admin was running when it stopped is an error, with its reason
            code, status = _call(admin, "GET", f"/templates/{old['template_id']}/builds/{running['build_id']}/status")
            assert code == 200 and status["status"] == "error" and "restarted" in status["reason"]["message"], status
            # another tenant: missing, as a template never made (the control above is the owner's 200)
            for path in (f"/templates/{name}/tags", f"/templates/aliases/{name}", f"/templates/{old['template_id']}"):
                code, body = _call(admin, "GET", path, key="e2b-token-b")
                assert (code, body["code"]) == (404, 404), (path, body)
            if attempt == 1:  # a sandbox of the template, on the restarted admin
                code, made = _call(admin, "POST", "/sandboxes", body={"templateID": f"{name}:v1", "timeout": 60})
                assert code == 201, made
                code, refused = _call(admin, "POST", "/sandboxes", key="e2b-token-b", body={"templateID": name})
                assert code == 404, refused
                code, _ = _call(admin, "DELETE", f"/sandboxes/{made['sandboxID']}")
                assert code == 204
        finally:
            admin.stop(stop_sandboxes=True)


@pytest.fixture(scope="module")
def shared_store():
    pg = Postgres(Path(tempfile.mkdtemp(prefix="rock-pg-")), free_port()).start()
    admins: list[Admin] = []
    try:
        for _ in range(2):
            admins.append(Admin("docker", tokens=TOKENS, store_url=pg.url).start())
        yield admins
    finally:
        for admin in admins:
            admin.stop(stop_sandboxes=True)
        pg.stop()


def _scenario(admin: Admin, mode: str, name: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("E2B_")}
    env.update(E2B_API_KEY="e2b-token-a", OTHER_KEY="e2b-token-b", E2B_API_URL=admin.url, E2B_SANDBOX_URL=admin.url,
               BASE_IMAGE=admin.settings.default_image, TEMPLATE_NAME=name)
    proc = subprocess.run([str(e2b_python()), "-I", str(HERE / "scenario_template_store.py"), mode], env=env,
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0 and "E2B TEMPLATE STORE OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_two_admins_on_one_postgres_store_serve_the_same_templates(shared_store, tmp_path):
    first, second = shared_store
    name = f"shared-{uuid.uuid4().hex[:8]}"
    built = _scenario(first, "build", name, tmp_path)
    template_id, build_id = next(line.split()[1:] for line in built.splitlines() if line.startswith("BUILT "))
    # the build's status and logs, from the admin that did not run it
    code, status = _call(second, "GET", f"/templates/{template_id}/builds/{build_id}/status")
    assert code == 200 and status["status"] == "ready" and any(name in line for line in status["logs"]), status
    _scenario(second, "use", name, tmp_path)
    # deleted on the second admin: gone on the first too (its image with it: both use one docker engine)
    code, _ = _call(second, "DELETE", f"/templates/{template_id}")
    assert code == 204
    code, body = _call(first, "GET", f"/templates/aliases/{name}")
    assert code == 404, body


def test_a_build_runs_on_another_admin_than_its_upload(shared_store):
    """Behind a balancer the SDK's upload may reach one admin and its build start another: the
    upload is in the store, the build finds it, and its status is answered by either admin."""
    first, second = shared_store
    name = f"copy-{uuid.uuid4().hex[:8]}"
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        data = f"copied-across-{name}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    files_hash = hashlib.sha256(payload.getvalue()).hexdigest()
    code, made = _call(first, "POST", "/v3/templates", body={"name": name})
    assert code == 202, made
    template_id, build_id = made["templateID"], made["buildID"]
    try:
        code, link = _call(first, "GET", f"/templates/{template_id}/files/{files_hash}")
        assert code == 201 and link["present"] is False, link
        assert second.url not in link["url"]  # the link is the first admin's
        with urllib.request.urlopen(urllib.request.Request(link["url"], data=payload.getvalue(), method="PUT"),
                                    timeout=30) as response:
            assert response.status == 200
        code, seen = _call(second, "GET", f"/templates/{template_id}/files/{files_hash}")
        assert code == 201 and seen["present"] is True, seen
        # another tenant neither sees the template's upload nor can ask about it
        code, body = _call(second, "GET", f"/templates/{template_id}/files/{files_hash}", key="e2b-token-b")
        assert code == 404, body
        steps = [{"type": "COPY", "args": ["hello.txt", "/opt/"], "filesHash": files_hash},
                 {"type": "RUN", "args": [f"grep -q copied-across-{name} /opt/hello.txt"]}]
        code, body = _call(second, "POST", f"/v2/templates/{template_id}/builds/{build_id}",
                           body={"fromImage": second.settings.default_image, "steps": steps})
        assert code == 202, body
        deadline = time.monotonic() + 180
        status = {"status": "building"}
        while status["status"] in ("waiting", "building") and time.monotonic() < deadline:
            time.sleep(0.5)  # as the SDK polls a build's status
            code, status = _call(first, "GET", f"/templates/{template_id}/builds/{build_id}/status")
            assert code == 200, status
        assert status["status"] == "ready", status
    finally:
        _call(first, "DELETE", f"/templates/{template_id}")
