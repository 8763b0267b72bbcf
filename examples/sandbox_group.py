"""Several sandboxes started and stopped together (seed 000's SandboxGroup).

Run against a running admin: `rock admin start`, then `python examples/sandbox_group.py`.
"""

import asyncio

from rock.actions import Action
from rock.sdk.sandbox.client import SandboxGroup
from rock.sdk.sandbox.config import SandboxGroupConfig


async def main() -> None:
    group = SandboxGroup(SandboxGroupConfig(image="python:3.11", size=3, start_concurrency=2, memory="512m", cpus=0.5))
    await group.start()
    try:
        for i, sandbox in enumerate(group.sandbox_list):
            out = await sandbox.run_in_session(Action(session="default", command=f"echo sandbox {i}: $(hostname)"))
            print(out.output.strip())
            assert out.output.startswith(f"sandbox {i}:")
        assert len({s.sandbox_id for s in group.sandbox_list}) == 3
    finally:
        await group.stop()


if __name__ == "__main__":
    asyncio.run(main())
