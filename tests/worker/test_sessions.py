"""Persistent bash sessions: every edge case that breaks other tools, on every real backend."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from rock.errors import BadRequest, SessionBusy, SessionNotFound


@pytest.mark.parametrize(
    "command, output, exit_code",
    [
        ("echo hi", "hi\n", 0),
        ("", "", 0),
        ("   echo leading-space", "leading-space\n", 0),
        ("echo -n no-newline", "no-newline", 0),
        ("# only a comment", "", 0),
        ("false", "", 1),
        ("i=0; while [ $i -lt 3 ]; do echo $i; i=$((i+1)); done", "0\n1\n2\n", 0),
        ("(cd /; echo sub $(pwd)); (exit 7)", "sub /\n", 7),
        ("echo first\necho second", "first\nsecond\n", 0),
        ("cat <<'EOF'\n$HOME is literal\n  indented\nEOF", "$HOME is literal\n  indented\n", 0),
        ("echo to-stderr >&2", "to-stderr\n", 0),
        ("printf 'a\\tb\\r\\nc'", "a\tb\r\nc", 0),
        ("echo 'héllo ✓'", "héllo ✓\n", 0),
    ],
    ids=lambda v: repr(v)[:30],
)
async def test_command_output_and_exit_code(box, session, command, output, exit_code):
    result = await box.run(session, command, timeout=30)
    assert (result.output, result.exit_code, result.status) == (output, exit_code, "completed")


async def test_syntax_error_reports_and_session_keeps_working(box, session):
    result = await box.run(session, "echo 'unterminated")
    assert result.exit_code == 2 and "unexpected EOF" in result.output
    result = await box.run(session, "if then fi")
    assert result.exit_code == 2 and "syntax error" in result.output
    assert (await box.run(session, "echo still-fine")).output == "still-fine\n"


async def test_no_marker_text_leaks(box, session):
    # "set -x" alone leaves tracing on across prompts: the prompt's own lines must not be traced
    commands = ("echo a", "set -x; echo b; set +x", "true", "set -x", "echo c", "set +x", "echo d")
    outputs = [(await box.run(session, cmd)).output for cmd in commands]
    for out in outputs:
        assert "\x1e" not in out and "\x1f" not in out and "__rock" not in out and "PROMPT_COMMAND" not in out
        assert "printf" not in out and "set +m" not in out, out
    assert "+ echo c" in outputs[4] and "c\n" in outputs[4] and outputs[6] == "d\n", outputs


async def test_disown_after_a_background_job_that_already_ended_succeeds(box, session):
    """rl-rock's nohup helper runs ``cmd & echo PIDSTART${!}PIDEND;disown``; under a terminal's job
    control the ended job is still listed then, so disown succeeds however quick cmd was."""
    ended = await box.run(session, "true & sleep 0.3; disown")
    assert ended.exit_code == 0 and "no such job" not in ended.output, ended
    running = await box.run(session, "sleep 30 & disown; jobs | wc -l")  # a running job is disowned
    assert running.exit_code == 0 and running.output.endswith("\n0\n"), running
    await box.run(session, "kill $!")
    unknown = await box.run(session, "disown %9")  # the control: disown's own errors stay
    assert unknown.exit_code == 1 and "no such job" in unknown.output, unknown


async def test_cwd_and_exports_persist(box, session):
    result = await box.run(session, "mkdir -p /tmp/persist && cd /tmp/persist && export ROCK_T=kept")
    assert result.cwd == "/tmp/persist"
    result = await box.run(session, "echo $ROCK_T $(pwd)")
    assert result.output == "kept /tmp/persist\n"


async def test_shell_exit_ends_session_and_it_can_be_recreated(box, session):
    result = await box.run(session, "set -e; false; echo not-reached")
    assert result.status == "ended" and result.exit_code == 1 and "not-reached" not in result.output
    with pytest.raises(SessionNotFound, match="ended"):
        await box.run(session, "echo again")
    await box.create_session(session)
    assert (await box.run(session, "echo again")).output == "again\n"
    result = await box.run(session, "exit 4")
    assert (result.status, result.exit_code) == ("ended", 4)
    await box.create_session(session)


@pytest.mark.parametrize("command", ["sleep 600", "less /etc/passwd", "while true; do :; done", "cat"])
async def test_hard_timeout_interrupts_and_session_survives(box, session, command):
    result = await box.run(session, command, timeout=0.5)
    assert result.status == "timeout"
    assert result.exit_code != 0
    after = await box.run(session, "echo alive; echo $((1+1))", timeout=10)
    assert (after.output, after.exit_code, after.status) == ("alive\n2\n", 0, "completed")


async def test_idle_timeout_returns_partial_output_then_input_and_wait(box, session):
    result = await box.run(session, "echo started; read name; echo hello $name", idle_timeout=0.3)
    assert (result.status, result.output, result.exit_code) == ("idle", "started\n", None)
    with pytest.raises(SessionBusy):
        await box.run(session, "echo busy")
    await box.send_input(session, "rock\n")
    result = await box.wait(session, timeout=10)
    assert (result.status, result.output, result.exit_code) == ("completed", "hello rock\n", 0)


async def test_idle_then_interrupt(box, session):
    result = await box.run(session, "echo begin; sleep 600", idle_timeout=0.3)
    assert result.status == "idle" and result.output == "begin\n"
    result = await box.interrupt(session)
    assert result.status == "interrupted" and result.exit_code == 130
    assert (await box.run(session, "echo ok")).output == "ok\n"


async def test_interactive_program(box, session):
    result = await box.run(session, "python3 -i -q", idle_timeout=0.5)
    assert result.status == "idle"
    await box.send_input(session, "print(6 * 7)\n")
    result = await box.wait(session, idle_timeout=0.5)
    assert "42" in result.output
    await box.send_input(session, "exit()\n")
    result = await box.wait(session, timeout=10)
    assert result.status == "completed" and result.exit_code == 0


async def test_streaming_output_arrives_before_the_end(box, session):
    chunks: list[str] = []
    result = await box.run(session, "for i in 1 2 3; do echo line$i; sleep 0.05; done", on_output=chunks.append)
    assert "".join(chunks) == result.output == "line1\nline2\nline3\n"
    assert len(chunks) >= 2


async def test_output_cap_marks_truncation(box, session):
    result = await box.run(session, "seq 1 200000", max_output=10_000)
    assert result.truncated and result.exit_code == 0
    assert result.output.startswith("1\n2\n") and result.output.endswith("199999\n200000\n")
    assert "bytes of output truncated" in result.output and len(result.output) < 11_000


async def test_long_command_text_and_large_output(box, session):
    command = "echo " + "x" * 200_000 + " | wc -c"
    assert (await box.run(session, command)).output.strip() == "200001"
    result = await box.run(session, "head -c 3000000 /dev/zero | tr '\\0' 'y'")
    assert len(result.output) == 3_000_000 and not result.truncated


@pytest.mark.parametrize(
    "command",
    [
        "printf '%s|' 'it'\\''s' \"dq\\\"x\" back\\\\slash",  # quotes and backslashes
        "printf 'a\\tb'; printf '\tc\x7f\x03\x04\x15\x1a\n'",  # bytes the tty would act on
        "x=1\ncat <<EOF\n$x ${x}\nEOF",  # newlines and a heredoc
        "echo " + "y" * 2030,  # either side of the limit for the pty's own line
        "echo " + "y" * 2050,
        "echo 'héllo ✓' $'\\x41'",  # non-ASCII
        "echo " + "é" * 400,  # short, but too long once escaped
    ],
    ids=lambda v: repr(v)[:30],
)
async def test_command_text_reaches_bash_byte_for_byte(box, session, command):
    """Short commands go to bash on the pty, escaped; long ones through the command file."""
    # The reference goes through the command file, whatever the command: it is too long for the pty.
    want = await box.run(session, "bash -c " + "'" + command.replace("'", "'\\''") + "' #" + "-" * 2048)
    result = await box.run(session, command)
    assert result.exit_code == 0 and result.output == want.output and result.output


async def test_exit_status_carries_to_the_next_command(box, session):
    for command, status in (("false", 1), (":" + " " * 2048 + "; (exit 3)", 3)):  # on the pty, then through the file
        await box.run(session, command)
        assert (await box.run(session, "echo $?")).output == "%d\n" % status
    assert (await box.run(session, "(exit 5)")).exit_code == 5
    assert (await box.run(session, "echo é $?")).output == "é 5\n"


async def test_command_text_that_cannot_be_encoded_leaves_the_session_usable(box, session):
    with pytest.raises(BadRequest, match="surrogates"):
        await box.run(session, "echo \ud800")
    assert (await box.run(session, "echo ok")).output == "ok\n"


async def test_two_sessions_of_one_sandbox_run_concurrently(box):
    await box.create_session("left")
    await box.create_session("right")
    try:
        slow = asyncio.ensure_future(box.run("left", "sleep 1; echo left-done", timeout=30))
        fast = await box.run("right", "echo right-done")
        assert fast.output == "right-done\n" and not slow.done()
        assert (await slow).output == "left-done\n"
    finally:
        await box.close_session("left")
        await box.close_session("right")


async def test_session_options_env_cwd_startup_source(box):
    await box.write_file("/tmp/startup.sh", b"export FROM_STARTUP=yes\n")
    await box.create_session("opts", env={"FOO": "bar"}, cwd="/tmp", startup_source=["/tmp/startup.sh"])
    try:
        result = await box.run("opts", "echo $FOO $FROM_STARTUP $(pwd)")
        assert result.output == "bar yes /tmp\n"
    finally:
        await box.close_session("opts")


async def test_duplicate_and_unknown_sessions(box, session):
    from rock.errors import SessionExists

    with pytest.raises(SessionExists):
        await box.create_session(session)
    with pytest.raises(SessionNotFound):
        await box.run("no-such-session", "echo")


async def test_start_up_noise_is_not_the_first_commands_output(box):
    # create_session returns before bash's first prompt; what rc files print belongs to no command.
    await box.write_file("/tmp/noisy-home/.bashrc", b"echo noise-from-bashrc\nexport FROM_RC=1\n")
    await box.create_session("noisy", env={"HOME": "/tmp/noisy-home"}, env_enable=True)
    try:
        result = await box.run("noisy", "echo clean $FROM_RC")
        assert (result.output, result.exit_code) == ("clean 1\n", 0)
    finally:
        await box.close_session("noisy")


async def test_a_command_longer_than_the_reply_slice_still_answers(box, session):
    # The client waits for an answer in slices of reply_timeout, pinging the agent after each
    # slice; a command that outlasts several slices must still get its own answer.
    saved = box.reply_timeout
    box.reply_timeout = 0.2
    try:
        r = await box.run(session, "sleep 1; echo done")
        assert r.status == "completed" and r.output.strip() == "done" and r.exit_code == 0, r
        assert not box._pending, box._pending  # nothing left waiting once it answered
        r = await box.run(session, "echo again")  # and the next call gets its own answer
        assert r.output.strip() == "again", r
    finally:
        box.reply_timeout = saved


async def test_a_sandbox_without_bash_says_so_on_its_first_session(worker):
    """The spare bash is spawned by its session's own thread: where it cannot be (no bash on the
    PATH), the session.create or the first command that meets it names the reason."""
    spec = worker.default_spec("nobash" + uuid.uuid4().hex[:6])
    spec = spec.model_copy(update={"env": {**spec.env, "PATH": "/nonexistent"}})
    await worker.create(spec)
    try:
        agent = worker.agent(spec.sandbox_id)
        try:
            await agent.create_session("s")
            result = await agent.run("s", "echo unreachable", timeout=30)
        except Exception as exc:  # noqa: BLE001 - which of the two meets it is a race; both must say why
            message = str(exc)
        else:
            assert result.status == "ended"
            message = result.output
        assert "bash" in message and "unreachable" not in message
    finally:
        await worker.stop(spec.sandbox_id)
