"""A sandbox, a persistent bash session and a command (seed 000's basic operations).

Run against a running admin: `rock admin start`, then `python examples/sandbox.py`
(ROCK_BASE_URL names another admin; the default is http://localhost:8080).
"""

import asyncio

from rock.actions import CreateBashSessionRequest
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig


async def main() -> None:
    sandbox = Sandbox(SandboxConfig(image="python:3.11", memory="1g", cpus=1.0))
    await sandbox.start()
    try:
        await sandbox.create_session(CreateBashSessionRequest(session="bash-1"))
        await sandbox.arun(cmd="cd /tmp && export GREETING='Hello ROCK'", session="bash-1")
        result = await sandbox.arun(cmd='echo "$GREETING from $(pwd)"', session="bash-1")  # the session remembers
        print(result.output.strip(), f"(exit {result.exit_code})")
        assert result.output.strip() == "Hello ROCK from /tmp"
        failed = await sandbox.arun(cmd="ls /nowhere", session="bash-1")
        print(f"a failing command: exit {failed.exit_code}")
        assert failed.exit_code != 0
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    asyncio.run(main())
