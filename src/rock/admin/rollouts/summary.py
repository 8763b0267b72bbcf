"""What the job and rollout views compute from a job's records: the reward distribution, per-task
pass rates and errors, mean time per phase, the rollouts a filter keeps, and one rollout's calls,
token sequences (the training export's, with the loss mask and logprobs), diff lines and phase
waterfall."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rock.agentic import trajectories

# A rollout's phases as ``rock.agentic.tasks.rollout`` times them: (timings key, label, depth); depth-1
# phases run inside the depth-0 phase before them.
PHASES = (("agent_setup_ms", "agent sandbox", 0), ("image_ms", "image", 1), ("agent_ms", "agent", 0),
          ("harness_install_ms", "harness install", 1), ("harness_run_ms", "harness run", 1),
          ("diff_ms", "diff", 0), ("verify_wait_ms", "verifier queue", 0), ("verify_ms", "verifier", 0),
          ("verifier_start_ms", "verifier start", 1), ("tests_ms", "tests", 1), ("grading_ms", "grading", 1))
# Every phase a rollout times, for the phase histogram: the waterfall's and the job's queue before them.
METRIC_PHASES = ("queue_ms", *(key for key, _, _ in PHASES))
DIFF_LINES = 5000  # lines of a diff the page renders; the whole diff is a download
BINS = 10


@dataclass
class RolloutFilter:
    """Which rollouts a job page lists: reward within [reward_min, reward_max], with or without an error,
    of a harness, of a task (a substring of its id)."""

    reward_min: float | None = None
    reward_max: float | None = None
    error: str | None = None  # "yes", "no" or None (any)
    harness: str | None = None
    task: str | None = None

    def keep(self, r: dict) -> bool:
        return ((self.reward_min is None or r["reward"] >= self.reward_min)
                and (self.reward_max is None or r["reward"] <= self.reward_max)
                and (self.error is None or (r["error"] is not None) == (self.error == "yes"))
                and (not self.harness or r["harness"] == self.harness)
                and (not self.task or self.task in r["task_id"]))


def job_stats(rollouts: list[dict]) -> dict:
    """Reward histogram (BINS bins over [0, 1]), per task (runs, mean reward, pass rate, errors, the first
    error), mean and max milliseconds per phase, and the harnesses seen."""
    hist = [0] * BINS
    tasks: dict[str, dict] = {}
    for r in rollouts:
        hist[min(BINS - 1, max(0, int(r["reward"] * BINS)))] += 1
        t = tasks.setdefault(r["task_id"], {"task_id": r["task_id"], "runs": 0, "reward": 0.0, "passed": 0,
                                            "errors": 0, "first_error": None})
        t["runs"] += 1
        t["reward"] += r["reward"]
        t["passed"] += r["passed"]
        if r["error"] is not None:
            t["errors"] += 1
            t["first_error"] = t["first_error"] or r["error"]
    for t in tasks.values():
        t["mean_reward"], t["pass_rate"] = t["reward"] / t["runs"], t["passed"] / t["runs"]
    phases = []
    for key, label, depth in PHASES:
        values = [r["timings"][key] for r in rollouts if isinstance(r["timings"].get(key), (int, float))]
        if values:
            phases.append({"key": key, "label": label, "depth": depth, "mean_ms": sum(values) / len(values),
                           "max_ms": max(values), "n": len(values)})
    top = max((h for h in hist), default=0) or 1
    return {"histogram": [{"low": i / BINS, "high": (i + 1) / BINS, "count": c, "width": 100 * c / top}
                          for i, c in enumerate(hist)],
            "tasks": sorted(tasks.values(), key=lambda t: (t["pass_rate"], t["task_id"])),
            "phases": phases, "harnesses": sorted({r["harness"] for r in rollouts if r["harness"]})}


def waterfall(timings: dict) -> list[dict]:
    """The rollout's phases as bars: start and length in ms from the rollout's start, and as % of the total."""
    bars, clock, parent = [], 0.0, 0.0
    for key, label, depth in PHASES:
        ms = timings.get(key)
        if not isinstance(ms, (int, float)):
            continue
        if depth == 0:
            start = parent = clock
            clock += ms
        else:
            start = parent
            parent += ms
        bars.append({"label": label, "start": start, "ms": ms, "depth": depth})
    total = timings.get("total_ms") if isinstance(timings.get("total_ms"), (int, float)) else clock
    total = max(total, clock, 1.0)
    for b in bars:
        b["left"], b["width"] = 100 * b["start"] / total, max(0.3, 100 * b["ms"] / total)
    return bars


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ("" if content is None else str(content))


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _functions(message: dict) -> list[dict]:
    """A message's tool calls as their ``{name, arguments}``."""
    return [_dict(tc.get("function")) for tc in _dicts(message.get("tool_calls"))]


