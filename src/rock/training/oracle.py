"""The ``oracle`` policy's knowledge: each suite's ground truth as actions, read on the caller's
side from the same packages (never asked of the service, which does not hand answers out)."""

from __future__ import annotations

import ast
import json


def _literal(node):
    return ast.literal_eval(node)


def parse_call(text: str, functions: dict[str, dict]) -> tuple[str, dict]:
    """``name(a=1, 'pos')`` (BFCL's ground-truth strings) as (name, arguments); positional
    arguments take the names of the function's parameters in their documented order."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call):
        raise ValueError(f"not a call: {text!r}")
    name = ast.unparse(node.func)
    params = list(((functions.get(name) or {}).get("parameters") or {}).get("properties") or {})
    args = {params[i]: _literal(a) for i, a in enumerate(node.args)}
    args.update({k.arg: _literal(k.value) for k in node.keywords})
    return name, args


def tool_calls(calls: list[tuple[str, dict]]) -> list[dict]:
    return [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(calls)]


def _omit(options) -> bool:
    """An accepted ``""`` alone means: leave the parameter out. (``["", 25.0]`` for a required
    parameter also occurs: then the value is sent.)"""
    return isinstance(options, list) and bool(options) and all(v == "" for v in options)


def _pick(options):
    """The first accepted value that is not ``""``, nested dicts' keys picked the same way."""
    if isinstance(options, list) and options:
        value = next((v for v in options if v != ""), options[0])
    else:
        value = options
    if isinstance(value, dict):
        return {k: _pick(v) for k, v in value.items() if not _omit(v)}
    if isinstance(value, list):
        return [_pick(v) if isinstance(v, dict) else v for v in value]
    return value


def bfcl_ast_calls(truth: list[dict]) -> list[tuple[str, dict]]:
    """BFCL's possible answers (``[{name: {param: [accepted values]}}]``) as one call each; an
    accepted ``""`` means the parameter may be left out (see ``_omit``). Names with '.' are sent with '_', as the
    tools are shown."""
    calls = []
    for item in truth:
        for name, params in item.items():
            args = {k: _pick(v) for k, v in params.items() if not _omit(v)}
            calls.append((name.replace(".", "_"), args))
    return calls


def bfcl_turns(entry: dict, truth: list[list[str]]) -> list[list[tuple[str, dict]]]:
    """The calls of each user turn of a multi-turn task (a missing function's turn has none)."""
    functions = {f["name"]: f for f in entry["function"]}
    for docs in (entry.get("missed_function") or {}).values():
        functions.update({f["name"]: f for f in docs})
    return [[parse_call(s, functions) for s in turn] for turn in truth]
