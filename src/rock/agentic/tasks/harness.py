"""What a harness is and how one plugs in: ``RolloutOptions``, the ``Harness`` interface (and
``ChatHarness`` for agents whose model calls cross the Chat protocol), the ``none`` harness and
the ``HARNESSES`` registry. Below the harnesses (``harness_*``) and the rollout that runs them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from rock.actions import Command
from rock.agentic import tracing
from rock.agentic.record import RolloutRecord
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harbor import Task
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox.client import Sandbox

Script = Callable[[Sandbox, Task], Awaitable[Any]]


@dataclass
class RolloutOptions:
    """How to run rollouts (a job's share one): the admin (``base_url``, ``token``), the harness by name, the
    policy (a name the harness runs, or for harness ``none`` an async callable(sandbox, task)) and its
    ``policy_options`` (model, base_url, api_key, replay file, max_steps...). ``agent_timeout`` and
    ``verifier_timeout`` (seconds) override the task's own; ``verify_concurrency`` bounds the hidden-test runs
    at once."""

    base_url: str
    token: str | None = None
    harness: str = "none"
    policy: str | Script = "oracle"  # a name, or (for harness none) an async callable(sandbox, task)
    policy_options: dict = field(default_factory=dict)  # model, base_url, api_key, replay file ...
    agent_timeout: float | None = None  # over the task's own
    verifier_timeout: float | None = None
    # Hidden-test runs at once (a job's rollouts share the options). Tests are CPU work: 32 at a
    # time on 2 cores would time out on wall time, not on the agent's change. Waiting for a slot
    # does not count against the verifier's time limit.
    verify_concurrency: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    _gate: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def gate(self) -> asyncio.Semaphore:
        """The semaphore that bounds the hidden-test runs to ``verify_concurrency``, one per running event loop."""
        # One per event loop: options outlive a loop (a sync job runs each in a loop of its own),
        # and a semaphore is bound to the loop it first waited in.
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Semaphore(self.verify_concurrency))
        return self._gate[1]


class Harness:
    """Runs the agent in its sandbox until it ends. Subclasses fill the record's ``harness`` and ``model_calls``."""

    name = "harness"
    policies: tuple[str, ...] = ()

    async def run(self, box: Sandbox, task: Task, options: RolloutOptions, rec: RolloutRecord) -> None:
        """Run the agent in ``box`` (the started agent sandbox, the task's workspace at its workdir) until it ends,
        within the task's agent timeout, and fill ``rec.harness`` (exit code, output, timed_out, error) and
        ``rec.model_calls``. Raises TaskError for what is the rollout's failure, not the agent's."""
        raise NotImplementedError

    async def image(self, task: Task) -> str | None:
        """The agent sandbox's image when the harness brings its own (the task's plus its
        packages); None: the task's. The verifier always runs the task's."""
        return None

    def check(self, options: RolloutOptions) -> None:
        """Refuse options it cannot run (a TaskError), before a job starts any sandbox."""

    def warnings(self, tasks: list[Task]) -> list[str]:
        """What a job of these tasks should be told before it starts (it runs anyway): e.g. tasks whose
        memory is below what the agent needs."""
        return []


class ChatHarness(Harness):
    """A harness whose agent's model calls are answered over the Chat protocol: by the trainer's
    side of the rollout (``oracle``, ``null``, a callable) or by the admin (``admin_policies``)."""

    admin_policies: tuple[str, ...] = ()  # served by the admin (proxy, replay): nothing to answer here

    def oracle_policy(self, task: Task):
        """The ``oracle`` policy for ``task``: a callable answering each call so that the agent applies the task's
        reference solution and then ends."""
        raise NotImplementedError

    def null_policy(self, call) -> dict:
        """The ``null`` policy: answers ``call`` so that the agent ends at once, changing nothing."""
        raise NotImplementedError

    def answerer(self, task: Task, options: RolloutOptions):
        """What answers the calls on the trainer's side; None when the admin serves them."""
        policy = options.policy
        if callable(policy):
            return policy
        if policy == "oracle":
            return self.oracle_policy(task)
        if policy == "null":
            return self.null_policy
        if policy in self.admin_policies:
            return None
        raise TaskError(f"harness {self.name} runs the policies {', '.join(self.policies)} (or a trainer's "
                        f"callable), not {policy!r}", "BadRequest")

    async def run_agent(self, box, task: Task, options: RolloutOptions, answer, rec: RolloutRecord) -> None:
        """Run the installed agent on the task's instruction while ``answer`` serves its model calls
        (None: the admin serves them), and record its exit, output and every model call. A policy
        that breaks (or whose loop ends early) stops the endpoint, so the agent's waiting call
        fails at once and the agent exits instead of waiting it out; an ``openai`` upstream that
        failed the last call raises TaskError (PolicyError)."""
        trainer = ChatTrainer.for_sandbox(box)
        running = asyncio.create_task(box.agent.run(task.instruction))
        serving = None
        if answer is not None:
            serving = asyncio.create_task(trainer.serve(answer, sandbox_ids=[box.sandbox_id], wait=5))
        t, began = time.perf_counter(), time.time()
        try:
            await asyncio.wait({running, serving} - {None}, return_when=asyncio.FIRST_COMPLETED)
            if serving is not None and serving.done() and not running.done():
                with contextlib.suppress(Exception):
                    await trainer.stop(box.sandbox_id)
            result = await running
            rec.timings["harness_run_ms"] = round((time.perf_counter() - t) * 1000, 1)
            tracing.span_at("harness_run", began, time.time())
            rec.harness.exit_code, rec.harness.output = result.exit_code, result.output[-4000:]
            rec.harness.timed_out = result.exit_code == 124
            if result.failure_reason:
                rec.harness.error = result.failure_reason
            records = await trainer.trajectory(box.sandbox_id)
            rec.model_calls = [r.model_dump(mode="json") for r in records]
            if serving is not None and serving.done() and not serving.cancelled() and serving.exception():
                exc = serving.exception()
                rec.harness.error = f"the policy failed: {type(exc).__name__}: {exc}"
        finally:
            for job in (running, serving):
                if job is not None and not job.done():
                    job.cancel()
                    with contextlib.suppress(BaseException):
                        await job
            await trainer.aclose()
        self.policy_failure(options, records, rec)

    @staticmethod
    def policy_failure(options: RolloutOptions, records, rec: RolloutRecord) -> None:
        """An ``openai`` upstream that does not answer (or refuses) is the rollout's error (TaskError PolicyError),
        not the agent's doing."""
        if options.policy != "openai" or not records or records[-1].status == "success":
            return
        last = records[-1]
        url = (options.policy_options or {}).get("base_url")
        raise TaskError(f"policy openai ({url}): model call {last.index} failed with HTTP {last.http_status}: "
                        f"{last.error}", "PolicyError")


class NoHarness(Harness):
    """No agent: ``oracle`` runs the task's solution/solve.sh in the agent's sandbox (uploaded for
    that run and removed after), ``null`` changes nothing; a callable policy is a test's script."""

    name = "none"
    policies = ("oracle", "null")

    async def run(self, box, task, options, rec):
        """Run the policy in ``box`` with no agent: the task's solve.sh for ``oracle`` (its exit code and output
        recorded), nothing for ``null``, or the callable policy's result."""
        policy = options.policy
        if callable(policy):
            rec.harness.result = await policy(box, task)
            return
        if policy == "null":
            return
        if policy != "oracle":
            raise TaskError(f"harness none runs the policies oracle and null, not {policy!r}", "BadRequest")
        where = f"/tmp/rock-solution-{uuid.uuid4().hex[:12]}"
        await box.upload_dir(task.solution, where)
        r = await box.execute(Command(command=["bash", f"{where}/solve.sh"], cwd=task.workdir,
                                      timeout=time_limit(options.agent_timeout, task.agent_timeout)))
        await box.execute(Command(command=["rm", "-rf", where], timeout=60))
        rec.harness.exit_code, rec.harness.output = r.exit_code, (r.stdout + r.stderr)[-4000:]
        rec.harness.timed_out = r.timed_out


HARNESSES: dict[str, Callable[[], Harness]] = {"none": NoHarness}


def register_harness(name: str, factory: Callable[[], Harness]) -> None:
    """Where the Chat protocol's harnesses (``ours``, ``mini-swe-agent``) plug in."""
    HARNESSES[name] = factory


def time_limit(override: float | None, own: float) -> float:
    """The seconds a step may take: the options' override where given, else the task's own."""
    return float(override) if override else own
