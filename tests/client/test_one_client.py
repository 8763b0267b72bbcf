"""One client of the admin: outside ``rock.client`` no module of ``rock`` opens an HTTP client,
a connection or a transport of its own, and the clients that remain resolve the admin alike.

Read from the source with ``ast``: a call such as ``httpx.AsyncClient(...)``, ``httpx.get(...)``,
``http.client.HTTPConnection(...)`` or ``urllib.request.urlopen(...)``, a subclass of httpx's
transports, or an import of ``requests``/``aiohttp``. The server side that speaks HTTP for its own
reasons is out of scope: the admin (its doors), the Chat hub (the upstream it forwards to), the in-sandbox agent
(standard library only, it cannot import ``rock.client``) and the runtime backends (engine APIs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROCK = Path(__file__).resolve().parents[2] / "src" / "rock"
SERVER_SIDE = ("client", "admin", "chat", "agent", "runtime")
HTTPX_OPENERS = {"Client", "AsyncClient", "HTTPTransport", "AsyncHTTPTransport", "request", "get", "post", "put",
                 "patch", "delete", "head", "options", "stream"}
TRANSPORTS = {"BaseTransport", "AsyncBaseTransport"}
STDLIB_OPENERS = {("http.client", "HTTPConnection"), ("http.client", "HTTPSConnection"),
                  ("urllib.request", "urlopen"), ("urllib.request", "Request"), ("urllib.request", "build_opener")}
FOREIGN = ("requests", "aiohttp", "urllib3")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def own_clients(source: str, name: str = "<source>") -> list[str]:
    """Where ``source`` opens an HTTP client of its own: one ``line: what`` per place."""
    tree = ast.parse(source, name)
    aliases: dict[str, str] = {}  # a local name -> the dotted name it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.partition(".")[0]] = alias.asname and alias.name or alias.name.partition(".")[0]
                if alias.name.partition(".")[0] in FOREIGN:
                    found.append(f"{node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if node.module.partition(".")[0] in FOREIGN:
                found.append(f"{node.lineno}: imports from {node.module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            head, _, tail = dotted.partition(".")
            full = f"{aliases.get(head, head)}.{tail}" if tail else aliases.get(head, head)
            module, _, attr = full.rpartition(".")
            if (module == "httpx" and attr in HTTPX_OPENERS) or (module, attr) in STDLIB_OPENERS:
                found.append(f"{node.lineno}: {full}(...)")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                head, _, tail = _dotted(base).partition(".")
                full = f"{aliases.get(head, head)}.{tail}" if tail else aliases.get(head, head)
                if full.rpartition(".")[0] == "httpx" and full.rpartition(".")[2] in TRANSPORTS:
                    found.append(f"{node.lineno}: class {node.name}({full})")
    return found


def test_no_module_outside_the_client_opens_its_own_http_client():
    offenders = []
    for path in sorted(ROCK.rglob("*.py")):
        if path.relative_to(ROCK).parts[0] in SERVER_SIDE:
            continue
        offenders += [f"{path.relative_to(ROCK.parent)}:{where}" for where in own_clients(path.read_text(), str(path))]
    assert not offenders, "HTTP clients outside rock.client (use rock.client.pools / rock.client.http):\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    "import httpx\nc = httpx.AsyncClient()",
    "import httpx as h\nh.get('http://x')",
    "from httpx import Client\nClient()",
    "import http.client\nhttp.client.HTTPConnection('x')",
    "from urllib.request import urlopen\nurlopen('http://x')",
    "import requests",
    "import httpx\nclass T(httpx.AsyncBaseTransport): pass",
])
def test_the_walk_sees_each_way_of_opening_a_client(source):
    # the control: each shape the walk must catch is caught, so an empty list above means something
    assert own_clients(source)


def test_the_walk_lets_the_one_client_through():
    assert not own_clients("from rock.client.pools import sync_client\nsync_client(config)\nimport httpx\nhttpx.URL('x')")


def test_every_client_resolves_the_admin_alike(monkeypatch):
    from rock.client.config import ClientConfig
    from rock.client.http import AsyncHttp, SyncHttp
    from rock.envs.gym.http import GymHttp
    from rock.sdk.model.trainer import ChatTrainer
    from rock.sdk.sandbox.config import SandboxConfig
    from rock.sdk.training.client import TrainingSandbox

    monkeypatch.setenv("ROCK_BASE_URL", "http://127.0.0.2:4391/")
    monkeypatch.setenv("ROCK_TOKEN", "tok-h")
    expected = ClientConfig.resolve()
    assert (expected.base_url, expected.token) == ("http://127.0.0.2:4391", "tok-h")
    gym, sync, box = GymHttp(), SyncHttp(), TrainingSandbox()
    try:
        assert gym.base == sync.base == box.base_url == AsyncHttp().base == ChatTrainer().base_url == expected.base_url
        assert SandboxConfig().token == gym.token == "tok-h"
        assert sync.pool.headers["Authorization"] == gym.pool.headers["Authorization"] == "Bearer tok-h"
    finally:
        gym.close(), sync.close(), box.close()
    explicit = ClientConfig.resolve("http://10.0.0.1:1/", "other")
    assert (explicit.base_url, explicit.all_headers()) == ("http://10.0.0.1:1", {"Authorization": "Bearer other"})


def test_the_sdk_imports_nothing_of_the_envs_service():
    import tests.test_import_graph as graph

    edges, _ = graph.graph()
    reaches = {f"{a} -> {b}" for a, bs in edges.items() for b in bs
               if a.startswith(("rock.sdk.", "rock.client.")) and (b == "rock.envs" or b.startswith("rock.envs."))}
    assert reaches == set()
    # the control: the walk sees the old paths' aliases, which go the other way
    assert "rock.sdk.envs.client" in edges["rock.envs.client"]


def test_old_env_client_paths_are_the_same_modules():
    import rock
    import rock.envs.client
    import rock.envs.gym.http
    import rock.envs.sandbox_env
    import rock.envs.vec_client
    import rock.sdk.envs.client
    import rock.sdk.envs.gym_http
    import rock.sdk.envs.sandbox_env
    import rock.sdk.envs.vec_client
    from rock.envs.errors import EnvError as OldEnvError
    from rock.envs.wire import AsyncHttp as OldAsyncHttp
    from rock.sdk.envs import EnvError, RockEnv

    assert rock.envs.client is rock.sdk.envs.client and rock.envs.vec_client is rock.sdk.envs.vec_client
    assert rock.envs.sandbox_env is rock.sdk.envs.sandbox_env and rock.envs.gym.http is rock.sdk.envs.gym_http
    assert OldEnvError is EnvError and OldAsyncHttp is rock.sdk.envs.client.AsyncHttp
    assert RockEnv is rock.envs.client.Env and rock.make is rock.sdk.envs.client.make
