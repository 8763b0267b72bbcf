"""Rollout policies: ``oracle`` (replays each suite's ground truth), ``null`` (answers nothing
useful) and ``openai`` (any OpenAI-compatible chat endpoint)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from rock.client.config import ClientConfig
from rock.client.pools import async_client
from rock.training import hostsite, oracle

Message = dict[str, Any]


class Policy:
    """One per task attempt: ``act`` gets the conversation so far and answers an assistant message."""

    name = "policy"

    async def start(self, env_type: str, task_id: str, first: dict, tools: Any) -> None:
        """Called once before the first ``act``: the task's first message and its tools (the default
        ignores them)."""
        pass

    async def act(self, messages: list[Message]) -> Message:
        """The next assistant message, given the conversation so far."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the policy holds (the default holds nothing)."""
        pass


class NullPolicy(Policy):
    """Answers every turn with an empty message: the floor a real policy's rewards are read against."""

    name = "null"

    async def act(self, messages):
        """An empty assistant message."""
        return {"role": "assistant", "content": ""}


class OraclePolicy(Policy):
    """Ground truth read on this side from the suites' packages (``hostsite``), never from the service."""

    name = "oracle"

    def __init__(self):
        self.site = hostsite.ensure_site()
        hostsite.import_from(self.site)
        self.script: list[Message] = []

    async def start(self, env_type, task_id, first, tools):
        """Load the ground-truth script of ``task_id``."""
        self.script = list(self.actions(env_type, task_id))

    def actions(self, env_type: str, task_id: str):
        """The assistant messages that solve ``task_id``, read from the suite's own data on this side."""
        say = lambda content="", calls=None: {"role": "assistant", "content": content,  # noqa: E731
                                              **({"tool_calls": oracle.tool_calls(calls)} if calls else {})}
        if env_type == "bfcl":
            from rock.training.tasks import bfcl

            category = task_id.rsplit("_", 1)[0]
            entry = bfcl.entries(category)[task_id]
            if category in bfcl.MULTI_TURN:
                for calls in oracle.bfcl_turns(entry, bfcl.answers(category)[task_id]):
                    if calls:
                        yield say(calls=calls)
                    yield say("Done.")
            elif category in bfcl.RELEVANCE:
                if "irrelevance" in category or not entry["function"]:
                    yield say("None of these functions fits.")
                else:
                    yield say(calls=[(entry["function"][0]["name"].replace(".", "_"), {})])
            else:
                yield say(calls=oracle.bfcl_ast_calls(bfcl.answers(category)[task_id]))
        elif env_type == "humaneval":
            from rock.training.suites import HumanEval

            problem = HumanEval().problems(self.site)[task_id]
            yield say("```python\n" + problem["prompt"] + problem["canonical_solution"] + "```")
            yield say("Done.")
        elif env_type == "reasoning_gym":
            from rock.training.tasks.reasoning_gym import ReasoningGymTask

            yield say("<answer>%s</answer>" % ReasoningGymTask(task_id).entry["answer"])
        else:
            raise ValueError(f"the oracle knows no answers for {env_type}")

    async def act(self, messages):
        """The script's next message, then ``Done.`` once it is spent."""
        return self.script.pop(0) if self.script else {"role": "assistant", "content": "Done."}


def model_client(base_url: str, api_key: str | None = None) -> httpx.AsyncClient:
    """One pooled client for an OpenAI-compatible endpoint, from the one client's factory (its
    answers can take minutes: a model's generation, not an admin's call)."""
    return async_client(ClientConfig(base_url.rstrip("/"), api_key), timeout=300)


class OpenAIPolicy(Policy):
    """Chat completions from an OpenAI-compatible endpoint; BFCL's tools go as ``tools``."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, http: httpx.AsyncClient | None = None,
                 temperature: float = 0.0, max_tokens: int = 1024):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = http or model_client(base_url, api_key)
        self.tools = None

    async def start(self, env_type, task_id, first, tools):
        """Keep the task's tools (BFCL's) to send with each request."""
        self.tools = tools.get("tools") if isinstance(tools, dict) and env_type == "bfcl" else None

    async def act(self, messages):
        """One chat completion from the endpoint over the conversation's system, user and assistant turns;
        its tool calls kept as OpenAI's ``tool_calls``."""
        body = {"model": self.model, "messages": [{"role": m["role"], "content": m.get("content") or ""}
                                                  for m in messages if m.get("role") in ("system", "user", "assistant")],
                "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.tools:
            body["tools"] = self.tools
        resp = await self.http.post(self.url, json=body, headers=self.headers)
        resp.raise_for_status()
        msg = resp.json()["choices"][0]["message"]
        out = {"role": "assistant", "content": msg.get("content") or ""}
        if msg.get("tool_calls"):
            out["tool_calls"] = [{"id": c.get("id"), "type": "function",
                                  "function": {"name": c["function"]["name"],
                                               "arguments": c["function"].get("arguments") or "{}"}}
                                 for c in msg["tool_calls"]]
        return out


def make_policy(name: str, model: str | None = None, base_url: str | None = None, api_key: str | None = None):
    """A factory of fresh policies (one per task attempt)."""
    if name == "null":
        return NullPolicy
    if name == "oracle":
        OraclePolicy()  # install the data once, here, not in the first tasks at once
        return OraclePolicy
    if name == "openai":
        if not base_url or not model:
            raise ValueError("the openai policy needs --model and --base-url")
        http = model_client(base_url, api_key)
        return lambda: OpenAIPolicy(base_url, model, api_key, http)
    raise ValueError(f"unknown policy {name!r}: oracle, null or openai")


def dumps(obj) -> str:
    """JSON as text with non-ASCII characters kept (trajectories are read by people)."""
    return json.dumps(obj, ensure_ascii=False)
