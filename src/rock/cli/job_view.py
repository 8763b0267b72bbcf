"""``rock job view JOB [ROLLOUT]``: a job the admin keeps, in the terminal (the UI's job and rollout pages
as text): the job's pass rate, errors per task and time per phase; one rollout's calls in order, its diff
and the verifier's results. It reads the admin's jobs API with the caller's token, so another
namespace's job is missing, as it is to the API."""

from __future__ import annotations

import json
from typing import Any

from rock.cli.output import Out

DIFF_LINES = 200  # of a rollout's diff in the terminal; the whole one is in the job's export
TEXT = 300  # characters of a message shown per call


class ViewError(Exception):
    """The admin refused or could not be reached; the message says why."""


def _get(args, path: str) -> Any:
    import httpx

    from rock.client.config import ClientConfig
    from rock.client.pools import sync_client

    config = ClientConfig.resolve(args.url, args.token)
    try:
        with sync_client(config, "/apis/v1/jobs", timeout=60) as client:
            reply = client.get(path)
    except httpx.HTTPError as exc:
        raise ViewError(f"cannot reach the admin at {args.url}: {exc}") from None
    try:
        body = reply.json()
    except ValueError:
        body = {}
    if reply.status_code != 200:
        why = body.get("message") or body.get("detail") or reply.text[:300] if isinstance(body, dict) else reply.text
        raise ViewError(f"{reply.status_code}: {why}")
    return body.get("result") if isinstance(body, dict) else body


def cmd_view(args, out: Out) -> int:
    """``rock job view``: the job, or with ROLLOUT (its number in the job) that rollout."""
    try:
        if args.rollout is None:
            job = _get(args, f"/{args.job}")
            return _job(job, out)
        return _rollout(args.job, args.rollout, _get(args, f"/{args.job}/rollouts/{args.rollout}"), out)
    except ViewError as exc:
        out.error(f"job {args.job}: {exc}")
        return 1


def _ms(value: Any) -> str:
    return f"{value / 1000:.2f} s" if isinstance(value, (int, float)) else "-"


def _job(job: dict, out: Out) -> int:
    from rock.admin.rollouts.summary import job_stats

    rollouts = job.get("rollouts") or []
    stats = job_stats(rollouts)
    passed = sum(1 for r in rollouts if r.get("passed"))
    errors = sum(1 for r in rollouts if r.get("error") is not None)
    mean = sum(r["reward"] for r in rollouts) / len(rollouts) if rollouts else 0.0
    head = {"job": job.get("job_id"), "suite": job.get("suite"), "harness": job.get("harness"),
            "policy": job.get("policy"), "model": (job.get("meta") or {}).get("model"), "state": "running" if job.get("running") else "done",
            "rollouts": len(rollouts), "planned": job.get("tasks"), "pass_rate": passed / len(rollouts) if rollouts else 0.0,
            "mean_reward": mean, "errors": errors}
    if out.as_json:
        out.json({**head, "tasks": stats["tasks"], "phases": stats["phases"], "histogram": stats["histogram"]})
        return 0
    print(f"job {head['job']} · {head['suite']} · {head['harness']}/{head['policy']}"
          + (f" · model {head['model']}" if head["model"] else "") + f" · {head['state']}")
    print(f"rollouts {len(rollouts)}" + (f" of {head['planned']}" if head["planned"] else "")
          + f" · pass rate {head['pass_rate']:.3f} ({passed}) · mean reward {mean:.3f} · errors {errors}")
    print("reward  " + "  ".join(f"{h['low']:.1f}-{h['high']:.1f}:{h['count']}" for h in stats["histogram"]
                                 if h["count"]))
    out.rows([{"task": t["task_id"], "runs": t["runs"], "pass_rate": round(t["pass_rate"], 3),
               "mean_reward": round(t["mean_reward"], 3), "errors": t["errors"],
               "first_error": (t["first_error"] or "")[:120] or None} for t in stats["tasks"]],
             ["task", "runs", "pass_rate", "mean_reward", "errors", "first_error"], title="tasks")
    out.rows([{"phase": ("  " * p["depth"]) + p["label"], "mean": _ms(p["mean_ms"]), "max": _ms(p["max_ms"]),
               "rollouts": p["n"]} for p in stats["phases"]], ["phase", "mean", "max", "rollouts"], title="phases")
    out.rows([{"n": r["n"], "task": r["task_id"], "reward": r["reward"], "calls": r.get("calls"),
               "exit": r.get("exit_code"), "error": (r.get("error") or r.get("harness_error") or "")[:100] or None}
              for r in rollouts], ["n", "task", "reward", "calls", "exit", "error"], title="rollouts")
    return 0


