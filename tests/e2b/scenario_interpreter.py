"""e2b_code_interpreter (newest) against ROCK: run_code with stdout, stderr, results (text,
image/png, html), errors and contexts. Prints "E2B INTERPRETER OK"."""

import sys
import asyncio
import base64
import os
import struct
import time

import e2b_code_interpreter
from e2b_code_interpreter import Sandbox, TimeoutException

assert os.environ["E2B_VENV"] in e2b_code_interpreter.__file__

sbx = Sandbox.create(timeout=120)  # the SDK's default template, code-interpreter-v1
try:
    ex = sbx.run_code("print('hi'); import sys; print('oops', file=sys.stderr); 1+1")
    assert ex.logs.stdout == ["hi\n"] and ex.logs.stderr == ["oops\n"], ex.logs
    assert ex.text == "2" and ex.error is None and ex.execution_count >= 1, ex
    ex = sbx.run_code("1/0")
    assert ex.error.name == "ZeroDivisionError" and "division by zero" in ex.error.value, ex.error
    assert "Traceback" in ex.error.traceback
    # the IPython display protocol: an object's PNG and HTML reprs become the result's png/html
    png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    ex = sbx.run_code(
        "class Pic:\n"
        "    def _repr_png_(self): return %r\n"
        "    def _repr_html_(self): return '<b>pic</b>'\n"
        "Pic()" % png)
    result = ex.results[0]
    assert result.is_main_result and base64.b64decode(result.png) == png and result.html == "<b>pic</b>", result
    ctx = sbx.create_code_context()
    sbx.run_code("x = 41", context=ctx)
    assert sbx.run_code("x + 1", context=ctx).text == "42"
    assert sbx.run_code("'x' in globals()").text == "False"  # the default context is another namespace
    assert ctx.id in [c.id for c in sbx.list_code_contexts()]
    sbx.restart_code_context(ctx)
    assert sbx.run_code("'x' in globals()", context=ctx).text == "False"
    sbx.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in sbx.list_code_contexts()]
    ex = sbx.run_code("import os; os.environ['CELL_VAR']", envs={"CELL_VAR": "v"})
    assert ex.text == "'v'", ex
    out = []
    ex = sbx.run_code("for i in range(3): print(i)", on_stdout=lambda m: out.append(m.line))
    assert "".join(out) == "0\n1\n2\n", out
    assert sbx.commands.run("echo envd-too").stdout == "envd-too\n"
    ex = sbx.run_code("print('x' * 5_000_000)")  # past one message: sent in pieces
    assert "".join(ex.logs.stdout) == "x" * 5_000_000 + "\n" and ex.error is None
    ex = sbx.run_code("'y' * 20_000_000")  # a result too large to send says so
    assert ex.error.name == "OutputTooLarge" and not ex.results, ex
    # a cell past its timeout: the SDK gives up, the server interrupts it, the context goes on
    try:
        sbx.run_code("import time\nfor i in range(60): time.sleep(0.5)\nstuck = False", timeout=2)
        raise AssertionError("the timeout must raise")
    except TimeoutException:
        pass
    time.sleep(1)
    ex = sbx.run_code("'stuck' in globals(), 1 + 1")
    assert ex.text == "(False, 2)", ex
finally:
    sbx.kill()


async def async_check():
    from e2b_code_interpreter import AsyncSandbox

    asbx = await AsyncSandbox.create(timeout=60)
    try:
        lines = []
        ex = await asbx.run_code("print('async'); 6 * 7", on_stdout=lambda m: lines.append(m.line))
        assert ex.text == "42" and lines == ["async\n"], (ex, lines)
        ex = await asbx.run_code("raise ValueError('bad')")
        assert ex.error.name == "ValueError" and ex.error.value == "bad", ex.error
    finally:
        await asbx.kill()


asyncio.run(async_check())
print("E2B INTERPRETER OK")

# Every check above passed. Leave without interpreter finalization: the SDK's background threads
# (its HTTP client's) have aborted it once at exit (PyGILState_Release, rc -6, after the OK line),
# which says nothing about the server under test.
sys.stdout.flush()
os._exit(0)
