"""Shared fixtures: settings with a private state dir, one runtime per backend, and a
session-end check that fails the run if a container, cgroup, mount or process of ours is left.

Everything a test session creates lives under one short directory (``SESSION_ROOT``): Unix
socket paths must stay under 108 bytes, and the leak check recognises our leftovers by it
(container labels, shim and agent command lines, process environments, mount points).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench import venvs
from rock.config import Settings
from rock.runtime.leaks import leftovers
from rock.runtime import get_runtime_class
from rock.runtime.base import Runtime, RuntimeHandle, SandboxSpec



def _session_root() -> Path:
    # pytest loads this file as "conftest" and helpers import it as "tests.conftest": two module
    # objects, one session, so the second must find the first one's directory.
    for name in ("conftest", "tests.conftest"):
        module = sys.modules.get(name)
        if os.path.realpath(getattr(module, "__file__", "") or "") == os.path.realpath(__file__):
            root = getattr(module, "SESSION_ROOT", None)
            if root is not None:
                return root
    return Path(tempfile.mkdtemp(prefix="rock-t-", dir="/tmp"))


SESSION_ROOT = _session_root()
# Every worker, admin and node of the session (in this process or started from it) unpacks an
# image for bwrap once, here, instead of once per state dir: python:3.11 alone is ~160 MB,
# 2-10 s to export and ~1 s to remove, and most tests start on it with a fresh state dir. Under
# pytest-xdist the test processes inherit the controller's (an unpack renames its tree into place,
# so two processes unpacking one image at once are safe); each keeps its own SESSION_ROOT.
os.environ.setdefault("ROCK_IMAGES_DIR", str(SESSION_ROOT / "images"))

BACKENDS = [
    pytest.param("docker", marks=pytest.mark.docker, id="docker"),
    pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap"),
    pytest.param("local", id="local"),
]
ISOLATED_BACKENDS = BACKENDS[:2]
# gVisor (runsc) is a runtime-level backend so far: the runtime fixtures run on it too, the
# worker and admin tests (which import the lists above) wait for its front doors.
GVISOR = pytest.param("gvisor", marks=pytest.mark.gvisor, id="gvisor")


@pytest.fixture
def settings() -> Settings:
    state = Path(tempfile.mkdtemp(prefix="s", dir=SESSION_ROOT))
    # Runtime-level tests start bwrap sandboxes on the host root (a spec without an image), on
    # rootfs directories and tars, and with the host's network: an operator's choices
    # (allow_host_paths, allow_host_network), made here; admins under test keep the defaults (off).
    yield Settings(state_dir=state, backend="auto", allow_host_paths=True, allow_host_network=True)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def make_runtime(settings):
    """``make_runtime(name)``: a backend on this test's state dir (skipped where unusable);
    whatever a failing test leaves in it is reaped at teardown."""
    made: list[Runtime] = []

    def make(name: str, owner: str | None = None) -> Runtime:
        cls = get_runtime_class(name)
        reason = cls.available()
        if reason:
            pytest.skip(f"{name}: {reason}")
        made.append(cls(settings, owner or f"test-{uuid.uuid4().hex[:8]}"))
        return made[-1]

    yield make
    for rt in made:
        await rt.reap(set())
        await rt.close()


@pytest.fixture(params=[*BACKENDS, GVISOR])
def runtime(request, make_runtime) -> Runtime:
    return make_runtime(request.param)


@pytest.fixture(params=[*ISOLATED_BACKENDS, GVISOR])
def isolated_runtime(request, make_runtime) -> Runtime:
    return make_runtime(request.param)


@pytest.fixture
def known_gap(request):
    """``known_gap(runtime, backend, reason)``: this test is known to fail on ``backend`` for
    ``reason``; it still runs there, and a pass is reported (strict), so a fix shows."""

    def mark(runtime: Runtime, backend: str, reason: str) -> None:
        if runtime.name == backend:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

    return mark


@pytest.fixture
def new_spec():
    def make(**fields) -> SandboxSpec:
        return SandboxSpec(sandbox_id=fields.pop("sandbox_id", f"t{uuid.uuid4().hex[:10]}"), **fields)

    return make


@pytest.fixture
def agent():
    """``async with agent(handle) as client``: a connection to the sandbox's agent."""

    @asynccontextmanager
    async def connect(handle: RuntimeHandle):
        from rock.worker.agent_client import AgentClient

        client = await AgentClient.connect(handle.socket_path)
        try:
            yield client
        finally:
            client.close()

    return connect


@pytest.fixture
async def sandboxes():
    """Handles registered here are destroyed at teardown even when the test fails first."""
    created: list[tuple[Runtime, RuntimeHandle]] = []

    async def create(runtime: Runtime, spec: SandboxSpec) -> RuntimeHandle:
        handle = await runtime.create(spec)
        created.append((runtime, handle))
        return handle

    yield create
    for runtime, handle in created:
        await runtime.destroy(handle)


# The real rl-rock SDK, in a venv of its own (installed once from PyPI, shared with the
# benchmark): the arbiter of wire compatibility for the sandbox and env tests alike.
@pytest.fixture(scope="session")
def rlrock_python() -> Path:
    try:
        return venvs.rlrock_python()
    except venvs.VenvError as exc:
        pytest.fail(str(exc))


# -- session-end leak check ------------------------------------------------------------------

# Owner keys of every Runtime made in this session (by these fixtures or by a worker under
# test): cgroups are named rock/<owner key>/<id>, so this tells our groups from another run's.
OWNER_KEYS: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    original = Runtime.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        OWNER_KEYS.add(self.owner_key)

    Runtime.__init__ = recording_init
    try:
        yield
    finally:
        Runtime.__init__ = original
    # A test process beside its siblings (pytest-xdist) cannot tell their gVisor namespaces from
    # its own runtimes' children's; the controller checks every one once all have ended (below).
    # By the environment, not the config: a pytest run inside a test process (tests/cli/test_uv.py's
    # `uv run pytest`) inherits it and shares the machine with that process's siblings too.
    problems = leftovers(str(SESSION_ROOT), OWNER_KEYS, every_netns="PYTEST_XDIST_WORKER" not in os.environ)
    # Gone either way: what a failed run left behind becomes an orphan the next reap removes.
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)
    if problems:
        pytest.fail("the test session left these behind:\n  " + "\n  ".join(problems), pytrace=False)


# -- several test processes (pytest-xdist; scripts/test.sh runs two) ---------------------------

def _xdist_controller(config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with every file of ``tests/cluster`` in one unit: their modules each
    start a Ray cluster and admins (three nodes, ~1.5 GB), which two processes at once on a small
    machine would only slow down; the session's PostgreSQL then starts once."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Files(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tests/cluster" if scope.startswith("tests/cluster/") else scope

    return Files(config, log)


@pytest.hookimpl(trylast=True)  # after xdist's own, which ends the test processes
def pytest_sessionfinish(session):
    """SESSION_ROOT goes here too where ``nothing_left_behind`` never ran: in a test process given
    no test, and in the controller of test processes, which runs none. The controller first checks
    what no single test process can, once all have ended: a process left by any of them (each
    inherited the controller's environment, which names its directory: the images they shared)
    and ROCK's named network namespaces."""
    problems = leftovers(str(SESSION_ROOT), set()) if _xdist_controller(session.config) else []
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.ensure_newline()
        reporter.write_line("the test session left these behind:\n  " + "\n  ".join(problems), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
