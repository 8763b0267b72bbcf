"""Request body limits, enforced before a handler reads anything.

A declared ``Content-Length`` over the limit is answered 413 at once, without reading the
body; a chunked body is counted as it streams and cut off at the limit. Routes that stream
uploads straight into a sandbox get a larger limit, since they never hold the body in memory.
"""

from __future__ import annotations

from rock.admin.errors import error_body
from rock.errors import PayloadTooLarge

MAX_JSON_BODY = 32 << 20
MAX_UPLOAD_BODY = 1 << 30  # multipart: spooled to disk by the form parser, then streamed to the sandbox
MAX_STREAM_BODY = 16 << 30  # raw streaming routes: forwarded chunk by chunk


def limit_for(path: str) -> int:
    if path.endswith(("/files/write", "/files/upload_tar", "/images/build")):
        return MAX_STREAM_BODY
    if path.endswith("/upload") or path == "/files":  # /files: E2B's uploads
        return MAX_UPLOAD_BODY
    return MAX_JSON_BODY


class BodyLimit:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    return await self._reject(send, declared, limit)
                # A declared length the server enforces itself: no counting needed.
                return await self.app(scope, receive, send)

        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes for this route")
            return message

        return await self.app(scope, counted, send)

    @staticmethod
    async def _reject(send, declared: int, limit: int) -> None:
        if declared < 0:
            message, status = "invalid Content-Length header", 400
        else:
            message, status = f"request body of {declared} bytes exceeds the limit of {limit} bytes for this route", 413
        body = error_body(status, message, "PayloadTooLarge" if status == 413 else "BadRequest")
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
