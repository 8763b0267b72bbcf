"""The schema cannot rot: every route that reads a body or query parameters itself (raw
``request.body()``/``context.parse``/``context.query``) declares them, and the shared answers
(401 with tokens, 413 for a body, 405 with Allow) are there."""

from __future__ import annotations

import inspect
import json
import re
import tempfile

import jsonschema
import pytest
from fastapi.testclient import TestClient

from rock.actions.chat import ExchangeRequest
from rock.actions.sandbox import SandboxStartRequest
from rock.admin.sandboxes.start_checks import check_start_request
from rock.errors import BadRequest

from rock.admin.app import create_app
from rock.admin.openapi import LONG_RUNNING, api_routes
from rock.config import Settings

READS_BODY = re.compile(r"await request\.body\(\)|parse\(request|request\.stream\(\)|request\.form\(|"
                        r"_vec_step\(|_reset\(request|_step\(request")
READS_QUERY = re.compile(r"query\(request,")


def _app(role="admin", tokens=None):
    return create_app(Settings(state_dir=tempfile.mkdtemp(prefix="rock-schema-"), backend="bwrap", role=role,
                               tokens=tokens or {}))


def test_every_raw_reader_declares_its_input():
    for role in ("admin", "proxy"):
        app = _app(role)
        paths = app.openapi()["paths"]
        checked = 0
        for path, route in api_routes(app.routes):
            source = inspect.getsource(route.endpoint)
            for method in route.methods - {"HEAD"}:
                op = paths[path][method.lower()]
                if READS_BODY.search(source):
                    assert op.get("requestBody"), f"{method} {route.path} reads a body the schema does not declare"
                    assert {"413", "422"} <= set(op["responses"]), f"{method} {route.path}"
                    checked += 1
                if READS_QUERY.search(source):
                    assert op.get("parameters"), f"{method} {route.path} reads query parameters it does not declare"
                    assert "422" in op["responses"], f"{method} {route.path}"
                    checked += 1
                assert any(code.startswith("2") or code in ("303", "426") for code in op["responses"]), \
                    f"{method} {route.path} declares no success answer"
        assert checked > 30 if role == "admin" else checked > 20


def test_hot_paths_are_declared():
    """Routes the ASGI doors answer before FastAPI are in the schema with their bodies."""
    paths = _app().openapi()["paths"]
    for path in ("/apis/envs/sandbox/v1/run_in_session", "/apis/v1/envs/gem/reset", "/apis/v1/envs/gem/step",
                 "/apis/v1/envs/gem/vec/step", "/apis/v1/training/step", "/apis/v1/training/agentscope/step",
                 "/apis/v1/envs/gym/sessions/{session_id}/step"):
        assert paths[path]["post"].get("requestBody"), path


def test_tokens_declare_security_and_401():
    schema = _app(tokens={"t": "ns"}).openapi()
    assert "bearer" in schema["components"]["securitySchemes"]
    assert "401" in schema["paths"]["/apis/envs/sandbox/v1/start"]["post"]["responses"]
    assert schema["paths"]["/health"]["get"]["security"] == []
    assert "401" not in _app().openapi()["paths"]["/apis/envs/sandbox/v1/start"]["post"]["responses"]


def test_405_lists_allowed_methods():
    client = TestClient(_app())
    r = client.request("TRACE", "/apis/envs/sandbox/v1/sandboxes/x/proxy/a")
    assert r.status_code == 405 and {"GET", "POST", "DELETE"} <= set(r.headers["allow"].split(", "))
    r = client.put("/apis/envs/sandbox/v1/run_in_session")  # the hot path's route: only POST
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["status"] == "Failed" and "POST" in r.json()["message"]


