"""The E2B door's errors are ROCK's (one tree, ``rock.errors``), and its one mapping
(``rock.admin.e2b.errors``) puts each on E2B's wire: ``{code, message}`` for the control plane and
``/files`` (``Retry-After`` for a rate), plain text for the code interpreter, the edge proxy's 502
for a sandbox that is gone, and Connect's errors for envd's RPCs (unary under the code's status,
a stream's in its last envelope under 200). Served by a real Starlette app with the door's
``HANDLERS``; the real admin's answers are tests/e2b/test_e2b_wire.py's."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import struct

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

import rock.admin.e2b as door
from rock.admin.e2b import FRONT
from rock.admin.e2b.errors import HANDLERS, from_rock, refusal
from rock.errors import (STATUS, AgentError, AgentGone, CapacityExceeded, ConnectError, E2BError, QuotaExceeded,
                         RockError, SandboxGone, SandboxNotFound, SandboxPaused, VolumeNotFound, status_of)

# Connect's codes (connectrpc.com/docs/protocol#error-codes) and the HTTP status each answers with.
CONNECT = {"canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
           "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
           "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
           "unauthenticated": 401}


def test_the_door_defines_no_exception_of_its_own():
    modules = [importlib.import_module(f"rock.admin.e2b.{m.name}") for m in pkgutil.iter_modules(door.__path__)]
    assert len(modules) > 10  # the whole door was read
    own = [f"{m.__name__}.{name}" for m in [door, *modules] for name, obj in vars(m).items()
           if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == m.__name__]
    assert own == []
    assert all(issubclass(cls, RockError) for cls, _ in HANDLERS) and FRONT.errors == HANDLERS


def test_connect_codes_are_kinds_of_the_one_status_table():
    assert {code: STATUS[code] for code in CONNECT} == CONNECT
    assert ConnectError("not_found", "x").status_code == 404 and ConnectError("aborted", "x").code == "aborted"
    assert SandboxGone("sb").status_code == 502 and E2BError(415, "x").status_code == 415


def _app(exc: Exception) -> TestClient:
    async def fail(request):
        raise exc

    routes = [Route(path, fail, methods=["POST"]) for path in ("/v2/sandboxes", "/execute", "/contexts/c1",
                                                                "/process.Process/Start")]
    return TestClient(Starlette(routes=routes, exception_handlers=dict(HANDLERS)))


def test_each_error_answers_in_its_planes_shape():
    r = _app(E2BError(404, "template 'x' not found")).post("/v2/sandboxes")
    assert (r.status_code, r.json(), r.headers["content-type"]) == (
        404, {"code": 404, "message": "template 'x' not found"}, "application/json")
    r = _app(E2BError(429, "slow down", retry_after=1.2)).post("/v2/sandboxes")
    assert (r.status_code, r.json()["code"], r.headers["retry-after"]) == (429, 429, "2")
    for path in ("/execute", "/contexts/c1"):  # the code interpreter's server answers plain text
        r = _app(E2BError(400, "code must be a string")).post(path)
        assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (400, "code must be a string",
                                                                                   "text/plain")
    r = _app(SandboxGone("sb1")).post("/process.Process/Start")
    assert (r.status_code, r.json()) == (502, {"code": 502, "message": "The sandbox sb1 was not found",
                                               "sandboxId": None})
    r = _app(ConnectError("not_found", "no such process")).post("/process.Process/Start")
    assert (r.status_code, r.json()) == (404, {"code": "not_found", "message": "no such process"})
    r = _app(ConnectError("invalid_argument", "bad")).post("/process.Process/Start",
                                                           headers={"content-type": "application/connect+json"})
    flags, size = struct.unpack_from(">BI", r.content)
    assert (r.status_code, flags, json.loads(r.content[5:5 + size])) == (
        200, 2, {"error": {"code": "invalid_argument", "message": "bad"}})


@pytest.mark.parametrize("exc, want", [
    (SandboxPaused("p"), (SandboxGone, 502, "The sandbox sb was not found running: it is paused; resume it with "
                                            "Sandbox.connect()")),
    (SandboxNotFound("x"), (SandboxGone, 502, "The sandbox sb was not found")),
    (AgentGone("x"), (SandboxGone, 502, "The sandbox sb was not found")),
    (AgentError("no file", "FileNotFound"), (ConnectError, 404, "no file")),
    (AgentError("odd", "Weird"), (ConnectError, 500, "odd")),
    (VolumeNotFound("v"), (ConnectError, 404, "v")),
    (ConnectError("aborted", "a"), (ConnectError, 409, "a")),
    (E2BError(413, "big"), (E2BError, 413, "big")),
])
def test_from_rock_says_it_in_envds_terms(exc, want):
    out = from_rock(exc, "sb")
    assert (type(out), out.status_code, out.message) == want
    if isinstance(exc, (ConnectError, E2BError)):
        assert out is exc  # already E2B's: unchanged


def test_a_refusal_keeps_a_client_error_and_admissions_answer():
    assert (refusal(VolumeNotFound("v")).status_code, refusal(VolumeNotFound("v")).message) == (404, "v")
    quota = refusal(QuotaExceeded("rate", limit="creates_per_minute", retry_after=3))
    assert (quota.status_code, quota.retry_after) == (429, 3)
    assert refusal(CapacityExceeded("full")).status_code == 503
    assert refusal(RockError("boom")).status_code == 500 and refusal(RockError("boom"), fault=503).status_code == 503
    already = E2BError(503, "no node")
    assert refusal(already) is already and status_of("unavailable") == 503
