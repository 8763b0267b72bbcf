"""One-shot exec, background processes, files and directory transfer, stats."""

from __future__ import annotations

import io
import os
import signal
import tarfile

import pytest

from rock.errors import AgentError, BadRequest


async def test_exec_argv_env_cwd_and_separate_streams(box):
    result = await box.exec(["sh", "-c", "echo out $FOO $(pwd); echo err >&2; exit 3"], env={"FOO": "bar"}, cwd="/tmp")
    assert (result.stdout, result.stderr, result.exit_code, result.timed_out) == ("out bar /tmp\n", "err\n", 3, False)


async def test_exec_shell_string_and_stdin(box):
    result = await box.exec("tr a-z A-Z", stdin=b"shout\n")
    assert result.stdout == "SHOUT\n" and result.exit_code == 0


async def test_exec_timeout_kills_the_whole_group(box):
    result = await box.exec("sleep 600 & sleep 600; echo never", timeout=0.5)
    assert result.timed_out and "never" not in result.stdout


async def test_commands_start_with_sigpipe_and_sigxfsz_at_their_defaults(box):
    # The agent (Python) ignores both; a command must not inherit that: a shell cannot undo it,
    # and ``yes | head`` would end with "Broken pipe" errors instead of quietly.
    result = await box.exec("yes | head -1", timeout=30)
    assert (result.stdout, result.stderr, result.exit_code, result.timed_out) == ("y\n", "", 0, False)
    status = (await box.exec(["cat", "/proc/self/status"])).stdout
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    assert ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)) == 0, hex(ignored)
    background = await box.proc_start("yes | head -1 >/dev/null; echo done")
    assert (await box.proc_wait(background["proc_id"], timeout=30))["exit_code"] == 0
    out, _, _ = await box.proc_output(background["proc_id"], "stderr")
    assert out == b""


async def test_exec_missing_program_is_a_clear_error(box):
    with pytest.raises(AgentError, match="no-such-program"):
        await box.exec(["no-such-program"])


async def test_background_process_lifecycle(box):
    started = await box.proc_start("echo begin; sleep 600", name="bg-sleeper")
    status = await box.proc_status(started["proc_id"])
    assert status["running"] and status["pid"] == started["pid"]
    assert (await box.proc_wait(started["proc_id"], timeout=0.1))["running"]
    await box.proc_kill(started["proc_id"], 9)
    status = await box.proc_wait(started["proc_id"], timeout=10)
    assert not status["running"] and status["exit_code"] == -9
    data, offset, running = await box.proc_output(started["proc_id"])
    assert data == b"begin\n" and offset == 6 and not running


async def test_background_exit_code_and_stderr(box):
    started = await box.proc_start(["sh", "-c", "echo oops >&2; exit 5"])
    status = await box.proc_wait(started["proc_id"], timeout=10)
    assert (status["running"], status["exit_code"]) == (False, 5)
    assert (await box.proc_output(started["proc_id"], "stderr"))[0] == b"oops\n"


async def test_binary_file_round_trip_one_megabyte(box):
    data = os.urandom(1 << 20)
    await box.write_file("/tmp/files/blob.bin", data, mode=0o600)
    assert await box.read_file("/tmp/files/blob.bin") == data
    info = await box.stat("/tmp/files/blob.bin")
    assert (info["size"], info["mode"], info["type"]) == (1 << 20, 0o600, "file")
    assert await box.read_file("/tmp/files/blob.bin", offset=10, length=5) == data[10:15]
    assert (await box.exec("sha256sum /tmp/files/blob.bin")).stdout.split()[0] == __import__("hashlib").sha256(data).hexdigest()


async def test_file_management(box):
    await box.mkdir("/tmp/mgmt/a/b")
    await box.write_file("/tmp/mgmt/a/b/f.txt", b"x")
    await box.write_file("/tmp/mgmt/a/b/f.txt", b"y", append=True)
    assert await box.read_file("/tmp/mgmt/a/b/f.txt") == b"xy"
    names = [e["name"] for e in await box.list_dir("/tmp/mgmt/a/b")]
    assert names == ["f.txt"]
    await box.chmod("/tmp/mgmt/a/b/f.txt", 0o751)
    await box.chown("/tmp/mgmt/a/b/f.txt", uid=1234, gid=1234)
    info = await box.stat("/tmp/mgmt/a/b/f.txt")
    assert (info["mode"], info["uid"], info["gid"]) == (0o751, 1234, 1234)
    with pytest.raises(AgentError) as err:
        await box.remove("/tmp/mgmt/a")
    assert err.value.kind == "DirectoryNotEmpty"
    await box.remove("/tmp/mgmt", recursive=True)
    with pytest.raises(AgentError) as err:
        await box.stat("/tmp/mgmt")
    assert err.value.kind == "FileNotFound" and err.value.status_code == 404


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def _chunks(data: bytes, size: int = 100_000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_directory_upload_and_download(box):
    files = {"proj/a.txt": b"alpha", "proj/sub/b.bin": os.urandom(300_000), "proj/sub/deep/c": b""}
    result = await box.tar_put("/tmp/up", _chunks(_tar(files)))
    assert result["files"] >= 3
    assert await box.read_file("/tmp/up/proj/sub/b.bin") == files["proj/sub/b.bin"]
    raw = b"".join([chunk async for chunk in box.tar_get("/tmp/up/proj")])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    assert got == {name: data for name, data in files.items()}


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/escape.txt", "ok/../../escape.txt"])
async def test_upload_refuses_paths_outside_the_target(box, name):
    with pytest.raises(BadRequest, match="outside"):
        await box.tar_put("/tmp/safe", _chunks(_tar({name: b"bad"})))
    assert (await box.exec("ls /tmp/escape.txt /etc/escape.txt 2>&1 | grep -c 'No such'")).stdout.strip() == "2"


async def test_stats_report_usage(box, worker):
    stats = await box.stats()
    assert set(stats) >= {"cpu_seconds", "memory_bytes", "pids"}
    if worker.runtime.isolated:
        assert stats["memory_bytes"] > 0 and stats["pids"] >= 2 and stats["memory_limit_bytes"] == 512 << 20
