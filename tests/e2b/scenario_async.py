"""The e2b SDK's async API against ROCK (AsyncSandbox), run like scenario_sync.py; prints
"E2B ASYNC OK" when every check passed."""

import sys
import asyncio
import os
import time

import e2b
from e2b import (AsyncSandbox, CommandExitException, NotFoundException, PtySize, SandboxException, SandboxQuery,
                 TimeoutException)

assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
TAG = "async-%d" % os.getpid()


async def until(predicate, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline and not predicate():
        await asyncio.sleep(0.1)
    return predicate()


async def main():
    sbx = await AsyncSandbox.create(os.environ["TEMPLATE"], timeout=120, metadata={"suite": TAG},
                                    envs={"GLOBAL_VAR": "from-create"})
    try:
        r = await sbx.commands.run("echo out; echo err >&2; echo $GLOBAL_VAR $LOCAL_VAR; pwd",
                                   envs={"LOCAL_VAR": "per-call"}, cwd="/tmp")
        assert (r.stdout, r.stderr, r.exit_code) == ("out\nfrom-create per-call\n/tmp\n", "err\n", 0), r
        try:
            await sbx.commands.run("exit 7")
            raise AssertionError("a non-zero exit must raise")
        except CommandExitException as exc:
            assert exc.exit_code == 7
        try:
            await sbx.commands.run("echo $$ > /tmp/slow.pid; sleep 30", timeout=2)
            raise AssertionError("the timeout must raise")
        except TimeoutException:
            pass
        await asyncio.sleep(1.5)
        pid = (await sbx.files.read("/tmp/slow.pid")).strip()
        assert (await sbx.commands.run("kill -0 %s 2>/dev/null && echo alive || echo gone" % pid)).stdout == "gone\n"

        bg = await sbx.commands.run("read line; echo got:$line; sleep 60", background=True, stdin=True, timeout=0)
        assert bg.pid in [p.pid for p in await sbx.commands.list()]
        seen = []
        again = await sbx.commands.connect(bg.pid, timeout=0, on_stdout=seen.append)
        await sbx.commands.send_stdin(bg.pid, "hello\n")
        assert await until(lambda: "got:hello" in "".join(seen)), seen
        assert await sbx.commands.kill(bg.pid) is True
        try:
            await again.wait()
            raise AssertionError("a killed command ends non-zero")
        except CommandExitException:
            pass
        assert await sbx.commands.kill(bg.pid) is False

        data = []
        term = await sbx.pty.create(PtySize(rows=24, cols=80), on_data=data.append, timeout=0)
        await sbx.pty.send_stdin(term.pid, b"stty size; echo pty-$((40+2))\n")
        assert await until(lambda: b"pty-42" in b"".join(data)), b"".join(data)
        await sbx.pty.resize(term.pid, PtySize(rows=30, cols=100))
        await sbx.pty.send_stdin(term.pid, b"stty size\n")
        assert await until(lambda: b"30 100" in b"".join(data)), b"".join(data)
        assert b"24 80" in b"".join(data)
        assert await sbx.pty.kill(term.pid) is True

        await sbx.files.write("/tmp/a/text.txt", "héllo")
        assert await sbx.files.read("/tmp/a/text.txt") == "héllo"
        await sbx.files.write("/tmp/a/bin.dat", bytes(range(256)))
        assert bytes(await sbx.files.read("/tmp/a/bin.dat", format="bytes")) == bytes(range(256))
        assert sorted(e.name for e in await sbx.files.list("/tmp/a")) == ["bin.dat", "text.txt"]
        assert await sbx.files.exists("/tmp/a/text.txt") and not await sbx.files.exists("/tmp/a/nope")
        assert (await sbx.files.get_info("/tmp/a/bin.dat")).size == 256
        assert await sbx.files.make_dir("/tmp/a/d") is True
        await sbx.files.rename("/tmp/a/text.txt", "/tmp/a/d/t.txt")
        assert await sbx.files.read("/tmp/a/d/t.txt") == "héllo"
        await sbx.files.remove("/tmp/a/d")
        assert not await sbx.files.exists("/tmp/a/d")
        try:
            await sbx.files.read("/tmp/a/missing")
            raise AssertionError("a missing file must raise")
        except NotFoundException:
            pass
        events = []
        await sbx.files.make_dir("/tmp/w")
        watch = await sbx.files.watch_dir("/tmp/w", on_event=events.append, timeout=0)
        await asyncio.sleep(0.5)
        await sbx.files.write("/tmp/w/new.txt", "x")
        assert await until(lambda: any(e.name == "new.txt" for e in events)), events
        await watch.stop()

        listed = await (AsyncSandbox.list(query=SandboxQuery(metadata={"suite": TAG}))).next_items()
        assert [s.sandbox_id for s in listed] == [sbx.sandbox_id], listed
        other_key = os.environ["OTHER_KEY"]
        assert await (AsyncSandbox.list(query=SandboxQuery(metadata={"suite": TAG}), api_key=other_key)).next_items() == []
        try:
            await AsyncSandbox.connect(sbx.sandbox_id, api_key=other_key)
            raise AssertionError("another token must not connect")
        except (NotFoundException, SandboxException):
            pass
        again = await AsyncSandbox.connect(sbx.sandbox_id)
        assert (await again.commands.run("echo $GLOBAL_VAR")).stdout == "from-create\n"
        await sbx.set_timeout(200)
        info = await sbx.get_info()
        assert info.metadata == {"suite": TAG} and (info.end_at - info.started_at).total_seconds() >= 150, info
    finally:
        assert await sbx.kill() is True
    assert not await sbx.is_running()
    assert await sbx.kill() is False
    print("E2B ASYNC OK")


asyncio.run(main())

# Every check above passed. Leave without interpreter finalization: the SDK's background threads
# (its HTTP client's) have aborted it once at exit (PyGILState_Release, rc -6, after the OK line),
# which says nothing about the server under test.
sys.stdout.flush()
os._exit(0)
