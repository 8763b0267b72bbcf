"""The GEM view of an agentic rollout: a real harness in a real sandbox, driven one model call at a time.

    env = rock.make("agentic:pypi-bugs", task_id="cachetools-0003", harness="ours")
    obs, info = env.reset()                 # the agent's first model request: {"messages", "tools", ...}
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))   # a completion, a message or text
        if terminated or truncated:
            break                           # reward: the verifier's (hidden tests in a fresh sandbox)
    env.close()

Underneath is the same rollout as ``rock job run --harness ours``: the harness's calls are answered
by this env's ``step`` instead of a policy function, so the trajectory, the diff and the reward
are the job's. Without ``task_id``, ``reset(seed)`` picks the suite's task ``seed % len(suite)``.
The last step's ``info["record"]`` is the rollout's record (what a job writes as its JSONL line).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rock.agentic.record import RolloutRecord
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harness_ours import message
from rock.agentic.tasks.rollout import HARNESSES, RolloutOptions, rollout
from rock.agentic.tasks.suites import open_suite
from rock.client.config import ClientConfig
from rock.envs.errors import EnvError

PREFIX = "agentic:"


def completion(action: Any) -> dict:
    """A step's action as a chat completion: text, an assistant message, or a completion as is.
    Tool-call arguments given as a dict are sent as the JSON string OpenAI's clients expect."""
    if isinstance(action, str):
        return message(action)
    if isinstance(action, dict) and isinstance(action.get("choices"), list):
        return action
    if isinstance(action, dict) and ("content" in action or "tool_calls" in action):
        msg = {"role": "assistant", **action}
        calls = []
        for call in msg.get("tool_calls") or []:
            fn = dict(call.get("function") or {}) if isinstance(call, dict) else {}
            if not isinstance(fn.get("name"), str):
                raise EnvError("each tool call needs function.name", "BadRequest")
            if not isinstance(fn.get("arguments", ""), str):
                fn["arguments"] = json.dumps(fn["arguments"])
            calls.append({**call, "function": fn})
        if calls:
            msg["tool_calls"] = calls
        return {"choices": [{"index": 0, "message": msg}]}
    raise EnvError("an agentic env's action is the model's reply: a string, an assistant message "
                   "({'content', 'tool_calls'}) or a chat completion ({'choices': [...]})", "BadRequest")


