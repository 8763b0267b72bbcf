"""The verifier's supervisor: runs as root in the verifier's fresh sandbox, runs the hidden tests
as an unprivileged user, ends every process that user has, and only then says what the tests
decided, on its own stdout (one JSON document), which the harness reads.

Standard library only; started as ``python3 -I -S supervise.py SPEC_JSON`` (the image's python3,
else the host's interpreter mounted read-only), so nothing in the workspace, the environment or
any site-packages reaches it. Two modes:

``pytest``  ROCK's hermetic runner: the tests' files are copied over the workspace (root-owned,
            read-only to the tests' user), then ``pytest_main.py`` runs pytest as that user with an
            import path the workspace cannot shadow. The per-test results are taken only from the
            connection the pytest process itself makes to this supervisor's socket at the end of
            the session (the kernel names the connecting process: SO_PEERCRED); a report from any
            other process (one the tested code forked, say) is counted and thrown away.
``script``  a task's own ``test.sh`` (Harbor's layout) as that user, with /logs/verifier its own;
            reward.txt and results.json are read after every process of the user has ended, as
            regular files (no links), within a size limit.

Why a user and not a process group: a process the tested code starts with ``setsid`` or a double
fork leaves any group, but not its user; ``kill(-1, SIGKILL)`` sent as that user reaches all of
them in this sandbox's pid namespace (and nothing else: root's agent and this supervisor stay).
"""

import json
import os
import select
import signal
import socket
import struct
import sys
import time

UID = GID = 65534  # "nobody" in Debian's and most images' /etc/passwd
HOME = "/tmp/rock-verifier-home"
LOGS = "/logs/verifier"
MAX_REPORT = 64 << 20
MAX_FILE = 16 << 20
OUTPUT_TAIL = 4000


def main(argv):
    """Run the spec (``argv[1]``, JSON) and print the outcome as one JSON document on stdout, a failure as its
    ``error``; returns 0."""
    spec = json.loads(argv[1])
    t0 = time.monotonic()
    out = {"mode": spec["mode"], "exit_code": None, "timed_out": False, "error": None, "results": None,
           "reward_txt": "", "foreign_reports": 0, "leftover_processes": 0, "output": ""}
    try:
        subreaper()
        prepare(spec)
        listener, name = None, None
        if spec["mode"] == "pytest":
            listener, name = listen()
        pid = start(spec, name)
        status, timed_out, report, foreign, leftover, adopted = wait(pid, listener, float(spec["timeout"]))
        code = os.waitstatus_to_exitcode(status)
        out.update(exit_code=code, timed_out=timed_out, foreign_reports=foreign, leftover_processes=leftover,
                   adopted_processes=adopted)
        if spec["mode"] == "pytest":
            collect_pytest(spec, report, code, out)
        elif not timed_out:
            collect_script(code, adopted, out)
    except Exception as exc:  # noqa: BLE001 - the harness gets a reason, never a traceback on stdout
        out["error"] = "%s: %s" % (type(exc).__name__, exc)
    out["output"] = tail(os.path.join(LOGS, "output.log"))
    out["seconds"] = round(time.monotonic() - t0, 3)
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()
    return 0


