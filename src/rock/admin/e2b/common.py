"""What both E2B planes share: constants, who is calling, and which sandbox a data-plane request
is for."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import posixpath
import time

from starlette.requests import Request

from rock.admin.auth import E2B_KEY_HEADER, E2B_SANDBOX_TOKEN_HEADERS
from rock.admin.context import Ctx
from rock.admin.doors import Door
from rock.admin.store import SandboxRecord
from rock.errors import ConnectError, E2BError, SandboxGone, Unauthorized

# The envd features we serve (the SDK gates on it, e2b/envd/versions.py): stdin control (0.3.0),
# a default user (0.4.0), close_stdin (0.5.2), octet-stream and gzip uploads (0.5.7). Not 0.6.2:
# file metadata (xattrs) is not kept, so the SDK refuses it client-side with its own message.
ENVD_VERSION = "0.5.7"
CLIENT_ID = "rock"
TOKEN_KEY = "e2b_token"  # in the record's spec, never shown (rock.admin.rock_api.sandbox._PRIVATE_SPEC)
META_KEY = "e2b"  # {"template", "metadata"} in the record's spec


def route(api, path: str, method: str = "POST", fast: bool = False):
    """A plain Starlette route on ``api``, outside the OpenAPI schema: envd's protocol (Connect
    RPCs, /files) and E2B's refusals are described by E2B's own specs, not by ours (docs/e2b.md).
    ``fast``: a call per command (``commands.run``) is also answered at the app's door
    (``rock.admin.doors``), past FastAPI's routing and layers: the handler proves the caller with
    the sandbox's access token itself, the route's body limit still holds, and its errors get the
    responses the app's exception handlers give (E2B's shapes)."""

    def add(fn):
        async def endpoint(request: Request):
            return await fn(request, **request.path_params)

        if fast:
            endpoint.__door__ = Door(_at_the_door(fn), own_auth=True)
        api.add_route(path, endpoint, methods=[method], include_in_schema=False, name=fn.__name__)
        return fn

    return add


def _at_the_door(fn):
    async def handler(ctx, _body, _principal, call):
        body = await call.read_body()
        replayed = False

        async def receive():  # the body read (and limited) once; then the connection's own events
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await call.receive()

        call.scope["path_params"] = call.params
        request = Request(call.scope, receive)
        request._body = body  # what request.body() returns, without going through the replay
        try:
            return await fn(request, **call.params)
        except Exception as exc:  # noqa: BLE001 - answered as the app's handlers answer it on the routed path
            for cls in type(exc).__mro__:
                answer = call.app.exception_handlers.get(cls)
                if answer is not None:
                    return await answer(request, exc)
            raise

    handler.__name__ = fn.__name__
    return handler


async def json_object(request: Request, error) -> dict:
    """The request's JSON object body ({} when empty); ``error(400, message)`` is raised otherwise."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise error(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise error(400, "the request body must be a JSON object")
    return body


def paged(request: Request, items: list, max_limit: int = 100) -> tuple[list, dict | None]:
    """E2B's pagination: ``limit`` and ``nextToken`` (an offset here) in the query; the page, and
    the ``X-Next-Token`` header while more follow."""
    q = request.query_params
    try:
        limit = int(q.get("limit") or 100)
        offset = int(q.get("nextToken") or 0)
    except ValueError:
        raise E2BError(400, "limit and nextToken must be integers") from None
    if not 1 <= limit <= max_limit or offset < 0:
        raise E2BError(400, f"limit must be between 1 and {max_limit}")
    more = offset + limit < len(items)
    return items[offset:offset + limit], {"X-Next-Token": str(offset + limit)} if more else None


def owner_of(ctx: Ctx, request: Request) -> str | None:
    """X-API-KEY is a ROCK token (ROCK's own Authorization: Bearer works too): the caller's
    namespace (None with auth off)."""
    if not ctx.auth.enabled:
        return None
    key = request.headers.get(E2B_KEY_HEADER) or ""
    try:
        return ctx.auth.principal({"authorization": "Bearer " + key} if key else request.headers)
    except Unauthorized:
        raise E2BError(401, "Invalid API key: X-API-KEY must be a ROCK API token of this server") from None


def is_e2b(record: SandboxRecord) -> bool:
    return bool(record.spec.get(TOKEN_KEY))


