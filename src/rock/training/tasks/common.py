"""What every suite's task shares: errors with a kind, the action format, tool-call parsing."""

import json
import re

try:
    from rock.errors import TaskError
except ImportError:  # in an env image, without rock: the error tree travels with the tasks (suites.task_files)
    from .errors import TaskError  # type: ignore[import-not-found, no-redef]

# An action may carry tool calls as <tool_call>{"name": ..., "arguments": {...}}</tool_call>
# blocks in its content (AgentScope's BFCL format) and/or as OpenAI-style ``tool_calls``.
TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
COMPLETED = "[CONVERSATION_COMPLETED]"
MAX_ACTION_CHARS = 1 << 20


def check_action(action):
    """The assistant message of a step, checked: a dict with role assistant and text content."""
    if not isinstance(action, dict):
        raise TaskError("action must be a message object like "
                        "{\"role\": \"assistant\", \"content\": \"...\"}, not %s" % type(action).__name__, "BadRequest")
    role = action.get("role", "assistant")
    if role != "assistant":
        raise TaskError("action role must be 'assistant', not %r" % (role,), "BadRequest")
    content = action.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise TaskError("action content must be a string, not %s" % type(content).__name__, "BadRequest")
    if len(content) > MAX_ACTION_CHARS:
        raise TaskError("action content is %d characters; the limit is %d" % (len(content), MAX_ACTION_CHARS), "BadRequest")
    calls = action.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TaskError("action tool_calls must be a list of {\"function\": {\"name\", \"arguments\"}}", "BadRequest")
    return content, calls


def _call(name, arguments, where):
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise TaskError("%s: arguments of %r are not valid JSON (%s)" % (where, name, exc), "BadRequest")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TaskError("%s: tool name %r is not a function name" % (where, name), "BadRequest")
    if not isinstance(arguments, dict):
        raise TaskError("%s: arguments of %r must be a JSON object" % (where, name), "BadRequest")
    return {"name": name, "arguments": arguments}


def parse_tool_calls(action):
    """(text without the tool-call blocks, [{"name", "arguments"}]) of an assistant message.

    A malformed call is the caller's error (400), not a silent skip: a trainer wants to know."""
    content, structured = check_action(action)
    calls = []
    for i, match in enumerate(TOOL_CALL_RE.finditer(content)):
        try:
            data = json.loads(match.group(1))
        except ValueError as exc:
            raise TaskError("tool call block %d is not valid JSON (%s)" % (i + 1, exc), "BadRequest")
        if not isinstance(data, dict) or "name" not in data:
            raise TaskError("tool call block %d must be {\"name\": ..., \"arguments\": {...}}" % (i + 1), "BadRequest")
        calls.append(_call(data["name"], data.get("arguments", {}), "tool call block %d" % (i + 1)))
    for i, item in enumerate(structured):
        fn = item.get("function") if isinstance(item, dict) else None
        if not isinstance(fn, dict):
            raise TaskError("tool_calls[%d] must be {\"type\": \"function\", \"function\": {\"name\", \"arguments\"}}" % i, "BadRequest")
        calls.append(_call(fn.get("name"), fn.get("arguments", {}), "tool_calls[%d]" % i))
    text = TOOL_CALL_RE.sub("", content).strip()
    return text, calls


def tool_results_text(results):
    """Tool results as the text AgentScope's BFCL box returns them (one block per call)."""
    return "".join("<tool_response>\n%s\n</tool_response>\n" % json.dumps(
        {"name": r["name"], "content": r["content"]}, ensure_ascii=False) for r in results)


def messages_arg(messages):
    """``messages`` of evaluate: a list of messages, or AgentScope's dict (``{}`` = none)."""
    if messages is None or messages == {}:
        return None
    if isinstance(messages, dict):
        messages = messages.get("messages", [messages])
    if not isinstance(messages, list):
        raise TaskError("messages must be a list of message objects", "BadRequest")
    return messages
