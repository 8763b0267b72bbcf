"""The sandbox page's file browser: list a folder, download a file, upload into a folder."""

from __future__ import annotations

import posixpath
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, StreamingResponse

from rock.admin.context import Ctx, check_path
from rock.admin.ui import access
from rock.admin.ui.pages import HTML, render
from rock.errors import RockError, SandboxNotFound

CHUNK = 1 << 20


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()

    async def agent(request: Request, sandbox_id: str):
        owner = access.principal(ctx, request)
        try:
            return await ctx.sandboxes.agent(sandbox_id, owner)
        except SandboxNotFound:
            raise access.PageError(404, f"sandbox {sandbox_id} not found") from None
        except RockError as exc:
            raise access.PageError(exc.status_code, exc.message or type(exc).__name__) from None

    def clean(path: str) -> str:
        try:
            return posixpath.normpath(check_path(path))
        except RockError as exc:
            raise access.PageError(400, exc.message) from None

    @api.get("/ui/fragments/files/{sandbox_id}", **HTML)
    async def listing(request: Request, sandbox_id: str, path: str = Query("/", min_length=1)):
        """A folder of a running sandbox: folders first, then files, each with its size."""
        client = await agent(request, sandbox_id)
        path = clean(path)
        try:
            entries = await client.list_dir(path)
            error = None
        except RockError as exc:
            entries, error = [], exc.message or type(exc).__name__
        entries.sort(key=lambda e: (e["type"] != "dir", e["name"]))
        parent = posixpath.dirname(path.rstrip("/")) or "/"
        return render(request, "_files.html", sandbox_id=sandbox_id, path=path, parent=parent, entries=entries,
                      error=error)

    @api.get("/ui/sandboxes/{sandbox_id}/download", tags=["ui"], response_class=StreamingResponse, responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes, as an attachment"}})
    async def download(request: Request, sandbox_id: str, path: str = Query(min_length=1)):
        """One file of a sandbox, streamed in chunks (any size)."""
        client = await agent(request, sandbox_id)
        path = clean(path)
        try:
            info = await client.stat(path)
        except RockError as exc:
            raise access.PageError(exc.status_code, exc.message or "cannot read that path") from None
        if info.get("type") != "file":
            raise access.PageError(400, f"{path} is not a regular file; download folders as tar from the API")

        async def chunks():
            offset = 0
            while True:
                data = await client.read_file(path, offset=offset, length=CHUNK)
                if not data:
                    return
                yield data
                offset += len(data)

        name = posixpath.basename(path) or "file"
        return StreamingResponse(chunks(), media_type="application/octet-stream", headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "content-length": str(info["size"])})

    @api.post("/ui/sandboxes/{sandbox_id}/upload", response_class=HTMLResponse, tags=["ui"],
              responses={303: {"description": "back to the folder"}})
    async def upload(request: Request, sandbox_id: str, file: UploadFile = File(),
                     folder: str = Form("/", description="empty: the root")):
        """Put one file into a folder of the sandbox (multipart form: ``file``, ``folder``)."""
        access.same_origin(request)
        client = await agent(request, sandbox_id)
        folder = clean(folder)
        name = posixpath.basename(file.filename or "")
        if not name or name in (".", ".."):
            raise access.PageError(400, "the uploaded file needs a name")
        target = posixpath.join(folder, name)
        written = False
        while True:  # streamed in chunks: the form parser spooled the file to disk, not memory
            data = await file.read(CHUNK)
            if written and not data:
                break
            try:
                await client.write_file(target, data, append=written)
            except RockError as exc:  # e.g. a read-only folder: said on a page, not as JSON
                raise access.PageError(exc.status_code, f"could not write {target}: {exc.message}") from None
            written = True
        return RedirectResponse(f"/ui/sandboxes/{sandbox_id}?path={quote(folder)}#files", status_code=303)

    return api
