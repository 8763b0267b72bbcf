"""Harnesses ``claude-code``, ``codex``, ``qwen-code`` and ``opencode``: the npm terminal agents in the
task's sandbox, their model calls (Anthropic Messages, OpenAI Responses, chat completions) answered over
the Chat protocol by the job's trainer, which sees them in chat form (``rock.chat.native``).

    agent sandbox: the task's image + Node and the agent (rock.agentic.terminal_agents, built
    FROM the task's docker_image once, by the env image builder of this host's docker engine)
        claude -p / codex exec / qwen / opencode run --HTTP--> endpoint (loopback) --> admin
            --> ChatTrainer.serve(policy)

Policies: ``oracle`` (the agent's own shell tool runs the task's solution, then a final answer),
``null`` (a final answer at once), a trainer's callable, or ``openai``: any model server at
``policy_options["base_url"]``, reached through the admin's proxy mode on the agent's own API (the
endpoint forwards Messages, Responses and chat calls unchanged and records each). A model server that
refuses connections is the rollout's error before the agent starts. The run loop is mini-swe-agent's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from urllib.parse import urlsplit

from rock.actions.sizes import parse_memory
from rock.agentic import terminal_agents
from rock.agentic.record import RolloutRecord
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harbor import Task
from rock.agentic.tasks.harness_mini import MiniSweHarness
from rock.agentic.tasks.harness_ours import endpoint_config
from rock.agentic.tasks.oracle import oracle_command
from rock.agentic.tasks.harness import RolloutOptions, register_harness
from rock.sdk.sandbox.agent import RockAgentConfig


def _text(content: str) -> dict:
    return {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}


class TerminalAgentHarness(MiniSweHarness):
    """An npm terminal agent (claude-code, codex, qwen-code, opencode) in an image made FROM the task's, its model
    calls answered by the job's policy (``oracle``, ``null`` or a callable) in chat form, whatever API the agent
    speaks. A subclass names the agent and its shell tool."""

    policies = ("oracle", "null", "openai")
    admin_policies = ("openai",)
    agent = ""  # terminal_agents.AGENTS' key
    shell = ""  # the agent's shell tool, and the argument that takes the command
    shell_arg = ""
    _images: dict[tuple[str, str], str] = {}  # (agent, task image) -> the agent's image, per process

    async def image(self, task: Task) -> str | None:
        """The task image with Node and the agent installed, built on first use and kept for the process. Raises
        TaskError for a task that builds its own image from a Dockerfile."""
        if not task.image:
            raise TaskError(f"harness {self.name} runs tasks with an [environment] docker_image; {task.task_id} "
                            "builds its own (environment/Dockerfile)", "BadRequest")
        key = (self.agent, task.image)
        if key not in self._images:
            self._images[key] = (await terminal_agents.ensure_image(self.agent, task.image)).tag
        return self._images[key]

    def oracle_policy(self, task: Task):
        """The ``oracle`` policy: the agent's shell tool runs the task's solution, then a final answer. Side calls
        that offer no shell tool (a title, a topic check) are answered "ok"."""
        def answer(call) -> dict:
            tools = [t["function"]["name"] for t in call.request.get("tools") or ()]
            if self.shell not in tools:  # a side call (a title, a topic check)
                return _text("ok")
            if any(m.get("role") == "tool" for m in call.request.get("messages", [])):
                return _text("The reference fix is applied.")
            args = json.dumps({self.shell_arg: self.oracle_shell(oracle_command(task))})
            return {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": "call_oracle", "type": "function",
                                "function": {"name": self.shell, "arguments": args}}]}}]}
        return answer

    def null_policy(self, call) -> dict:
        """A final answer at once: the agent ends, nothing changed."""
        return _text("I will not change anything.")

    def oracle_shell(self, command: str) -> str:
        """The oracle's command line as given to the agent's shell tool; a subclass rewrites what its agent
        refuses."""
        return command

    def check(self, options: RolloutOptions) -> None:
        """Refuse, before any sandbox starts, ``openai`` without a base URL."""
        if isinstance(options.policy, str):
            endpoint_config(options)

    def warnings(self, tasks: list[Task]) -> list[str]:
        """One line per memory size below the agent's measured need (``terminal_agents.MEMORY_MB``), naming
        the tasks: the agent, Node and its tools count against the task's ``memory_mb``, and an agent killed
        for memory is that rollout's error."""
        need = terminal_agents.MEMORY_MB[self.agent]
        low: dict[str, list[str]] = {}
        for task in tasks:
            size = parse_memory(task.memory)
            if size is not None and size < need * 2**20:
                low.setdefault(task.memory, []).append(task.task_id)
        out = []
        for memory, ids in sorted(low.items(), key=lambda kv: parse_memory(kv[0]) or 0):
            named = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            out.append(f"{len(ids)} task(s) give the agent's sandbox {int((parse_memory(memory) or 0) / 2**20)} MB "
                       f"({named}); {self.agent} needs about {need} MB there (its measured peak, docs/agentic-tasks.md)"
                       " and may be killed for memory: raise [environment] memory_mb in task.toml")
        return out

    def config(self, task: Task, options: RolloutOptions, limit: float) -> RockAgentConfig:
        """The agent's install and run, for ``box.agent``: the model name and step limit from the policy's options,
        the time limit in seconds, the endpoint in proxy mode for ``openai``."""
        policy = options.policy_options or {}
        return RockAgentConfig.terminal_agent(self.agent, policy.get("model") or "rock-policy",
                                              int(policy.get("max_steps") or self.step_limit),
                                              project_path=task.workdir, agent_run_timeout=max(2, int(limit)),
                                              agent_run_check_interval=1,
                                              model_service_config=endpoint_config(options))

    async def run(self, box, task: Task, options: RolloutOptions, rec: RolloutRecord) -> None:
        """The agent's run (mini-swe-agent's loop); for ``openai`` a model server that refuses connections is the
        rollout's error at once, rather than the agent retrying it until its time limit."""
        if options.policy == "openai":
            await _reachable((options.policy_options or {}).get("base_url") or "")
        await super().run(box, task, options, rec)


