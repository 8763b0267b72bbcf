"""``sandbox.fs``: rl-rock's file-system helpers (chown, chmod, upload_dir, download_file).

Same names, arguments and results as rl-rock's ``LinuxFileSystem``; the transfers use our
binary-safe routes (a streamed tar, a streamed download) instead of a cloud bucket.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rock.actions import ChmodRequest, ChmodResponse, ChownRequest, ChownResponse, Command, DownloadFileResponse
from rock.actions import Observation
from rock.errors import BadRequest, RockError

if TYPE_CHECKING:
    from rock.sdk.sandbox.client import Sandbox

log = logging.getLogger("rock.sdk")


class LinuxFileSystem:
    """rl-rock's ``sandbox.fs``: chown, chmod, directory upload and file download, by commands run in the sandbox."""

    def __init__(self, sandbox: "Sandbox"):
        self.sandbox = sandbox

    async def _run(self, argv: list[str]) -> tuple[bool, str]:
        r = await self.sandbox.execute(Command(command=argv))
        return r.exit_code == 0, (r.stdout + r.stderr).strip() or f"exit code {r.exit_code}"

    async def chown(self, request: ChownRequest) -> ChownResponse:
        """``chown [-R] user:user paths...`` inside the sandbox."""
        if not request.paths:
            raise BadRequest("paths is empty: name at least one path to chown")
        ok, message = await self._run(["chown", *(["-R"] if request.recursive else []),
                                       f"{request.remote_user}:{request.remote_user}", *request.paths])
        return ChownResponse(success=ok, message=message)

    async def chmod(self, request: ChmodRequest) -> ChmodResponse:
        """``chmod [-R] mode paths...`` inside the sandbox."""
        if not request.paths:
            raise BadRequest("paths is empty: name at least one path to chmod")
        ok, message = await self._run(["chmod", *(["-R"] if request.recursive else []), request.mode, *request.paths])
        return ChmodResponse(success=ok, message=message)

    async def upload_dir(self, source_dir: str | Path, target_dir: str, extract_timeout: int = 600) -> Observation:
        """Replace ``target_dir`` in the sandbox with the contents of the local ``source_dir``."""
        src = Path(source_dir).expanduser().resolve()
        if not src.is_dir():
            return Observation(exit_code=1, failure_reason=f"source_dir must be an existing directory: {src}")
        if not isinstance(target_dir, str) or not target_dir.startswith("/"):
            return Observation(exit_code=1, failure_reason=f"target_dir must be absolute path: {target_dir}")
        try:
            ok, message = await self._run(["sh", "-c", 'rm -rf "$0" && mkdir -p "$0"', target_dir])
            if not ok:
                return Observation(exit_code=1, failure_reason=f"cannot replace {target_dir}: {message}")
            result = await self.sandbox.upload_dir(src, target_dir)
        except (RockError, OSError) as exc:
            return Observation(exit_code=1, failure_reason=f"upload_dir failed: {exc}")
        return Observation(exit_code=0, output=f"uploaded {src} -> {target_dir} ({result.get('files', '?')} files)")

    async def download_file(self, remote_path: str, local_path: str | Path) -> DownloadFileResponse:
        """Copy one file out of the sandbox to ``local_path`` (streamed, any size, binary-safe)."""
        try:
            where = await self.sandbox.download(remote_path, local_path)
        except (RockError, OSError) as exc:
            return DownloadFileResponse(success=False, message=f"downloading {remote_path} failed: {exc}")
        return DownloadFileResponse(success=True, message=f"downloaded {remote_path} to {where}")
