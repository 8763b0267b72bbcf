"""One rollout of an agentic task: the agent's sandbox, its harness and policy, its diff, and the
verifier's fresh sandbox where the hidden tests decide the reward.

    agent sandbox (task image, no network) <- workspace
        harness.run(...)                      (within the task's agent timeout; a crash is recorded)
        workspace downloaded -> diff against where it started (protected paths and links left out)
    stopped
    verifier sandbox (the verifier's image, fresh) <- workspace + the agent's changes, tests/ at /tests
        the verifier's supervisor runs the tests as an unprivileged user (``verifier``), ends all
        their processes, then reports on its own stdout
    stopped

The hidden tests exist only in the verifier's sandbox, which the agent never reaches; the
reward is computed here, from the supervisor's per-test results and the host's copy of the task's
FAIL_TO_PASS / PASS_TO_PASS lists (SWE-bench's ``resolved``, with the pass rate beside it).
Tasks without those lists are graded by the number test.sh writes to reward.txt.

Harnesses plug in through ``HARNESSES`` (``register_harness``): a harness gets the started
agent sandbox (an SDK ``Sandbox``), the task and the policy name, runs the agent to its end and
fills ``rec["harness"]`` (exit code, output) and ``rec["model_calls"]``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from rock.actions import Command
from rock.agentic.tasks import verifier, workspace
from rock.agentic.tasks.verifier.box import grade
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harbor import Task
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig

log = logging.getLogger("rock.agentic")
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
    """Runs the agent in its sandbox until it ends. Subclasses fill rec["harness"] / rec["model_calls"]."""

    name = "harness"
    policies: tuple[str, ...] = ()

    async def run(self, box: Sandbox, task: Task, options: RolloutOptions, rec: dict) -> None:
        """Run the agent in ``box`` (the started agent sandbox, the task's workspace at its workdir) until it ends,
        within the task's agent timeout, and fill ``rec["harness"]`` (exit code, output, timed_out, error) and
        ``rec["model_calls"]``. Raises TaskError for what is the rollout's failure, not the agent's."""
        raise NotImplementedError

    async def image(self, task: Task) -> str | None:
        """The agent sandbox's image when the harness brings its own (the task's plus its
        packages); None: the task's. The verifier always runs the task's."""
        return None

    def check(self, options: RolloutOptions) -> None:
        """Refuse options it cannot run (a TaskError), before a job starts any sandbox."""


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
            rec["harness"]["result"] = await policy(box, task)
            return
        if policy == "null":
            return
        if policy != "oracle":
            raise TaskError(f"harness none runs the policies oracle and null, not {policy!r}", "BadRequest")
        where = f"/tmp/rock-solution-{uuid.uuid4().hex[:12]}"
        await box.upload_dir(task.solution, where)
        r = await box.execute(Command(command=["bash", f"{where}/solve.sh"], cwd=task.workdir,
                                      timeout=_limit(options.agent_timeout, task.agent_timeout)))
        await box.execute(Command(command=["rm", "-rf", where], timeout=60))
        rec["harness"].update(exit_code=r.exit_code, output=(r.stdout + r.stderr)[-4000:], timed_out=r.timed_out)


HARNESSES: dict[str, Callable[[], Harness]] = {"none": NoHarness}


def register_harness(name: str, factory: Callable[[], Harness]) -> None:
    """Where the Chat protocol's harnesses (``ours``, ``mini-swe-agent``) plug in."""
    HARNESSES[name] = factory


def make_harness(name: str) -> Harness:
    """A new harness of the registered ``name`` (``none``, ``ours``, ``mini-swe-agent``, the terminal agents...);
    an unknown name raises TaskError (BadRequest) listing the known ones."""
    if name in HARNESSES:
        return HARNESSES[name]()
    raise TaskError(f"unknown harness {name!r}; known: {', '.join(HARNESSES)}", "BadRequest")


def _limit(override: float | None, own: float) -> float:
    return float(override) if override else own


def _config(task: Task, options: RolloutOptions, image: str | None = None,
            egress: str | dict | None = None) -> SandboxConfig:
    image = image or task.image
    extra = {"image": image} if image else {"dockerfile": task.dockerfile.read_text(),
                                            "build_context": str(task.dockerfile.parent)}
    return SandboxConfig(base_url=options.base_url, token=options.token, memory=task.memory, cpus=task.cpus,
                         network=False, auto_clear_seconds=int(max(task.agent_timeout, task.verifier_timeout) + 600),
                         egress=egress, **extra)


async def _start(task: Task, options: RolloutOptions, tmp: Path, image: str | None = None,
                 egress: str | dict | None = None) -> Sandbox:
    box = Sandbox(_config(task, options, image, egress))
    await box.start()
    try:
        await box.execute(Command(command=["mkdir", "-p", task.workdir], timeout=60))
        if task.workspace.is_dir():
            await box.upload_dir(task.workspace, task.workdir)
    except BaseException:
        await box.stop()
        raise
    return box


