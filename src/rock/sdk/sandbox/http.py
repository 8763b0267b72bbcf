"""The SDK's one pooled HTTP client per object, and the envelope -> exception mapping.

Errors come back as the same rock.errors types the admin raised (by the envelope's
``error_type``), so ``except SandboxNotFound`` works on the client as on the server.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from rock.errors import ERRORS, AgentError, RockError
from rock.sdk.common.exceptions import CommandRockError
from rock.sdk.transport import LeanTransport

PREFIX = "/apis/envs/sandbox/v1"


try:  # a declared dependency, several times faster than the stdlib on every call; optional all the same
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


def _loads(raw: bytes) -> Any:
    return orjson.loads(raw) if orjson is not None else json.loads(raw)


def _dumps(body: dict) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(body)
        except TypeError:  # what orjson refuses and JSON allows: integers past 64 bits, lone surrogates
            pass
    return json.dumps(body, separators=(",", ":")).encode()


def error_from(status_code: int, payload: Any, fallback: str = "") -> RockError:
    """Rebuild the server's exception from a failed envelope (or a non-JSON error body)."""
    if not isinstance(payload, dict):
        return RockError(f"HTTP {status_code}: {fallback[:300]}")
    result = payload.get("result") if isinstance(payload.get("result"), dict) else {}
    message = payload.get("message") or payload.get("error") or result.get("failure_reason") or f"HTTP {status_code}"
    if result.get("code") == 6000:
        from rock.actions import Observation

        return CommandRockError(payload.get("error") or message, observation=Observation.model_validate(result))
    kind = result.get("error_type") or "RockError"
    cls = ERRORS.get(kind)
    if cls is None or cls is AgentError:
        exc: RockError = AgentError(message, kind=kind)
    else:
        exc = cls(message)
    if status_code >= 400:
        exc.status_code = status_code
    return exc


def unwrap(response: httpx.Response) -> Any:
    """The ``result`` of ROCK's envelope, or the SDK's error type raised from a failed answer."""
    return _unwrap_bytes(response.status_code, response.content)


def _unwrap_bytes(status_code: int, raw: bytes) -> Any:
    try:
        payload = _loads(raw)
    except ValueError:
        raise error_from(status_code, None, raw.decode(errors="replace")) from None
    if status_code < 400 and isinstance(payload, dict) and payload.get("status") == "Success":
        return payload.get("result")
    raise error_from(status_code, payload)


class Http:
    """One httpx.AsyncClient (over the lean keep-alive transport) for one SDK object.

    JSON posts to a plain ``http://`` admin take a byte-level fast path on the same connection
    pool; everything else (streams, uploads, https) goes through httpx.
    """

    def __init__(self, base_url: str, headers: dict[str, str], read_timeout: float | None, prefix: str = PREFIX):
        self.base = base_url.rstrip("/") + prefix
        self.headers = headers
        self.read_timeout = read_timeout
        self.transport = LeanTransport()
        self.client = httpx.AsyncClient(
            base_url=self.base, headers=headers, transport=self.transport,
            timeout=httpx.Timeout(connect=30.0, read=read_timeout, write=300.0, pool=30.0),
        )
        url = httpx.URL(self.base)
        self._fast = url.scheme == "http"
        self._addr = (url.host, url.port or 80)
        self._path = url.raw_path.rstrip(b"/")
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        fixed = {"host": host, "accept": "*/*", "content-type": "application/json", **headers}
        self._head = b"".join(f"{k}: {v}\r\n".encode() for k, v in fixed.items())

    @classmethod
    def for_config(cls, config) -> "Http":
        """A client for the admin a ``SandboxConfig`` names: its URL, its headers
        (``SandboxConfig.headers()``) and its read timeout."""
        return cls(config.base_url, config.headers(), config.request_timeout)

    async def post(self, path: str, body: dict, timeout: float | None | object = httpx.USE_CLIENT_DEFAULT) -> Any:
        """POST ``body`` as JSON to ``path`` under the sandbox API; the envelope's result."""
        data = _dumps(body)
        read_timeout = self.read_timeout if timeout is httpx.USE_CLIENT_DEFAULT else timeout
        if not self._fast:
            return unwrap(await self.client.post(path, content=data, timeout=timeout,
                                                 headers={"content-type": "application/json"}))
        payload = b"POST %s%s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (
            self._path, path.encode(), self._head, len(data), data)
        status, raw = await self.transport.request_bytes(self._addr[0], self._addr[1], payload, read_timeout)
        return _unwrap_bytes(status, raw)

    async def get(self, path: str, params: dict) -> Any:
        """GET ``path`` with query ``params``; the envelope's result."""
        return unwrap(await self.client.get(path, params={k: v for k, v in params.items() if v is not None}))

    async def delete(self, path: str) -> Any:
        """DELETE ``path``; the envelope's result."""
        return unwrap(await self.client.delete(path))

    async def raw_get(self, path: str, params: dict) -> httpx.Response:
        """GET ``path`` streamed, for bytes (errors raised as with ``get``)."""
        response = await self.client.get(path, params={k: v for k, v in params.items() if v is not None})
        if response.status_code >= 400:
            unwrap(response)
        return response

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.client.aclose()
