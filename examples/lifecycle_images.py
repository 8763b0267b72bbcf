"""A sandbox's life as rl-rock 1.11 has it: stop keeps its files, restart brings it back, commit
saves them as an image a new sandbox starts from, delete removes it.

Run against a running admin: `rock admin start`, then `python examples/lifecycle_images.py`.
"""

import asyncio
import uuid

from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig


async def main() -> None:
    first = Sandbox(SandboxConfig(image="python:3.11", memory="512m", cpus=0.5))
    await first.start()
    await first.arun("echo 'made in the first sandbox' > /root/notes.txt")
    await first.stop()  # its processes end, its files stay
    print(f"stopped: {(await first.get_status()).lifecycle_state}")
    await first.restart()
    print(f"restarted: {(await first.arun('cat /root/notes.txt')).output.strip()}")

    tag = f"rock-example:{uuid.uuid4().hex[:8]}"
    await first.commit(tag)  # the sandbox's files as a local image
    second = Sandbox(SandboxConfig(image=tag, memory="512m", cpus=0.5))
    await second.start()
    copied = (await second.arun("cat /root/notes.txt")).output.strip()
    print(f"a new sandbox from {tag}: {copied}")
    assert copied == "made in the first sandbox"
    for sandbox in (first, second):
        await sandbox.delete()
    import docker  # the image lives in the admin's Docker engine (this machine's, here)

    docker.from_env().images.remove(tag)
    print(f"deleted both sandboxes and the image {tag}")


if __name__ == "__main__":
    asyncio.run(main())
