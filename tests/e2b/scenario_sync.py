"""The e2b SDK's sync API against ROCK: run in the SDK's own venv by tests/e2b/test_e2b_sdk.py.

Environment: E2B_API_KEY (a ROCK token), E2B_API_URL and E2B_SANDBOX_URL (the admin), OTHER_KEY
(a second ROCK token), TEMPLATE. Prints "E2B SYNC OK" when every check passed.
"""

import sys
import inspect
import io
import os
import threading
import time
import urllib.error
import urllib.request

import e2b
from e2b import (AuthenticationException, CommandExitException, NotFoundException, PtySize, Sandbox,
                 SandboxException, SandboxQuery, TimeoutException)
from e2b.sandbox.filesystem.filesystem import WriteEntry

print("e2b", e2b.__file__)
assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
TAG = "sync-%d" % os.getpid()

sbx = Sandbox.create(os.environ["TEMPLATE"], timeout=120, metadata={"suite": TAG, "kind": "main"},
                     envs={"GLOBAL_VAR": "from-create"})
try:
    # -- commands ----------------------------------------------------------------------------
    r = sbx.commands.run("echo out; echo err >&2; echo $GLOBAL_VAR $LOCAL_VAR; pwd",
                         envs={"LOCAL_VAR": "per-call"}, cwd="/tmp")
    assert r.stdout == "out\nfrom-create per-call\n/tmp\n", repr(r.stdout)
    assert r.stderr == "err\n" and r.exit_code == 0, r
    try:
        sbx.commands.run("echo partial; exit 3")
        raise AssertionError("a non-zero exit must raise")
    except CommandExitException as exc:
        assert exc.exit_code == 3 and exc.stdout == "partial\n", exc
    started = time.time()
    try:
        sbx.commands.run("echo $$ > /tmp/slow.pid; sleep 30", timeout=2)
        raise AssertionError("the timeout must raise")
    except TimeoutException:
        pass
    assert time.time() - started < 20
    time.sleep(1.5)
    pid = sbx.files.read("/tmp/slow.pid").strip()
    alive = sbx.commands.run("kill -0 %s 2>/dev/null && echo alive || echo gone" % pid).stdout.strip()
    assert alive == "gone", "the process outlived its timeout"

    # another user, where the image has one; one it lacks is envd's "invalid user"
    assert sbx.commands.run("whoami", user="nobody").stdout == "nobody\n"
    try:
        sbx.commands.run("whoami", user="user")
        raise AssertionError("a user the image lacks must be refused")
    except AuthenticationException as exc:
        assert "user" in str(exc), exc
    sbx.files.write("/tmp/owned-by-nobody", "x", user="nobody")
    assert sbx.files.get_info("/tmp/owned-by-nobody").owner == "nobody"

    # background: output survives the client going away; connect, stdin, list, kill
    bg = sbx.commands.run("read line; echo got:$line; sleep 60", background=True, stdin=True, timeout=0)
    assert bg.pid in [p.pid for p in sbx.commands.list()]
    seen = []
    again = sbx.commands.connect(bg.pid, timeout=0)  # live output from here on (envd replays nothing)
    sbx.commands.send_stdin(bg.pid, "hello\n")
    deadline = time.time() + 10
    for stdout, _, _ in again:
        if stdout:
            seen.append(stdout)
        if "got:hello" in "".join(seen) or time.time() > deadline:
            break
    assert "got:hello" in "".join(seen), seen
    assert sbx.commands.kill(bg.pid) is True
    try:
        bg.wait()
        raise AssertionError("a killed command ends non-zero")
    except CommandExitException as exc:
        assert exc.exit_code != 0
    assert sbx.commands.kill(bg.pid) is False  # gone: the SDK's NOT_FOUND -> False

    # stdin to EOF: close_stdin (envd 0.5.2) and, where the SDK has it, the StreamInput client stream
    if hasattr(sbx.commands, "close_stdin"):
        cat = sbx.commands.run("cat", background=True, stdin=True, timeout=30)
        if hasattr(sbx.commands, "stream_input"):
            sbx.commands.stream_input(cat.pid, iter(["streamed ", b"input\n"]))
        else:
            sbx.commands.send_stdin(cat.pid, "streamed input\n")
        sbx.commands.close_stdin(cat.pid)
        assert cat.wait().stdout == "streamed input\n"

    # pty
    data = []
    term = sbx.pty.create(PtySize(rows=24, cols=80), timeout=0)

    def drain():
        try:
            term.wait(on_pty=data.append)
        except CommandExitException:
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    sbx.pty.send_stdin(term.pid, b"stty size; echo pty-$((40+2))\n")
    deadline = time.time() + 15
    while time.time() < deadline and b"pty-42" not in b"".join(data):
        time.sleep(0.1)
    sbx.pty.resize(term.pid, PtySize(rows=30, cols=100))
    sbx.pty.send_stdin(term.pid, b"stty size\n")
    while time.time() < deadline and b"30 100" not in b"".join(data):
        time.sleep(0.1)
    joined = b"".join(data)
    assert b"pty-42" in joined and b"24 80" in joined and b"30 100" in joined, joined[-500:]
    assert sbx.pty.kill(term.pid) is True
    reader.join(10)
    assert not reader.is_alive(), "the pty's stream did not end after kill"

    # -- files -------------------------------------------------------------------------------
    sbx.files.write("/tmp/e2b/text.txt", "héllo")
    assert sbx.files.read("/tmp/e2b/text.txt") == "héllo"
    sbx.files.write("/tmp/e2b/bin.dat", bytes(range(256)))
    assert bytes(sbx.files.read("/tmp/e2b/bin.dat", format="bytes")) == bytes(range(256))
    infos = sbx.files.write_files([WriteEntry(path="/tmp/e2b/many/a", data="A"),
                                   WriteEntry(path="/tmp/e2b/many/b", data=b"B")])
    assert sorted(i.path for i in infos) == ["/tmp/e2b/many/a", "/tmp/e2b/many/b"], infos
    assert sbx.files.read("/tmp/e2b/many/b") == "B"
    if "gzip" in inspect.signature(sbx.files.write).parameters:  # gzip both ways, a file-like body
        sbx.files.write("/tmp/e2b/zipped.txt", "z" * 10000, gzip=True)
        assert sbx.files.read("/tmp/e2b/zipped.txt", gzip=True) == "z" * 10000
        sbx.files.write("/tmp/e2b/filelike.bin", io.BytesIO(b"from a file object"))
        assert sbx.files.read("/tmp/e2b/filelike.bin") == "from a file object"
        sbx.files.remove("/tmp/e2b/zipped.txt")
        sbx.files.remove("/tmp/e2b/filelike.bin")
    names = sorted(e.name for e in sbx.files.list("/tmp/e2b"))
    assert names == ["bin.dat", "many", "text.txt"], names
    deep = sorted(e.path for e in sbx.files.list("/tmp/e2b", depth=2))
    assert "/tmp/e2b/many/a" in deep, deep
    assert sbx.files.exists("/tmp/e2b/text.txt") and not sbx.files.exists("/tmp/e2b/nope")
    info = sbx.files.get_info("/tmp/e2b/bin.dat")
    assert info.size == 256 and info.type.value == "file" and info.name == "bin.dat", info
    assert sbx.files.make_dir("/tmp/e2b/newdir/sub") is True
    assert sbx.files.make_dir("/tmp/e2b/newdir/sub") is False  # exists
    moved = sbx.files.rename("/tmp/e2b/text.txt", "/tmp/e2b/newdir/moved.txt")
    assert moved.path == "/tmp/e2b/newdir/moved.txt" and not sbx.files.exists("/tmp/e2b/text.txt")
    sbx.files.remove("/tmp/e2b/newdir")
    assert not sbx.files.exists("/tmp/e2b/newdir")
    try:
        sbx.files.read("/tmp/e2b/missing.txt")
        raise AssertionError("a missing file must raise")
    except NotFoundException as exc:
        assert "missing.txt" in str(exc), exc
    try:
        sbx.files.read("/tmp/e2b/many")
        raise AssertionError("reading a directory must raise")
    except SandboxException as exc:
        assert "directory" in str(exc), exc
    sbx.files.make_dir("/tmp/watched")
    watch = sbx.files.watch_dir("/tmp/watched")  # the polling form: CreateWatcher, GetWatcherEvents
    sbx.files.write("/tmp/watched/new.txt", "x")
    # what happens between two polls is kept, as envd keeps it: a file that lives milliseconds,
    # chmod, a rename (its old name, then the new one created), a remove
    sbx.commands.run("cd /tmp/watched && echo s > short && rm short && chmod 600 new.txt && mv new.txt moved.txt"
                     " && rm moved.txt && touch done")
    events = []
    deadline = time.time() + 10
    while time.time() < deadline and not any(e.name == "done" for e in events):
        time.sleep(0.3)
        events += watch.get_new_events()
    watch.stop()
    seen = [(e.type.name, e.name) for e in events]
    expected = [("CREATE", "new.txt"), ("WRITE", "new.txt"), ("CREATE", "short"), ("WRITE", "short"),
                ("REMOVE", "short"), ("CHMOD", "new.txt"), ("RENAME", "new.txt"), ("CREATE", "moved.txt"),
                ("REMOVE", "moved.txt"), ("CREATE", "done")]
    at = 0
    for event in expected:  # in this order
        assert event in seen[at:], (event, seen)
        at = seen.index(event, at) + 1
    # signed URLs: a plain HTTP client, no SDK headers
    up = sbx.upload_url("/tmp/e2b/uploaded.txt")
    boundary = "rockboundary"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"uploaded.txt\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\nvia-url\r\n--%s--\r\n" % (boundary, boundary)).encode()
    req = urllib.request.Request(up, data=body, method="POST",
                                 headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    assert urllib.request.urlopen(req).status == 200
    assert urllib.request.urlopen(sbx.download_url("/tmp/e2b/uploaded.txt")).read() == b"via-url"
    try:
        urllib.request.urlopen(sbx.download_url("/tmp/e2b/uploaded.txt").replace("signature=v1_", "signature=v1_x"))
        raise AssertionError("a forged signature must be refused")
    except urllib.error.HTTPError as exc:
        assert exc.code == 502, exc.code

    # -- control plane -----------------------------------------------------------------------
    other = Sandbox.create(os.environ["TEMPLATE"], timeout=60, metadata={"suite": TAG, "kind": "other"})
    listed = Sandbox.list(query=SandboxQuery(metadata={"suite": TAG, "kind": "main"})).next_items()
    assert [s.sandbox_id for s in listed] == [sbx.sandbox_id], listed
    assert listed[0].metadata == {"suite": TAG, "kind": "main"}
    pager = Sandbox.list(query=SandboxQuery(metadata={"suite": TAG}), limit=1)
    first, second = pager.next_items(), pager.next_items()
    assert len(first) == 1 and len(second) == 1 and not pager.has_next, (first, second)
    assert {first[0].sandbox_id, second[0].sandbox_id} == {sbx.sandbox_id, other.sandbox_id}
    again = Sandbox.connect(sbx.sandbox_id)
    assert again.commands.run("echo $GLOBAL_VAR").stdout == "from-create\n"
    assert again.files.read("/tmp/e2b/many/a") == "A"
    sbx.set_timeout(300)
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id and info.metadata["kind"] == "main", info
    assert (info.end_at - info.started_at).total_seconds() >= 250, info
    metrics = sbx.get_metrics()
    assert metrics and metrics[-1].mem_used > 0, metrics
    # another token sees nothing and touches nothing
    key = os.environ["OTHER_KEY"]
    assert Sandbox.list(query=SandboxQuery(metadata={"suite": TAG}), api_key=key).next_items() == []
    try:
        Sandbox.connect(sbx.sandbox_id, api_key=key)
        raise AssertionError("another token must not connect")
    except (NotFoundException, SandboxException) as exc:
        assert "404" in str(exc) or "doesn't exist" in str(exc) or "not found" in str(exc).lower(), exc
    assert Sandbox.kill(sbx.sandbox_id, api_key=key) is False
    assert sbx.is_running()
    try:
        Sandbox.create(os.environ["TEMPLATE"], api_key="not-a-token")
        raise AssertionError("a bad token must be refused")
    except AuthenticationException:
        pass
    try:
        Sandbox.create("no-such-template")
        raise AssertionError("an unknown template must be refused")
    except SandboxException as exc:
        assert "no-such-template" in str(exc), exc
    assert other.kill() is True
finally:
    killed = sbx.kill()
assert killed is True
assert not sbx.is_running()
assert sbx.kill() is False
try:
    sbx.commands.run("echo after")
    raise AssertionError("a killed sandbox must not run commands")
except Exception as exc:  # noqa: BLE001 - the SDK's own class differs across versions
    assert "was not found" in str(exc) or "not running" in str(exc).lower(), repr(exc)
print("E2B SYNC OK")

# Every check above passed. Leave without interpreter finalization: the SDK's background threads
# (its HTTP client's) have aborted it once at exit (PyGILState_Release, rc -6, after the OK line),
# which says nothing about the server under test.
sys.stdout.flush()
os._exit(0)
