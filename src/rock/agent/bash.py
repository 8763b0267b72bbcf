"""Persistent named bash sessions on a pty.

How a command runs without any marker reaching the caller:
- bash ``eval``s the command text at top level, so ``cd``, exports and ``set -e`` behave as
  typed. A short command comes on the pty as one escaped line (``bashtext.inline``); a long one goes
  through a file (no pty line-length limit), and bash is told on the pty to ``read`` it and
  ``eval`` it. A file, not a pipe: bash's ``read`` may not read past its delimiter, so on a
  pipe it reads one byte per syscall (200,000 for a 200 KB heredoc); on a regular file it
  reads in blocks and seeks back;
- PROMPT_COMMAND prints ``\\x1e<nonce><status>;<cwd>\\x1f`` when the command is done.
  The nonce is random per session, the reader strips that exact record from the stream
  (also when split across reads) and takes the exit code and cwd from it.
Each session has one reader thread; it also enforces the hard and idle timeouts, so a
waiting caller costs no thread.
"""

import codecs
import fcntl
from . import fastos as os
import select
import _signal as signal
import struct
import termios
import time

from . import paths, threads
from .bashtext import RC_FD, inline, rc_text
from .command import Command, Output
from .errors import OpError

DEFAULT_MAX_OUTPUT = 16 << 20
INTERRUPT_GRACE = 1.0
SESSION_ENV = {"TERM": "xterm", "PAGER": "cat", "GIT_PAGER": "cat", "MANPAGER": "cat", "SYSTEMD_PAGER": ""}