def _short(text: str, limit: int = TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + f" … ({len(text)} chars)"


def _rollout(job_id: str, n: int, rec: dict, out: Out) -> int:
    from rock.admin.rollouts.summary import calls, diff_lines, waterfall

    if out.as_json:
        out.json(rec)
        return 0
    harness = rec.get("harness") if isinstance(rec.get("harness"), dict) else {"name": rec.get("harness")}
    print(f"rollout {n} of job {job_id} · task {rec.get('task_id')} · {harness.get('name')}/{rec.get('policy')}")
    print(f"reward {rec.get('reward')} · resolved {rec.get('resolved')} · pass rate {rec.get('pass_rate')}"
          f" · error {rec.get('error')}")
    print(f"harness exit {harness.get('exit_code')}" + (f" · {harness.get('error')}" if harness.get("error") else "")
          + f" · agent sandbox {rec.get('agent_sandbox')} · verifier sandbox {rec.get('verifier_sandbox')}")
    print("\nphases")
    for bar in waterfall(rec.get("timings") or {}):
        print(f"  {'  ' * bar['depth']}{bar['label']:<18} {_ms(bar['start']):>10} +{_ms(bar['ms'])}")
    made = calls(rec)
    print(f"\nmodel calls ({len(made)})")
    for c in made:
        print(f"  #{c['index']} {c['api']} {c['status']} HTTP {c['http_status']} {_ms(c['latency_ms'])}"
              + (" · new conversation" if c["restarted"] else "") + (f" · {c['error']}" if c["error"] else ""))
        for m in c["new_messages"]:
            line = _short(m["content"] or "") + "".join(f" [{f.get('name')} {_short(str(f.get('arguments')), 120)}]"
                                                        for f in m["tool_calls"])
            print(f"    {m['role']:>9}: {line}")
        answer = c["answer"]
        print(f"    {'answer':>9}: " + _short(answer["content"] or "") + "".join(
            f" [{f.get('name')} {_short(str(f.get('arguments')), 200)}]" for f in answer["tool_calls"]))
    lines, total = diff_lines(rec.get("diff") or "", DIFF_LINES)
    print(f"\ndiff ({total} lines)" + (f", the first {len(lines)}" if total > len(lines) else ""))
    for _, line in lines:
        print("  " + line)
    for ignored in rec.get("ignored_paths") or ():
        print(f"  ignored: {ignored if isinstance(ignored, str) else json.dumps(ignored)}")
    tests = rec.get("tests") if isinstance(rec.get("tests"), dict) else None
    print("\nverifier")
    if tests is None:
        print("  no verifier result")
        return 0
    print(f"  runner {tests.get('runner')} · exit {tests.get('exit_code')} · timed out {tests.get('timed_out')}"
          f" · reward.txt {tests.get('reward_txt')!r}")
    for group in ("fail_to_pass", "pass_to_pass"):
        g = tests.get(group)
        if isinstance(g, dict):
            print(f"  {group}: {g.get('passed')}/{g.get('of')} passed")
    for failed in tests.get("failed") or ():
        print(f"  failed: {failed}")
    output = (tests.get("output") or "").rstrip()
    if output:
        print("  output (tail):")
        for line in output.splitlines()[-30:]:
            print("    " + line)
    return 0