def instruction(rec: dict) -> str:
    """The task's instruction: the record's own, else the first user message of the first call."""
    if isinstance(rec.get("instruction"), str) and rec["instruction"]:
        return rec["instruction"]
    for call in _dicts(rec.get("model_calls")):
        for m in _dicts(_dict(call.get("request")).get("messages")):
            if m.get("role") == "user":
                return _text(m.get("content"))
    return ""


def calls(rec: dict) -> list[dict]:
    """Each model call in order: the messages it added to the conversation (the whole prompt for the first and for
    one that does not extend the last), the answer's text and tool calls, latency, API, status."""
    out, seen = [], []
    for c in sorted(_dicts(rec.get("model_calls")), key=lambda c: c["index"] if isinstance(c.get("index"), int) else 0):
        request = _dict(c.get("request"))
        msgs = [{"role": m.get("role"), "content": _text(m.get("content")), "tool_calls": _functions(m),
                 "tool_call_id": m.get("tool_call_id")} for m in _dicts(request.get("messages"))]
        new = msgs[len(seen):] if msgs[:len(seen)] == seen and seen else msgs
        reply = _dict((_dicts(_dict(c.get("response")).get("choices")) or [{}])[0].get("message"))
        answer = {"role": "assistant", "content": _text(reply.get("content")), "tool_calls": _functions(reply)}
        seen = msgs + [answer | {"tool_call_id": None}]
        out.append({"index": c.get("index"), "status": c.get("status"), "http_status": c.get("http_status"),
                    "error": c.get("error"), "latency_ms": c.get("latency_ms"), "model": c.get("model"),
                    "api": (c.get("native") or {}).get("api") or "chat", "mode": c.get("mode"),
                    "tools": [_dict(t.get("function")).get("name") for t in _dicts(request.get("tools"))],
                    "usage": c.get("usage"), "new_messages": new, "answer": answer,
                    "restarted": bool(seen) and len(new) == len(msgs) and len(out) > 0})
    return out


def tokens(rec: dict) -> dict:
    """The training export of the rollout (``rock.agentic.trajectories``): its sequences (token ids, loss mask,
    logprobs, why each starts) and per call why it has no tokens."""
    ep = trajectories.export(_dicts(rec.get("model_calls")), reward=rec.get("reward"), episode=rec.get("task_id"))
    return {"sequences": [{"calls": s["calls"], "start": s["start"], "token_ids": s["token_ids"],
                           "loss_mask": s["loss_mask"], "logprobs": s["logprobs"]} for s in ep["sequences"]],
            "reasons": [{"index": c["index"], "reason": c["reason"]} for c in ep["calls"] if c["reason"]]}


def token_heads(toks: dict) -> dict:
    """``tokens()`` without the ids: each sequence's calls, why it starts and its length (a page fetches the ids of
    the part it shows with ``token_page``)."""
    return {"sequences": [{"calls": s["calls"], "start": s["start"], "length": len(s["token_ids"])}
                          for s in toks["sequences"]], "reasons": toks["reasons"]}


def token_page(toks: dict, seq: int, offset: int, limit: int) -> dict | None:
    """Tokens ``[offset, offset + limit)`` of sequence ``seq`` (ids, loss mask, logprobs); None for no such sequence."""
    if not 0 <= seq < len(toks["sequences"]):
        return None
    s = toks["sequences"][seq]
    end = offset + limit
    return {"seq": seq, "offset": offset, "length": len(s["token_ids"]), "token_ids": s["token_ids"][offset:end],
            "loss_mask": s["loss_mask"][offset:end], "logprobs": s["logprobs"][offset:end]}


def diff_lines(diff: str, limit: int = DIFF_LINES) -> tuple[list[tuple[str, str]], int]:
    """The diff's first ``limit`` lines with a class each (file, hunk, add, del, ctx) and how many it has."""
    out: list[tuple[str, str]] = []
    total = diff.count("\n") + (1 if diff and not diff.endswith("\n") else 0)
    start = 0
    while len(out) < limit and start < len(diff):
        end = diff.find("\n", start)
        end = len(diff) if end < 0 else end
        line = diff[start:end][:2000]
        start = end + 1
        kind = ("file" if line.startswith(("diff ", "+++", "---", "index ")) else "hunk" if line.startswith("@@")
                else "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx")
        out.append((kind, line))
    return out, total
