"""A job's rollouts recorded in the admin as they finish (``/apis/v1/jobs``), so that its UI shows the job live:
the runner opens the job, sends each record and ends it with the summary. The admin being unable to take them
(an older admin, a network error) never stops the job: the records still go to the JSONL file, and the first
failure is said once on the log."""

from __future__ import annotations

import json
import logging

import httpx

from rock.agentic.record import RolloutRecord
from rock.client.config import ClientConfig
from rock.client.pools import async_client

log = logging.getLogger("rock.agentic")
MAX_RECORD = 30 << 20  # under the admin's JSON body limit; a larger record's diff is cut (the file keeps it)


class JobReport:
    """The admin's copy of one job (``job_id`` once ``open`` succeeded; None: nothing is sent)."""

    def __init__(self, base_url: str, token: str | None = None):
        self.client = async_client(ClientConfig(base_url.rstrip("/"), token), timeout=60)
        self.job_id: str | None = None

    async def _post(self, path: str, body: dict) -> dict | None:
        try:
            r = await self.client.post("/apis/v1/jobs" + path, content=json.dumps(body, default=str),
                                       headers={"content-type": "application/json"})
            r.raise_for_status()
            return r.json().get("result")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("the admin did not record job %s (%s): the UI will not show it", self.job_id or "", exc)
            self.job_id = None
            return None

    async def open(self, suite: str, harness: str, policy: str, tasks: int, model: str | None = None,
                   concurrency: int | None = None) -> str | None:
        """Open the job in the admin; its id, or None when the admin does not take it."""
        result = await self._post("", {"suite": suite, "harness": harness, "policy": policy, "tasks": tasks,
                                       "model": model, "concurrency": concurrency})
        self.job_id = (result or {}).get("job_id")
        return self.job_id

    async def add(self, rec: RolloutRecord) -> None:
        """Send one rollout's record (its diff cut when the whole is over MAX_RECORD)."""
        if self.job_id is None:
            return
        body = rec.to_json()
        size = len(json.dumps(body, default=str))
        if size > MAX_RECORD:
            keep = max(0, len(rec.diff) - (size - MAX_RECORD) - 1024)
            body["diff"] = rec.diff[:keep] + "\n… (cut for the admin's copy; the job's file has it all)\n"
        await self._post(f"/{self.job_id}/rollouts", body)

    async def end(self, summary: dict) -> None:
        """End the job with its summary (records left out)."""
        if self.job_id is not None:
            await self._post(f"/{self.job_id}/end", {k: v for k, v in summary.items() if k != "records"})

    async def aclose(self) -> None:
        """Close the connection to the admin."""
        await self.client.aclose()
