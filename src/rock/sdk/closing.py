"""``with`` and ``async with`` for the SDK's clients: leaving the block closes the client's
connection (never what it manages: sandboxes, endpoints and instances stay)."""

from __future__ import annotations

from typing import TypeVar

C = TypeVar("C")


class Closing:
    """``with client:`` calls ``client.close()`` at the end."""

    def close(self) -> None:
        """Close the client's connection (each client defines what that is)."""
        raise NotImplementedError

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClosing:
    """``async with client:`` awaits ``client.aclose()`` at the end."""

    async def aclose(self) -> None:
        """Close the client's connection (each client defines what that is)."""
        raise NotImplementedError

    async def __aenter__(self: C) -> C:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
