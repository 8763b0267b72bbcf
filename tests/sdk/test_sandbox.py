"""The public SDK against a real admin, once per backend."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from rock.actions import Action, Command, CreateBashSessionRequest, ReadFileRequest, UploadRequest, WriteFileRequest
from rock.errors import SandboxNotFound, SandboxNotRunning, SessionNotFound
from rock.sdk.common.exceptions import CommandRockError
from rock.sdk.sandbox import Sandbox, SandboxConfig, SandboxGroup, SandboxGroupConfig, SyncSandbox


def config(admin, **kw) -> SandboxConfig:
    return SandboxConfig(base_url=admin.url, memory="512m", cpus=1, **kw)


@pytest.fixture
async def box(admin):
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


async def until(predicate, timeout: float = 30.0):
    """Poll with a deadline (no fixed sleeps): returns once ``predicate()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.05)


async def test_start_reports_ready_sandbox(box):
    status = await box.get_status()
    assert status.is_alive and status.state == "running" and status.sandbox_id == box.sandbox_id
    assert (await box.is_alive()).is_alive
    assert [h.event for h in status.state_history][:2] == ["create", "started"]


async def test_arun_returns_exit_codes_and_keeps_session_state(box):
    await box.create_session(CreateBashSessionRequest(session="s"))
    assert (await box.arun("cd /tmp && export X=42", session="s")).exit_code == 0
    r = await box.arun("echo $X $(pwd); exit_code() { return 3; }; exit_code", session="s")
    assert r.output == "42 /tmp" and r.exit_code == 3
    r = await box.arun("echo 'é ✓ 漢字' \"$X\"", session="s")  # non-ASCII both ways (the body is UTF-8 JSON)
    assert r.output == "é ✓ 漢字 42", r.output
    # Without a session: a temporary one, closed afterwards.
    r = await box.arun("echo temp; false")
    assert r.output == "temp" and r.exit_code == 1
    sessions = await box._context.http.get("/sessions", {"sandbox_id": box.sandbox_id})
    assert [s["session"] for s in sessions["sessions"]] == ["s"]


async def test_output_is_what_rocks_runtime_returns(box):
    """ROCK's runtime (rocklet BashSession) strips a command's output at both ends and removes ANSI
    escape sequences; rl-rock code compares the value as is (`== "SESSION_END"`)."""
    await box.create_session(CreateBashSessionRequest(session="o"))
    r = await box.arun("printf '\\n  a\\n b  \\n\\n'", session="o")
    assert r.output == "a\n b", repr(r.output)  # inner whitespace kept
    r = await box.arun("printf '\\033[1;31mred\\033[0m plain\\n'", session="o")
    assert r.output == "red plain", repr(r.output)
    obs = await box.run_in_session(Action(session="o", command="echo; echo x; echo", check="ignore"))
    assert obs.output == "x" and obs.exit_code is None
    assert (await box.arun("true", session="o")).output == ""
    r = await box.arun("printf 'SESSION_END\\n\\n'", mode="nohup")
    assert r.output == "SESSION_END", repr(r.output)


async def test_localhost_resolves_as_in_a_docker_container(box):
    """ROCK's agent configs reach the model service at http://localhost:8080/v1: an image's empty
    /etc/hosts gets the lines Docker writes (bwrap unpacks the image without them)."""
    r = await box.arun("python3 -c \"import socket; print(socket.gethostbyname('localhost'))\"")
    assert (r.output, r.exit_code) == ("127.0.0.1", 0), r


async def test_run_in_session_check_raise_and_default_session(box):
    obs = await box.run_in_session(Action(session="default", command="echo Hello"))
    assert obs.output == "Hello" and obs.exit_code == 0
    with pytest.raises(CommandRockError) as err:
        await box.run_in_session(Action(session="default", command="exit_with() { return 5; }; exit_with"))
    assert err.value.observation.exit_code == 5
    obs = await box.run_in_session(Action(session="default", command="false", check="silent"))
    assert obs.exit_code == 1
    with pytest.raises(SessionNotFound):
        await box.run_in_session(Action(session="missing", command="true"))


async def test_nohup_returns_real_exit_code_and_output(box):
    r = await box.arun("echo from-nohup; exit 7", mode="nohup")
    assert r.exit_code == 7 and r.output == "from-nohup"  # read back as ROCK reads it: stripped
    r = await box.arun("head -c 100000 /dev/zero | tr '\\0' a", mode="nohup", response_limited_bytes_in_nohup=10)
    assert r.output == "a" * 10 and r.exit_code == 0
    r = await box.arun("echo kept", mode="nohup", ignore_output=True, output_file="/tmp/nohup-out/log.txt")
    assert r.exit_code == 0 and "/tmp/nohup-out/log.txt" in r.output
    assert (await box.read_bytes("/tmp/nohup-out/log.txt")) == b"kept\n"


