"""The Kubernetes manifests in deploy/kubernetes: valid against the Kubernetes schemas (offline,
from the kubernetes-validate package), and consistent with this code: every ROCK_* variable is a
real setting, every `rock` command line parses, each role runs where it should."""

from __future__ import annotations

import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from rock.cli.main import build_parser
from rock.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"


def documents() -> list[dict]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_name(kind: str, name: str) -> dict:
    return next(d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_valid_against_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any unknown or mistyped field


def test_schema_check_catches_a_mistake():
    bad = by_name("Deployment", "rock-admin")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _containers():
    for doc in documents():
        if doc["kind"] in ("Deployment", "DaemonSet"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, c


def test_every_rock_variable_is_a_setting():
    names = set()
    for doc in documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set((doc.get("data") or {}) | (doc.get("stringData") or {}))
    for _, c in _containers():
        names |= {e["name"] for e in c.get("env", [])}
    rock_vars = {n for n in names if n.startswith("ROCK_")}
    assert "ROCK_STORE_URL" in rock_vars and "ROCK_CLUSTER" in rock_vars
    unknown = {n for n in rock_vars if n[len("ROCK_"):].lower() not in Settings.model_fields}
    assert not unknown, f"not settings: {unknown}"


def _rock_commands(container: dict) -> list[list[str]]:
    argv = container.get("command", []) + container.get("args", [])
    if argv[:1] == ["rock"]:
        return [argv[1:]]
    script = " ".join(argv[2:]) if argv[:2] == ["/bin/sh", "-c"] else ""
    out = []
    for part in script.split("&&"):
        words = shlex.split(part.replace('"$NODE_NAME"', "node-1"))
        if words[:1] == ["exec"]:
            words = words[1:]
        if words[:1] == ["rock"]:
            out.append(words[1:])
    return out


def test_roles_and_command_lines():
    parser = build_parser()
    seen = {}
    for doc, c in _containers():
        for argv in _rock_commands(c):
            args = parser.parse_args(argv)  # exits (fails the test) on an unknown flag
            seen[doc["metadata"]["name"]] = args
    assert seen["rock-admin"].role == "admin" and seen["rock-proxy"].role == "proxy"
    assert seen["rock-worker"].worker_cmd == "start" and seen["rock-worker"].block
    assert by_name("DaemonSet", "rock-worker")["spec"]["template"]["spec"]["hostNetwork"]
