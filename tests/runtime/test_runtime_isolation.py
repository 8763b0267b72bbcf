"""Isolation and limits on the backends that promise them (docker, bwrap, gvisor)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import tempfile
import uuid

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.bwrap]

PY = '"$ROCK_HOST_PYTHON"'  # present in every sandbox, whatever the image has


# tail must hold the whole newline-free stream in memory: 256 MiB against a 64 MiB limit.
MEMORY_HOG = "head -c 256m /dev/zero | tail > /dev/null"


async def test_allocating_past_the_memory_limit_gets_killed(isolated_runtime, new_spec, sandboxes, agent):
    handle = await sandboxes(isolated_runtime, new_spec(memory_bytes=64 << 20))
    async with agent(handle) as client:
        hog = await client.exec(MEMORY_HOG, shell=True, timeout=60)
        assert hog.exit_code != 0 and not hog.timed_out
        assert "Killed" in hog.stderr or hog.exit_code in (137, -9)
        after = await client.exec("echo still usable", shell=True)
    assert after.stdout == "still usable\n"
    assert await isolated_runtime.alive(handle)


async def test_a_process_under_the_memory_limit_is_not_killed(isolated_runtime, new_spec, sandboxes, agent):
    handle = await sandboxes(isolated_runtime, new_spec(memory_bytes=64 << 20))
    async with agent(handle) as client:
        # The hog's shape, 16 MiB of it: with the agent and its shell (about 25 MiB) under 64 MiB.
        held = await client.exec("head -c 16m /dev/zero | tail | wc -c", shell=True, timeout=60)
        assert held.exit_code == 0 and held.stdout.strip() == str(16 << 20), held
        after = await client.exec("echo still usable", shell=True)
    assert after.stdout == "still usable\n"
    assert await isolated_runtime.alive(handle)


async def test_the_spec_env_cannot_name_the_agents_memory_or_process_limit(isolated_runtime, new_spec, sandboxes,
                                                                            agent):
    # One byte, were it taken, would have the agent kill every command (rock_agent.oom); a process
    # limit would have it mount the sentry's pids hierarchy and drop capabilities (rock_agent.pids),
    # raising gVisor's own limit, failing elsewhere. The control: the spec's other variables arrive.
    handle = await sandboxes(isolated_runtime, new_spec(env={"ROCK_AGENT_MEMORY_LIMIT": "1",
                                                             "ROCK_AGENT_PIDS_LIMIT": "100000", "MINE": "1"}))
    async with agent(handle) as client:
        seen = await client.exec("for v in ROCK_AGENT_MEMORY_LIMIT ROCK_AGENT_PIDS_LIMIT MINE; do "
                                 "printenv $v || echo unset; done", shell=True)
    assert seen.stdout == "unset\nunset\n1\n", seen


async def test_the_pids_limit_stops_forking(isolated_runtime, new_spec, sandboxes, agent):
    limit = 64
    handle = await sandboxes(isolated_runtime, new_spec(pids_limit=limit))
    probe = (
        "import os, time\n"
        "kids = []\n"
        "try:\n"
        "    for _ in range(500):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        kids.append(pid)\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
        "print('forked', len(kids))\n"
        "for pid in kids: os.kill(pid, 9); os.waitpid(pid, 0)\n"
    )
    async with agent(handle) as client:
        result = await client.exec(["sh", "-c", f'exec {PY} -c "$0"', probe], timeout=60)
        assert "refused 11" in result.stdout, result  # EAGAIN
        forked = int(result.stdout.split("forked ")[1].split()[0])
        assert 0 < forked < limit
        assert (await client.exec("echo still usable", shell=True)).stdout == "still usable\n"


# Root switches to 8 other uids, and each uid forks as many sleepers as it can (at most 12), all
# alive at once: a limit counted per user (RLIMIT_NPROC) would let all 8 x 12 through.
ACROSS_UIDS = (
    "import os, time\n"
    "counts_r, counts_w = os.pipe(); done_r, done_w = os.pipe()\n"
    "switchers = []\n"
    "for uid in range(1000, 1008):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError:\n"
    "        break\n"
    "    if pid == 0:\n"
    "        os.close(done_w)\n"
    "        try:\n"
    "            os.setgid(uid); os.setuid(uid)\n"
    "        except OSError:\n"
    "            os.write(counts_w, b'nouid\\n'); os._exit(0)\n"
    "        kids = []\n"
    "        try:\n"
    "            for _ in range(12):\n"
    "                kid = os.fork()\n"
    "                if kid == 0:\n"
    "                    time.sleep(60); os._exit(0)\n"
    "                kids.append(kid)\n"
    "        except OSError:\n"
    "            pass\n"
    "        os.write(counts_w, b'%d\\n' % len(kids))\n"
    "        os.read(done_r, 1)\n"
    "        for kid in kids: os.kill(kid, 9); os.waitpid(kid, 0)\n"
    "        os._exit(0)\n"
    "    switchers.append(pid)\n"
    "os.close(counts_w)\n"
    "said = b''\n"
    "while said.count(b'\\n') < len(switchers):\n"
    "    said += os.read(counts_r, 4096)\n"
    "print(len(switchers), *said.decode().split())\n"
    "os.close(done_w)\n"
    "for pid in switchers: os.waitpid(pid, 0)\n"
)


async def test_the_pids_limit_holds_for_every_uid_together(isolated_runtime, new_spec, sandboxes, agent):
    limit = 64
    handle = await sandboxes(isolated_runtime, new_spec(pids_limit=limit))
    async with agent(handle) as client:
        result = await client.exec(["sh", "-c", f'exec {PY} -c "$0"', ACROSS_UIDS], timeout=60)
    switchers, *counts = result.stdout.split()  # how many switched, then what each forked
    assert int(switchers) == len(counts) >= 2, result  # the limit may refuse the later switchers
    assert "nouid" not in counts, result  # root inside may switch uids (CAP_SETUID), as in Docker
    assert int(switchers) + sum(map(int, counts)) < limit, result


async def test_a_fork_bomb_is_contained_and_the_sandbox_can_be_destroyed(isolated_runtime, new_spec, agent):
    limit = 64
    handle = await isolated_runtime.create(new_spec(pids_limit=limit, cpus=0.5))
    try:
        async with agent(handle) as client:
            # The classic bomb, in bash (which retries a failed fork instead of giving up), detached
            # from the agent's pipes so that the exec returns while the bomb goes on.
            await client.exec(["sh", "-c", 'bash -c ":(){ :|:& };:" >/dev/null 2>&1 </dev/null'], timeout=10)
        # Wait for the bomb to reach the limit (a loaded machine can take a while to get there):
        # forks refused, where the backend counts them (a host pids cgroup), or the group full
        # (gVisor's sentry counts only the processes).
        deadline = asyncio.get_running_loop().time() + 60
        while not (stats := await isolated_runtime.stats(handle)).forks_refused and (stats.pids or 0) < limit:
            assert asyncio.get_running_loop().time() < deadline, "the bomb never reached the limit"
            await asyncio.sleep(0.05)
        stats = await isolated_runtime.stats(handle)
        assert stats.pids_limit == limit and stats.pids <= limit
    finally:
        await isolated_runtime.destroy(handle)
    assert not await isolated_runtime.alive(handle)


@pytest.fixture
async def serve():
    """``port, hits = await serve(address)``: a TCP server on this machine counting connections."""
    servers = []

    async def start(address: str):
        hits = []

        async def on_connect(reader, writer):
            hits.append(writer.get_extra_info("peername"))
            writer.close()

        server = await asyncio.start_server(on_connect, address, 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1], hits

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close(); print('connected')\n"
    "except OSError as exc:\n"
    "    print('failed', type(exc).__name__, exc)\n"
)


async def _connect_from(client, host: str, port: int):
    return await client.exec(["sh", "-c", f'exec {PY} -c "$0" "$1" "$2"', CONNECT, host, str(port)], timeout=30)


async def test_no_network_means_no_socket_to_the_host(isolated_runtime, new_spec, sandboxes, agent, serve):
    port, hits = await serve("127.0.0.1")
    handle = await sandboxes(isolated_runtime, new_spec(network=False))
    async with agent(handle) as client:
        result = await _connect_from(client, "127.0.0.1", port)
        links = await client.exec("cat /proc/net/dev", shell=True)
    assert result.stdout.startswith("failed"), result
    assert hits == []
    interfaces = {line.split(":")[0].strip() for line in links.stdout.splitlines()[2:]}
    assert interfaces <= {"lo"}, links.stdout


async def test_network_when_asked_reaches_a_server_on_this_machine(isolated_runtime, new_spec, sandboxes, agent, serve):
    handle = await sandboxes(isolated_runtime, new_spec(network=True))
    async with agent(handle) as client:
        host = "127.0.0.1"  # bwrap with network shares the host's network namespace
        if isolated_runtime.name == "docker":
            # The host's address on the sandbox's bridge (its default gateway): fenced off, the
            # sandbox's network goes out only (tests/security/test_networks.py shows it does).
            routes = (await client.exec("cat /proc/net/route", shell=True)).stdout.splitlines()[1:]
            gateway = next(line.split()[2] for line in routes if line.split()[1] == "00000000")
            host = socket.inet_ntoa(struct.pack("<I", int(gateway, 16)))
        port, hits = await serve(host)
        result = await _connect_from(client, host, port)
    if isolated_runtime.name == "docker":
        assert result.stdout.startswith("failed"), result
        assert hits == []
    else:
        assert result.stdout.startswith("connected"), result
        assert len(hits) == 1


async def test_sandboxes_cannot_see_or_change_each_other_or_the_host(isolated_runtime, settings, new_spec, sandboxes,
                                                                     agent):
    tag = uuid.uuid4().hex[:8]
    host_tmp = tempfile.NamedTemporaryFile(prefix=f"rock-host-{tag}-", dir="/tmp")
    host_tmp.write(b"host secret")
    host_tmp.flush()
    state_marker = settings.state_dir / f"state-{tag}"
    state_marker.write_text("state secret")
    # A host file outside every masked directory: bwrap's root is the host root, read-only.
    host_file = f"/var/lib/rock-isolation-{tag}"
    with open(host_file, "w") as f:
        f.write("original")
    a = await sandboxes(isolated_runtime, new_spec())
    b = await sandboxes(isolated_runtime, new_spec())
    try:
        async with agent(a) as ca, agent(b) as cb:
            wrote = await ca.exec(f"echo from-a > /etc/a-{tag} && echo from-a > /root/a-{tag} && cat /etc/a-{tag}",
                                  shell=True)
            assert wrote.stdout == "from-a\n", wrote
            for client, name in ((cb, "b"), (ca, "a")):
                for path in (host_tmp.name, str(state_marker), str(settings.state_dir)):
                    seen = await client.exec(["sh", "-c", 'test -e "$0" && echo visible || echo hidden', path])
                    assert seen.stdout == "hidden\n", (name, path)
            for path in (f"/etc/a-{tag}", f"/root/a-{tag}"):
                seen = await cb.exec(["sh", "-c", 'test -e "$0" && echo visible || echo hidden', path])
                assert seen.stdout == "hidden\n", path
            # Overwrite and delete the host file (if visible): the host keeps its copy.
            await ca.exec(["sh", "-c", 'echo changed > "$0"; rm -f "$0"', host_file])
            # Nor can a sandbox write into another's directory through its own view of the state dir.
            escape = await ca.exec(["sh", "-c", 'echo x > "$0"', os.path.join(b.run_dir, "escape")])
            assert escape.exit_code != 0
        assert open(host_file).read() == "original"
        assert not os.path.exists(f"/etc/a-{tag}") and not os.path.exists(os.path.join(b.run_dir, "escape"))
    finally:
        os.unlink(host_file)
        host_tmp.close()


PRIVILEGED = (
    "import ctypes, os\n"
    "os.makedirs('/mnt/rock-x', exist_ok=True)\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "print(libc.prctl(39, 0, 0, 0, 0))\n"  # PR_GET_NO_NEW_PRIVS: the kernel's own answer
    "print(libc.mount(b'none', b'/mnt/rock-x', b'tmpfs', 0, None), ctypes.get_errno())\n"
    "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # a new user namespace
)


async def test_root_inside_cannot_mount_or_gain_capabilities(isolated_runtime, new_spec, sandboxes, agent):
    handle = await sandboxes(isolated_runtime, new_spec())
    async with agent(handle) as client:
        # CapEff from /proc; no_new_privs from prctl, which gVisor answers though its
        # /proc/self/status has no NoNewPrivs line.
        status = await client.exec("grep -E '^CapEff' /proc/self/status", shell=True)
        tried = await client.exec(["sh", "-c", f'exec {PY} -c "$0"', PRIVILEGED])
    fields = dict(line.split(":\t") for line in status.stdout.splitlines())
    effective = int(fields["CapEff"], 16)
    cap_sys_admin = 1 << 21
    assert effective & cap_sys_admin == 0 and effective != 0
    assert tried.stdout.splitlines() == ["1", "-1 1", "-1 1"], tried  # no_new_privs set; both EPERM
