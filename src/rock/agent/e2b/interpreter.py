"""Code contexts for E2B's code interpreter: persistent Python interpreters inside the sandbox.

Standard library only. Each context is a ``python3`` process running ``DRIVER``: it executes
cells in one namespace, like a Jupyter kernel (the last expression is the cell's result, with
the IPython display reprs ``_repr_png_``/``_repr_html_``/... and open matplotlib figures as
images), and writes its messages as JSON lines on a pipe of its own, so that what user code
prints never mixes with them. A cell whose client goes away is interrupted (SIGINT).

Ops: kernel.create (language, cwd) -> context; kernel.list; kernel.remove (id); kernel.restart
(id); kernel.exec (id | language, code, env): event ``start`` once the context is found, then
events ``msg`` {msg}, until the cell ends.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

from ..errors import OpError

DRIVER = r'''
import ast, base64, json, os, sys, time, traceback
out = os.fdopen(int(sys.argv[1]), "w", buffering=1)
def send(m):
    out.write(json.dumps(m) + "\n"); out.flush()
class Stream:  # whole lines, as a kernel's stream messages carry them; the rest at flush
    def __init__(self, kind): self.kind, self.buf = kind, ""
    def write(self, s):
        self.buf += s
        if "\n" in self.buf:
            cut = self.buf.rindex("\n") + 1
            self.send(self.buf[:cut]); self.buf = self.buf[cut:]
        return len(s)
    def send(self, text):
        if text: send({"type": self.kind, "text": text, "timestamp": time.time_ns() // 1000})
    def flush(self):
        self.send(self.buf); self.buf = ""
    def isatty(self): return False
REPRS = (("_repr_png_", "png"), ("_repr_jpeg_", "jpeg"), ("_repr_svg_", "svg"), ("_repr_html_", "html"),
         ("_repr_markdown_", "markdown"), ("_repr_latex_", "latex"), ("_repr_json_", "json"),
         ("_repr_javascript_", "javascript"))
def result(value, main):
    r = {"type": "result", "is_main_result": main, "text": repr(value)}
    for method, key in REPRS:
        f = getattr(value, method, None)
        if callable(f) and not isinstance(value, type):
            try:
                data = f()
            except Exception:
                continue
            if data is not None:
                r[key] = base64.b64encode(data).decode() if isinstance(data, bytes) else data
    return r
def figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    import io
    for num in plt.get_fignums():
        fig = plt.figure(num); buf = io.BytesIO(); fig.savefig(buf, format="png")
        send({"type": "result", "is_main_result": False, "text": repr(fig),
              "png": base64.b64encode(buf.getvalue()).decode()})
    plt.close("all")
ns = {"__name__": "__main__"}
count = 0
real = sys.stdout, sys.stderr
requests, sys.stdin = sys.stdin, open(os.devnull)  # user code's input() must not read our requests
for line in requests:
    req = json.loads(line); count += 1
    env = req.get("env") or {}; saved = {k: os.environ.get(k) for k in env}; os.environ.update(env)
    sys.stdout, sys.stderr = Stream("stdout"), Stream("stderr")
    try:
        tree = ast.parse(req["code"], "<cell>", "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<cell>", "exec"), ns)
        value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), ns) if last is not None else None
        figures()
        if value is not None:
            ns["_"] = value; send(result(value, True))
    except BaseException as e:
        send({"type": "error", "name": type(e).__name__, "value": str(e),
              "traceback": "".join(traceback.format_exception(type(e), e, e.__traceback__))})
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        sys.stdout, sys.stderr = real
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    send({"type": "number_of_executions", "execution_count": count}); send({"type": "end"})
'''

_contexts = {}
_lock = threading.Lock()
_counter = [0]


class Context:
    def __init__(self, cid, language, cwd):
        if language not in (None, "", "python"):
            raise OpError("BadRequest", "language %r is not served: this sandbox's code contexts run python" % language)
        self.id, self.language = cid, "python"
        self.cwd = cwd or os.environ.get("HOME") or "/"
        if not os.path.isdir(self.cwd):
            raise OpError("BadRequest", "cwd %r is not a directory" % self.cwd)
        self.lock = threading.Lock()
        self.start()

    def start(self):
        read, write = os.pipe()
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        python = shutil.which("python3") or sys.executable
        self.proc = subprocess.Popen([python, "-c", DRIVER, str(write)], stdin=subprocess.PIPE, cwd=self.cwd, env=env,
                                     pass_fds=(write,), start_new_session=True, stdout=subprocess.DEVNULL)
        os.close(write)
        self.messages = os.fdopen(read, "r")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
        self.messages.close()

    def info(self):
        return {"id": self.id, "language": self.language, "cwd": self.cwd}


def _get(args):
    cid = args.get("id")
    with _lock:
        if cid:
            ctx = _contexts.get(cid)
            if ctx is None:
                raise OpError("NotFound", "context %r not found" % cid)
            return ctx
        ctx = _contexts.get("default-python")  # no context named: the sandbox's default one
        if ctx is None:
            ctx = _contexts["default-python"] = Context("default-python", args.get("language"), None)
        return ctx


def create(req):
    with _lock:
        _counter[0] += 1
        cid = "ctx-%d" % _counter[0]
    ctx = Context(cid, req.args.get("language"), req.args.get("cwd"))
    with _lock:
        _contexts[cid] = ctx
    return ctx.info()


def list_contexts(req):
    with _lock:
        return {"contexts": [c.info() for c in _contexts.values()]}


def remove(req):
    ctx = _get(req.args)
    with _lock:
        _contexts.pop(ctx.id, None)
    ctx.stop()
    return {}


def restart(req):
    ctx = _get(req.args)
    with ctx.lock:
        ctx.stop()
        ctx.start()
    return {}


def execute(req):
    code = req.args.get("code")
    if not isinstance(code, str):
        raise OpError("BadRequest", "code must be a string")
    ctx = _get(req.args)
    # Accepted: the admin answers the client's request now (its response head), not at the
    # cell's first output, so a quiet cell runs under the client's execution timeout, not its
    # request timeout.
    req.event("start")
    with ctx.lock:  # one cell at a time per context, as a kernel runs them
        if ctx.proc.poll() is not None:
            ctx.stop()
            ctx.start()
        ctx.proc.stdin.write(json.dumps({"code": code, "env": req.args.get("env") or {}}).encode() + b"\n")
        ctx.proc.stdin.flush()
        done = threading.Event()
        threading.Thread(target=_interrupt_on_cancel, args=(req, ctx, done), daemon=True).start()
        while True:
            line = ctx.messages.readline()
            if not line:  # the interpreter died (os._exit, out of memory): a fresh one next time
                req.event("msg", {"msg": {"type": "error", "name": "KernelDied", "value": "the interpreter exited",
                                          "traceback": ""}})
                ctx.proc.wait()
                break
            msg = json.loads(line)
            if msg.get("type") == "end":
                break
            for part in _fit(msg, len(line)):
                req.event("msg", {"msg": part})
        done.set()
    return {}


MAX_MESSAGE = 4 << 20  # an event's meta must fit the protocol's frame (16 MiB) with room to spare


def _fit(msg, size):
    """Long output in pieces; a result too large to send becomes an error saying so."""
    if size <= MAX_MESSAGE:
        return [msg]
    if msg.get("type") in ("stdout", "stderr"):
        text = msg["text"]
        step = MAX_MESSAGE // 4  # characters: JSON may escape each into several bytes
        return [dict(msg, text=text[i:i + step]) for i in range(0, len(text), step)]
    return [{"type": "error", "name": "OutputTooLarge", "traceback": "",
             "value": "the cell's %s is %d bytes; more than %d cannot be sent" % (msg.get("type"), size, MAX_MESSAGE)}]


def _interrupt_on_cancel(req, ctx, done):
    while not done.is_set():
        if req.cancelled.wait(0.25):
            try:
                os.kill(ctx.proc.pid, signal.SIGINT)
            except OSError:
                pass
            return


OPS = {
    "kernel.create": create,
    "kernel.list": list_contexts,
    "kernel.remove": remove,
    "kernel.restart": restart,
    "kernel.exec": execute,
}
