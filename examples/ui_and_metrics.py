"""The admin's management UI and its Prometheus metrics, read as a browser and a scraper would.

Run against a running admin: `rock admin start`, then `python examples/ui_and_metrics.py`, or open
http://127.0.0.1:8080/ in a browser.
"""

import os

import httpx

from rock.sdk.sandbox.config import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox


def main() -> None:
    base = os.environ.get("ROCK_BASE_URL", "http://localhost:8080").rstrip("/")
    with SyncSandbox(SandboxConfig(memory="512m", cpus=0.5)) as sandbox:  # stopped when the block ends
        sandbox.arun("echo something for the recent commands")
        page = httpx.get(f"{base}/ui/sandboxes/{sandbox.sandbox_id}", timeout=30)
        print(f"the sandbox's page: {page.status_code}, {len(page.text)} bytes")
        assert page.status_code == 200 and sandbox.sandbox_id in page.text
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        running = [line for line in metrics.splitlines() if line.startswith("rock_sandboxes{")]
        print("\n".join(running))
        assert running
    overview = httpx.get(f"{base}/", timeout=30)
    print(f"the overview: {overview.status_code}")
    assert overview.status_code == 200


if __name__ == "__main__":
    main()
