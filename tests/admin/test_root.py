"""The admin's composition root (rock.admin.root) and its front doors' seams: the root makes every
long-lived object, starts them in order and closes them in the reverse order; the app keeps the
root as its one piece of state; no front door imports another."""

from __future__ import annotations

import ast
import asyncio
import logging
import tempfile
from pathlib import Path

import rock.admin.app as app_module
from rock.admin.app import DOORS, create_app
from rock.admin.front import FrontDoor
from rock.admin.root import Root
from rock.config import Settings
from tests.test_import_graph import graph

DOOR_PACKAGES = tuple(door.__name__ for door in DOORS)


def _settings(role: str = "admin") -> Settings:
    return Settings(state_dir=tempfile.mkdtemp(prefix="rock-root-"), backend="bwrap", role=role)


def _door_of(module: str) -> str | None:
    return next((d for d in DOOR_PACKAGES if module == d or module.startswith(d + ".")), None)


def _crossings(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in edges.items() if _door_of(m)
                  for t in targets if _door_of(t) not in (None, _door_of(m)))


def test_doors_never_import_doors():
    edges, _ = graph()
    assert {"rock.admin.envs.gem", "rock.admin.ui.pages", "rock.admin.chat.ws"} <= set(edges)  # the doors were read
    assert _crossings(edges) == []
    # A control: one import of another door's module is found.
    edges["rock.admin.ui.pages"] = edges["rock.admin.ui.pages"] | {"rock.admin.envs.gem"}
    assert _crossings(edges) == ["rock.admin.ui.pages -> rock.admin.envs.gem"]


def test_the_shared_admin_modules_import_no_door():
    """What every door's requests pass through (metrics, errors, the app's gate) takes what it needs
    from the doors' declarations, never from a door's module."""
    edges, _ = graph()
    shared = ("rock.admin.metrics", "rock.admin.errors", "rock.admin.front", "rock.admin.auth")
    assert set(shared) <= set(edges)
    assert sorted(f"{m} -> {t}" for m in shared for t in edges[m] if _door_of(t)) == []


def test_the_app_keeps_the_root_as_its_one_state():
    for role in ("admin", "proxy"):
        app = create_app(_settings(role))
        state = vars(app.state)["_state"]
        assert list(state) == ["rock"] and isinstance(state["rock"], Root), state
        root = state["rock"]
        assert root.envs is not None and root.lifecycle is not None
        made = [root.gym, root.training, root.chat, root.jobs, root.templates]
        # a proxy creates nothing: the services that make sandboxes or records of their own are the admin's
        assert all(m is not None for m in made) if role == "admin" else all(m is None for m in made)
        assert root.chat in root.worker.listeners if role == "admin" else True


def _run(root: Root, caplog) -> tuple[list[str], list[str]]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="rock.admin.root"):
        async def cycle():
            async with root.running():
                assert await root.sandboxes.held.page(None, {}, None, False, 0, 10) == ([], 0)  # it serves, on its store

        asyncio.run(cycle())
    said = [r.getMessage() for r in caplog.records if r.name == "rock.admin.root"]
    started = [m.removeprefix("started ") for m in said if m.startswith("started ")]
    closed = [m.removeprefix("closed ") for m in said if m.startswith("closed ")]
    return started, closed


def test_the_root_starts_in_order_and_closes_in_reverse(caplog):
    root = Root(_settings("admin"))
    names = [name for name, _, _ in root.steps()]
    assert names == ["worker", "sandboxes", "lifecycle", "warmup", "envs", "gym", "training", "chat", "templates"]
    started, closed = _run(root, caplog)
    # chat only closes
    assert started == ["worker", "sandboxes", "lifecycle", "warmup", "envs", "gym", "training", "templates"]
    assert closed == names[::-1]


def test_a_proxy_root_starts_less_and_a_passed_worker_is_the_callers(caplog):
    proxy = Root(_settings("proxy"))
    assert [n for n, _, _ in proxy.steps()] == ["worker", "sandboxes", "envs"]
    started, closed = _run(proxy, caplog)
    assert started == ["worker", "sandboxes"] and closed == ["envs", "sandboxes", "worker"]

    first = Root(_settings("admin"))
    embedded = Root(first.settings, worker=first.worker)  # an embedding caller's worker: started and closed by it
    assert [n for n, _, _ in embedded.steps()][0] == "sandboxes"


def _door_internals(source: str) -> list[str]:
    """What ``source`` reads of a door beyond its package: a door module's attribute, or an import of a door's module."""
    tree = ast.parse(source)
    names = {d.rsplit(".", 1)[1] for d in DOOR_PACKAGES}
    found = [f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names]
    found += [f"import {node.module}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              and node.module and _door_of(node.module) and node.module not in DOOR_PACKAGES]
    return found


def test_the_app_knows_each_door_only_by_its_install_and_declarations():
    assert all(isinstance(door.FRONT, FrontDoor) and callable(door.install) for door in DOORS)
    assert _door_internals(Path(app_module.__file__).read_text()) == []
    # A control: a look into a door's module is found.
    assert _door_internals("from rock.admin.e2b.connect import end_stream\ne2b.is_envd_health(r)\n") == [
        "e2b.is_envd_health", "import rock.admin.e2b.connect"]


def test_the_architecture_doc_shows_the_roots_steps_in_order():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    table = doc[doc.index("| step | start |"):].split("\n\n", 1)[0].splitlines()[2:]
    shown = [row.strip("| ").split()[0] for row in table]
    assert shown == [name for name, _, _ in Root(_settings("admin")).steps()]
