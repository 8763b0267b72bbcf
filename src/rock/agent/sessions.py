"""Named bash sessions: the registry, a spare bash kept ready, and the ``session.*`` ops."""

import _queue
import sys
import time

from . import fastos as os
from . import threads
from .bash import BashSession
from .errors import OpError, lookup
from .deferred import DEFERRED

_sessions = {}
_lock = threads.Lock()
_spare = [None]
_spare_lock = threads.Lock()


SPARE_DELAY = 0.05
# A spare nobody took for this long is closed: most sandboxes make their sessions right after
# they start and then only run commands, and an idle sandbox should not keep a bash (0.28 MB
# private) for a session that never comes. The next session.create starts one and asks again.
SPARE_IDLE = 30.0
_spare_wanted = []  # a SimpleQueue once the housekeeper runs
# Whether a session.create has found no spare: from then on each one taken is made again.
_more_wanted = [False]


def _take_spare():
    """The spare bash, if one is up. The next spare is made only once a session.create has found
    none: most sandboxes make one session, which the start's spare serves, and a bash started
    for a second session that never comes costs each such start a bash start-up's CPU (~2 ms)
    and its memory until SPARE_IDLE. A sandbox that makes more sessions has one kept ready."""
    with _spare_lock:
        spare, _spare[0] = _spare[0], None
        if spare is None or not spare.alive:
            _more_wanted[0] = True
        refill = _more_wanted[0]
    if refill:
        _refill_soon()
    return spare


def _refill_soon():
    """Have the housekeeper start the next spare SPARE_DELAY from now; its thread starts on the first
    refill, not with the sandbox: most sandboxes never ask for one (a thread's start cost a
    sandbox's agent ~0.3 ms of CPU and it held one more thread for life)."""
    with _spare_lock:
        if not _spare_wanted:
            _spare_wanted.append(_queue.SimpleQueue())
            threads.spawn(_housekeeper, _spare_wanted[0])
        wanted = _spare_wanted[0]
    wanted.put(time.monotonic() + SPARE_DELAY)


def _housekeeper(wanted):
    # Starts the next spare a little after one was taken: its bash start-up would compete for
    # the CPU with the first command the caller is about to send. A long-lived thread, because
    # starting a thread per request costs milliseconds on a loaded machine.
    while True:
        delay = wanted.get() - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        prewarm()


def _drop_spare(merge=True):
    """Close the spare bash; ``merge``: then offer the agent's memory, at rest now, to KSM."""
    with _spare_lock:
        spare, _spare[0] = _spare[0], None
    _close_spare(spare, merge)


def _expired(session):
    """Called by a spare's own thread once nobody took it for SPARE_IDLE: closed, unless taken meanwhile."""
    with _spare_lock:
        if _spare[0] is not session:
            return
        _spare[0] = None
    _close_spare(session, True)


def _close_spare(spare, merge):
    if spare is not None:
        spare.close()
        if merge and os.environ.get("ROCK_AGENT_MERGE_MEMORY") == "1":
            from .merge import merge_memory

            merge_memory()  # at rest now: mappings made since the start are offered too


def prewarm():
    """Keep one idle bash started, so session.create does not pay bash's start-up. Its bash is
    spawned by the session's own thread: a session.create that takes it answers at once, and
    the first command waits in the pty for bash, not for its spawn (see server.main). That
    thread also closes it if nobody takes it for SPARE_IDLE."""
    with _spare_lock:
        if _spare[0] is not None:
            return
    idle = float(os.environ.get("ROCK_AGENT_SPARE_IDLE") or SPARE_IDLE)
    try:
        session = BashSession("", spawn_later=True, expire=(idle, _expired))
    except OSError as exc:  # session.create will report it to the caller
        sys.stderr.write("rock agent: could not start a spare bash: %s\n" % exc)
        return
    with _spare_lock:
        if _spare[0] is None:
            _spare[0] = session
            return
    session.close()


def get(name):
    """The session called ``name`` (SessionNotFound if there is none)."""
    return lookup(_sessions, name, "SessionNotFound", "no session named %r; create it first")


def create(req):
    """Inline: a plain session (no env, cwd or startup files) takes the spare bash right on
    the connection's thread, sparing a sandbox's first session a hand-off to a pool thread
    (a thread switch on a busy host). Anything that may block (starting a bash, checking a
    cwd, sourcing files) goes to the pool."""
    args = req.args
    name = _checked_name(args)
    if not (args.get("env") or args.get("env_enable") or args.get("cwd") is not None or args.get("startup_source")):
        _check_free(name)
        session = _take_spare()
        if session is not None and session.alive:
            return _add(name, session)
    return req.conn.agent.in_pool(req, _create)


