"""``sandbox.process``: rl-rock's ``Process.execute_script``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rock.actions import Command, Observation
from rock.errors import RockError

if TYPE_CHECKING:
    from rock.sdk.sandbox.client import Sandbox


class Process:
    """rl-rock's ``sandbox.process``: scripts run in the sandbox."""

    def __init__(self, sandbox: "Sandbox"):
        self.sandbox = sandbox

    async def execute_script(self, script_content: str, script_name: str | None = None, wait_timeout: int = 300,
                             wait_interval: int = 10, cleanup: bool = True) -> Observation:
        """Write the script to /tmp, run it with bash (detached, waited for), remove it after."""
        path = f"/tmp/{script_name or f'script_{time.time_ns()}.sh'}"
        try:
            await self.sandbox.write_bytes(path, script_content.encode())
            return await self.sandbox.arun(f"bash {path}", mode="nohup", wait_timeout=wait_timeout,
                                           wait_interval=wait_interval)
        except (RockError, OSError) as exc:
            message = f"Script execution failed: {exc}"
            return Observation(output=message, exit_code=1, failure_reason=message)
        finally:
            if cleanup:
                try:
                    await self.sandbox.execute(Command(command=["rm", "-f", path]))
                except (RockError, OSError):
                    pass