class AsyncAgenticEnv:
    """An agentic task suite as a GEM env (``agentic:<suite>``): each episode is one rollout of a chat harness on
    one task, and each step answers one of the agent's model calls.

    ``task_id`` fixes the task (else ``reset(seed)`` picks one); ``harness`` is a chat harness's name (``ours`` by
    default; ``none`` is refused, it makes no calls); ``base_url`` and ``token`` name the admin (default:
    ROCK_BASE_URL, else http://localhost:8080, and ROCK_TOKEN); ``agent_timeout`` (seconds) and ``max_steps`` bound
    the agent. An unknown suite, task or harness raises at construction."""

    def __init__(self, env_id: str, task_id: str | None = None, harness: str = "ours", base_url: str | None = None,
                 token: str | None = None, agent_timeout: float | None = None, max_steps: int | None = None):
        suite = env_id[len(PREFIX):] if env_id.startswith(PREFIX) else env_id
        self.env_id, self.harness = env_id, harness
        self.folder = open_suite(suite)  # an unknown suite fails here, with the closest names
        if harness == "none" or harness not in HARNESSES:
            known = [h for h in HARNESSES if h != "none"]
            raise EnvError(f"an agentic env runs a chat harness ({', '.join(known)}), not {harness!r}", "BadRequest")
        self.task_id = task_id
        if task_id is not None:
            self.folder.get(task_id)  # an unknown task fails at make, not at reset
        admin = ClientConfig.resolve(base_url, token)
        self.options = dict(base_url=admin.base_url, token=admin.token, harness=harness, agent_timeout=agent_timeout,
                            policy_options={"max_steps": max_steps} if max_steps else {})
        self.task = None
        self._job: asyncio.Task | None = None
        self._calls: asyncio.Queue | None = None
        self._answer: asyncio.Future | None = None
        self._record = RolloutRecord()  # the last rollout's, once it ended

    async def reset(self, seed: int | None = None) -> tuple[Any, dict]:
        """Start a new rollout (ending any still running) and return the agent's first model request
        (``{"messages", "tools", ...}``) and info (task id, call index, sandbox id). The task is ``task_id``, or
        else the suite's task ``seed % len(suite)`` (seed None: the first). Raises EnvError if the agent ends
        before its first call."""
        await self.close()
        ids = self.folder.ids()
        task_id = self.task_id or ids[(seed or 0) % len(ids)]
        self.task = self.folder.get(task_id)
        self._calls = asyncio.Queue()

        async def policy(call) -> dict:
            answer = asyncio.get_running_loop().create_future()
            await self._calls.put((call, answer))
            return await answer

        options = RolloutOptions(policy=policy, **self.options)
        self._job = asyncio.create_task(rollout(self.task, options, suite=self.folder.name))
        obs, done, info = await self._next()
        if done:
            rec = self._record
            raise EnvError(f"the agent ended before its first model call: "
                           f"{rec.error or rec.harness.error or rec.harness.to_json()}", "EnvError")
        return obs, info

    async def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """Answer the waiting model call with ``action`` (text, an assistant message or a chat completion) and
        return the next call as the observation, with reward 0. When the agent ends instead, the observation is
        None, the reward is the verifier's (hidden tests in a fresh sandbox), ``terminated`` is True,
        ``truncated`` says the agent timed out or ran out of steps, and ``info["record"]`` is the rollout's
        record. Raises EnvError when no call is waiting (before reset, or after the last step)."""
        if self._answer is None or self._answer.done():
            raise EnvError("no model call is waiting: call reset() first (or again after the last step)", "EnvBroken")
        self._answer.set_result(completion(action))
        obs, done, info = await self._next()
        if not done:
            return obs, 0.0, False, False, info
        rec = self._record
        truncated = bool(rec.harness.timed_out) or rec.harness.exit_code == 2  # steps ran out
        return None, rec.reward, True, truncated, info

    async def _next(self) -> tuple[Any, bool, dict]:
        """The harness's next model request, or the rollout's end (its record)."""
        take = asyncio.ensure_future(self._calls.get())
        await asyncio.wait({take, self._job}, return_when=asyncio.FIRST_COMPLETED)
        if take.done():
            call, self._answer = take.result()
            return call.request, False, {"task_id": self.task.task_id, "index": call.index,
                                         "sandbox_id": call.sandbox_id}
        take.cancel()
        rec = self._record = self._job.result()
        self._job = self._answer = None
        info = {"task_id": self.task.task_id, "record": rec.to_json(), "resolved": rec.resolved,
                "pass_rate": rec.pass_rate, "error": rec.error}
        return None, True, info

    async def close(self) -> None:
        """Ends a rollout still running (its sandboxes are stopped)."""
        job, self._job, self._answer = self._job, None, None
        if job is not None and not job.done():
            job.cancel()
            try:
                await job
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - ending it is all that is asked
                pass

    async def __aenter__(self) -> "AsyncAgenticEnv":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class AgenticEnv:
    """``AsyncAgenticEnv`` without ``await`` (its rollout runs on the SDK's background loop)."""

    def __init__(self, env_id: str, **kwargs: Any):
        try:
            self._env = AsyncAgenticEnv(env_id, **kwargs)
        except TaskError as exc:
            raise EnvError(exc.message, "EnvNotFound" if exc.status_code == 404 else "BadRequest") from None

    def __getattr__(self, name: str):
        return getattr(self._env, name)

    def reset(self, seed: int | None = None) -> tuple[Any, dict]:
        """``AsyncAgenticEnv.reset``: start a new rollout and return the agent's first model request and info."""
        return _sync(self._env.reset(seed))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """``AsyncAgenticEnv.step``: answer the waiting model call; returns (observation, reward, terminated,
        truncated, info), the reward only at the end."""
        return _sync(self._env.step(action))

    def close(self) -> None:
        """End a rollout still running; its sandboxes are stopped. Safe to call twice."""
        _sync(self._env.close())

    def __enter__(self) -> "AgenticEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sync(coro):
    from rock.sdk.sandbox.sync import run_sync

    return run_sync(coro)


async def make_async(env_id: str, **kwargs: Any) -> AsyncAgenticEnv:
    """An ``AsyncAgenticEnv`` for ``env_id`` (``agentic:<suite>``), ``kwargs`` as its constructor takes; an unknown
    suite or task raises EnvError (EnvNotFound), a bad argument EnvError (BadRequest)."""
    try:
        return AsyncAgenticEnv(env_id, **kwargs)
    except TaskError as exc:
        raise EnvError(exc.message, "EnvNotFound" if exc.status_code == 404 else "BadRequest") from None
