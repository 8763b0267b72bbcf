"""What a bash session's shell is given: its init file and the line that runs a short command.

The init file sets PROMPT_COMMAND to print ``\\x1e<nonce><status>;<cwd>\\x1f`` after every
command (``bash.BashSession`` strips that record from the output), and defines ``__rock_read``,
which reads a long command from the session's command file.
"""

# The fd bash reads its init file from (see bash.BashSession).
RC_FD = 3


# A short command goes on the pty itself, quoted, as ``eval $'...'``: the same top-level eval as
# through the file, without the file's write, bash's function call and two redirections (~20
# syscalls, about 40% of bash's CPU for an ``echo``). Every byte that the tty's line discipline
# would act on (Ctrl-C, erase, newline...) and every non-ASCII byte is escaped, so the pty sees
# one line of printable ASCII, well below its 4 KiB canonical-line limit.
INLINE_MAX = 2048
_ESCAPES = {i: "\\x%02x" % i for i in list(range(32)) + list(range(127, 256))}
_ESCAPES.update({92: "\\\\", 39: "\\'"})


def inline(command):
    """The pty line that runs ``command`` (bytes), or None when it must go through the command file."""
    if len(command) > INLINE_MAX or "\0" in command:
        return None
    if command.isascii():
        if command.isprintable() and "'" not in command:
            return ("eval '" + command + "'\n").encode()
    else:  # its UTF-8 bytes, one character each, for the table above
        command = command.encode("utf-8", "surrogateescape").decode("latin-1")
    line = "eval $'" + command.translate(_ESCAPES) + "'\n"
    return line.encode() if len(line) <= INLINE_MAX else None


def rc_text(nonce, cmd_path):
    """The init file each session's bash reads; PROMPT_COMMAND reports status and cwd."""
    return (
        "exec %d<&-\n"  # the pipe it came through: the session's commands never see it
        "set +o history +H +m\n"
        # Without job control bash forgets an ended background job at once, so ``cmd & ...; disown``
        # failed ("current: no such job") whenever cmd was quick, as rl-rock's nohup helper is. Under
        # job control (a terminal's shell, which rl-rock's runtime is) the ended job stays listed
        # until the next prompt and disown succeeds. So here a bare disown after a background job
        # succeeds: it disowns the current job, and fails only when no job is left (one that ended).
        "disown() { if [ $# -eq 0 ] && [ -n \"$!\" ]; then builtin disown 2>/dev/null; return 0; fi; builtin disown \"$@\"; }\n"
        # Preset: if the command file is gone, say so instead of re-running the last command.
        "__rock_read() { __rock_s=$?; __rock_c='echo \"rock: this session lost its command file; create the session again\" >&2; (exit 125)'; "
        # Hands the last command's status on, so $? in the next command reads as on a terminal.
        "IFS= read -r -d '' __rock_c < '%s'; return $__rock_s; }\n"
        "PS1=''; PS2=''; unset MAILCHECK\n"
        "if [ -n \"$ROCK_SESSION_CWD\" ]; then cd -- \"$ROCK_SESSION_CWD\"; unset ROCK_SESSION_CWD; fi\n"
        "if [ -n \"$ROCK_ENV_ENABLE\" ]; then [ -f /etc/profile ] && . /etc/profile; [ -f ~/.bashrc ] && . ~/.bashrc; fi\n"
        # The group's stderr is /dev/null: after a ``set -x``, the trace of these lines (which
        # names the nonce) would otherwise be part of every command's output.
        "PROMPT_COMMAND='{ __rock_s=$?; printf \"\\036%s%%d;%%s\\037\" \"$__rock_s\" \"$PWD\"; set +m; } 2>/dev/null'\n" % (RC_FD, cmd_path, nonce.decode())
    ).encode("utf-8", "surrogateescape")
