"""A real worker per backend, and one sandbox per backend and test module (cheap to share:
each test uses its own session names and paths)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from rock.config import Settings
from rock.runtime import get_runtime_class
from rock.worker.worker import Worker
from tests.conftest import BACKENDS, SESSION_ROOT


def new_worker(backend: str, state_dir: Path | None = None, **settings) -> Worker:
    reason = get_runtime_class(backend).available()
    if reason:
        pytest.skip(f"{backend}: {reason}")
    state = state_dir or Path(tempfile.mkdtemp(prefix="w", dir=SESSION_ROOT))
    return Worker(Settings(state_dir=state, backend=backend, default_memory="512m", **settings), backend)


@pytest.fixture(scope="module", params=BACKENDS)
async def worker(request):
    w = new_worker(request.param)
    await w.start()
    yield w
    await w.close(stop_sandboxes=True)
    shutil.rmtree(w.settings.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def box(worker):
    """The agent client of a sandbox shared by a module's tests."""
    info = await worker.create(worker.default_spec("m" + uuid.uuid4().hex[:8]))
    yield worker.agent(info.sandbox_id)


@pytest.fixture
async def session(box):
    """A fresh bash session name in the module's sandbox."""
    name = "s" + uuid.uuid4().hex[:8]
    await box.create_session(name)
    yield name
    try:
        await box.close_session(name)
    except Exception:  # noqa: BLE001 - the test may have ended the shell itself
        pass