async def rollout(task: Task, options: RolloutOptions, harness: Harness | None = None, suite: str = "") -> dict:
    """One rollout; the record (JSON-safe). Infrastructure failures land in ``error`` (reward 0)."""
    harness = harness or make_harness(options.harness)
    t0 = time.perf_counter()
    policy_name = options.policy if isinstance(options.policy, str) else getattr(options.policy, "__name__", "script")
    rec: dict[str, Any] = {"suite": suite, "task_id": task.task_id, "category": task.metadata.get("library") or suite,
                           "harness": {"name": harness.name, "policy": policy_name}, "policy": policy_name,
                           "model_calls": [], "diff": "", "ignored_paths": [], "tests": None, "reward": 0.0,
                           "resolved": False, "pass_rate": 0.0, "passed": False, "error": None, "timings": {}}
    tmp = Path(tempfile.mkdtemp(prefix="rock-rollout-"))
    try:
        before = workspace.snapshot_files(task.workspace)
        t = time.perf_counter()
        box = await _start(task, options, tmp, await harness.image(task), task.agent_egress)
        rec["agent_sandbox"] = box.sandbox_id
        try:
            if not task.workspace.is_dir():  # the image holds the repository: its state is the start
                before = await workspace.download(box, task.workdir, tmp / "before")
            rec["timings"]["agent_setup_ms"] = _ms(t)
            t = time.perf_counter()
            limit = _limit(options.agent_timeout, task.agent_timeout)
            try:
                await asyncio.wait_for(harness.run(box, task, options, rec), limit + min(30.0, limit))
            except asyncio.TimeoutError:
                rec["harness"]["error"] = f"the agent ran past its time limit ({limit:g} s)"
            except TaskError:
                raise
            except Exception as exc:  # noqa: BLE001 - a harness crash is the rollout's record, graded as is
                rec["harness"]["error"] = f"{type(exc).__name__}: {exc}"
            rec["timings"]["agent_ms"] = _ms(t)
            t = time.perf_counter()
            after = await workspace.download(box, task.workdir, tmp / "after")
            rec["timings"]["diff_ms"] = _ms(t)
        finally:
            await box.stop()
        changes = workspace.compare(before, after, task.protected)
        rec["diff"], rec["ignored_paths"] = changes.diff, changes.ignored
        t = time.perf_counter()
        async with options.gate():
            rec["timings"]["verify_wait_ms"] = _ms(t)
            t = time.perf_counter()
            await verify(task, options, changes, rec, tmp)
        rec["timings"]["verify_ms"] = _ms(t)
    except TaskError as exc:
        rec["error"] = exc.message
    except Exception as exc:  # noqa: BLE001 - one rollout's failure is its record; the job goes on
        rec["error"] = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        log.warning("rollout %s failed: %s", task.task_id, rec["error"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rec["timings"]["total_ms"] = _ms(t0)
    return rec


async def verify(task: Task, options: RolloutOptions, changes: workspace.Changes, rec: dict, tmp: Path) -> None:
    """The hidden tests on the agent's changes, in a fresh sandbox of the verifier's image, under the
    verifier's supervisor (``rock.agentic.tasks.verifier``): the reward comes from its report only."""
    box = await _start(task, options, tmp, await verifier.image(task), task.verifier_egress)
    rec["verifier_sandbox"] = box.sandbox_id
    try:
        await workspace.apply(box, task.workdir, changes, tmp)
        await box.execute(Command(command=["rm", "-rf", "/logs/verifier", "/tests", verifier.WHERE], timeout=60))
        await box.upload_dir(task.tests, "/tests")
        limit = _limit(options.verifier_timeout, task.verifier_timeout)
        t = time.perf_counter()
        report = await verifier.run(box, task, limit)
        rec["timings"]["tests_ms"] = _ms(t)
    finally:
        await box.stop()
    results, timed_out = report.get("results"), bool(report.get("timed_out"))
    tests: dict[str, Any] = {"runner": task.runner, "exit_code": report.get("exit_code"), "timed_out": timed_out,
                             "output": (report.get("output") or "")[-2000:],
                             "reward_txt": (report.get("reward_txt") or "").strip()[:100],
                             "leftover_processes": report.get("leftover_processes", 0),
                             "foreign_reports": report.get("foreign_reports", 0)}
    if task.graded_by_tests:
        config = {"FAIL_TO_PASS": task.fail_to_pass, "PASS_TO_PASS": task.pass_to_pass}
        g = grade.grade(config, results if isinstance(results, dict) and not timed_out else {})
        tests.update(g)
        rec["resolved"], rec["pass_rate"] = g["resolved"], g["pass_rate"]
        rec["reward"] = 1.0 if g["resolved"] else 0.0
    else:
        try:
            rec["reward"] = 0.0 if timed_out else max(0.0, min(1.0, float(tests["reward_txt"])))
        except ValueError:
            # Not a reward of 0: the tests did not decide (a runner missing from the image, a
            # broken test.sh). The task's error, with what test.sh printed.
            rec["tests"] = tests
            raise TaskError(f"task {task.task_id}: test.sh (exit {tests['exit_code']}) wrote no number to "
                            f"/logs/verifier/reward.txt; its output ends: {tests['output'][-600:]}",
                            "VerifierFailed") from None
        rec["resolved"], rec["pass_rate"] = rec["reward"] >= 1.0, rec["reward"]
    rec["passed"] = rec["resolved"]
    rec["tests"] = tests


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 1)


# The Chat protocol's harnesses register themselves (modules of their own, imported last: they
# build on the names above).
from rock.agentic.tasks import harness_mini  # noqa: E402,F401
from rock.agentic.tasks import harness_ours  # noqa: E402,F401
from rock.agentic.tasks import harness_terminal  # noqa: E402,F401
