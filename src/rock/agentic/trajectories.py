"""Training-ready trajectories: token ids, loss masks and logprobs from a rollout's model calls.

Per call (``calls``): the prompt's and the completion's token ids and the completion's logprobs,
as the engine (proxy mode: vLLM ``return_token_ids``, SGLang) or the trainer's answer sent them
(a chat completion's ``prompt_token_ids`` and ``choices[0].token_ids``/``logprobs``, or a native
answer's ``rock`` field). A call whose answer carried none has ``tokens: null`` and the reason:
nothing is re-tokenized or invented here.

Per episode (``sequences``): consecutive calls whose prompt extends the previous call's prompt and
completion are one sequence; the tokens between (tool results, the harness's next user turn, the
chat template's markers) have loss mask 0, every completion token mask 1. Where a call's prompt
does not extend the sequence (the harness compacted, truncated or rewrote its history, or the
template re-rendered earlier turns) a new sequence starts and says why (``start.reason``).

    episode = export(records, reward=1.0)          # records: CallRecords or their dicts
    for row in rows(episode): ...                  # one flat row per sequence
    write(episodes, "out.jsonl")                   # or "out.parquet" (needs pyarrow)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from rock.agentic.record import RolloutRecord

# Why a sequence starts.
FIRST = "first"  # the episode's first call with tokens
AFTER_UNTOKENIZED = "after_untokenized"  # the call before it had no token ids: nothing to extend
RETOKENIZED = "retokenized"  # the messages extend the previous call's, the token ids do not
TRUNCATION = "truncation"  # fewer messages: earlier ones dropped, those kept unchanged
COMPACTION = "compaction"  # fewer messages: the history replaced (by a summary, or by nothing)
REWRITE = "rewrite"  # an earlier message changed or was inserted (e.g. a system reminder)
NEW_CONVERSATION = "new_conversation"  # another system prompt: a conversation of its own (a title, a side agent)


def _get(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def _floats(logprobs: Any) -> list[float] | None:
    """Logprobs in any of the engines' forms as one float per token."""
    if isinstance(logprobs, dict):
        logprobs = logprobs.get("content")
    if not isinstance(logprobs, list):
        return None
    out = []
    for lp in logprobs:
        value = lp.get("logprob") if isinstance(lp, dict) else lp
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        out.append(float(value))
    return out


def call_tokens(record: Any) -> dict:
    """One call's tokens: ``{"index", "api", "status", "tokens": {prompt_token_ids,
    completion_token_ids, logprobs} | None, "reason"}`` (``reason`` says why ``tokens`` is null, or
    why ``logprobs`` is)."""
    native = _get(record, "native") or {}
    out: dict[str, Any] = {"index": _get(record, "index"), "api": native.get("api", "chat"),
                           "status": _get(record, "status"), "tokens": None, "reason": None}
    if out["status"] != "success":
        out["reason"] = f"the call did not succeed ({out['status']}, HTTP {_get(record, 'http_status')}): " \
                        f"{_get(record, 'error')}"
        return out
    prompt = _get(record, "prompt_token_ids")
    completion = (_get(record, "token_ids") or [None])[0]
    via = _get(record, "answered_via") or "?"
    if prompt is None and completion is None:
        out["reason"] = (f"the answer (answered_via={via}) carried no token ids; send prompt_token_ids and "
                         "choices[0].token_ids with it (vLLM: return_token_ids) to train on this call")
        return out
    if prompt is None or completion is None:
        missing = "prompt_token_ids" if prompt is None else "choices[0].token_ids"
        out["reason"] = f"the answer (answered_via={via}) carried no {missing}"
        return out
    logprobs = _floats((_get(record, "logprobs") or [None])[0])
    if logprobs is not None and len(logprobs) != len(completion):
        out["reason"] = f"logprobs dropped: {len(logprobs)} for {len(completion)} completion tokens"
        logprobs = None
    out["tokens"] = {"prompt_token_ids": list(prompt), "completion_token_ids": list(completion),
                     "logprobs": logprobs}
    return out


def _norm(message: dict) -> tuple:
    """A chat message as compared for "does this history extend that one"."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    calls = []
    for tc in message.get("tool_calls") or ():
        fn = tc.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = fn.get("arguments")
        calls.append((fn.get("name"), json.dumps(args, sort_keys=True)))
    return message.get("role"), content or "", tuple(calls), message.get("tool_call_id")


def _opening(record: Any) -> tuple[str | None, tuple | None]:
    """How a call's conversation opens: its system prompt (None without one) and its first other message."""
    messages = [m for m in (_get(record, "request") or {}).get("messages") or () if isinstance(m, dict)]
    system = _norm(messages[0])[1] if messages and messages[0].get("role") in ("system", "developer") else None
    first = next((_norm(m) for m in messages if m.get("role") not in ("system", "developer")), None)
    return system, first


