"""Files in and out of a sandbox, and a server inside it reached through the admin's port routes
(the sandbox has no network: the agent relays the connection inside).

Run against a running admin: `rock admin start`, then `python examples/files_and_ports.py`.
"""

import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from rock.actions import ReadFileRequest, WriteFileRequest
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig


async def main() -> None:
    sandbox = Sandbox(SandboxConfig(image="python:3.11", memory="512m", cpus=0.5))
    await sandbox.start()
    try:
        # files: text, bytes, a whole directory, and back
        await sandbox.write_file(WriteFileRequest(content="hello from the host\n", path="/srv/site/index.html"))
        print((await sandbox.read_file(ReadFileRequest(path="/srv/site/index.html"))).content.strip())
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "data"
            local.mkdir()
            (local / "blob.bin").write_bytes(os.urandom(100_000))
            await sandbox.upload_dir(local, "/srv/data")
            back = await sandbox.read_bytes("/srv/data/blob.bin")
            assert back == (local / "blob.bin").read_bytes()
            print(f"uploaded a directory, read back {len(back)} bytes")

        # a web server inside the sandbox, on port 8000
        await sandbox.start_process("cd /srv/site && exec python3 -m http.server 8000 --bind 127.0.0.1")
        url = f"{sandbox.config.base_url}/apis/envs/sandbox/v1/sandboxes/{sandbox.sandbox_id}/proxy/index.html"
        async with httpx.AsyncClient(timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:  # the server needs a moment to listen
                reply = await http.get(url, headers={"X-ROCK-Target-Port": "8000"})
                if reply.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
        print(f"GET port 8000 through the admin: {reply.status_code} {reply.text.strip()!r}")
        assert reply.text == "hello from the host\n"
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    asyncio.run(main())
