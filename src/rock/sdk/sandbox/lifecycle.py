"""ROCK's lifecycle calls of the Sandbox SDK: restart, archive, commit (``Sandbox`` mixes this in).

The admin replies to ``restart`` once the sandbox runs again, so nothing here polls on a timer
except ``commit``, which rl-rock defines as "start, then ask for the status until it is done".
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from rock.actions.response import CommitPhase, CommitStatusResponse
from rock.sdk.sandbox.parts import SandboxParts


class LifecycleMixin(SandboxParts):
    """rl-rock's lifecycle calls beyond start and stop: restart, commit (to an image), archive."""

    async def restart(self) -> None:
        """Start the stopped (or archived) sandbox again: its files are as ``stop()`` left them,
        its processes and sessions start fresh. Returns once it can run commands."""
        result = await self._http.post("/restart", {"sandbox_id": self._need_id()},
                                       timeout=self.config.startup_timeout + 30)
        self._host_name, self._host_ip = result.get("host_name"), result.get("host_ip")

    async def update_egress(self, egress: str | dict[str, Any]) -> dict[str, Any]:
        """Give the running sandbox a new egress policy: ``"none"``, ``"all"`` or rules
        ``{"allow": [...], "deny": [...], "ports": [...], "default": "deny"}`` (host names, ``*.``
        wildcards, addresses, CIDRs; ports or ranges ``"8000-8100"``). New connections and DNS
        answers follow it at once; a refused policy (malformed, or naming the host) leaves the old
        one. Returns the rules now in force."""
        rules: dict[str, Any] = await self._http.post(f"/sandboxes/{quote(self._need_id(), safe='')}/egress",
                                                      {"egress": egress})
        return rules

    async def archive(self) -> None:
        """Archive the stopped sandbox: its files become a local image, its container is freed
        (state ``archiving``, then ``archived``); ``restart()`` brings it back from the image."""
        await self._http.post(f"/sandboxes/{quote(self._need_id(), safe='')}/archive", {})

    async def commit_async(self, image_tag: str, username: str | None = None,
                           password: str | None = None) -> CommitStatusResponse | None:
        """Start saving the sandbox's files as the image ``image_tag`` (pushed, logged in with
        ``username``/``password``, when the tag names a registry)."""
        if not self._sandbox_id:
            return None
        body = {"sandbox_id": self._sandbox_id, "image_tag": image_tag, "username": username, "password": password}
        return CommitStatusResponse.model_validate(await self._http.post("/commit", body))

    async def get_commit_status(self) -> CommitStatusResponse | None:
        """The state of this sandbox's last commit, or None before it has an id."""
        if not self._sandbox_id:
            return None
        result = await self._http.get(f"/commit/{quote(self._sandbox_id, safe='')}", {})
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
