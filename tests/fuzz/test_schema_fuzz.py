"""Schemathesis (``st run --checks all``) over real admins: role admin and proxy, tokens on and
off. No 5xx, every answer in its declared status codes and schema, no traceback in a body, and
with tokens every operation the schema says needs one refuses a request without it.

Bounded and deterministic (a fixed seed, deterministic generation, no time cap): the admin
without tokens gets valid and invalid data, two examples an operation; with tokens and as a
proxy, one valid example an operation (what they add is the token checks, which
schemathesis makes on valid requests). The benchmark's ``fuzz`` part runs every phase with more
examples. The routes and how each is kept cheap: see tests/fuzz/hooks.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.admin.harness import Admin
from tests.conftest import SESSION_ROOT
from tests.fuzz import runner

TOKEN = "fuzz-token"
# The env catalog's probe (a sandbox importing every env, ~10 s) is cached in the state dir; the
# first admin here probes, the next ones start with its answer (they still serve the routes).
CATALOG = SESSION_ROOT / "fuzz-catalog"


def _share_catalog(state_dir: Path, back: bool = False) -> None:
    src, dst = (state_dir / "envs", CATALOG) if back else (CATALOG, state_dir / "envs")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("catalog-*.json") if src.is_dir() else ():
        shutil.copy(f, dst / f.name)


def _admin(**settings) -> Admin:
    admin = Admin("bwrap", default_memory="256m", **settings)
    _share_catalog(admin.state_dir)
    return admin.start()


def _check(result: runner.FuzzRun) -> None:
    print(result.row())
    # an operation the generator cannot build a request for is skipped (reported by schemathesis)
    assert result.operations > 0 and result.tested >= result.operations - 2, result.output[-3000:]
    assert result.requests >= result.operations
    assert result.clean, f"{result.row()}\n{result.output[-12000:]}"


@pytest.mark.bwrap
@pytest.mark.parametrize("tokens", [False, True], ids=["open", "tokens"])
def test_admin_role(tokens):
    admin = _admin(tokens={TOKEN: "fuzz"} if tokens else {})
    try:
        token = TOKEN if tokens else None
        sandbox = runner.start_fixture_sandbox(admin.url, token)
        examples, mode = (1, "positive") if tokens else (2, "all")
        _check(runner.run(admin.url, f"admin{'+tokens' if tokens else ''}", token=token, sandbox=sandbox,
                          max_examples=examples, mode=mode, phases="fuzzing"))
    finally:
        admin.stop(stop_sandboxes=True)
        _share_catalog(admin.state_dir, back=True)


@pytest.mark.bwrap
def test_proxy_role():
    """The data plane only, on the admin's state (a sandbox the admin started serves through it)."""
    admin = _admin(tokens={TOKEN: "fuzz"})
    proxy = None
    try:
        sandbox = runner.start_fixture_sandbox(admin.url, TOKEN)
        proxy = Admin("bwrap", state_dir=admin.state_dir, role="proxy", tokens={TOKEN: "fuzz"}).start()
        _check(runner.run(proxy.url, "proxy+tokens", token=TOKEN, sandbox=sandbox, max_examples=1, mode="positive",
                          phases="fuzzing"))
    finally:
        if proxy is not None:
            proxy.stop(stop_sandboxes=True)  # the env sandboxes its catalog probe started
        admin.stop(stop_sandboxes=True)
        _share_catalog(admin.state_dir, back=True)
