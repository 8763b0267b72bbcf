"""A short tour through the public SDK against a running admin (`rock admin start`).

Creates a sandbox, runs commands in a persistent session, round-trips a file, stops it.
"""

import asyncio
import os
import time

from rock.actions import CreateBashSessionRequest, ReadFileRequest, WriteFileRequest
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig


async def main() -> None:
    base_url = os.environ.get("ROCK_BASE_URL", "http://127.0.0.1:8080")
    print(f"admin: {base_url}")
    sandbox = Sandbox(SandboxConfig(base_url=base_url, image="python:3.11", memory="1g", cpus=1.0))
    t0 = time.perf_counter()
    await sandbox.start()
    print(f"sandbox {sandbox.sandbox_id} ready in {(time.perf_counter() - t0) * 1000:.0f} ms")
    await sandbox.create_session(CreateBashSessionRequest(session="demo"))
    for command in ["echo Hello ROCK", "cd /tmp && export GREETING=hi", "echo $GREETING from $(pwd)", "python3 --version",
                    "id -un; (exit 3)"]:
        t = time.perf_counter()
        result = await sandbox.arun(cmd=command, session="demo")
        print(f"$ {command}\n{result.output.rstrip()}\n  [exit {result.exit_code}, {(time.perf_counter() - t) * 1000:.1f} ms]")
    await sandbox.write_file(WriteFileRequest(content="written through the SDK\n", path="/tmp/demo.txt"))
    content = (await sandbox.read_file(ReadFileRequest(path="/tmp/demo.txt"))).content
    print(f"file round trip: {content!r}")
    await sandbox.stop()
    print(f"sandbox {sandbox.sandbox_id} stopped")


if __name__ == "__main__":
    asyncio.run(main())
