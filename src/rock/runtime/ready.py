"""The agent's "ready" signal: a line on a FIFO in the sandbox's run folder, waited for without
polling or sleeping."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rock.errors import SandboxStartError
from rock.runtime.agent_boot import READY_NAME


class ReadyFifo:
    """The FIFO a sandbox's agent says it is ready on. Opened before the agent can start: its
    non-blocking write needs a reader, and O_RDWR keeps the FIFO from reporting EOF before it."""

    def __init__(self, run_dir: Path):
        self.fd = os.open(run_dir / READY_NAME, os.O_RDWR | os.O_NONBLOCK)

    async def wait(self, died: list[asyncio.Future], timeout: float) -> None:
        """Wait for the agent's line; fail with the result of whichever of ``died`` completes first."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future = loop.create_future()

        def on_readable() -> None:
            try:
                data = os.read(self.fd, 64)
            except BlockingIOError:
                return
            if data and not ready.done():
                ready.set_result(data)

        loop.add_reader(self.fd, on_readable)
        try:
            done, _ = await asyncio.wait({ready, *died}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if ready in done:
                return
            for future in died:
                if future in done:
                    raise SandboxStartError(f"sandbox exited before its agent was ready: {future.result()}")
            raise SandboxStartError(f"agent not ready after {timeout:.0f}s")
        finally:
            loop.remove_reader(self.fd)

    def close(self) -> None:
        """Close the FIFO's read end."""
        os.close(self.fd)


async def wait_ready(run_dir: Path, died: asyncio.Future | None, timeout: float) -> None:
    """Wait for the agent's ready line; ``died`` completes if the sandbox's first process exits
    first (its result is the reason)."""
    fifo = ReadyFifo(run_dir)
    try:
        await fifo.wait([died] if died is not None else [], timeout)
    finally:
        fifo.close()