def _checked_name(args):
    name = args["session"]
    if not isinstance(name, str) or not name:
        raise OpError("BadRequest", "session must be a non-empty string")
    return name


def _check_free(name):
    with _lock:
        old = _sessions.get(name)
        if old is not None and old.alive:
            raise OpError("SessionExists", "session %r already exists" % name)


def _add(name, session):
    session.name = name
    with _lock:
        _sessions[name] = session
    return {"session": name}


def _create(req):
    args = req.args
    name = _checked_name(args)
    env = {str(k): str(v) for k, v in (args.get("env") or {}).items()}
    if args.get("env_enable"):
        env["ROCK_ENV_ENABLE"] = "1"
    cwd = args.get("cwd")
    if cwd is not None and not os.isdir(cwd):
        raise OpError("NotADirectory", "session cwd %r is not a directory in the sandbox" % cwd)
    _check_free(name)
    session = None if env or cwd else _take_spare()
    if session is None or not session.alive:
        session = BashSession(name, env=env, cwd=cwd)
    session.name = name
    # No wait for bash's first prompt: a command sent now waits in the pty until bash reads it,
    # so bash's start-up overlaps the caller's next round trip. A bash that dies while starting
    # ends that command with status "ended" and its exit code.
    if not session.alive:
        raise OpError("AgentError", "bash did not start for session %r (exit code %s)" % (name, session.exit_code))
    for path in args.get("startup_source") or []:
        _run_sync(session, "source %s" % _quote(path))
    return _add(name, session)


def _run_sync(session, command):
    class _Waiter:
        id = 0

        def __init__(self):
            self.result = None
            self.done = threads.Event()

        def reply(self, result):
            self.result = result
            self.done.set()

    waiter = _Waiter()
    session.run(waiter, command, False, 60, None, None)
    waiter.done.wait(65)
    return waiter.result


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def run(req):
    """The ``session.run`` op: run a command in a session (deferred until it ends)."""
    a = req.args
    command = a["command"]
    if not isinstance(command, str):
        raise OpError("BadRequest", "command must be a string")
    get(a["session"]).run(req, command, bool(a.get("stream")), a.get("timeout"), a.get("idle_timeout"), a.get("max_output"))
    return DEFERRED


def wait(req):
    """The ``session.wait`` op: wait again for a session's running command."""
    a = req.args
    result = get(a["session"]).wait(req, bool(a.get("stream")), a.get("timeout"), a.get("idle_timeout"))
    return DEFERRED if result is None else result


def send_input(req):
    """The ``session.input`` op: type into a session's running program."""
    get(req.args["session"]).send_input(req.args["data"])
    return {}


def interrupt(req):
    """The ``session.interrupt`` op: interrupt a session's running command."""
    result = get(req.args["session"]).interrupt(req, req.args.get("grace"))
    return DEFERRED if result is None else result


def close(req):
    """The ``session.close`` op: close a session and end its processes."""
    with _lock:
        session = _sessions.pop(req.args["session"], None)
    if session is None:
        raise OpError("SessionNotFound", "no session named %r" % req.args["session"])
    session.close()
    return {}


def spare_ready(req):
    """Whether the spare bash has given its first prompt, waiting up to ``timeout`` seconds (a
    pool thread's wait). A warm pool hands a sandbox out only after this: the agent says it is
    ready before its spare bash has started (so a cold start's next steps overlap bash's), and a
    pooled sandbox's first command should not wait for bash, nor share the CPU with its start."""
    timeout = req.args.get("timeout", 5.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 <= timeout <= 60:
        raise OpError("BadRequest", "timeout must be a number of seconds from 0 to 60")
    with _spare_lock:
        spare = _spare[0]
    return {"ready": spare is not None and spare.ready.wait(timeout) and spare.alive}


def list_sessions(req):
    """The ``session.list`` op: each session's name, liveness, whether it runs a command, pid and cwd."""
    return {
        "sessions": [
            {"session": n, "alive": s.alive, "running": s.current is not None, "pid": s.pid, "cwd": s.cwd}
            for n, s in sorted(_sessions.items())
        ]
    }


OPS = {
    "session.create": create,
    "session.run": run,
    "session.wait": wait,
    "session.input": send_input,
    "session.interrupt": interrupt,
    "session.close": close,
    "session.list": list_sessions,
    "session.spare": spare_ready,
}
INLINE = ("session.create", "session.run", "session.wait", "session.input", "session.interrupt", "session.list")