async def control_record(ctx: Ctx, sandbox_id: str, owner: str | None, live: bool = True) -> SandboxRecord:
    """The caller's E2B sandbox; any other (another token's, a killed one) is 404 like a missing one."""
    record = ctx.sandboxes.records.get(sandbox_id)
    if record is None:
        try:
            record = await ctx.sandboxes.lookup(sandbox_id, owner)
        except Exception:  # noqa: BLE001 - every miss reads the same
            record = None
    if (record is None or record.owner != owner or not is_e2b(record)
            or (live and record.state not in ("pending", "running", "paused"))):
        raise E2BError(404, f"sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")
    return record


# -- data plane ---------------------------------------------------------------------------------

def _token_ok(record: SandboxRecord, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(record.spec[TOKEN_KEY].encode(), token.encode())


def signature(path: str, operation: str, user: str, token: str, expiration: int | None) -> str:
    """envd's v1 signature of a /files URL (e2b/sandbox/signature.py)."""
    raw = f"{path}:{operation}:{user}:{token}" + ("" if expiration is None else f":{expiration}")
    return "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()


def _signed(record: SandboxRecord, request: Request, operation: str) -> bool:
    q = request.query_params
    sig, raw_exp = q.get("signature"), q.get("signature_expiration")
    if not sig:
        return False
    try:
        expiration = int(raw_exp) if raw_exp else None
    except ValueError:
        return False
    if expiration is not None and expiration < time.time():
        return False
    want = signature(q.get("path", ""), operation, q.get("username", ""), record.spec[TOKEN_KEY], expiration)
    return hmac.compare_digest(want.encode(), sig.encode())


def data_record(ctx: Ctx, request: Request, operation: str | None = None) -> SandboxRecord:
    """The sandbox a data-plane request is for: by ``E2b-Sandbox-Id``; without it (SDK 2.7-2.25
    after ``Sandbox.connect``) by its ``X-Access-Token``; a signed /files URL by its signature.
    Unknown, not running, or a token that does not match: E2B's 502 "... was not found". A paused
    one is let through when it resumes on a call (``auto_resume``; the service resumes it), and
    otherwise is E2B's 502 too, saying it is paused."""
    headers = request.headers
    # the code interpreter's calls carry the traffic token (we hand out the same one) instead
    sandbox_id = headers.get("e2b-sandbox-id")
    token = next((headers[h] for h in E2B_SANDBOX_TOKEN_HEADERS if headers.get(h)), None)
    records = ctx.sandboxes.records
    candidates = []
    if sandbox_id:
        record = records.get(sandbox_id)
        candidates = [record] if record is not None else []
    else:
        candidates = [r for r in records.values() if r.state in ("running", "paused") and is_e2b(r)]
    for record in candidates:
        if record.state not in ("running", "paused") or not is_e2b(record):
            continue
        if _token_ok(record, token) or (operation is not None and _signed(record, request, operation)):
            if record.state == "paused" and not record.spec.get("auto_resume"):
                raise SandboxGone(record.sandbox_id, paused=True)
            return record
    raise SandboxGone(sandbox_id)


def basic_user(request: Request) -> str | None:
    """envd's user: ``Authorization: Basic base64("<user>:")``, when the SDK sends one."""
    raw = request.headers.get("authorization", "")
    scheme, _, value = raw.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        raise ConnectError("unauthenticated", "the Authorization header is not valid Basic credentials") from None
    return user or None


class Users:
    """(sandbox, user) -> the agent's answer to envd.user ({name, uid, gid, home}), asked once."""

    def __init__(self):
        self.known: dict[tuple[str, str | None], dict] = {}

    async def get(self, agent, sandbox_id: str, user: str | None) -> dict:
        key = (sandbox_id, user)
        info = self.known.get(key)
        if info is None:
            info, _ = await agent.call("envd.user", {"user": user})
            if len(self.known) > 10000:
                self.known.clear()
            self.known[key] = info
        return info


def resolve(path: str, home: str) -> str:
    """envd's paths: ``~`` and relative ones are under the user's home; '..' resolved (inside the sandbox)."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ConnectError("invalid_argument", "path must be a non-empty string without NUL bytes")
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    elif not path.startswith("/"):
        path = posixpath.join(home, path)
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/")
