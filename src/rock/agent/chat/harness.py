"""A small coding agent for sandboxes: a bash tool and a file-edit tool over OpenAI tool calls.

    python3 /.rock/lib/rock_agent/chat/harness.py "fix the failing test in calc.py"

Standard library only and one process (no threads), so hundreds run at once. It talks to the
model at ``$OPENAI_BASE_URL`` (the sandbox's model endpoint; key ``$OPENAI_API_KEY``, model
``$ROCK_AGENT_MODEL``) and loops: the model's tool calls are run and their results sent back,
until it answers without a tool call (exit 0) or runs out of steps (exit 2). A model error
exits 3. Every message goes to stdout as one JSON line, for the run's output.
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

SYSTEM = ("You are a coding agent in a Linux sandbox. Use the tools to inspect and change files and run "
          "commands; when the task is done, reply with a short summary and no tool call.")
TOOLS = [
    {"type": "function", "function": {
        "name": "bash", "description": "Run a bash command; returns its exit code and output.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
    {"type": "function", "function": {
        "name": "edit_file",
        "description": "Replace the one occurrence of old_text in a file with new_text; with old_text empty, "
                       "write new_text as the whole file.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "old_text": {"type": "string"}, "new_text": {"type": "string"}},
            "required": ["path", "new_text"]}}},
]
MAX_OUTPUT = 10000


def bash(command, timeout):
    try:
        p = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        out = p.stdout.decode(errors="replace")
        return "exit code %d\n%s" % (p.returncode, out[-MAX_OUTPUT:])
    except subprocess.TimeoutExpired:
        return "timed out after %ss" % timeout


def edit_file(path, new_text, old_text=""):
    if not old_text:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        with open(path, "w") as f:
            f.write(new_text)
        return "wrote %s (%d bytes)" % (path, len(new_text))
    with open(path) as f:
        text = f.read()
    count = text.count(old_text)
    if count != 1:
        return "old_text occurs %d times in %s; it must occur exactly once" % (count, path)
    with open(path, "w") as f:
        f.write(text.replace(old_text, new_text, 1))
    return "edited %s" % path


def run_tool(call, timeout):
    fn = call.get("function") or {}
    try:
        args = json.loads(fn.get("arguments") or "{}")
        if fn.get("name") == "bash":
            return bash(args["command"], timeout)
        if fn.get("name") == "edit_file":
            return edit_file(args["path"], args["new_text"], args.get("old_text") or "")
        return "unknown tool %r" % fn.get("name")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        return "tool error: %s: %s" % (type(exc).__name__, exc)


def complete(url, key, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"content-type": "application/json", "authorization": "Bearer " + key})
    with urllib.request.urlopen(req, timeout=float(os.environ.get("ROCK_AGENT_CALL_TIMEOUT", "900"))) as r:
        return json.load(r)


def main(argv):
    if not argv:
        sys.exit("usage: harness.py PROMPT")
    base = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1").rstrip("/")
    key = os.environ.get("OPENAI_API_KEY", "rock")
    model = os.environ.get("ROCK_AGENT_MODEL", "rock-policy")
    steps = int(os.environ.get("ROCK_AGENT_MAX_STEPS", "30"))
    tool_timeout = float(os.environ.get("ROCK_AGENT_TOOL_TIMEOUT", "120"))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": " ".join(argv)}]
    for _ in range(steps):
        try:
            reply = complete(base + "/chat/completions", key, {"model": model, "messages": messages, "tools": TOOLS})
            message = reply["choices"][0]["message"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
            detail = exc.read().decode(errors="replace") if isinstance(exc, urllib.error.HTTPError) else ""
            print(json.dumps({"error": "model call failed: %s %s" % (exc, detail)}))
            return 3
        message = {k: v for k, v in message.items() if v is not None}
        messages.append(message)
        print(json.dumps(message))
        calls = message.get("tool_calls") or []
        if not calls:
            return 0
        for call in calls:
            result = {"role": "tool", "tool_call_id": call.get("id"), "content": run_tool(call, tool_timeout)}
            messages.append(result)
            print(json.dumps(result))
        sys.stdout.flush()
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
