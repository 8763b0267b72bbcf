"""bwrap sandboxes whose agent is forked from the zygote (the default) against the ones whose
agent is bwrap's own command: same confinement, same lifetime, failures reported."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from rock.errors import RockError, SandboxStartError
from rock.runtime.processes import pid_exit_future

pytestmark = pytest.mark.bwrap

STATUS_KEYS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")
PROBE = ("for p in self $PPID 1; do grep -E '^(%s):' /proc/$p/status; done; "
         "for ns in mnt pid net ipc uts cgroup; do readlink /proc/1/ns/$ns /proc/self/ns/$ns; done; "
         "id -u; cat /proc/1/cgroup | sort | tr -d '\\n' | md5sum" % "|".join(STATUS_KEYS))


@pytest.fixture
def bwrap(make_runtime):
    return make_runtime("bwrap")


async def _probe(runtime, sandboxes, new_spec, agent, **spec) -> tuple[list[str], str]:
    handle = await sandboxes(runtime, new_spec(**spec))
    async with agent(handle) as client:
        await client.create_session("s")
        result = await client.run("s", PROBE)
        environ = await client.exec("cat /proc/$PPID/environ | tr '\\0' '\\n'; head -c1 /proc/$PPID/mem",
                                    shell=True)
    assert result.exit_code == 0, result.output
    return result.output.splitlines(), environ.stdout + environ.stderr


@pytest.mark.parametrize("network", [False, True])
async def test_the_zygotes_agent_is_confined_like_bwraps_own_command(bwrap, sandboxes, new_spec, agent, monkeypatch,
                                                                      network):
    monkeypatch.setenv("ROCK_TEST_WORKER_SECRET", "s3cr3t-worker-env")
    assert bwrap.zygote is not None
    from_zygote, zygote_env = await _probe(bwrap, sandboxes, new_spec, agent, network=network)
    zygote, bwrap.zygote = bwrap.zygote, None
    try:
        classic, _ = await _probe(bwrap, sandboxes, new_spec, agent, network=network)
    finally:
        bwrap.zygote = zygote
    status = [line for line in from_zygote if line.split(":")[0] in STATUS_KEYS]
    assert len(status) == 3 * len(STATUS_KEYS)
    # Shell, agent and the sandbox's pid 1: capabilities, no_new_privs, seccomp, uid and cgroups
    # as with bwrap's own command (namespace ids differ between any two sandboxes).
    assert [line for line in from_zygote if "[" not in line] == [line for line in classic if "[" not in line]
    # The shell has the agent's namespaces (it is its child): the sandbox's, as pid 1 has them.
    links = [line for line in from_zygote if "[" in line]
    assert len(links) == 12 and all(links[i] == links[i + 1] for i in range(0, 12, 2)), links
    # The agent is a copy of the zygote, whose memory may hold other sandboxes' requests: the
    # sandbox cannot read it (nor its start-up environment, which never is the worker's).
    assert "s3cr3t-worker-env" not in zygote_env
    assert "/proc/" in zygote_env and zygote_env.count("Permission denied") == 2, zygote_env


async def test_an_agent_that_cannot_start_in_the_sandbox_fails_the_create_with_its_output(bwrap, new_spec,
                                                                                         monkeypatch):
    request = bwrap.launcher.agent_request
    monkeypatch.setattr(bwrap.launcher, "agent_request", lambda *a: {**request(*a), "hold": "/boom-7f3a/hold"})
    spec = new_spec()
    with pytest.raises(SandboxStartError, match="boom-7f3a"):
        await bwrap.create(spec)
    assert not (bwrap.sandboxes_dir / spec.sandbox_id).exists()
    assert await bwrap.reap(set()) == []


async def test_the_sandbox_ends_when_its_agent_exits(bwrap, sandboxes, new_spec, agent):
    handle = await sandboxes(bwrap, new_spec())
    gone = pid_exit_future(handle.pid)
    async with agent(handle) as client:
        with contextlib.suppress(RockError):  # the agent dies before it can answer
            await client.exec("kill -9 $PPID", shell=True, timeout=5)  # $PPID: the agent
    await asyncio.wait_for(gone, 10)
    assert not await bwrap.alive(handle)


async def test_sandboxes_outlive_the_zygote_and_the_next_create_starts_a_new_one(bwrap, sandboxes, new_spec, agent):
    first = await sandboxes(bwrap, new_spec())
    old_pid = bwrap.zygote._proc.pid
    os.kill(old_pid, signal.SIGKILL)
    await bwrap.zygote._proc.wait()
    async with agent(first) as client:
        assert (await client.exec("echo still here", shell=True)).stdout == "still here\n"
    second = await sandboxes(bwrap, new_spec())
    assert bwrap.zygote._proc.pid != old_pid
    async with agent(second) as client:
        assert (await client.exec("echo new", shell=True)).stdout == "new\n"


async def test_a_create_of_a_running_id_fails_and_leaves_that_sandbox_alone(bwrap, sandboxes, new_spec, agent):
    """A second create of a live id is refused before anything of the running sandbox (its run
    directory, FIFOs, cgroup and limits) is touched, and the failed start removes nothing of it."""
    spec = new_spec()
    first = await sandboxes(bwrap, spec)
    with pytest.raises(SandboxStartError, match="already running"):
        await bwrap.create(spec)
    assert await bwrap.alive(first)
    async with agent(first) as client:
        assert (await client.exec("echo untouched", shell=True)).stdout == "untouched\n"


async def test_a_failed_fork_is_that_request_s_error():
    """fork() fails at a pids limit: the zygote answers that request with an error and goes on
    serving the others (a real zygote, in a cgroup that allows it no second process)."""
    import json
    import sys

    from rock.runtime.agent_boot import AGENT_SRC
    from rock.runtime.cgroups import Cgroup

    group = Cgroup(f"rock/zygote-test-{os.urandom(4).hex()}/g")
    group.create(None, None, 1)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-S", str(AGENT_SRC / "zygote.py"),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))["ready"]
        for path in group.join_files():
            with open(path, "w") as f:
                f.write(str(proc.pid))

        async def ask(request: dict) -> dict:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            return json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))

        answer = await ask({"id": 7, "pid": os.getpid()})  # our pid namespace: only the fork can fail
        assert answer["id"] == 7 and "BlockingIOError" in answer["error"], answer
        answer = await ask({"id": 8, "pid": 2**22 + 1})  # no such process: a second, different error
        assert answer["id"] == 8 and "FileNotFoundError" in answer["error"], answer
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 30)
        await group.destroy()


async def test_a_launch_starts_bwrap_in_its_own_namespace_and_cgroup_and_the_zygote_returns_to_its_own(tmp_path):
    """The zygote makes each sandbox's mount namespace itself, mounts the root there, spawns
    bwrap into it from inside the sandbox's cgroup and goes back to its own namespace and cgroups:
    the new namespace holds the overlay, the zygote's and the host's never do, the spawned
    process is born in the sandbox's cgroup, and a launch that fails half-way (a missing lower
    layer) is that request's error, with the zygote back in its own namespace and launching the
    next one (a real zygote)."""
    import json
    import sys
    import uuid

    from rock.runtime import cgroups
    from rock.runtime.agent_boot import AGENT_SRC

    def root(lower: str, name: str) -> dict:
        return {"lower": lower, "upper": str(tmp_path / f"{name}-upper"), "work": str(tmp_path / f"{name}-work"),
                "merged": str(tmp_path / f"{name}-root")}

    merged = tmp_path / "ok-root"
    report = tmp_path / "report"
    # What the launched side sees: its mount namespace, the overlay at the root, its output's file,
    # its cgroups.
    probe = (f"readlink /proc/self/ns/mnt > {report}; grep -c ' {merged} ' /proc/self/mountinfo >> {report}; "
             f"ls {merged}/etc/hostname >> {report}; sort /proc/self/cgroup | tr '\\n' ' ' >> {report}; "
             "echo to-the-log")
    group = cgroups.Cgroup(f"{cgroups.PREFIX}/test-{uuid.uuid4().hex[:8]}/launch")
    group.create(None, None, None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-S", str(AGENT_SRC / "zygote.py"),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))["ready"]
        home = cgroups.home_files(proc.pid)
        with open(f"/proc/{proc.pid}/cgroup") as f:
            zygote_groups = f.read()
        assert home and group.rel not in zygote_groups

        async def ask(request: dict) -> dict:
            proc.stdin.write(json.dumps({"op": "launch", "join": group.join_files(), "home": home,
                                         **request}).encode() + b"\n")
            return json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))

        def zygote_ns() -> str:
            return os.readlink(f"/proc/{proc.pid}/ns/mnt")

        ours = os.readlink("/proc/self/ns/mnt")
        assert zygote_ns() == ours
        failed = await ask({"id": 1, "root": root(str(tmp_path / "no-such-lower"), "bad"),
                            "argv": ["/bin/sh", "-c", f"echo ran > {tmp_path / 'ran'}"], "log": str(tmp_path / "bad.log")})
        assert failed["id"] == 1 and "no-such-lower" in failed["error"], failed
        assert zygote_ns() == ours and not (tmp_path / "ran").exists()
        # Joining a sandbox's group with nowhere to go back to is refused before any move.
        refused = await ask({"id": 2, "root": root("/", "nohome"), "home": [],
                             "argv": ["/bin/sh", "-c", f"echo ran > {tmp_path / 'ran'}"], "log": str(tmp_path / "no.log")})
        assert refused["id"] == 2 and "go back" in refused["error"], refused
        assert not (tmp_path / "ran").exists()
        launched = await ask({"id": 3, "root": root("/", "ok"), "argv": ["/bin/sh", "-c", probe],
                              "log": str(tmp_path / "ok.log")})
        assert launched["id"] == 3 and launched["pid"] > 0, launched
        await asyncio.wait_for(pid_exit_future(launched["pid"]), 10)
        launched_ns, mounted, listed, launched_groups = report.read_text().splitlines()
        assert launched_ns != ours and mounted == "1" and listed == f"{merged}/etc/hostname"
        for controller in ("memory", "pids", "freezer"):  # born in the sandbox's group, in each hierarchy
            assert any(controller in line.split(":")[1].split(",") and line.endswith("/" + group.rel)
                       for line in launched_groups.split()), launched_groups
        assert (tmp_path / "ok.log").read_text() == "to-the-log\n"
        assert zygote_ns() == ours
        with open(f"/proc/{proc.pid}/cgroup") as f:
            assert f.read() == zygote_groups  # and the zygote is back in its own
        with open("/proc/self/mountinfo") as f:
            assert f" {merged} " not in f.read()
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 30)
        await group.destroy()
