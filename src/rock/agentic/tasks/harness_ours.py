"""Harness ``ours``: our standard-library coding agent (``rock.agent.chat.harness``, a bash and a
file-edit tool) in the task's sandbox, its model calls answered over the Chat protocol.

    agent sandbox (no network)                         the job's process
        harness.py --HTTP--> endpoint (loopback) --agent socket--> admin (calls wait, recorded)
                                                                      ^  ChatTrainer.exchange
                                                                      policy(call) -> completion

Policies:
  ``oracle``  the first call is answered with a ``bash`` tool call running the task's solution
              (``oracle.oracle_tool_call``), the next with a reply without a tool call (done);
  ``null``    a reply without a tool call: the agent ends, nothing changed;
  ``replay``  ``policy_options["replay"]``: a ROCK trajectory JSONL, served in order by the admin;
  ``openai``  ``policy_options["base_url"]`` (+ ``model``, ``api_key``): the admin's proxy mode
              forwards each call there (the key goes to the admin, never into the sandbox);
  a callable  ``policy(PendingCall) -> completion`` (sync or async): a trainer's, a test's, the env view's.

The rollout's record keeps every model call from the admin's records (its ``model_calls``).
An ``openai`` upstream that does not answer is that rollout's ``error``; other rollouts go on.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rock.actions.records import read_rock_jsonl
from rock.agentic import tracing
from rock.agentic.record import RolloutRecord
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harbor import Task
from rock.agentic.tasks.oracle import oracle_tool_call
from rock.agentic.tasks.harness import ChatHarness, RolloutOptions, register_harness, time_limit
from rock.sdk.sandbox.agent import RockAgentConfig
from rock.sdk.sandbox.model_service.base import ModelService, ModelServiceConfig

log = logging.getLogger("rock.agentic")
DONE = "The task is done."


def message(content: str | None = None, tool_calls: list | None = None) -> dict:
    """A chat completion of one assistant message: ``content``, and ``tool_calls`` when given (finish reason
    ``tool_calls``, else ``stop``)."""
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return {"choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if tool_calls else "stop"}]}


def oracle_policy(task: Task):
    """The reference fix through the harness's bash tool, then done."""

    def answer(call) -> dict:
        if any(m.get("role") == "tool" for m in call.request.get("messages", [])):
            return message(DONE)
        return message(None, [oracle_tool_call(task)])

    return answer


def null_policy(call) -> dict:
    """A reply without a tool call: the agent ends, nothing changed."""
    return message("I will not change anything.")


def replay_calls(path: str, task_id: str) -> list[dict]:
    """A recorded run's calls: a job's JSONL (the record of ``task_id``; the last one wins) or one
    run's trajectory in ROCK's JSONL (every line a call with its ``response``)."""
    try:
        lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise TaskError(f"--replay {path}: not a readable JSONL file ({exc})", "BadRequest") from None
    runs = [r for r in lines if isinstance(r, dict) and isinstance(r.get("model_calls"), list)]
    if not runs:
        try:
            return read_rock_jsonl("\n".join(json.dumps(r) for r in lines))
        except ValueError as exc:
            raise TaskError(f"--replay {path}: {exc}", "BadRequest") from None
    mine = [r for r in runs if r.get("task_id") == task_id]
    mine = [r for r in mine if r.get("error") is None] or mine  # a finished run over a failed one
    if not mine:
        raise TaskError(f"--replay {path} has no record of task {task_id!r}", "BadRequest")
    return [c for c in mine[-1]["model_calls"] if isinstance(c, dict) and isinstance(c.get("response"), dict)]


def endpoint_config(options: RolloutOptions) -> ModelServiceConfig:
    """Local mode (the job's trainer answers) unless the policy is served by the admin itself."""
    policy, po = options.policy, options.policy_options or {}
    model = po.get("model") or "rock-policy"
    if policy == "openai":
        if not po.get("base_url"):
            raise TaskError("--policy openai needs --policy-url (an OpenAI-compatible …/v1 URL) and --model",
                            "BadRequest")
        return ModelServiceConfig(enabled=True, type="proxy", proxy_base_url=po["base_url"], models=[model],
                                  proxy_api_key=po.get("api_key"), retry_attempts=int(po.get("retry_attempts") or 3),
                                  request_timeout=float(po.get("request_timeout") or 300))
    if policy == "replay":
        if not po.get("replay"):
            raise TaskError("--policy replay needs a recorded trajectory (--replay FILE: ROCK's JSONL)", "BadRequest")
        return ModelServiceConfig(enabled=True, replay_file=str(po["replay"]), models=[model])  # ReplayService
    return ModelServiceConfig(enabled=True, models=[model], call_timeout=float(po.get("call_timeout") or 600))


class ReplayService(ModelService):
    """The admin's replay mode, its records picked on the host (a job's JSONL holds many runs)."""

    def __init__(self, sandbox, config: ModelServiceConfig, calls: list[dict]):
        super().__init__(sandbox, config)
        self.calls = calls

    def _endpoint_config(self) -> dict:
        c = self.config
        return {"type": "proxy", "port": c.port, "models": c.models, "limits": c.limits.model_dump(),
                "replay": self.calls}


class OursHarness(ChatHarness):
    """Harness ``ours``: our standard-library coding agent (a bash and a file-edit tool) in the agent sandbox, its
    model calls answered by the policy: ``oracle``, ``null``, a callable (on the job's side), or ``replay`` and
    ``openai`` (served by the admin). ``policy_options["max_steps"]`` caps its steps (default 30)."""

    name = "ours"
    policies = ("oracle", "null", "replay", "openai")
    admin_policies = ("replay", "openai")
    oracle_policy = staticmethod(oracle_policy)
    null_policy = staticmethod(null_policy)
    max_steps = 30

    def check(self, options: RolloutOptions) -> None:
        """Refuse, before any sandbox starts, a policy its options cannot serve: ``openai`` without a base URL,
        ``replay`` without a readable file."""
        if isinstance(options.policy, str):
            endpoint_config(options)
            if options.policy == "replay" and not Path(options.policy_options["replay"]).is_file():
                raise TaskError(f"--replay {options.policy_options['replay']}: no such file", "BadRequest")

    async def run(self, box, task: Task, options: RolloutOptions, rec: RolloutRecord) -> None:
        """Install the agent, run it on the task's instruction while the policy answers its calls, and record its
        exit, output and every model call. A policy that breaks stops the endpoint so the agent exits at once;
        an ``openai`` upstream that failed the last call raises TaskError (PolicyError)."""
        answer = self.answerer(task, options)
        limit = time_limit(options.agent_timeout, task.agent_timeout)
        steps = int((options.policy_options or {}).get("max_steps") or self.max_steps)
        service = endpoint_config(options)
        if options.policy == "replay":
            box.model_service = ReplayService(box, service, replay_calls(service.replay_file, task.task_id))
        config = RockAgentConfig.rock_harness(max_steps=steps, project_path=task.workdir,
                                              model_service_config=service,
                                              agent_run_timeout=max(2, int(limit)), agent_run_check_interval=1)
        t, began = time.perf_counter(), time.time()
        try:
            await box.agent.install(config)
        except Exception as exc:  # noqa: BLE001 - e.g. an upstream the admin does not forward to: say so
            raise TaskError(f"harness ours could not start: {getattr(exc, 'message', None) or exc}",
                            "HarnessError") from exc
        rec.timings["harness_install_ms"] = round((time.perf_counter() - t) * 1000, 1)
        tracing.span_at("harness_install", began, time.time())
        await self.run_agent(box, task, options, answer, rec)


register_harness("ours", OursHarness)
