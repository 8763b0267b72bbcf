"""The import graph of ``src/rock``: no cycle anywhere, and no web framework below the admin's
HTTP layer.

The graph is read from the source with ``ast``: module-level imports and the ones inside
functions alike (a lazy import is an edge all the same). Imports under ``if TYPE_CHECKING:``
are left out: they never run, and annotations may name what sits above them."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
WEB = ("fastapi", "starlette")
# The domain: what the admin's doors translate HTTP onto, and what clients import. None of it may
# reach FastAPI or Starlette, directly or through what it imports.
DOMAIN_PACKAGES = ("rock.admin.sandboxes", "rock.admin.store", "rock.envs", "rock.training", "rock.agentic",
                   "rock.runtime", "rock.worker", "rock.cluster", "rock.sdk", "rock.actions", "rock.agent", "rock.chat")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, package)
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skip.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skip


def _imports(module: str, path: Path, package: bool) -> list[str]:
    """Every name ``module`` imports (absolute, resolved where relative), at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    here = module if package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = (base + ("." + node.module if node.module else "")) if node.level else node.module or ""
            # ``from pkg import mod`` is an edge to pkg.mod where that is a module (to pkg otherwise):
            # the package's own __init__ is not counted, as import graphs usually draw it.
            names += [f"{source}.{alias.name}" for alias in node.names]
    return names


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between rock's modules, the outside top-level packages each module imports); a copy
    each call, read from the source once."""
    edges, outside = _graph()
    return {m: set(e) for m, e in edges.items()}, {m: set(o) for m, o in outside.items()}


@functools.lru_cache(maxsize=1)
def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    outside: dict[str, set[str]] = {m: set() for m in modules}
    for module, (path, package) in modules.items():
        for name in _imports(module, path, package):
            if not name.startswith("rock.") and name != "rock":
                outside[module].add(name.partition(".")[0])
                continue
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges[module].add(target)
    return edges, outside


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _path(edges: dict[str, set[str]], start: str, goal: set[str]) -> list[str]:
    """One import chain from ``start`` to a module in ``goal`` (breadth first), or []."""
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node in goal:
            chain = [node]
            while previous[chain[-1]] is not None:
                chain.append(previous[chain[-1]])  # type: ignore[arg-type]
            return chain[::-1]
        for child in sorted(edges[node]):
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return []


def test_src_has_no_import_cycle():
    edges, _ = graph()
    assert len(edges) > 300  # the whole tree was read
    assert cycles(edges) == []


def test_the_cycle_finder_sees_a_lazy_import_cycle():
    edges, _ = graph()
    # A control: the same graph plus one import back up from a module the admin reaches is a cycle.
    assert _path(edges, "rock.admin.app", {"rock.errors"})
    edges["rock.errors"] = edges["rock.errors"] | {"rock.admin.app"}
    assert any({"rock.errors", "rock.admin.app"} <= set(c) for c in cycles(edges))


def test_lazy_and_relative_imports_are_edges():
    edges, _ = graph()
    assert "rock.agent.sessions" in edges["rock.agent.server"]  # ``from . import sessions`` inside a function
    assert "rock.sdk.envs.vec_client" in edges["rock.sdk.envs.client"]


def _domain(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in DOMAIN_PACKAGES)


def test_no_web_framework_below_the_admins_http_layer():
    edges, outside = graph()
    web = {m for m, packages in outside.items() if packages & set(WEB)}
    assert "rock.admin.app" in web and "rock.admin.chat.routes" in web  # the check sees the HTTP layer
    reached = {}
    for module in sorted(m for m in edges if _domain(m)):
        chain = _path(edges, module, web)
        if chain:
            reached[module] = " -> ".join(chain)
    assert reached == {}


def test_importing_the_domain_loads_no_web_framework():
    """What the graph cannot see: a package's ``__init__`` runs before its modules, so the chat
    hub's package must not bring FastAPI along either. Checked in a fresh interpreter."""
    domain = ["rock.admin.sandboxes.service", "rock.chat.hub", "rock.chat.upstream", "rock.sdk.envs.client",
              "rock.training", "rock.agentic.tasks.rollout", "rock.worker.worker", "rock.cluster.client",
              "rock.sdk.sandbox.client"]
    probe = ("import sys\n" + "".join(f"import {m}\n" for m in domain)
             + "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    control = subprocess.run([sys.executable, "-c", probe.replace("import rock.admin.sandboxes.service\n",
                                                                   "import rock.admin.app\n")],
                             capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert control.stdout.strip() == "['fastapi', 'starlette']", control.stderr
