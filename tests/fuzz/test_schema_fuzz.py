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
    # an operation the generator cannot build a request for is skipped (reported by schemathesis)
    assert result.operations > 0 and result.tested >= result.operations - 2, result.output[-3000:]
    assert result.requests > result.operations
    assert result.clean, f"{result.row()}\n{result.output[-12000:]}"


# Open finding (left for the next change): with tokens, schemathesis' ignored_auth check (ST401)
# reports operations answering without a token, and one response outside its schema (ST108).
KNOWN = pytest.mark.xfail(strict=True, reason="ST401/ST108 findings with tokens not fixed yet")


@pytest.mark.bwrap
@pytest.mark.parametrize("tokens", [False, pytest.param(True, marks=KNOWN)], ids=["open", "tokens"])
def test_admin_role(tokens):
    admin = Admin("bwrap", tokens={TOKEN: "fuzz"} if tokens else {}, default_memory="256m").start()
    try:
        token = TOKEN if tokens else None
        sandbox = runner.start_fixture_sandbox(admin.url, token)
        # With tokens, the coverage phase too (every operation's boundary values, undeclared methods,
        # missing auth), bounded in time; without, random examples only. The bench runs all phases.
        phases, limit = ("coverage,fuzzing", 75) if tokens else ("examples,fuzzing", None)
        _check(runner.run(admin.url, f"admin{'+tokens' if tokens else ''}", token=token, sandbox=sandbox,
                          max_examples=2, phases=phases, max_time=limit))
    finally:
        admin.stop(stop_sandboxes=True)


@KNOWN
@pytest.mark.bwrap
def test_proxy_role():
    """The data plane only, on the admin's state (a sandbox the admin started serves through it)."""
    admin = Admin("bwrap", tokens={TOKEN: "fuzz"}, default_memory="256m").start()
    proxy = None
    try:
        sandbox = runner.start_fixture_sandbox(admin.url, TOKEN)
        proxy = Admin("bwrap", state_dir=admin.state_dir, role="proxy", tokens={TOKEN: "fuzz"}).start()
        _check(runner.run(proxy.url, "proxy+tokens", token=TOKEN, sandbox=sandbox, max_examples=2,
                          phases="examples,fuzzing"))
    finally:
        if proxy is not None:
            proxy.stop(stop_sandboxes=True)  # the env sandboxes its catalog probe started
        admin.stop(stop_sandboxes=True)