async def test_nohup_wait_timeout_leaves_process_running(box):
    await box.create_session(CreateBashSessionRequest(session="n"))
    r = await box.arun("sleep 60; echo late", session="n", mode="nohup", wait_timeout=0.5,
                       output_file="/tmp/late.out")
    assert r.exit_code != 0 and "did not complete" in r.failure_reason
    assert (await box.arun("pgrep -f 'sleep 60' >/dev/null", session="n")).exit_code == 0
    await box.arun("pkill -f 'sleep 60'", session="n")


async def test_streamed_arun_interrupt_and_input(box):
    chunks: list[str] = []
    r = await box.arun("for i in 1 2 3; do echo line$i; done", on_output=chunks.append)
    assert "".join(chunks) == "line1\nline2\nline3\n" and r.exit_code == 0  # the stream: as printed
    assert r.output == "line1\nline2\nline3"  # the result: as arun's

    await box.create_session(CreateBashSessionRequest(session="i"))
    running = asyncio.create_task(box.arun("sleep 100", session="i"))
    await until(lambda: _has_proc(box, "sleep 100"))
    interrupted = await box.interrupt("i")
    r = await running
    assert r.status == "interrupted" or interrupted.status == "interrupted"
    assert (await box.arun("echo still-usable", session="i")).output.strip() == "still-usable"

    reading = asyncio.create_task(box.arun("read -r x; echo got:$x", session="i"))
    await until(lambda: _session_busy(box, "i"))
    await box.send_input("i", "hello\n")
    assert "got:hello" in (await reading).output


async def _has_proc(box, text):
    r = await box.execute(Command(command=["pgrep", "-f", text]))
    return r.exit_code == 0


async def _session_busy(box, name):
    sessions = (await box._context.http.get("/sessions", {"sandbox_id": box.sandbox_id}))["sessions"]
    return any(s["session"] == name and s["running"] for s in sessions)


async def test_execute_is_a_separate_process(box):
    r = await box.execute(Command(command="echo out; echo err >&2; exit 4"))
    assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 4)
    r = await box.execute(Command(command=["pwd"], cwd="/tmp"))
    assert r.stdout.strip() == "/tmp"


async def test_files_text_binary_and_directories(box, tmp_path):
    assert (await box.write_file(WriteFileRequest(content="héllo\n", path="/tmp/t/a.txt"))).success
    assert (await box.read_file(ReadFileRequest(path="/tmp/t/a.txt"))).content == "héllo\n"
    blob = bytes(range(256)) * 1000
    assert await box.write_bytes("/tmp/t/blob.bin", blob, mode=0o600) == len(blob)
    assert await box.read_bytes("/tmp/t/blob.bin") == blob
    assert await box.read_bytes("/tmp/t/blob.bin", offset=256, length=4) == bytes(range(4))

    local = tmp_path / "up.bin"
    local.write_bytes(blob[:5000])
    assert (await box.upload(UploadRequest(source_path=str(local), target_path="/tmp/t/up.bin"))).success
    assert await box.read_bytes("/tmp/t/up.bin") == blob[:5000]
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.txt").write_text("x")
    (tree / "y.bin").write_bytes(b"\0\1")
    assert (await box.upload_by_path(tree, "/tmp/t/tree")).success

    got = await box.download("/tmp/t", tmp_path / "down")
    assert (got / "blob.bin").read_bytes() == blob
    assert (got / "tree" / "sub" / "x.txt").read_text() == "x"
    assert (await box.download("/tmp/t/a.txt", tmp_path / "one.txt")).read_text() == "héllo\n"


