"""envd's ``filesystem.Filesystem`` service and its plain HTTP part (``/files``, ``/health``) onto
the agent's file operations (``file.read``/``file.write``, as ROCK's own routes use them) and
the envd filesystem ops (rock/agent/e2b/filesystem.py)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime, timezone
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rock.admin.context import Ctx
from rock.admin.e2b.common import Users, route, basic_user, data_record, resolve
from rock.admin.e2b.connect import Feed, keepalive_of, stream_messages, stream_response, unary_message
from rock.admin.e2b.errors import from_rock
from rock.admin.e2b.framing import json_response
from rock.admin.uploads import write_whole
from rock.errors import AgentError, ConnectError, E2BError, PayloadTooLarge, SandboxGone

CHUNK = 4 << 20  # file.read / file.write pieces: a large file never sits whole in one frame
# What one inflate step may produce. Small: a bomb's pieces are made in the thread pool, and
# each thread's allocator keeps what it once held (4 MiB pieces: the admin peaked ~45 MB over idle
# on a 1 GiB bomb).
INFLATE_PIECE = 1 << 20
MAX_INFLATED = 1 << 30
EVENT_TYPES = {"create": "EVENT_TYPE_CREATE", "write": "EVENT_TYPE_WRITE", "remove": "EVENT_TYPE_REMOVE",
               "rename": "EVENT_TYPE_RENAME", "chmod": "EVENT_TYPE_CHMOD"}


def entry_info(e: dict) -> dict:
    out = {"name": e["name"], "type": "FILE_TYPE_DIRECTORY" if e["type"] == "dir" else "FILE_TYPE_FILE",
           "path": e["path"], "size": str(e["size"]), "mode": e["mode"], "permissions": e["permissions"],
           "owner": e["owner"], "group": e["group"],
           "modifiedTime": datetime.fromtimestamp(e["mtime"], timezone.utc).isoformat().replace("+00:00", "Z")}
    if e.get("symlink"):
        out.update(symlinkTarget=e["target"], isSymlink=True)
    return out


def fs_event(event: dict) -> dict:
    out = {"name": event["name"], "type": EVENT_TYPES[event["type"]]}
    if event.get("entry"):
        out["entry"] = entry_info(event["entry"])
    return out


def router(ctx: Ctx, users: Users) -> APIRouter:
    api = APIRouter()
    svc = ctx.sandboxes

    async def open_(request: Request, user: str | None, operation: str | None = None):
        """(record, agent, the user's {name, uid, gid, home})."""
        record = data_record(ctx, request, operation)
        try:
            agent = await svc.agent(record.sandbox_id, record.owner)
            return record, agent, await users.get(agent, record.sandbox_id, user)
        except Exception as exc:  # noqa: BLE001
            raise from_rock(exc, record.sandbox_id) from None

    async def call(request: Request, op: str, path_keys: tuple[str, ...], msg: dict, extra: dict | None = None):
        record, agent, user = await open_(request, basic_user(request))
        args = {key: resolve(msg.get(key), user["home"]) for key in path_keys}
        args.update(uid=user["uid"], gid=user["gid"], **(extra or {}))
        try:
            return (await agent.call(op, args))[0]
        except Exception as exc:  # noqa: BLE001
            raise from_rock(exc, record.sandbox_id) from None

    async def one_entry(request: Request, op: str, path_keys: tuple[str, ...] = ("path",)):
        """The answer of the ops that touch one entry (stat, mkdir, move): that entry's info."""
        result = await call(request, op, path_keys, await unary_message(request))
        return json_response({"entry": entry_info(result["entry"])})

    @route(api, "/filesystem.Filesystem/Stat", "POST")
    async def stat(request: Request):
        return await one_entry(request, "envdfs.stat")

    @route(api, "/filesystem.Filesystem/ListDir", "POST")
    async def list_dir(request: Request):
        msg = await unary_message(request)
        depth = msg.get("depth") or 1
        if not isinstance(depth, int) or depth < 0:
            raise ConnectError("invalid_argument", "depth must be a non-negative integer")
        result = await call(request, "envdfs.list", ("path",), msg, {"depth": depth})
        return json_response({"entries": [entry_info(e) for e in result["entries"]]})

    @route(api, "/filesystem.Filesystem/MakeDir", "POST")
    async def make_dir(request: Request):
        return await one_entry(request, "envdfs.mkdir")

    @route(api, "/filesystem.Filesystem/Move", "POST")
    async def move(request: Request):
        return await one_entry(request, "envdfs.move", ("source", "destination"))

    @route(api, "/filesystem.Filesystem/Remove", "POST")
    async def remove(request: Request):
        await call(request, "envdfs.remove", ("path",), await unary_message(request))
        return json_response({})

    def _watch_args(msg: dict) -> dict:
        return {"recursive": bool(msg.get("recursive")),
                "include_entry": bool(msg.get("includeEntry", msg.get("include_entry")))}

    @route(api, "/filesystem.Filesystem/CreateWatcher", "POST")
    async def create_watcher(request: Request):
        msg = await unary_message(request)
        result = await call(request, "envdfs.watch", ("path",), msg, _watch_args(msg))
        return json_response({"watcherId": result["watcher_id"]})

    def _watcher(msg: dict) -> dict:
        wid = msg.get("watcherId", msg.get("watcher_id"))
        if not isinstance(wid, str) or not wid:
            raise ConnectError("invalid_argument", "watcherId is required")
        return {"watcher_id": wid}

    @route(api, "/filesystem.Filesystem/GetWatcherEvents", "POST")
    async def watcher_events(request: Request):
        msg = await unary_message(request)
        result = await call(request, "envdfs.events", (), msg, _watcher(msg))
        return json_response({"events": [fs_event(e) for e in result["events"]]})

    @route(api, "/filesystem.Filesystem/RemoveWatcher", "POST")
    async def remove_watcher(request: Request):
        msg = await unary_message(request)
        await call(request, "envdfs.unwatch", (), msg, _watcher(msg))
        return json_response({})

    @route(api, "/filesystem.Filesystem/WatchDir", "POST")
    async def watch_dir(request: Request):
        msg = (await stream_messages(request))[0]
        record, agent, user = await open_(request, basic_user(request))
        args = {"path": resolve(msg.get("path"), user["home"]), "timeout": None, **_watch_args(msg)}
        feed = Feed()
        first = asyncio.get_running_loop().create_future()  # the watch's first event, or its end

        def on_event(meta: dict, body: bytes) -> None:
            if not first.done():  # the agent's first event says the watch is set: envd's start
                first.set_result(True)
                feed.push({"start": {}})
            else:
                feed.push({"filesystem": fs_event(meta["fs"])})

        def ended(_) -> None:
            if not first.done():
                first.set_result(False)
            feed.end()

        watching = asyncio.ensure_future(agent.call("envdfs.watch_stream", args, on_event=on_event))
        watching.add_done_callback(ended)
        if not await first:  # refused before it started (missing path, not a directory)
            try:
                watching.result()
            except Exception as exc:  # noqa: BLE001
                raise from_rock(exc, record.sandbox_id) from None

        async def closed():
            watching.cancel()

        return stream_response(feed, {"keepalive": {}}, keepalive_of(request), closed)

    # -- /files ------------------------------------------------------------------------------

    @route(api, "/files", "GET")
    async def download(request: Request):
        q = request.query_params
        record, agent, user = await open_(request, q.get("username") or basic_user(request), "read")
        path = resolve(q.get("path") or "", user["home"])
        try:
            info = (await agent.call("envdfs.stat", {"path": path}))[0]["entry"]
        except AgentError as exc:
            if exc.kind in ("FileNotFound", "NotFound"):
                raise E2BError(404, f"path '{path}' does not exist") from None
            raise E2BError(400, exc.message) from None
        except Exception as exc:  # noqa: BLE001
            raise from_rock(exc, record.sandbox_id) from None
        if info["type"] == "dir":
            raise E2BError(400, f"path '{path}' is a directory")
        try:  # the first piece before the answer's head: what cannot be read (a dangling link) is a 4xx, not a cut 200
            first = await agent.read_file(path, 0, CHUNK)
        except AgentError as exc:
            if exc.kind in ("FileNotFound", "NotFound"):
                raise E2BError(404, f"path '{path}' cannot be read: {exc.message}") from None
            raise E2BError(400, f"path '{path}' cannot be read: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001
            raise from_rock(exc, record.sandbox_id) from None
        zipped = "gzip" in request.headers.get("accept-encoding", "")

        async def content():
            packer = zlib.compressobj(6, zlib.DEFLATED, 31) if zipped else None
            offset = 0
            while True:
                data = first if offset == 0 else await agent.read_file(path, offset, CHUNK)
                if not data:
                    break
                offset += len(data)
                yield packer.compress(data) if packer is not None else data
            if packer is not None:
                yield packer.flush()

        headers = {"Content-Disposition": f"inline; filename*=UTF-8''{quote(info['name'])}"}
        if zipped:
            headers["Content-Encoding"] = "gzip"
        return StreamingResponse(content(), media_type="application/octet-stream", headers=headers)

    async def write(agent, user: dict, path: str, chunks) -> dict:
        """Stream ``chunks`` to ``path`` (in place, as envd writes), owned by ``user``."""
        await write_whole(agent, path, chunks, CHUNK, in_place=True)
        if user["uid"] is not None:
            await agent.call("envdfs.chown", {"paths": [path], "uid": user["uid"], "gid": user["gid"]})
        return {"name": path.rsplit("/", 1)[-1], "type": "file", "path": path}

    @route(api, "/files", "POST")
    async def upload(request: Request):
        # Nothing here holds a body whole: a multipart part is spooled to disk by the form parser
        # and read back in pieces; an octet-stream body (and its inflated gzip) goes to the
        # sandbox piece by piece as it arrives, its size checked as it grows.
        q = request.query_params
        record, agent, user = await open_(request, q.get("username") or basic_user(request), "write")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        written = []
        try:
            if kind == "multipart/form-data":
                async with request.form(max_fields=16) as form:
                    parts = [p for p in form.getlist("file") if hasattr(p, "read")]
                    if not parts:
                        raise E2BError(400, "the multipart body has no 'file' part")
                    for part in parts:
                        target = q.get("path") if len(parts) == 1 and q.get("path") else part.filename
                        if not target:
                            raise E2BError(400, "no path: give ?path= or the part's filename")
                        written.append(await write(agent, user, resolve(target, user["home"]), _pieces(part)))
            elif kind in ("application/octet-stream", ""):
                if not q.get("path"):
                    raise E2BError(400, "an octet-stream upload needs ?path=")
                chunks = request.stream()
                if request.headers.get("content-encoding", "").lower() == "gzip":
                    chunks = gunzip_stream(chunks, MAX_INFLATED)
                written.append(await write(agent, user, resolve(q["path"], user["home"]), chunks))
            else:
                raise E2BError(415, f"content type {kind!r}: send multipart/form-data or application/octet-stream")
        except AgentError as exc:
            # envd's upload answers: 401 for a path the user may not write, 507 for a full disk, else 400
            status = 401 if exc.kind == "PermissionDenied" else 507 if exc.kind == "NoSpace" else 400
            raise E2BError(status, exc.message) from None
        except ConnectError as exc:
            raise E2BError(400, exc.message) from None
        except PayloadTooLarge as exc:  # a chunked body past the route's limit (rock.admin.limits)
            raise E2BError(413, exc.message) from None
        except (E2BError, SandboxGone):
            raise
        except Exception as exc:  # noqa: BLE001
            raise from_rock(exc, record.sandbox_id) from None
        return json_response(written)

    return api


async def _pieces(part):
    while data := await part.read(CHUNK):
        yield data


async def gunzip_stream(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    """Inflate a gzip body as it arrives, in pieces of at most ``INFLATE_PIECE`` bytes, refusing (413) as
    soon as the inflated size passes ``limit``: a small bomb never inflates in memory. Inflating
    runs in a thread (zlib lets go of the GIL), so other callers are served meanwhile."""
    d, total = zlib.decompressobj(31), 0
    try:
        async for chunk in chunks:
            while chunk:
                if d.eof:
                    raise E2BError(400, "the body has data after the end of its gzip stream")
                out = await asyncio.to_thread(d.decompress, chunk, INFLATE_PIECE)
                total += len(out)
                if total > limit:
                    raise E2BError(413, f"the gzip body inflates past {limit >> 20} MiB, the limit of an upload")
                if out:
                    yield out
                chunk = d.unconsumed_tail
        if not d.eof:
            raise E2BError(400, "the body is not valid gzip: it ends before its gzip stream does")
    except zlib.error:
        raise E2BError(400, "the body is not valid gzip") from None


async def envd_health(ctx: Ctx, request: Request) -> Response:
    """envd's GET /health: 204 while the sandbox runs, E2B's 502 "... was not found" after."""
    data_record(ctx, request)
    return Response(status_code=204)