def _why_break(prev: Any, cur: Any, earlier: list[Any]) -> tuple[str, Any]:
    """Why ``cur``'s prompt does not extend ``prev``'s sequence, from their messages, and the call it is compared
    with. Under another system prompt than ``prev``'s, ``cur`` goes on a conversation seen before under its own
    (compared with that one's last call), or opens a new conversation when no call before opened with its first
    message either (a harness's title call or side agent, whose history is no compaction of the main one's); a
    system prompt changed in the middle of a conversation (its first message as it was) is a rewrite of it."""
    system, first = _opening(cur)
    if system != _opening(prev)[0]:
        same = [r for r in earlier if _opening(r)[0] == system]
        if same:
            prev = same[-1]
        elif all(_opening(r)[1] != first for r in earlier):
            return NEW_CONVERSATION, None
    return _why_messages(prev, cur), prev


def _why_messages(prev: Any, cur: Any) -> str:
    reply = (((_get(prev, "response") or {}).get("choices") or [{}])[0]).get("message") or {}
    before = [_norm(m) for m in (_get(prev, "request") or {}).get("messages") or ()] + [_norm(reply)]
    now = [_norm(m) for m in (_get(cur, "request") or {}).get("messages") or ()]
    if now[:len(before)] == before:
        return RETOKENIZED
    if len(now) < len(before):
        # Truncation keeps some of the conversation as it was (the newest turn aside); a history
        # replaced by new text (a summary), or by nothing, was compacted.
        kept, middle = set(before), [m for m in now[:-1] if m[0] != "system"]
        return TRUNCATION if middle and all(m in kept for m in middle) else COMPACTION
    return REWRITE


def _start(answered: list[Any], record: Any, after_gap: bool, gap: bool, owner: dict[int, dict]) -> tuple[str, Any]:
    """Why the call ``record`` (the last of ``answered``) starts a sequence, and where its prompt diverged."""
    index = _get(record, "index")
    if len(answered) < 2:
        return (AFTER_UNTOKENIZED if gap else FIRST), None
    reason, against = _why_break(answered[-2], record, answered[:-1])
    if reason == NEW_CONVERSATION:
        return reason, f"call {index} has another system prompt than every call before it"
    if after_gap or id(against) not in owner:  # the call compared had no tokens: nothing to compare with
        return AFTER_UNTOKENIZED, None
    old, prompt = owner[id(against)]["token_ids"], _get(record, "prompt_token_ids")
    at = next((i for i, (a, b) in enumerate(zip(old, prompt)) if a != b), min(len(old), len(prompt)))
    return reason, (f"call {index}'s prompt ({len(prompt)} tokens) diverges from the sequence of call "
                    f"{_get(against, 'index')} ({len(old)} tokens) at token {at}")


def export(records: Iterable[Any], reward: float | None = None, episode: str | None = None,
           meta: dict | None = None) -> dict:
    """One episode: ``{"episode", "reward", "meta", "calls": [call_tokens...], "sequences": [...]}``;
    each sequence ``{"calls": [indexes], "start": {"reason", "detail"}, "token_ids", "loss_mask",
    "logprobs"}`` (logprobs: the policy's where the mask is 1 and it sent them, else null)."""
    records = sorted(records, key=lambda r: _get(r, "index") or 0)
    calls = [call_tokens(r) for r in records]
    sequences: list[dict] = []
    seq: dict | None = None
    gap = False  # a call without tokens came since the last sequence
    answered: list[Any] = []  # every successful call's record so far, in order
    owner: dict[int, dict] = {}  # a tokenized record's sequence (by the record's id)
    for record, call in zip(records, calls):
        tokens = call["tokens"]
        if call["status"] != "success":
            continue  # a failed call is no turn of the policy's: the next one may still extend
        answered.append(record)
        if tokens is None:
            seq, gap = None, True
            continue
        prompt, completion = tokens["prompt_token_ids"], tokens["completion_token_ids"]
        # The current sequence, else an earlier one (a conversation the harness returns to after a side call).
        into = next((s for s in ([seq] if seq is not None else []) + sequences[::-1]
                     if prompt[:len(s["token_ids"])] == s["token_ids"]), None)
        if into is not None:
            seq = into
            added = prompt[len(seq["token_ids"]):]
            seq["calls"].append(call["index"])
        else:
            reason, detail = _start(answered, record, seq is None, gap, owner)
            seq = {"calls": [call["index"]], "start": {"reason": reason, "detail": detail},
                   "token_ids": [], "loss_mask": [], "logprobs": []}
            sequences.append(seq)
            added = prompt
        seq["token_ids"] += added + completion
        seq["loss_mask"] += [0] * len(added) + [1] * len(completion)
        seq["logprobs"] += [None] * len(added) + (tokens["logprobs"] or [None] * len(completion))
        owner[id(record)] = seq
    return {"episode": episode, "reward": reward, "meta": meta or {}, "calls": calls, "sequences": sequences}


