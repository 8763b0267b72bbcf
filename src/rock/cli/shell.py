"""``rock sandbox shell``: an interactive terminal into a sandbox session.

Line-oriented over the streaming socket: each line you type runs in the session (a real
persistent bash: cd, variables and background jobs persist) with its output streamed back;
while a command runs, typed lines go to its stdin (``read``, ``python3``, ...) and Ctrl-C
interrupts it. Ctrl-D at the prompt leaves; the session stays for next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading

from rock.sdk.sandbox.stream import Stream


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    while True:
        try:
            line = input()
        except EOFError:
            loop.call_soon_threadsafe(queue.put_nowait, None)
            return
        except KeyboardInterrupt:
            continue
        loop.call_soon_threadsafe(queue.put_nowait, line)


async def run_shell(sandbox, session: str) -> int:
    """Run each line read from stdin in ``session`` of ``sandbox`` (made if missing), its output printed as
    it comes, until EOF (Ctrl-D); Ctrl-C interrupts the running command, not the shell. The last exit
    code."""
    stream = await Stream.open(sandbox, session, create=True)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue = asyncio.Queue()
    threading.Thread(target=_stdin_lines, args=(loop, lines), daemon=True).start()
    running = asyncio.Event()
    interactive = sys.stdin.isatty()
    prompt = f"[{sandbox.sandbox_id[:12]}:{session}] $ "

    def on_sigint() -> None:
        if running.is_set():
            asyncio.ensure_future(stream.interrupt())
        else:
            sys.stdout.write("\n" + prompt)
            sys.stdout.flush()

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    events = stream.events()
    last = 0
    try:
        sys.stdout.write(f"connected to sandbox {sandbox.sandbox_id}, session {session!r}; Ctrl-D leaves\n")
        while True:
            sys.stdout.write(prompt)
            sys.stdout.flush()
            line = await lines.get()
            if line is None:
                sys.stdout.write("\n")
                return last
            if not line.strip():
                continue
            await stream.run(line)
            running.set()
            next_event = asyncio.ensure_future(events.__anext__())
            # On a terminal, lines typed while a command runs are its input; from a pipe or a
            # file, every line is the next command.
            next_line = asyncio.ensure_future(lines.get()) if interactive else asyncio.get_running_loop().create_future()
            try:
                while True:
                    done, _ = await asyncio.wait({next_event, next_line}, return_when=asyncio.FIRST_COMPLETED)
                    if next_line in done:
                        typed = next_line.result()
                        if typed is None:
                            await stream.interrupt()
                        else:
                            await stream.send_input(typed + "\n")
                        next_line = asyncio.ensure_future(lines.get())
                    if next_event in done:
                        kind, value = next_event.result()
                        if kind == "output":
                            sys.stdout.write(value)
                            sys.stdout.flush()
                            next_event = asyncio.ensure_future(events.__anext__())
                            continue
                        last = value.exit_code if isinstance(value.exit_code, int) else last
                        if value.status not in ("completed", None):
                            sys.stdout.write(f"\n[{value.status}: {value.failure_reason}]\n")
                        break
            finally:
                running.clear()
                # A line typed while the command ran but not yet sent stays queued for the prompt.
                if not next_line.done():
                    next_line.cancel()
                elif next_line.result() is None:
                    lines.put_nowait(None)
    except StopAsyncIteration:
        sys.stdout.write("\n[the admin closed the connection]\n")
        return 1
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
        await stream.close()