@pytest.mark.parametrize("body,refused", [
    ({"registry_username": "u"}, "registry_username and registry_password go together"),
    ({"registry_password": "p", "registry_username": ""}, "registry_username and registry_password go together"),
    ({"auto_archive_seconds": 1, "auto_delete_seconds": 2}, "exclusive"),
    ({"image_os": "windows"}, "Linux sandboxes only"),
    ({"registry_username": "u", "registry_password": "p"}, None),
    ({"registry_username": "", "registry_password": None, "auto_archive_seconds": 1, "auto_delete_seconds": None,
      "image_os": " Linux "}, None),
])
def test_start_schema_says_what_the_start_checks_refuse(body, refused):
    """What start_checks refuses of fields together is what the schema forbids (no schema-valid
    start is refused for them, no refused one is schema-valid)."""
    schema = _app().openapi()["paths"]["/apis/envs/sandbox/v1/start"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    valid = jsonschema.Draft202012Validator(schema).is_valid(body)
    req = SandboxStartRequest.model_validate(body)
    if refused is None:
        assert valid
        check_start_request(req, "bwrap")
    else:
        assert not valid
        with pytest.raises(BadRequest, match=refused):
            check_start_request(req, "bwrap")


def test_env_call_timeouts_are_bounded():
    """A timeout past a day was a 500 (an overflow inside the env host); the schema bounds it and 422 says so."""
    client = TestClient(_app())
    for path, body in (("/apis/v1/envs/gym/sessions", {"source": "CartPole-v1", "timeout": 1.5e308}),
                       ("/apis/v1/envs/gem/make", {"env_id": "game:GuessTheNumber-v0", "timeout": 1.5e308})):
        r = client.post(path, json=body)
        assert r.status_code == 422 and "timeout" in r.text, (path, r.status_code, r.text[:300])


@pytest.mark.parametrize("path, model, body", [
    ("/apis/envs/sandbox/v1/start", SandboxStartRequest, {"auto_archive_seconds": False}),
    ("/apis/envs/sandbox/v1/start", SandboxStartRequest, {"auto_delete_seconds": True}),
    ("/apis/envs/sandbox/v1/start", SandboxStartRequest, {"startup_timeout": 3.7e-277}),
    ("/apis/v1/chat/exchange", ExchangeRequest, {"wait": True}),
    ("/apis/v1/chat/exchange", ExchangeRequest, {"max_calls": False}),
    ("/apis/v1/chat/exchange", ExchangeRequest, {"max_calls": "5"}),
])
def test_what_the_schema_forbids_the_server_refuses(path, model, body):
    """Found by Schemathesis: a boolean was taken as 0/1 where the schema says integer or number,
    and a start with startup_timeout=3.7e-277 s was accepted, then a 503. Now the schema forbids
    each (rock.actions.numbers, a one-second floor) and the server answers 422 naming the field."""
    assert not jsonschema.Draft202012Validator(model.model_json_schema()).is_valid(body)
    r = TestClient(_app()).post(path, json=body)
    assert r.status_code == 422 and next(iter(body)) in r.text, r.text
    # control: the same field with a number is valid and taken, 5.0 too (JSON Schema's integer
    # includes it; pydantic's strict mode refused it)
    for number in (5, 5.0):
        ok = {k: number for k in body}
        assert jsonschema.Draft202012Validator(model.model_json_schema()).is_valid(ok)
        assert getattr(model.model_validate_json(json.dumps(ok)), next(iter(body))) == 5


@pytest.mark.parametrize("field, value", [("tasks", False), ("concurrency", True), ("tasks", "5")])
def test_a_job_counts_with_numbers_only(field, value):
    """Found by a long Schemathesis run: POST /apis/v1/jobs took ``tasks: false`` (the schema says
    integer) as 0 and opened the job."""
    from rock.admin.jobs import JobCreate

    body = {"suite": "s", "harness": "h", "policy": "p", field: value}
    assert not jsonschema.Draft202012Validator(JobCreate.model_json_schema()).is_valid(body)
    r = TestClient(_app()).post("/apis/v1/jobs", json=body)
    assert r.status_code == 422 and field in r.text, r.text
    assert getattr(JobCreate.model_validate({**body, field: 5}), field) == 5  # control: a number is taken


def test_routes_that_start_env_sandboxes_declare_they_are_long():
    """Routes that start an env sandbox (or probe the catalog in one) may take minutes: the
    schema says so, and the fuzzer's response-time check reads it (everything else: RESPONSE_S)."""
    paths = _app().openapi()["paths"]
    long = {f"{m.upper()} {p}" for p, item in paths.items() for m, op in item.items() if LONG_RUNNING in op}
    assert {"POST /apis/v1/envs/gem/make", "POST /apis/v1/envs/gem/list", "GET /apis/v1/envs/gem/catalog",
            "POST /apis/v1/envs/gym/sessions", "POST /apis/v1/training/create", "GET /ui/fragments/catalog"} <= long
    assert "POST /apis/envs/sandbox/v1/execute" not in long
    for name in long:
        method, path = name.split(" ", 1)
        assert paths[path][method.lower()][LONG_RUNNING]["seconds"] >= 60


@pytest.mark.parametrize("env", [{"": "x"}, {"A=B": "x"}, {"A": "x\x00y"}, {"A": "\udc93"}])
def test_an_environment_no_process_can_have_is_refused_by_schema_and_server(env):
    """Found by Schemathesis: a start whose env had an empty name was schema-valid, then bwrap's
    --setenv failed and the start was a 503. The schema states what execve and setenv take."""
    schema = jsonschema.Draft202012Validator(SandboxStartRequest.model_json_schema())
    lone_surrogate = env == {"A": "\udc93"}  # no text: beyond a schema's pattern, refused all the same
    assert lone_surrogate or not schema.is_valid({"env": env})
    client = TestClient(_app())
    sent = {"headers": {"content-type": "application/json"}}  # JSON's escapes carry a lone surrogate
    r = client.post("/apis/envs/sandbox/v1/start", content=json.dumps({"env": env}), **sent)
    # (a lone surrogate is refused by ROCK's JSON parser itself)
    assert r.status_code == 422 and ("environment variable" in r.json()["message"]
                                     or lone_surrogate and "not valid JSON" in r.json()["message"]), r.text
    r = client.post("/v2/sandboxes", content=json.dumps({"templateID": "base", "envVars": env}), **sent)
    assert r.status_code == 400 and "envVars" in r.json()["message"], r.text
    # control: names and values beyond the portable set are valid (a space, non-ASCII)
    fine = {"PATH": "/bin", "É x": "ü=1"}
    assert schema.is_valid({"env": fine}) and SandboxStartRequest.model_validate({"env": fine}).env == fine


@pytest.mark.parametrize("image", ["Python:3.11", "python\x01:3.11", "python:3.11\n", "library/Python"])
@pytest.mark.parametrize("path", ["/apis/envs/sandbox/v1/start", "/apis/envs/sandbox/v1/start_async"])
def test_a_malformed_image_is_refused_before_any_pull(path, image):
    """Found by Schemathesis: pull_policy always with a name no registry can hold (upper case,
    control characters) went to the registry and answered 503. The image grammar refuses it first."""
    req = SandboxStartRequest(image=image, pull_policy="always")
    with pytest.raises(BadRequest, match="not an image reference"):
        check_start_request(req, "docker")
    r = TestClient(_app()).post(path, json={"image": image, "pull_policy": "always"})
    assert r.status_code == 400 and "not an image reference" in r.json()["message"], r.text
    # control: a well-formed name and a host path (its own check) are not the grammar's to refuse
    check_start_request(SandboxStartRequest(image="python:3.11", pull_policy="always"), "docker")
    with pytest.raises(BadRequest, match="allow_host_paths"):
        check_start_request(SandboxStartRequest(image="/srv/rootfs"), "bwrap", Settings(allow_host_paths=False))


def test_a_start_from_a_missing_snapshot_is_a_declared_404():
    """Found by Schemathesis: start_async answered 404 (SnapshotNotFound) and its schema listed no 404."""
    paths = _app().openapi()["paths"]
    for path in ("/apis/envs/sandbox/v1/start", "/apis/envs/sandbox/v1/start_async"):
        assert "404" in paths[path]["post"]["responses"], path
    with TestClient(_app()) as client:
        r = client.post("/apis/envs/sandbox/v1/start_async", json={"snapshot": "no-such-snapshot"})
    assert r.status_code == 404 and "no-such-snapshot" in r.json()["message"], r.text


def test_the_chat_long_polls_declare_they_are_long():
    """Found by Schemathesis: POST /chat/exchange (a long poll, up to its ``wait``) took over 10 s
    while its schema said nothing; the fuzzer's response-time check reads LONG_RUNNING."""
    paths = _app().openapi()["paths"]
    exchange = paths["/apis/v1/chat/exchange"]["post"]
    assert exchange[LONG_RUNNING]["seconds"] >= ExchangeRequest.model_validate({"wait": 300}).wait
    assert paths["/apis/v1/chat/anti_call_llm"]["post"][LONG_RUNNING]["seconds"] >= 600
    assert LONG_RUNNING not in paths["/apis/v1/chat/answer"]["post"]  # control: answering one call is quick


@pytest.mark.parametrize("model, field, refused, taken", [
    ("rock.actions.volumes:VolumeCreateRequest", "size", "\u00ae", "100M"),
    ("rock.admin.envs.gym:GymForkRequest", "n", True, 32.0),
    ("rock.admin.envs.gem:VecForkRequest", "n", "2", 2.0),
    ("rock.actions.egress:EgressRules", "ports", [-496922], [80, "8000-8080"]),
])
def test_what_the_schema_allows_the_model_takes_and_what_it_refuses_it_forbids(model, field, refused, taken):
    """Found by a long Schemathesis run: a volume's size '®' matched the schema (any string) and was
    refused (422); a fork's ``n: 32.0`` matched it (JSON Schema's integer) and was refused by
    pydantic's strict mode. Now the schema says the size grammar, and a whole float is a count. An
    egress port of -496922 matched it (its bounds were written as pydantic's own 'ge'/'le', which
    JSON Schema ignores) and was refused (422)."""
    import importlib

    module, name = model.split(":")
    cls = getattr(importlib.import_module(module), name)
    schema = cls.model_json_schema()
    base = {k: "x1" for k in schema.get("required", []) if k != field}  # the other required fields: names
    assert not jsonschema.Draft202012Validator(schema).is_valid({**base, field: refused})
    with pytest.raises(ValueError):
        cls.model_validate({**base, field: refused})
    assert jsonschema.Draft202012Validator(schema).is_valid({**base, field: taken})
    cls.model_validate({**base, field: taken})  # control: what the schema allows, the model takes


# pydantic's names for bounds: in a JSON schema they are unknown keywords, which validators and
# generators ignore, so the bound they mean is not declared.
_NOT_JSON_SCHEMA = ("ge", "le", "gt", "lt", "multiple_of", "min_length", "max_length")


def _pydantic_bounds(node, path=""):
    if isinstance(node, dict):
        found = [(path, k) for k in _NOT_JSON_SCHEMA if k in node and ("type" in node or "anyOf" in node)]
        return found + [f for k, v in node.items() for f in _pydantic_bounds(v, f"{path}/{k}")]
    if isinstance(node, list):
        return [f for i, v in enumerate(node) for f in _pydantic_bounds(v, f"{path}/{i}")]
    return []


def test_every_bound_is_written_in_json_schema_words():
    """Found by Schemathesis: an int with a before-validator and then ``Field(ge=1)`` has its bound
    written as ``"ge": 1`` in the schema, a key JSON Schema does not know, so the fuzzer sent
    -496922 as valid. Every bound the admin's schema declares is ``minimum``/``maximum``/...."""
    from typing import Annotated

    from pydantic import BeforeValidator, Field, TypeAdapter

    misplaced = TypeAdapter(Annotated[int, BeforeValidator(lambda v: v), Field(ge=1)]).json_schema()
    assert _pydantic_bounds(misplaced) == [("", "ge")]  # control: the scan finds the shape it looks for
    for role in ("admin", "proxy"):
        assert _pydantic_bounds(_app(role=role).openapi()) == [], role