def prepare(spec):
    """The workspace and the tests readable by the tests' user; where it may write, its own."""
    workdir = spec["workdir"]
    os.makedirs(LOGS, exist_ok=True)
    os.chown(LOGS, 0, 0)
    os.chmod(LOGS, 0o755)
    os.chmod(os.path.dirname(LOGS), 0o755)
    if spec["mode"] == "pytest":
        for src in spec.get("overlay") or []:
            copy_over(src, workdir)
        # Root keeps the workspace: the tested code cannot rewrite a test file pytest has yet to
        # collect, nor the library's own files mid-run.
        readable(workdir, owner=None)
    else:
        # A task's test.sh writes where it likes in its workspace (Harbor's tests do) and its
        # reward in /logs/verifier: both its user's.
        readable(workdir, owner=(UID, GID))
        # test.sh writes its reward and results into files root made (0666, in a sticky folder):
        # it may write them, as may its tests, but none of them can chmod, link or replace them,
        # so test.sh's own last write is what stays.
        os.chmod(LOGS, 0o1777)
        for name in ("reward.txt", "results.json"):
            fd = os.open(os.path.join(LOGS, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
            os.fchmod(fd, 0o666)
            os.close(fd)
    readable("/tests", owner=None)
    os.makedirs(HOME, exist_ok=True)
    os.chown(HOME, UID, GID)
    os.chmod(HOME, 0o700)
    fd = os.open(os.path.join(LOGS, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    os.close(fd)


def copy_over(src, dest):
    """``src``'s tree over ``dest`` (as ``cp -a src/. dest`` would), root-owned."""
    import shutil

    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        target = os.path.normpath(os.path.join(dest, rel))
        if os.path.islink(target) or (os.path.exists(target) and not os.path.isdir(target)):
            _remove(target)
        os.makedirs(target, exist_ok=True)
        for name in files:
            path = os.path.join(target, name)
            if os.path.lexists(path):
                _remove(path)  # a link or a file the agent left where a hidden test goes
            shutil.copyfile(os.path.join(root, name), path, follow_symlinks=False)


def _remove(path):
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def readable(top, owner):
    """Every directory 0755 and file 0644 (0755 if executable) under ``top``, owned by root or
    ``owner``; links are left as they are (never followed)."""
    if not os.path.isdir(top):
        return
    uid, gid = owner or (0, 0)
    for root, dirs, files in os.walk(top):
        os.lchown(root, uid, gid)
        os.chmod(root, 0o755)
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            os.lchown(path, uid, gid)
            if not os.path.islink(path) and not os.path.isdir(path):
                os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)


def listen():
    """An abstract Unix socket (this sandbox's network namespace only) for the pytest report."""
    name = "\0rock-verify-%s" % os.urandom(8).hex()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(name)
    sock.listen(16)
    sock.setblocking(False)
    return sock, name


def start(spec, socket_name):
    """The tests as the unprivileged user, in a session of their own, output to the log."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "USER": "nobody", "LOGNAME": "nobody",
           "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", MARK.split("=")[0]: MARK.split("=")[1]}
    for key, value in (spec.get("env") or {}).items():
        # The task's own variables, less those that would put a path before the runner's own.
        if spec["mode"] != "pytest" or not key.startswith(("PYTHON", "PYTEST")):
            env[key] = value
    if spec["mode"] == "pytest":
        env["ROCK_VERIFY_SOCKET"] = socket_name[1:]
        here = os.path.dirname(os.path.abspath(__file__))
        argv = [sys.executable, "-S", "-s", "-P", "-B", os.path.join(here, "pytest_main.py"), json.dumps(spec["pytest"])]
    else:
        argv = ["/bin/bash", spec["script"]]
    log = os.open(os.path.join(LOGS, "output.log"), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    devnull = os.open(os.devnull, os.O_RDONLY)
    pid = os.fork()
    if pid == 0:  # the child: nothing of root's survives into the tests (fds, groups, ids)
        try:
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.closerange(3, 65536)
            os.setsid()
            os.setgroups([])
            os.setresgid(GID, GID, GID)
            os.setresuid(UID, UID, UID)
            os.chdir(spec["workdir"])
            os.umask(0o022)
            os.execve(argv[0], argv, env)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, ("the verifier could not start the tests: %s\n" % exc).encode())
        os._exit(127)
    os.close(log)
    os.close(devnull)
    return pid


def wait(pid, listener, timeout):
    """(exit status, timed out, the pytest process's own report or None, reports from others,
    processes of the user still there to kill, processes adopted).

    This supervisor is the sandbox's child subreaper: a process the tests start that outlives its
    parent (a double fork, ``setsid``) comes to it, and is counted (``adopted``). The tests' own
    process is reaped only after every process of its user is gone: until then its pid stays taken
    (a zombie), so no other process can come to have it when it connects to report."""
    deadline = time.monotonic() + timeout
    report, foreign, timed_out, leftover, adopted = None, 0, False, 0, 0
    conns = {}
    while True:
        exited, adopted = _reap(pid, adopted)
        if listener is not None:
            report, foreign = _serve(listener, conns, pid, report, foreign, 0 if exited else 0.02)
        elif not exited:
            time.sleep(0.01)
        if exited:
            break
        if time.monotonic() > deadline:
            timed_out = True
            leftover = max(leftover, end_user_processes())
            deadline = float("inf")  # the child is dead or dying: wait for it as usual
    leftover = max(leftover, end_user_processes())
    if listener is not None:  # a report the pytest process sent just before it exited
        report, foreign = _serve(listener, conns, pid, report, foreign, 0)
        for conn, data in list(conns.items()):
            conn.setblocking(True)
            conn.settimeout(1.0)
            report, foreign = _finish(conn, data, pid, report, foreign, conns)
        listener.close()
    _, status = os.waitpid(pid, 0)
    while True:  # the killed ones, adopted
        try:
            if os.waitpid(-1, 0)[0] > 0:
                adopted += 1
        except ChildProcessError:
            break
    return status, timed_out, report, foreign, leftover, adopted


def _reap(pid, adopted):
    """Reap adopted processes that ended, until the tests' own has exited (left unreaped)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True, adopted
        if info is None:
            return False, adopted
        if info.si_pid == pid:
            return True, adopted
        os.waitpid(info.si_pid, 0)
        adopted += 1


def subreaper():
    """Make this process the child subreaper, so the tests' orphaned processes are reparented here and can be
    counted and reaped."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _serve(listener, conns, pid, report, foreign, wait_s):

    readable_now, _, _ = select.select([listener, *conns], [], [], wait_s)
    for sock in readable_now:
        if sock is listener:
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                peer_pid = struct.unpack("3i", creds)[0]
                if peer_pid != pid:
                    foreign += 1  # not the pytest process: whatever it says is not the result
                    conn.close()
                    continue
                conn.setblocking(False)
                conns[conn] = bytearray()
        else:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk and len(conns[sock]) + len(chunk) <= MAX_REPORT:
                conns[sock] += chunk
                continue
            report, foreign = _finish(sock, conns[sock], pid, report, foreign, conns, eof=not chunk)
    return report, foreign


def _finish(conn, data, pid, report, foreign, conns, eof=False):
    if not eof:
        try:
            while len(data) <= MAX_REPORT:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    conns.pop(conn, None)
    conn.close()
    parsed = _json(bytes(data))
    if report is None and isinstance(parsed, dict):
        report = parsed
    return report, foreign


def end_user_processes():
    """Kill every process of the tests' user in this pid namespace; the count that was there."""
    seen = 0
    for _ in range(50):
        pids = [p for p in _user_pids() if _state(p) != "Z"]
        if not pids:
            return seen
        seen = max(seen, len(pids))
        killer = os.fork()
        if killer == 0:
            try:
                os.setgroups([])
                os.setresgid(GID, GID, GID)
                os.setresuid(UID, UID, UID)
                if HOST_PIDS:
                    for p in pids:
                        os.kill(p, signal.SIGKILL)
                else:
                    os.kill(-1, signal.SIGKILL)  # every process this user may signal, not itself
            except BaseException:  # noqa: BLE001
                pass
            os._exit(0)
        os.waitpid(killer, 0)
        time.sleep(0.01)
    raise RuntimeError("processes of the tests' user kept coming back after 50 rounds of SIGKILL")


def _user_pids():
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/status" % entry) as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if (int(line.split()[1]) == UID or int(line.split()[3]) == UID) and _ours(entry):
                            yield int(entry)
                        break
        except OSError:
            continue


# The host's own pid namespace (the local backend, which isolates nothing): the user's processes
# there are not all ours, so only those that carry this run's mark are.
HOST_PIDS = os.readlink("/proc/self/ns/pid") == "pid:[4026531836]"
MARK = "ROCK_VERIFY_RUN=" + os.urandom(8).hex()


def _ours(pid):
    if not HOST_PIDS:
        return True
    try:
        with open("/proc/%s/environ" % pid, "rb") as f:
            return MARK.encode() in f.read().split(b"\0")
    except OSError:
        return False


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def collect_pytest(spec, report, code, out):
    """Put the pytest report (or why there is none) in ``out`` and keep a copy in results.json for a person."""
    if report is None:
        if code == 97:  # pytest_main: the runner would not import
            out["error"] = "the tests could not import their runner: " + tail(os.path.join(LOGS, "output.log"), 600)
        out["results"] = None
        return
    out["results"] = report
    tmp = os.path.join(LOGS, ".results.json")
    with open(tmp, "w") as f:  # for a person reading the sandbox; the harness reads stdout
        json.dump(report, f)
    os.replace(tmp, os.path.join(LOGS, "results.json"))


def collect_script(code, adopted, out):
    """test.sh's reward, when nothing but test.sh could have written it last."""
    if code < 0:
        out["error"] = ("test.sh was ended by signal %d (the tests' own processes may signal it: they run as "
                        "its user); its reward is not taken" % -code)
        return
    if adopted:
        out["error"] = ("%d process(es) the tests started outlived the process that started them (a daemon, a "
                        "double fork or setsid); with runner \"script\" such a process could write the reward after "
                        "test.sh, so none is taken: end them in test.sh, or use runner \"pytest\"" % adopted)
        return
    out["reward_txt"] = read_regular(os.path.join(LOGS, "reward.txt")).decode("utf-8", "replace")[:100]
    out["results"] = _json(read_regular(os.path.join(LOGS, "results.json")))


def read_regular(path):
    """A file the tests' user wrote, only if it is a regular file of one link, at most MAX_FILE."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        st = os.fstat(fd)
        import stat

        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise RuntimeError("%s is not a regular file of its own" % path)
        if st.st_size > MAX_FILE:
            raise RuntimeError("%s holds %d bytes; at most %d are read" % (path, st.st_size, MAX_FILE))
        return os.read(fd, MAX_FILE)
    finally:
        os.close(fd)


def tail(path, n=OUTPUT_TAIL):
    """The last ``n`` bytes of the file at ``path`` as text; empty when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _json(data):
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
