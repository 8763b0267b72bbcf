"""Whole-file uploads land under a temporary name beside their target and are renamed into
place once complete: a client that disconnects, or an admin killed midway, leaves no half-written
file at the target path (at most a hidden temporary that names itself as one)."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import uuid
from collections.abc import AsyncIterable


async def write_whole(agent, path: str, chunks: AsyncIterable[bytes], chunk_size: int, mode: int | None = None,
                      append: bool = False, in_place: bool = False) -> int:
    """Write what ``chunks`` yields to ``path`` in the sandbox, in writes of about ``chunk_size``
    bytes; returns the size. The target changes only once every byte is there (except with
    ``append``: then each write goes to the end of the target as it comes; and ``in_place``: the
    target is truncated and written as the bytes come, as envd writes, so that a directory watch
    sees the file itself created and written; a write that fails removes it)."""
    directory, name = posixpath.split(path.rstrip("/"))
    tmp = path if append or in_place else posixpath.join(directory, f".{name[:180]}.rock-upload-{uuid.uuid4().hex[:8]}")
    size, started, buf = 0, append, bytearray()
    try:
        async for chunk in chunks:
            buf += chunk
            if len(buf) >= chunk_size:
                await agent.write_file(tmp, bytes(buf), mode=mode, append=started)
                size, started, buf = size + len(buf), True, bytearray()
        await agent.write_file(tmp, bytes(buf), mode=mode, append=started)
        started = True
        if tmp != path:
            await agent.rename(tmp, path, keep_mode=mode is None)
        return size + len(buf)
    except BaseException:
        # Nothing half-written stays: a temporary, or an in-place target (its old bytes went with
        # the first write's truncation, so removing it loses nothing more).
        if started and (tmp != path or in_place):
            with contextlib.suppress(Exception):
                await asyncio.shield(agent.remove(tmp))
        raise