async def _reachable(url: str) -> None:
    """Raise TaskError (PolicyError) when nothing accepts a connection at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), 10)
    except (OSError, asyncio.TimeoutError) as exc:
        # asyncio's own OSError says "Connect call failed (host, port)": the errno's name says why
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else \
            (os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc))
        raise TaskError(f"policy openai ({url}): the model server does not accept connections at "
                        f"{parts.hostname}:{port} ({reason})", "PolicyError") from None
    writer.close()


class ClaudeCodeHarness(TerminalAgentHarness):
    """Harness ``claude-code``: Claude Code (``claude -p``), Anthropic Messages calls; shell tool ``Bash``."""

    name, agent, shell, shell_arg = "claude-code", "claude-code", "Bash", "command"


class CodexHarness(TerminalAgentHarness):
    """Harness ``codex``: Codex (``codex exec``), OpenAI Responses calls; shell tool ``exec_command``."""

    name, agent, shell, shell_arg = "codex", "codex", "exec_command", "cmd"

    def oracle_shell(self, command: str) -> str:
        """The oracle's command as a base64 script piped to bash: Codex refuses any command line with ``rm -rf`` in
        it, and the oracle's clean-up has one."""
        # Codex refuses a command line with `rm -rf` in it whatever its sandbox mode ("rm -f style
        # commands are not permitted"); the oracle's clean-up has one, so it goes in as a script.
        return f"echo {base64.b64encode(command.encode()).decode()} | base64 -d | bash"


class QwenCodeHarness(TerminalAgentHarness):
    """Harness ``qwen-code``: Qwen Code, chat-completions calls; shell tool ``run_shell_command``."""

    name, agent, shell, shell_arg = "qwen-code", "qwen-code", "run_shell_command", "command"


class OpencodeHarness(TerminalAgentHarness):
    """Harness ``opencode``: opencode (``opencode run``), chat-completions calls; shell tool ``bash``."""

    name, agent, shell, shell_arg = "opencode", "opencode", "bash", "command"


register_harness("claude-code", ClaudeCodeHarness)
register_harness("qwen-code", QwenCodeHarness)
register_harness("codex", CodexHarness)
register_harness("opencode", OpencodeHarness)
