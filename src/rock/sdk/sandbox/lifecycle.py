"""``sandbox.lifecycle``: ROCK's lifecycle calls of the Sandbox SDK beyond start and stop (restart,
archive, commit, a new egress policy); each is callable on the ``Sandbox`` too.

The admin replies to ``restart`` once the sandbox runs again, so nothing here polls on a timer
except ``commit``, which rl-rock defines as "start, then ask for the status until it is done".
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from rock.actions.response import CommitPhase, CommitStatusResponse
from rock.sdk.sandbox.parts import SandboxPart


class Lifecycle(SandboxPart):
    """rl-rock's lifecycle calls beyond start and stop: restart, commit (to an image), archive."""

    async def restart(self) -> None:
        """Start the stopped (or archived) sandbox again: its files are as ``stop()`` left them,
        its processes and sessions start fresh. Returns once it can run commands."""
        context = self._context
        context.placed(await context.http.post("/restart", {"sandbox_id": context.need_id()},
                                               timeout=context.config.startup_timeout + 30))

    async def update_egress(self, egress: str | dict[str, Any]) -> dict[str, Any]:
        """Give the running sandbox a new egress policy: ``"none"``, ``"all"`` or rules
        ``{"allow": [...], "deny": [...], "ports": [...], "default": "deny"}`` (host names, ``*.``
        wildcards, addresses, CIDRs; ports or ranges ``"8000-8100"``). New connections and DNS
        answers follow it at once; a refused policy (malformed, or naming the host) leaves the old
        one. Returns the rules now in force."""
        rules: dict[str, Any] = await self._context.http.post(self._context.at("egress"), {"egress": egress})
        return rules

    async def archive(self) -> None:
        """Archive the stopped sandbox: its files become a local image, its container is freed
        (state ``archiving``, then ``archived``); ``restart()`` brings it back from the image."""
        await self._context.http.post(self._context.at("archive"), {})

    async def commit_async(self, image_tag: str, username: str | None = None,
                           password: str | None = None) -> CommitStatusResponse | None:
        """Start saving the sandbox's files as the image ``image_tag`` (pushed, logged in with
        ``username``/``password``, when the tag names a registry)."""
        sandbox_id = self._context.sandbox_id
        if not sandbox_id:
            return None
        body = {"sandbox_id": sandbox_id, "image_tag": image_tag, "username": username, "password": password}
        return CommitStatusResponse.model_validate(await self._context.http.post("/commit", body))

    async def get_commit_status(self) -> CommitStatusResponse | None:
        """The state of this sandbox's last commit, or None before it has an id."""
        sandbox_id = self._context.sandbox_id
        if not sandbox_id:
            return None
        result = await self._context.http.get(f"/commit/{quote(sandbox_id, safe='')}", {})
        return CommitStatusResponse.model_validate(result)

    async def commit(self, image_tag: str, username: str | None = None, password: str | None = None,
                     timeout: float = 180, interval: float = 2) -> CommitStatusResponse | None:
        """Commit and wait until it succeeded or failed (``phase``)."""

        async def finished() -> CommitStatusResponse | None:
            status = await self.commit_async(image_tag, username, password)
            while status is not None and status.phase == CommitPhase.RUNNING:
                await asyncio.sleep(min(interval, 0.2))  # a commit takes seconds; no need to wait 2 s per look
                status = await self.get_commit_status()
            return status

        return await asyncio.wait_for(finished(), timeout)
