"""``sandbox.files``: the file operations of the Sandbox SDK, ROCK's text calls plus binary-safe
reads, writes, uploads of any size and downloads of files or whole directories (as tar). Each is
callable on the ``Sandbox`` too (``sandbox.read_file`` is ``sandbox.files.read_file``)."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rock.actions import ReadFileRequest, ReadFileResponse, UploadRequest, UploadResponse, WriteFileRequest
from rock.actions import WriteFileResponse
from rock.errors import BadRequest
from rock.client.http import unwrap
from rock.sdk.sandbox.parts import SandboxPart

_CHUNK = 1 << 20


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    # Read in a thread: a large local file must not block the caller's event loop.
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, _CHUNK):
            yield chunk


async def _tar_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local directory as a tar stream, built in a spooled temp file off the event loop."""
    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)

    def build() -> None:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            for child in sorted(path.iterdir()):
                tar.add(child, arcname=child.name)
        spool.seek(0)

    try:
        await asyncio.to_thread(build)
        while chunk := await asyncio.to_thread(spool.read, _CHUNK):
            yield chunk
    finally:
        spool.close()


class Files(SandboxPart):
    """The sandbox's file operations (ROCK's text calls, and ours for bytes, directories and downloads)."""

    # -- ROCK's calls (text) ----------------------------------------------------------------

    async def read_file(self, request: ReadFileRequest) -> ReadFileResponse:
        """ROCK's ``read_file``: a text file's content."""
        body = {"sandbox_id": self._context.need_id(), "path": request.path, "encoding": request.encoding,
                "errors": request.errors}
        return ReadFileResponse.model_validate(await self._context.http.post("/read_file", body))

    async def write_file(self, request: WriteFileRequest) -> WriteFileResponse:
        """ROCK's ``write_file``: write text to a path."""
        return await self.write_file_by_path(request.content, request.path)

    async def write_file_by_path(self, content: str, path: str) -> WriteFileResponse:
        """ROCK's ``write_file_by_path``: write ``content`` to ``path``."""
        body = {"sandbox_id": self._context.need_id(), "path": path, "content": content}
        return WriteFileResponse.model_validate(await self._context.http.post("/write_file", body))

    async def upload(self, request: UploadRequest) -> UploadResponse:
        """ROCK's ``upload``: a local file to a path in the sandbox."""
        return await self.upload_by_path(request.source_path, request.target_path)

    async def upload_by_path(self, file_path: str | Path, target_path: str, upload_mode: Any = None) -> UploadResponse:
        """Upload a local file or directory (any size, streamed; no bucket needed)."""
        source = Path(file_path)
        if not source.exists():
            return UploadResponse(success=False, message=f"File not found: {source}")
        if source.is_dir():
            await self.upload_dir(source, target_path)
        else:
            await self._put("/files/write", {"path": target_path}, _file_chunks(source))
        return UploadResponse(success=True, message=f"uploaded {source} to {target_path}",
                              file_name=Path(target_path).name)

    # -- ours: binary-safe files and directories --------------------------------------------

    async def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes (all by default) of a file from ``offset``, binary-safe."""
        params = {"sandbox_id": self._context.need_id(), "path": path, "offset": offset, "length": length}
        return (await self._context.http.raw_get("/files/read", params)).content

    async def write_bytes(self, path: str, data: bytes, mode: int | None = None, append: bool = False) -> int:
        """Write (or ``append``) bytes to a file, with ``mode`` if given; the bytes written."""
        params = {"path": path, "append": str(append).lower()}
        if mode is not None:
            params["mode"] = format(mode, "o")
        size: int = (await self._put("/files/write", params, data))["size"]
        return size

    async def upload_dir(self, local_dir: str | Path, target_dir: str) -> dict[str, Any]:
        """Upload a local directory (as a streamed tar) into ``target_dir``."""
        return await self._put("/files/upload_tar", {"path": target_dir}, _tar_chunks(Path(local_dir)))

    async def download(self, path: str, local_path: str | Path, skip_links: bool = False) -> Path:
        """Download a file (to ``local_path``) or a directory (into ``local_path``). A symbolic
        link that points outside it (or anywhere absolute) is refused, or with ``skip_links``
        every symbolic link is left out."""
        local = Path(local_path)
        params = {"sandbox_id": self._context.need_id(), "path": path}
        spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        try:
            async with self._context.http.client.stream("GET", "/files/download", params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    unwrap(response)
                async for chunk in response.aiter_raw():
                    spool.write(chunk)
            spool.seek(0)
            await asyncio.to_thread(_extract, spool, local, skip_links)
        finally:
            spool.close()
        return local

    async def _put(self, route: str, params: dict[str, Any], content: Any) -> dict[str, Any]:
        params = {"sandbox_id": self._context.need_id(), **params}
        response = await self._context.http.client.put(route, params=params, content=content)
        result: dict[str, Any] = unwrap(response)
        return result


def _extract(fileobj: io.IOBase, local: Path, skip_links: bool = False) -> None:
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        members = [m for m in tar.getmembers() if not (skip_links and m.issym())]
        if not members:
            raise BadRequest("the download was empty")
        for m in members:  # never write outside the target, whatever the archive says
            if m.name.startswith("/") or ".." in Path(m.name).parts or m.issym() and os.path.isabs(m.linkname):
                raise BadRequest(f"refusing unsafe path in archive: {m.name}")
        top = members[0]
        if len(members) == 1 and top.isfile():
            local.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(top)
            assert src is not None  # a regular file's member has its bytes
            with open(local, "wb") as f:
                while chunk := src.read(_CHUNK):
                    f.write(chunk)
            return
        # The archive holds the directory itself ("name/..."): its contents go into ``local``.
        prefix = top.name.rstrip("/") + "/"
        inner = []
        for m in members[1:]:
            if m.name.startswith(prefix):
                m.name = m.name[len(prefix):]
                if m.islnk():  # a hard link names another member: it moves with the members
                    if not m.linkname.startswith(prefix):
                        continue
                    m.linkname = m.linkname[len(prefix):]
                inner.append(m)
        local.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(local, members=inner, filter="data")
        else:  # pragma: no cover - Python before 3.10.12 / 3.11.4
            tar.extractall(local, members=inner)
