"""Schemathesis (``st run --checks all``) over real admins: role admin and proxy, tokens on and
off. No 5xx, every answer in its declared status codes and schema, no traceback in a body.

Bounded (a fixed seed, a few examples per operation, deterministic generation); the benchmark's
``fuzz`` part runs the same with more examples. The routes and how each is kept cheap: see
tests/fuzz/hooks.py.
"""

from __future__ import annotations

import pytest

from tests.admin.harness import Admin
from tests.fuzz import runner

TOKEN = "fuzz-token"


def _check(result: runner.FuzzRun) -> None:
    print(result.row())
    assert result.tested == result.operations > 0, result.output[-3000:]
    assert result.requests > result.operations
    assert result.clean, f"{result.row()}\n{result.output[-12000:]}"


@pytest.mark.bwrap
@pytest.mark.parametrize("tokens", [False, True], ids=["open", "tokens"])
def test_admin_role(tokens):
    admin = Admin("bwrap", tokens={TOKEN: "fuzz"} if tokens else {}, default_memory="256m").start()
    try:
        token = TOKEN if tokens else None
        sandbox = runner.start_fixture_sandbox(admin.url, token)
        _check(runner.run(admin.url, f"admin{'+tokens' if tokens else ''}", token=token, sandbox=sandbox,
                          max_examples=2, phases="examples,coverage,fuzzing"))
    finally:
        admin.stop(stop_sandboxes=True)


@pytest.mark.bwrap
def test_proxy_role():
    """The data plane only, on the admin's state (a sandbox the admin started serves through it)."""
    admin = Admin("bwrap", tokens={TOKEN: "fuzz"}, default_memory="256m").start()
    proxy = None
    try:
        sandbox = runner.start_fixture_sandbox(admin.url, TOKEN)
        proxy = Admin("bwrap", state_dir=admin.state_dir, role="proxy", tokens={TOKEN: "fuzz"}).start()
        _check(runner.run(proxy.url, "proxy+tokens", token=TOKEN, sandbox=sandbox, max_examples=2,
                          phases="examples,coverage,fuzzing"))
    finally:
        if proxy is not None:
            proxy.stop()
        admin.stop(stop_sandboxes=True)
