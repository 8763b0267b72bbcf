"""A real admin with two tokens, and a real Chromium (Debian's) driven by Playwright.

Screenshots of every step go to $ROCK_SCREENSHOTS (default: test-artifacts/ui/ in the repo).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.admin.harness import Admin

TOKENS = {"token-alice": "alice", "token-bob": "bob"}
CHROMIUM = os.environ.get("ROCK_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("ROCK_SCREENSHOTS", Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"))


@pytest.fixture(scope="module")
def ui_admin():
    # bwrap: a real isolated backend whose sandboxes start in milliseconds (the UI does not
    # depend on the backend; the admin tests cover both).
    server = Admin("bwrap", tokens=TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/setup-host.sh installs Debian's chromium package")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots():
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    taken = []

    def shot(page, name: str) -> Path:
        path = SHOTS / f"{len(taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    yield shot
    assert taken, "the browser test wrote no screenshot"