def rows(episode: dict) -> list[dict]:
    """One flat row per sequence (what a trainer's data loader takes); an episode without any
    tokenized call gives one row with ``token_ids: null`` and the reason. ``call_reasons`` holds
    ``{"call", "reason"}`` for each call of the row's sequence with a reason (e.g. its logprobs were
    dropped); calls in no sequence (failed, without token ids) are on the episode's first row, so
    each call's reason is in the export once."""
    base = {"episode": episode.get("episode"), "reward": episode.get("reward"), **(episode.get("meta") or {})}
    reasons = {c["index"]: c["reason"] for c in episode["calls"] if c["reason"]}
    if not episode["sequences"]:
        return [dict(base, sequence=None, calls=[c["index"] for c in episode["calls"]], start_reason=None,
                     start_detail=None, token_ids=None, loss_mask=None, logprobs=None,
                     reason="; ".join(sorted(set(reasons.values()))) or "the episode made no model call",
                     call_reasons=[{"call": i, "reason": r} for i, r in reasons.items()])]
    untokenized = [c["index"] for c in episode["calls"] if c["tokens"] is None]
    merged = {i for s in episode["sequences"] for i in s["calls"]}
    out = []
    for n, s in enumerate(episode["sequences"]):
        own = [i for i in reasons if i in s["calls"] or (n == 0 and i not in merged)]
        out.append(dict(base, sequence=n, calls=s["calls"], start_reason=s["start"]["reason"],
                        start_detail=s["start"]["detail"], token_ids=s["token_ids"], loss_mask=s["loss_mask"],
                        logprobs=s["logprobs"],
                        reason=(f"calls {untokenized} had no token ids" if untokenized else None),
                        call_reasons=[{"call": i, "reason": reasons[i]} for i in own]))
    return out


def from_job(lines: Iterable[dict[str, Any] | RolloutRecord]) -> Iterator[dict]:
    """Episodes from a job's rollout records (``rock job run --out``: ``model_calls``, ``reward``): its lines'
    JSON or ``RolloutRecord``s. What is not a rollout's record with model calls (a training task's) is skipped.
    The JSON is read as it is, not through the model: the admin keeps whatever record a runner sent, and one
    with an odd field still has its model calls to export."""
    for n, line in enumerate(lines):
        rec = line.to_json() if isinstance(line, RolloutRecord) else line
        if not isinstance(rec, dict) or not isinstance(rec.get("model_calls"), list):
            continue
        meta = {"task_id": rec.get("task_id"), "harness": rec.get("harness", {}).get("name")
                if isinstance(rec.get("harness"), dict) else rec.get("harness"), "error": rec.get("error")}
        yield export(rec["model_calls"], reward=rec.get("reward"), episode=f"{rec.get('task_id', n)}", meta=meta)


def write(episodes: Iterable[dict], path: str | Path, fmt: str | None = None) -> int:
    """Write every episode's rows to ``path`` as JSONL or Parquet (by ``fmt`` or the suffix);
    returns the rows written. Parquet needs pyarrow (``ImportError`` says so)."""
    path = Path(path)
    fmt = fmt or ("parquet" if path.suffix == ".parquet" else "jsonl")
    table = [row for ep in episodes for row in rows(ep)]
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("--format parquet needs pyarrow, which is not installed here "
                              "(pip install pyarrow), or use --format jsonl") from None
        schema = pa.schema([("episode", pa.string()), ("reward", pa.float64()), ("task_id", pa.string()),
                            ("harness", pa.string()), ("error", pa.string()), ("sequence", pa.int64()),
                            ("calls", pa.list_(pa.int64())), ("start_reason", pa.string()),
                            ("start_detail", pa.string()), ("token_ids", pa.list_(pa.int64())),
                            ("loss_mask", pa.list_(pa.int8())), ("logprobs", pa.list_(pa.float64())),
                            ("reason", pa.string()),
                            ("call_reasons", pa.list_(pa.struct([("call", pa.int64()), ("reason", pa.string())])))])
        cols = {f.name: [r.get(f.name) for r in table] for f in schema}
        pq.write_table(pa.table(cols, schema=schema), path)
        return len(table)
    with open(path, "w", encoding="utf-8") as f:
        for row in table:
            f.write(json.dumps(row) + "\n")
    return len(table)


__all__ = ["AFTER_UNTOKENIZED", "COMPACTION", "FIRST", "NEW_CONVERSATION", "RETOKENIZED", "REWRITE", "TRUNCATION", "call_tokens",
           "export", "from_job", "rows", "write"]
