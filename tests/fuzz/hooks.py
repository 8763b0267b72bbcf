"""Schemathesis hooks for fuzzing a real admin (loaded by ``st run`` through SCHEMATHESIS_HOOKS).

They keep the generated requests schema-valid or schema-invalid exactly as generated; they only
bound what a valid request costs on this machine:
- starts get the default image (never pulled), little memory and a short TTL, and after
  ``FUZZ_MAX_STARTS`` they name the fixture sandbox's id (a 409: the id is taken);
- commands get a timeout of at most a few seconds (a generated ``cat`` would wait for stdin), and
  so do the Chat protocol's long polls (``wait``, ``call_timeout``);
- a vector env gets at most a few envs (13,563 schema-valid envs are 212 env sandboxes: minutes
  of starts on a small machine, tested at size in tests/envs and the benchmark);
- an image build gets an empty context (a 400 before any build: builds take minutes and are
  tested in tests/admin); a gym image or session gets an hf:// source refused before any build
  or pip install (both run for minutes; tests/envs covers them);
- some requests that name a sandbox get the fixture's running sandbox (``FUZZ_SANDBOX``), so
  the fuzzer reaches past the 404 into a real agent; never the routes that stop or change it.
"""

from __future__ import annotations

import ast
import os
import random
import threading

import schemathesis

# CPython before 3.11.8/3.12.1 keeps the AST constructor's recursion depth in state shared by all
# threads (python/cpython#106905): two of ``st``'s workers describing a strategy's lambdas at once
# (Hypothesis parses their source with ``ast.parse``) can fail one operation with "SystemError: AST
# constructor recursion depth mismatch" before any request is sent. Parsing one at a time in this
# process avoids it; nothing else here parses.
_parse_lock = threading.Lock()
_parse = ast.parse


def _serial_parse(*args, **kwargs):
    with _parse_lock:
        return _parse(*args, **kwargs)


ast.parse = _serial_parse

SANDBOX = os.environ.get("FUZZ_SANDBOX", "")
MAX_STARTS = int(os.environ.get("FUZZ_MAX_STARTS", "4"))
_rng = random.Random(int(os.environ.get("FUZZ_SEED", "1")))
_starts = 0
# never pointed at the fixture sandbox: they would stop, restart, archive or commit it
_KEEP_OFF = ("/stop", "/delete", "/restart", "/archive", "/commit", "/start", "/start_async", "/ui/sandboxes/")
_TIMEOUTS = ("timeout", "idle_timeout")
_COMMAND_ROUTES = ("/run_in_session", "/execute", "/wait_session")
_VECTOR_ROUTES = ("/gem/vec/make", "/gym/sessions")
MAX_ENVS = 4
_LONG_POLLS = ("/chat/exchange", "/chat/anti_call_llm")


@schemathesis.serializer("application/x-tar")
def _tar(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode()


def _positive(case) -> bool:
    return case.meta is None or case.meta.generation.mode.name == "POSITIVE"


@schemathesis.hook
def map_case(ctx, case):
    global _starts
    path = case.operation.path
    body = case.body if isinstance(case.body, dict) else None
    if path.endswith(("/v1/start", "/v1/start_async")) and body is not None and _positive(case):
        body.update(image=None, pull_policy="never", memory="128m", auto_clear_seconds=60, wait=True,
                    startup_timeout=60, use_kata_runtime=False, registry_username=None, registry_password=None)
        _starts += 1
        if _starts > MAX_STARTS and SANDBOX:
            body["sandbox_id"] = SANDBOX
    if path.endswith("/images/build"):
        case.body = b""
    # in every mode: the coverage phase labels some valid bodies negative (a build would run)
    if path.endswith(("/gym/images", "/gym/sessions")) and body is not None and (_positive(case) or "source" in body):
        body.update(source="hf://rock-fuzz/none", trust_remote_code=False)
    if path.endswith(_VECTOR_ROUTES) and body is not None and isinstance(body.get("num_envs"), (int, float)) \
            and not isinstance(body["num_envs"], bool) and body["num_envs"] > MAX_ENVS:
        body["num_envs"] = MAX_ENVS
    if path.endswith(_COMMAND_ROUTES) and body is not None:
        for key in _TIMEOUTS:
            if isinstance(body.get(key), (int, float)) and not isinstance(body.get(key), bool) and body[key] > 3:
                body[key] = 3
        body.setdefault("timeout", 3)
    if path.endswith(_LONG_POLLS) and body is not None:  # the Chat protocol's waits (up to minutes)
        for key in ("wait", "call_timeout"):
            if isinstance(body.get(key), (int, float)) and not isinstance(body.get(key), bool) and body[key] > 3:
                body[key] = 3
        if path.endswith("/anti_call_llm"):
            body.setdefault("call_timeout", 3)
        if path.endswith("/exchange"):
            body.setdefault("wait", 0)
    if SANDBOX and _positive(case) and not any(k in path for k in _KEEP_OFF) and _rng.random() < 0.5:
        for part in (body, case.query):
            if isinstance(part, dict) and "sandbox_id" in part:
                part["sandbox_id"] = SANDBOX
        if isinstance(case.path_parameters, dict) and "sandbox_id" in case.path_parameters:
            case.path_parameters["sandbox_id"] = SANDBOX
    return case


_TIMES = os.environ.get("FUZZ_TIMES")  # a file: one "seconds status METHOD path" line per call


@schemathesis.hook
def after_call(ctx, case, response):
    if _TIMES:
        with open(_TIMES, "a") as f:
            f.write(f"{response.elapsed:.3f} {response.status_code} {case.operation.method.upper()} {case.operation.path}\n")
