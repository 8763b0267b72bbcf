"""What a backend can do is declared by its runtime class (``rock.runtime.CAPABILITIES``) and asked
of it; no module above ``rock.runtime`` tests a backend by its name. Each declaration is checked
against what the backend does: a backend that gives ``network=true`` the host's network refuses it
without the operator's setting, one without kata refuses an engine runtime, one without an egress
gate is refused an egress policy, and the admin's checks follow what the backends declare."""

from __future__ import annotations

import ast
import shutil
import tempfile
import typing
from pathlib import Path

import pytest

from rock.actions.sandbox import SandboxStartRequest
from rock.admin.sandboxes.start_checks import check_start_request
from rock.config import BackendName, Settings
from rock.errors import BadRequest, SandboxStartError
from rock.runtime import BACKENDS, CAPABILITIES, backends_with, get_runtime_class
from rock.runtime.base import SandboxSpec
from rock.worker.worker import Worker
from tests.conftest import SESSION_ROOT

SRC = Path(__file__).resolve().parents[2] / "src" / "rock"
# "local" is also a word of other meanings (a model endpoint's mode, a cluster address): it counts
# only where the other side of the comparison speaks of a backend.
DISTINCT = set(BACKENDS) - {"local"}
DECLARED = {
    "docker": {"egress", "kata", "keeps_files"},
    "bwrap": {"egress", "host_network", "directory_images", "keeps_files"},
    "gvisor": {"egress", "host_network", "directory_images", "full_snapshots"},
    "local": {"directory_images"},
}


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names(e) for e in node.elts)) if node.elts else set()
    return set()


def backend_name_tests(source: str, name: str = "<source>") -> list[str]:
    """Where ``source`` asks a backend's name what it is: a comparison with a backend's name, or a
    collection of backend names kept to test against (``Literal[...]`` type hints aside)."""
    tree = ast.parse(source, name)
    hints = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Subscript)
             and isinstance(node.value, ast.Name) and node.value.id == "Literal" for inner in ast.walk(node.slice)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for i, side in enumerate(sides):
                names = _names(side) & set(BACKENDS)
                others = " ".join(ast.unparse(s) for j, s in enumerate(sides) if j != i)
                if names & DISTINCT or (names and "backend" in others.lower()):
                    found.append(f"{node.lineno}: {ast.unparse(node)}")
                    break
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and id(node) not in hints and _names(node) & DISTINCT:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Dict) and any(k is not None and _names(k) & DISTINCT for k in node.keys):
            found.append(f"{node.lineno}: a dict keyed by backend names")
    return sorted(set(found))


def test_no_module_above_the_runtime_tests_a_backend_by_name():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).parts[0] == "runtime":
            continue
        offenders += [f"{path.relative_to(SRC.parent)}:{where}" for where in backend_name_tests(path.read_text(), str(path))]
    assert offenders == [], "ask the backend (Runtime.capabilities / worker.capabilities()) instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    'if self.worker.backend_name == "bwrap": pass',
    'ok = backend in ("docker", "gvisor")',
    'FULL = ("gvisor",)',
    'if record.backend != "local": pass',
    'COSTS = {"docker": 1}',
])
def test_the_scan_sees_each_way_of_testing_a_name(source):
    assert backend_name_tests(source) != []


def test_the_scan_lets_other_meanings_of_local_and_type_hints_through():
    assert backend_name_tests('if self.mode == "local": pass\nName = Literal["auto", "docker", "bwrap"]\n') == []


def test_each_backend_declares_its_capabilities():
    assert set(BACKENDS) == set(DECLARED) and set(typing.get_args(BackendName)) == {"auto", *BACKENDS}
    assert {name: set(get_runtime_class(name).capabilities()) for name in BACKENDS} == DECLARED
    assert set().union(*DECLARED.values()) == set(CAPABILITIES)  # each capability is someone's
    assert backends_with("egress") == ["docker", "bwrap", "gvisor"] and backends_with("kata") == ["docker"]
    with pytest.raises(ValueError, match="unknown capability"):
        backends_with("teleport")


@pytest.fixture
def strict_settings():
    """An operator's defaults: no host network, no host paths."""
    state = Path(tempfile.mkdtemp(prefix="cap", dir=SESSION_ROOT))
    yield Settings(state_dir=state, backend="auto")
    shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("name", ["bwrap", "gvisor"])
async def test_a_host_network_backend_refuses_network_without_the_operators_setting(name, strict_settings):
    cls = get_runtime_class(name)
    if cls.available():
        pytest.skip(f"{name}: {cls.available()}")
    runtime = cls(strict_settings, "test-capabilities")
    try:
        with pytest.raises(BadRequest, match="allow_host_network"):
            await runtime.create(SandboxSpec(sandbox_id="tcapnet", network=True))
        # kata is not declared: an engine runtime is refused before anything starts
        with pytest.raises(SandboxStartError, match="kata"):
            await runtime.create(SandboxSpec(sandbox_id="tcapkata", runtime="kata-runtime"))
    finally:
        await runtime.reap(set())
        await runtime.close()


async def test_a_worker_follows_its_backends_declarations(strict_settings):
    worker = Worker(strict_settings, "local")  # the one backend every machine has
    assert worker.capabilities() == [frozenset({"directory_images"})]
    with pytest.raises(BadRequest, match=r"egress gate \(docker, bwrap, gvisor\); this admin runs local"):
        worker.check(SandboxSpec(sandbox_id="tcapegress", egress={"allow": ["example.com"]}))
    worker.check(SandboxSpec(sandbox_id="tcapplain"))  # the control: the same check without a policy passes
    with pytest.raises(BadRequest, match="kata containers need the docker backend; this admin runs local"):
        check_start_request(SandboxStartRequest(image="python:3.11", use_kata_runtime=True), worker)
    check_start_request(SandboxStartRequest(image="python:3.11"), worker)  # control