async def test_uploads_keep_modes_and_downloads_keep_hard_links(box, tmp_path):
    """A folder arrives with its modes (a task run by a non-root user reads it), and a folder
    holding a hard link downloads (its link name moves with the members, like any other name)."""
    import os
    import stat

    tree = tmp_path / "tree"
    (tree / "open" / "deep").mkdir(parents=True)
    (tree / "private").mkdir()
    (tree / "open" / "deep" / "run.sh").write_text("#!/bin/sh\n")
    (tree / "open" / "data.txt").write_text("d")
    os.chmod(tree / "open", 0o755)
    os.chmod(tree / "open" / "deep", 0o751)
    os.chmod(tree / "private", 0o700)
    os.chmod(tree / "open" / "deep" / "run.sh", 0o755)
    os.chmod(tree / "open" / "data.txt", 0o640)
    await box.upload_dir(tree, "/tmp/modes")
    r = await box.execute(Command(command="stat -c '%n %a' /tmp/modes/open /tmp/modes/open/deep /tmp/modes/private "
                                          "/tmp/modes/open/deep/run.sh /tmp/modes/open/data.txt", timeout=30))
    modes = dict(line.split() for line in r.stdout.splitlines())
    assert modes == {"/tmp/modes/open": "755", "/tmp/modes/open/deep": "751", "/tmp/modes/private": "700",
                     "/tmp/modes/open/deep/run.sh": "755", "/tmp/modes/open/data.txt": "640"}, r.stdout

    r = await box.execute(Command(command="mkdir -p /tmp/hl/sub && echo same > /tmp/hl/sub/a && ln /tmp/hl/sub/a "
                                          "/tmp/hl/b && stat -c %h /tmp/hl/b", timeout=30))
    assert r.stdout.strip() == "2"  # the control: a real hard link in the sandbox
    got = await box.download("/tmp/hl", tmp_path / "hl")
    assert (got / "sub" / "a").read_text() == "same\n" and (got / "b").read_text() == "same\n"
    assert stat.S_ISREG((got / "b").lstat().st_mode)


async def test_background_processes_and_stats(box):
    proc = await box.start_process("echo started; echo oops >&2; sleep 30")
    out = await until(lambda: _output(box, proc["proc_id"]))
    assert out == b"started\n"
    assert (await box.process_status(proc["proc_id"]))["running"]
    await box.kill_process(proc["proc_id"])
    status = await until(lambda: _finished(box, proc["proc_id"]))
    assert status["exit_code"] is not None
    err, _, _ = await box.process_output(proc["proc_id"], "stderr")
    assert err == b"oops\n"
    stats = await box.stats()
    assert stats["pids"] is None or stats["pids"] >= 1


async def _output(box, proc_id):
    data, _, _ = await box.process_output(proc_id)
    return data


async def _finished(box, proc_id):
    status = await box.process_status(proc_id)
    return status if not status["running"] else None


async def test_caller_chosen_id_makes_start_idempotent(admin):
    sandbox_id = "idem-" + uuid.uuid4().hex[:8]
    first, second = Sandbox(config(admin, sandbox_id=sandbox_id)), Sandbox(config(admin, sandbox_id=sandbox_id))
    await asyncio.gather(first.start(), second.start())
    try:
        assert first.sandbox_id == second.sandbox_id == sandbox_id
        await first.write_bytes("/tmp/mark", b"1")
        assert await second.read_bytes("/tmp/mark") == b"1"
    finally:
        await first.stop()
    with pytest.raises(SandboxNotRunning):
        await second.read_bytes("/tmp/mark")


async def test_idle_ttl_stops_unused_sandbox(admin):
    sandbox = Sandbox(config(admin, auto_clear_seconds=1))
    await sandbox.start()
    try:
        status = await until(lambda: _stopped(sandbox), timeout=60)
        assert status.state == "stopped" and status.state_history[-1].event == "idle_timeout"
    finally:
        await sandbox.stop()


async def _stopped(sandbox):
    status = await sandbox.get_status(include_all_states=True)
    return status if status.state == "stopped" else None


async def test_stop_delete_and_unknown_sandbox(admin):
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    await sandbox.stop()
    await sandbox.delete()
    status = await sandbox.get_status(include_all_states=True)
    assert status.lifecycle_state == "deleted"
    ghost = Sandbox(config(admin))
    with pytest.raises(SandboxNotFound):
        await ghost.attach("no-such-sandbox")


async def test_group_starts_and_stops_all(admin):
    group = SandboxGroup(SandboxGroupConfig(base_url=admin.url, memory="512m", cpus=1, size=3, start_concurrency=2))
    await group.start()
    try:
        ids = {s.sandbox_id for s in group.sandbox_list}
        assert len(ids) == 3
        outs = await asyncio.gather(*(s.arun("echo $((6*7))") for s in group.sandbox_list))
        assert [o.output.strip() for o in outs] == ["42"] * 3
    finally:
        await group.stop()


def test_sync_sandbox(admin):
    with SyncSandbox(config(admin)) as sandbox:
        assert sandbox.arun("echo sync").output.strip() == "sync"
        sandbox.write_bytes("/tmp/s.bin", b"\xff\x00")
        assert sandbox.read_bytes("/tmp/s.bin") == b"\xff\x00"
        # the parts block too, and are the same calls
        assert sandbox.files.read_bytes("/tmp/s.bin") == b"\xff\x00"
        assert sandbox.commands.arun("echo part").output == "part"
    assert sandbox.get_status(include_all_states=True).state == "stopped"