class BashSession:
    """One persistent bash on a pty: commands run one at a time, their output and exit code read back
    through markers, with timeouts, idle timeouts, input and interrupts."""

    def __init__(self, name, env=None, cwd=None, rows=40, cols=200, spawn_later=False, expire=None):
        """``spawn_later``: bash is spawned by the session's own thread, and this returns without
        waiting for it (the spare's way: see sessions.prewarm). A command written meanwhile
        waits in the pty until bash reads it, as one sent while bash starts up always has.
        ``expire``: (seconds, callback): the session's thread calls ``callback(session)`` once,
        that long from now, unless a command is running then (a spare's idle life)."""
        self.name = name
        self.nonce = os.urandom(8).hex().encode()
        self.start_tag = b"\x1e" + self.nonce
        self.cwd = cwd or os.getcwd()
        self.current = None
        self.alive = True
        self.exit_code = None
        self.pid = None
        self.spawn_error = None
        self.ready = threads.Event()
        self._buf = b""
        self._expire_at, self._on_expire = (time.monotonic() + expire[0], expire[1]) if expire else (None, None)
        self._lock = threads.Lock()
        self._wake_r, self._wake_w = os.pipe()
        master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR
        attrs[3] &= ~(termios.ECHO | termios.ECHONL)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self._cmd_path = os.join(paths.private("sessions"), "cmd-" + self.nonce.decode())
        full_env = dict(os.environ)
        full_env.update(SESSION_ENV)
        full_env.update(env or {})
        if cwd:
            full_env["ROCK_SESSION_CWD"] = cwd
        # The init file comes through a pipe on fd 3 (closed by its first line), not a file:
        # creating and writing one in the run directory took 0.05 ms on a quiet host and up to
        # 0.4 ms while others wrote to the same disk, on a sandbox's start -> first output path.
        rc_r, rc_w = os.pipe()
        os.write(rc_w, rc_text(self.nonce, self._cmd_path))  # < 1 KB: the pipe holds it
        os.close(rc_w)
        if rc_r == RC_FD:
            rc_r, old_fd = os.dup(rc_r), rc_r
            os.close(old_fd)
        self.master = master
        self._trigger = b"__rock_read 2>/dev/null; eval \"$__rock_c\"\n"
        spawn = (rc_r, slave, full_env)
        if spawn_later:
            self._cmd_fd = os.open(self._cmd_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            threads.spawn(self._spawn_then_read, spawn)
            return
        try:
            self._spawn(*spawn)
        except OSError:
            for fd in (master, self._wake_r, self._wake_w):
                os.close(fd)
            raise
        # Made while bash starts: its first command comes after session.create has returned.
        self._cmd_fd = os.open(self._cmd_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        threads.spawn(self._read_loop)

    def _spawn(self, rc_r, slave, env):
        # posix_spawn, not subprocess: it saves importing subprocess (~4 ms on every sandbox
        # start) and a fork of the agent. setsid comes first, so opening the pty by path makes
        # it bash's controlling terminal: Ctrl-C written to the master becomes SIGINT. Its
        # caller waits until bash is exec'd: 0.4-2.4 ms in a sandbox's fresh overlay.
        try:
            self.pid = os.posix_spawnp(
                "bash", ["bash", "--noprofile", "--noediting", "--rcfile", "/dev/fd/%d" % RC_FD, "-i"], env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.ttyname(slave), os.O_RDWR, 0),
                    (os.POSIX_SPAWN_DUP2, 0, 1),
                    (os.POSIX_SPAWN_DUP2, 0, 2),
                    (os.POSIX_SPAWN_DUP2, rc_r, RC_FD),
                ],
                setsid=True,
            )
        finally:
            os.close(rc_r)
            os.close(slave)

    def _spawn_then_read(self, spawn):
        try:
            self._spawn(*spawn)
        except OSError as exc:
            self.spawn_error = exc
            self._on_exit()
            return
        if not self.alive:  # closed while bash was being spawned
            self._kill_all(signal.SIGKILL, include_shell=True)
        self._read_loop()

    # -- called from request handlers -------------------------------------------------

    def run(self, req, command, stream, timeout, idle_timeout, max_output):
        # Encoded first: text that cannot be (a lone surrogate) fails before the session is busy.
        """Run ``command`` in the session; the reply comes when it ends, times out or goes idle (None:
        deferred, sent by the session's thread)."""
        line = inline(command)
        text = None if line is not None else command.encode("utf-8", "surrogateescape") + b"\0"
        with self._lock:
            self._check_usable()
            if self.current is not None:
                raise OpError("SessionBusy", "session %r is still running a command; wait for it, send input or interrupt it" % self.name)
            cmd = Command(max_output or DEFAULT_MAX_OUTPUT)
            cmd.attach(req, stream, timeout, idle_timeout)
            self.current = cmd
        if text is not None:
            # Written over the previous command, never truncated: bash stops at the NUL, and
            # truncate-then-rewrite makes ext4 flush the file on close (~0.4 ms a command).
            _pwrite_all(self._cmd_fd, text)
            line = self._trigger
        self._restore_termios()
        os.write(self.master, line)
        if cmd.deadline is not None or cmd.idle_timeout:
            self._wake()  # the reader sleeps without a timeout while idle: give it the new timers

    def wait(self, req, stream, timeout, idle_timeout):
        """Wait again for the command still running (after a timeout or idle return); ``BadRequest`` when
        none runs."""
        with self._lock:
            cmd = self.current
            if cmd is None:
                raise OpError("BadRequest", "no command is running in session %r" % self.name)
            if cmd.result is not None:
                self.current = None
                return cmd.result
            # Output that arrived since the last idle return is already buffered: keep it.
            cmd.attach(req, stream, timeout, idle_timeout)
        self._wake()
        return None

    def send_input(self, data):
        """Type ``data`` into the running program; ``BadRequest`` when no command runs."""
        with self._lock:
            self._check_usable()
            if self.current is None:
                raise OpError("BadRequest", "no command is running in session %r: input goes to a running program; use session.run for commands" % self.name)
        os.write(self.master, data.encode("utf-8", "surrogateescape"))

    def interrupt(self, req, grace):
        """Ctrl-C the running command, then kill it after ``grace``: how it ended (``idle`` when nothing
        ran)."""
        with self._lock:
            cmd = self.current
            if cmd is None or not self.alive:
                return {"status": "idle", "output": "", "exit_code": None, "cwd": self.cwd, "truncated": False}
            if cmd.result is not None:
                self.current = None
                return cmd.result
            cmd.waiters.append((req, False))
            cmd.idle_timeout = None  # the caller now waits for the end, however quiet
            self._begin_stop(cmd, "interrupted", grace)
        self._wake()
        return None

    def close(self):
        """Kill the session's processes, bash included."""
        self.alive = False
        self._kill_all(signal.SIGKILL, include_shell=True)
        self._wake()

    def _check_usable(self):
        if self.spawn_error is not None:
            raise OpError("AgentError", self._spawn_failure())
        if not self.alive:
            raise OpError("SessionNotFound", "session %r has ended (exit code %s); create it again" % (self.name, self.exit_code))

    # -- the reader thread ------------------------------------------------------------

    def _read_loop(self):
        try:
            while self.alive:
                ready, _, _ = select.select([self.master, self._wake_r], [], [], self._next_timeout())
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                if self.master in ready:
                    try:
                        data = os.read(self.master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        break
                    self._feed(data)
                self._check_timers()
        finally:
            self._on_exit()

    def _next_timeout(self):
        cmd = self.current
        if cmd is None:
            return None if self._expire_at is None else max(0.0, self._expire_at - time.monotonic())
        if not cmd.waiters and cmd.escalate_at is None and cmd.deadline is None:
            return None
        now = time.monotonic()
        points = [t for t in (cmd.deadline, cmd.escalate_at) if t is not None]
        if cmd.idle_timeout and cmd.waiters:
            points.append(cmd.last_output + cmd.idle_timeout)
        return max(0.0, min(points) - now) if points else None

    def _feed(self, data):
        buf = self._buf + data
        while buf:
            i = buf.find(self.start_tag)
            if i < 0:
                # Hold back a tail that could be the start of a split record.
                j = buf.rfind(b"\x1e", max(0, len(buf) - len(self.start_tag)))
                if j >= 0 and self.start_tag.startswith(buf[j:]):
                    self._emit(buf[:j])
                    buf = buf[j:]
                    break
                self._emit(buf)
                buf = b""
                break
            self._emit(buf[:i])
            end = buf.find(b"\x1f", i)
            if end < 0:
                buf = buf[i:]
                break
            record = buf[i + len(self.start_tag) : end]
            buf = buf[end + 1 :]
            status, _, cwd = record.partition(b";")
            self._on_prompt(int(status or 0), cwd.decode("utf-8", "surrogateescape"))
        self._buf = buf

    def _emit(self, data):
        cmd = self.current
        # What bash prints before its first prompt (rc files) belongs to no command.
        if not data or cmd is None or cmd.result is not None or not self.ready.is_set():
            return
        cmd.last_output = time.monotonic()
        cmd.output.add(data)
        for req, stream in cmd.waiters:
            if stream:
                dec = cmd.decoders.get(req.id)
                if dec is None:
                    dec = cmd.decoders[req.id] = codecs.getincrementaldecoder("utf-8")("replace")
                req.event("output", {"text": dec.decode(data)})

    def _on_prompt(self, status, cwd):
        self.cwd = cwd
        if not self.ready.is_set():
            self.ready.set()
            return
        with self._lock:
            cmd = self.current
            if cmd is None:
                return
            self._finish(cmd, cmd.stop_reason or "completed", status)

    def _finish(self, cmd, status, exit_code):
        result = {
            "output": cmd.output.text(),
            "exit_code": exit_code,
            "cwd": self.cwd,
            "status": status,
            "truncated": bool(cmd.output.dropped),
        }
        if cmd.waiters:
            self.current = None
            for req, _ in cmd.waiters:
                req.reply(result)
        else:
            cmd.result = result  # picked up by the next session.wait

    def _check_timers(self):
        cmd = self.current
        if cmd is None and self._expire_at is not None and time.monotonic() >= self._expire_at:
            on_expire, self._expire_at = self._on_expire, None
            on_expire(self)
        if cmd is None or cmd.result is not None:
            return
        now = time.monotonic()
        if cmd.escalate_at is not None and now >= cmd.escalate_at:
            self._escalate(cmd)
        elif cmd.deadline is not None and now >= cmd.deadline and cmd.stop_reason is None:
            with self._lock:
                self._begin_stop(cmd, "timeout", INTERRUPT_GRACE)
        elif cmd.idle_timeout and cmd.waiters and now - cmd.last_output >= cmd.idle_timeout:
            with self._lock:
                result = {"output": cmd.output.text(), "exit_code": None, "cwd": self.cwd,
                          "status": "idle", "truncated": bool(cmd.output.dropped)}
                waiters, cmd.waiters = cmd.waiters, []
                cmd.output = Output(cmd.max_output)
                cmd.deadline = None
            for req, _ in waiters:
                req.reply(result)

    def _begin_stop(self, cmd, reason, grace):
        cmd.stop_reason = reason
        cmd.deadline = None
        cmd.escalation = 0
        cmd.escalate_at = time.monotonic() + float(grace or INTERRUPT_GRACE)
        os.write(self.master, b"\x03")

    def _escalate(self, cmd):
        # Ctrl-C was ignored (e.g. less): kill what the command started, then the shell itself.
        cmd.escalation += 1
        if cmd.escalation == 1:
            self._kill_all(signal.SIGTERM)
        elif cmd.escalation == 2:
            self._kill_all(signal.SIGKILL)
        else:
            self._kill_all(signal.SIGKILL, include_shell=True)
        cmd.escalate_at = time.monotonic() + INTERRUPT_GRACE

    def _kill_all(self, sig, include_shell=False):
        shell = self.pid
        if shell is None:  # not spawned yet: its own thread kills it if the session closed meanwhile
            return
        for pid in _session_members(shell):
            if pid != shell or include_shell:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    def _on_exit(self):
        self.alive = False
        try:  # the pty closes once bash is gone (or killed by close()), so this returns at once
            if self.pid is not None:
                self.exit_code = os.exit_code(os.waitpid(self.pid, 0)[1])
        except ChildProcessError:
            pass
        try:
            os.unlink(self._cmd_path)
        except OSError:
            pass
        for fd in (self.master, self._cmd_fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.ready.set()
        with self._lock:
            cmd = self.current
            if cmd is not None and cmd.result is None:
                if self.spawn_error is not None:
                    cmd.output.add(("rock: %s\n" % self._spawn_failure()).encode())
                self._finish(cmd, "ended", self.exit_code)

    def _spawn_failure(self):
        return "bash could not be started in this sandbox: %s" % self.spawn_error

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _restore_termios(self):
        # A program may have turned echo back on (or died in raw mode); echo would leak our input.
        attrs = termios.tcgetattr(self.master)
        want_l = (attrs[3] & ~(termios.ECHO | termios.ECHONL)) | termios.ICANON | termios.ISIG
        if want_l != attrs[3]:
            attrs[3] = want_l
            termios.tcsetattr(self.master, termios.TCSANOW, attrs)


def _pwrite_all(fd, data):
    view, offset = memoryview(data), 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)


def _session_members(sid):
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(name))
    return pids
