"""The one decoder of the admin's answers: JSON in and out, and a failed answer as the exception
the admin raised.

ROCK's envelope is ``{"status": "Success"|"Failed", "message", "error", "result"}``; a failure's
``result.error_type`` names the ``rock.errors`` type, so ``except SandboxNotFound`` works on the
client as on the server. Env and training routes answer raw bodies and use the same failure shape.
"""

from __future__ import annotations

import json
from typing import Any

from rock.errors import ENV_STATUS, ERRORS, AgentError, EnvError, RockError
from rock.sdk.common.exceptions import CommandRockError

try:  # a declared dependency, several times faster than the stdlib on every call; optional all the same
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]


def loads(raw: bytes) -> Any:
    """JSON from bytes: orjson where installed, else the standard library (NaN and big ints included)."""
    if orjson is not None:
        try:
            return orjson.loads(raw)
        except ValueError:  # NaN/Infinity (json.dumps writes them for float rewards), huge ints
            pass
    return json.loads(raw)


def dumps(body: Any) -> bytes:
    """Compact JSON bytes: orjson where it can, else the standard library."""
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
    result: dict[str, Any] = payload["result"] if isinstance(payload.get("result"), dict) else {}
    message = payload.get("message") or payload.get("error") or result.get("failure_reason") or f"HTTP {status_code}"
    if result.get("code") == 6000:  # a command that failed under check="raise": the SDK's own error type
        from rock.actions import Observation

        return CommandRockError(payload.get("error") or message, observation=Observation.model_validate(result))
    kind = result.get("error_type") or "RockError"
    cls = ERRORS.get(kind)
    exc: RockError
    if cls is None or cls is AgentError:
        exc = AgentError(message, kind=kind)
    else:
        exc = cls(message)
    if status_code >= 400:
        exc.status_code = status_code
    return exc


def unwrap_bytes(status_code: int, raw: bytes) -> Any:
    """The ``result`` of an envelope, or the error it carries raised."""
    try:
        payload = loads(raw)
    except ValueError:
        raise error_from(status_code, None, raw.decode(errors="replace")) from None
    if status_code < 400 and isinstance(payload, dict) and payload.get("status") == "Success":
        return payload.get("result")
    raise error_from(status_code, payload)


def raise_for(status: int, raw: bytes) -> None:
    """A failed raw (env or training) reply as the error the service raised: ``EnvError`` with its
    ``kind`` for an env's failure, else the envelope's type."""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("result"), dict):
        kind = payload["result"].get("error_type")
    else:
        kind = None
    if kind in ENV_STATUS:
        assert isinstance(payload, dict)
        exc = EnvError(payload.get("message") or kind, kind)
        exc.status_code = status
        raise exc
    raise error_from(status, payload, raw.decode(errors="replace"))
