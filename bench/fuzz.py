"""Schemathesis over every route of real admins, longer than the test suite's bounded run.

Role admin with and without tokens, role proxy with tokens (its own state: the data plane's
routes against a store it shares with nobody), every phase (examples, coverage, fuzzing,
stateful), always the same configuration: ``st run --checks all --max-examples 25 --workers 2``
(``--quick`` changes nothing here: a shorter run would find less and be compared with this one).
Each answer within tests.fuzz.runner.RESPONSE_S unless the schema declares the operation long.
One record per run: operations covered, requests sent, failures by check.
Opt-in (FULL_ONLY): ``python -m bench --only fuzz``.
"""

from __future__ import annotations

import asyncio

from bench.admin import AdminProcess
from bench.report import Context
from tests.fuzz import runner

TOKEN = "bench-fuzz-token"
EXAMPLES, WORKERS = 25, 2


def _one(ctx: Context, backend: str, role: str, token: str | None) -> dict:
    with AdminProcess(backend, prefix="rock-fuzz-", role=role, token=token) as admin:
        sandbox = runner.start_fixture_sandbox(admin.url, token) if role == "admin" else ""
        label = role + ("+tokens" if token else "")
        ctx.progress(f"fuzz {backend} {label}: {EXAMPLES} examples per operation, {WORKERS} workers")
        phases = "examples,coverage,fuzzing,stateful"
        result = runner.run(admin.url, label, token=token, sandbox=sandbox, max_examples=EXAMPLES, seed=7,
                            max_starts=20, workers=WORKERS, phases=phases)
    if not result.clean:
        ctx.progress(f"fuzz {label}: failures\n{result.output[-6000:]}")
    return {"metric": "schemathesis_fuzz", "backend": backend, "label": label, "n": result.requests,
            "operations": result.operations, "tested": result.tested, "failures": result.failures,
            "failed_operations": result.failed_operations,
            "failures_total": sum(result.failures.values()), "errors": result.errors,
            "tracebacks": result.tracebacks, "seconds": round(result.seconds, 1),
            "success_rate": 1.0 if result.clean else 0.0}


async def run(ctx: Context) -> list[dict]:
    backend = "bwrap" if "bwrap" in ctx.backends else (ctx.backends or ["local"])[0]
    out = []
    for role, token in (("admin", None), ("admin", TOKEN), ("proxy", TOKEN)):
        out.append(await asyncio.to_thread(_one, ctx, backend, role, token))
    print("\nschemathesis  label          operations  tested  requests  failures  errors  tracebacks  seconds")
    for r in out:
        print(f"              {r['label']:<14} {r['operations']:>10}  {r['tested']:>6}  {r['n']:>8}  "
              f"{r['failures_total']:>8}  {r['errors']:>6}  {r['tracebacks']:>10}  {r['seconds']:>7}")
        for check, count in r["failures"].items():  # the run's own output may have been cut above
            print(f"                {check}: {count}  ({', '.join(r['failed_operations'].get(check, []))})")
    return out
