"""``with`` and ``async with`` for the SDK's clients: leaving the block closes the client's
connection (never what it manages: sandboxes, endpoints and instances stay)."""

from __future__ import annotations


class Closing:
    """``with client:`` calls ``client.close()`` at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClosing:
    """``async with client:`` awaits ``client.aclose()`` at the end."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
