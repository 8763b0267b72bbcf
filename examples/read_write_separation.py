"""Read/write separation on one machine (seed 001, as ROCK's example runs it): the admin creates
and stops sandboxes, a proxy beside it serves their sessions, commands and files.

    rock admin start --env local-proxy --role admin --port 8080
    rock admin start --env local-proxy --role proxy --port 8081
    python examples/read_write_separation.py      # ROCK_BASE_URL / ROCK_PROXY_URL name other ports
    rock admin stop                               # stops the proxy and the admin
"""

import asyncio
import os

from rock.actions import CreateBashSessionRequest, ReadFileRequest, WriteFileRequest
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig


async def main() -> None:
    admin_url = os.environ.get("ROCK_BASE_URL", "http://127.0.0.1:8080")
    proxy_url = os.environ.get("ROCK_PROXY_URL", "http://127.0.0.1:8081")
    owner = Sandbox(SandboxConfig(base_url=admin_url, memory="512m", cpus=0.5))
    await owner.start()  # writes: through the admin
    try:
        reader = Sandbox(SandboxConfig(base_url=proxy_url))
        await reader.attach(owner.sandbox_id)  # the same sandbox, through the proxy
        await reader.create_session(CreateBashSessionRequest(session="work"))
        result = await reader.arun(cmd="echo served by the proxy; python3 --version", session="work")
        print(result.output.strip())
        await reader.write_file(WriteFileRequest(content="written through the proxy", path="/tmp/rw.txt"))
        content = (await owner.read_file(ReadFileRequest(path="/tmp/rw.txt"))).content
        print(f"read through the admin: {content!r}")
        assert content == "written through the proxy"
    finally:
        await owner.stop()


if __name__ == "__main__":
    asyncio.run(main())
