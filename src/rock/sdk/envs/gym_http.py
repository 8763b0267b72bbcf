"""The gym sessions' HTTP client: one per session object, blocking, keep-alive.

Per-step calls (reset, step, render) go over the client's lean blocking transport for http://
(a step's round trip is a few hundred microseconds; httpx's per-request work alone costs about
that), everything else over one ``httpx.Client`` (both from ``rock.client.pools``). A daemon thread renews the
session's lease while the object is alive, so a client process that dies stops renewing and
the admin reaps its session.
"""

from __future__ import annotations

import json
import sys
import threading
import weakref
from typing import Any, Callable
from urllib.parse import quote

from rock.client.config import ClientConfig
from rock.client.envelope import raise_for
from rock.client.pools import SyncPool

GYM = "/apis/v1/envs/gym"
TIMEOUT = 600.0


class GymHttp:
    """The HTTP side of a gym session's client: JSON calls over httpx, and each step on a kept-alive
    connection of its own (``rock.client.pools.SyncPool``), one at a time per session object."""

    def __init__(self, base_url: str | None = None, token: str | None = None):
        config = ClientConfig.resolve(base_url, token, read_timeout=TIMEOUT)
        self.base, self.token = config.base_url, config.token
        self.pool = SyncPool(config, GYM, shared=False)
        self.client = self.pool.client

    def twin(self) -> "GymHttp":
        """A client of the same admin with the same token, for another session (a fork's child):
        each session closes its own."""
        return GymHttp(self.base, self.token)

    # -- calls -------------------------------------------------------------------------------

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JSON call under the gym prefix; a 4xx/5xx raises the matching ``EnvError``."""
        response = self.client.request(method, path, json=body)
        if response.status_code >= 400:
            raise_for(response.status_code, response.content)
        reply: dict[str, Any] = response.json()
        return reply

    def value(self, method: str, path: str, data: bytes, content_type: str) -> bytes:
        """A per-step call whose answer is a gymwire body."""
        status, raw = self.pool.send(method, path, data, content_type)
        if status >= 400:
            raise_for(status, raw)
        return raw

    def build_image(self, request: dict[str, Any], progress: Callable[[Any], None]) -> dict[str, Any]:
        """Stream the image build; each progress line goes to ``progress``."""
        with self.client.stream("POST", "/images", json=request) as response:
            if response.status_code >= 400:
                raise_for(response.status_code, response.read())
            for line in response.iter_lines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if "progress" in item:
                    progress(item["progress"])
                elif "error" in item:
                    raise_for(item.get("status", 500), json.dumps(item["error"]).encode())
                elif "image" in item:
                    image: dict[str, Any] = item["image"]
                    return image
        raise ConnectionError("the image build stream ended without a result")

    def close(self) -> None:
        """Close the step connection and the HTTP client (the session itself is closed by its owner)."""
        self.pool.close()


def session_path(session_id: str, tail: str = "") -> str:
    """The URL path of a session (its id quoted), with ``tail`` (``/step``, ``/reset``, ...)."""
    return "/sessions/" + quote(session_id, safe=":") + tail


class LeaseKeeper:
    """Renews a session's lease every ``lease / 3`` seconds until stopped or the owner is gone."""

    def __init__(self, owner: object, http: GymHttp, session_id: str, lease: float) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(weakref.ref(owner), http, session_id, lease / 3),
                                       name=f"rock-gym-lease-{session_id}", daemon=True)
        self.thread.start()

    def _run(self, owner_ref: Callable[[], object], http: GymHttp, session_id: str, every: float) -> None:
        while not self.stopped.wait(every):
            if owner_ref() is None:
                return
            try:
                http.json("POST", session_path(session_id, "/keepalive"))
            except Exception as exc:  # noqa: BLE001 - the next step will say what is wrong
                print(f"rock: gym session {session_id}: lease renewal failed: {exc}", file=sys.stderr)
                if getattr(exc, "status_code", None) == 404:
                    return

    def stop(self) -> None:
        """Stop renewing (the session is closing)."""
        self.stopped.set()
