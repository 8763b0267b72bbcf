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
fills the record's ``harness`` (exit code, output) and ``model_calls``. The record is
``rock.agentic.record.RolloutRecord``, built here and written by the job as one JSONL line.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
import time
from pathlib import Path

from rock.actions import Command
from rock.agentic import tracing
from rock.agentic.record import HarnessRun, HiddenTests, RolloutRecord
from rock.agentic.tasks import verifier, workspace
from rock.agentic.tasks.verifier.box import grade
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.harbor import Task
# The Chat protocol's harnesses register themselves in HARNESSES when imported.
from rock.agentic.tasks import harness_mini, harness_ours, harness_terminal  # noqa: F401
from rock.agentic.tasks.harness import (HARNESSES, ChatHarness, Harness, NoHarness,  # noqa: F401 - importers' names
                                        RolloutOptions, Script, register_harness, time_limit)
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig

log = logging.getLogger("rock.agentic")
def make_harness(name: str) -> Harness:
    """A new harness of the registered ``name`` (``none``, ``ours``, ``mini-swe-agent``, the terminal agents...);
    an unknown name raises TaskError (BadRequest) listing the known ones."""
    if name in HARNESSES:
        return HARNESSES[name]()
    raise TaskError(f"unknown harness {name!r}; known: {', '.join(HARNESSES)}", "BadRequest")


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


async def rollout(task: Task, options: RolloutOptions, harness: Harness | None = None,
                  suite: str = "") -> RolloutRecord:
    """One rollout; its record (``to_json()``/``line()``: the job file's JSON). Infrastructure failures land in
    ``error`` (reward 0)."""
    harness = harness or make_harness(options.harness)
    t0 = time.perf_counter()
    policy_name = options.policy if isinstance(options.policy, str) else getattr(options.policy, "__name__", "script")
    # Every key given here, defaults too: the record writes the keys it was given, in this order (the job file's).
    rec = RolloutRecord(suite=suite, task_id=task.task_id, category=task.metadata.get("library") or suite,
                        harness=HarnessRun(name=harness.name, policy=policy_name), policy=policy_name,
                        instruction=task.instruction[:20000], model_calls=[], diff="", ignored_paths=[], tests=None,
                        reward=0.0, resolved=False, pass_rate=0.0, passed=False, error=None, timings={})
    tmp = Path(tempfile.mkdtemp(prefix="rock-rollout-"))
    try:
        before = workspace.snapshot_files(task.workspace)
        t = time.perf_counter()
        with tracing.phase("image"):
            image = await harness.image(task)
        rec.timings["image_ms"] = _ms(t)
        with tracing.phase("agent_sandbox_start"):
            box = await _start(task, options, tmp, image, task.agent_egress)
        rec.agent_sandbox = box.sandbox_id
        try:
            if not task.workspace.is_dir():  # the image holds the repository: its state is the start
                before = await workspace.download(box, task.workdir, tmp / "before")
            rec.timings["agent_setup_ms"] = _ms(t)
            t = time.perf_counter()
            limit = time_limit(options.agent_timeout, task.agent_timeout)
            try:
                await asyncio.wait_for(harness.run(box, task, options, rec), limit + min(30.0, limit))
            except asyncio.TimeoutError:
                rec.harness.error = f"the agent ran past its time limit ({limit:g} s)"
            except TaskError:
                raise
            except Exception as exc:  # noqa: BLE001 - a harness crash is the rollout's record, graded as is
                rec.harness.error = f"{type(exc).__name__}: {exc}"
            rec.timings["agent_ms"] = _ms(t)
            tracing.model_calls(rec.model_calls)
            killed = killed_by_signal(rec.harness, task)
            if killed:
                rec.harness.error = killed
            t = time.perf_counter()
            with tracing.phase("diff"):
                after = await workspace.download(box, task.workdir, tmp / "after")
                changes = workspace.compare(before, after, task.protected)
            rec.timings["diff_ms"] = _ms(t)
        finally:
            await box.stop()
        rec.diff, rec.ignored_paths = changes.diff, changes.ignored
        if killed:  # not graded: what a killed agent left is no answer of the policy's
            raise TaskError(killed, "HarnessKilled")
        t, queued = time.perf_counter(), time.time()
        async with options.gate():
            tracing.span_at("verifier_queue", queued, time.time())
            rec.timings["verify_wait_ms"] = _ms(t)
            t = time.perf_counter()
            await verify(task, options, changes, rec, tmp)
        rec.timings["verify_ms"] = _ms(t)
    except TaskError as exc:
        rec.error = exc.message
    except Exception as exc:  # noqa: BLE001 - one rollout's failure is its record; the job goes on
        rec.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        log.warning("rollout %s failed: %s", task.task_id, rec.error)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rec.timings["total_ms"] = _ms(t0)
    return rec


async def verify(task: Task, options: RolloutOptions, changes: workspace.Changes, rec: RolloutRecord,
                 tmp: Path) -> None:
    """The hidden tests on the agent's changes, in a fresh sandbox of the verifier's image, under the
    verifier's supervisor (``rock.agentic.tasks.verifier``): the reward comes from its report only."""
    t = time.perf_counter()
    with tracing.phase("verifier_start"):
        box = await _start(task, options, tmp, await verifier.image(task), task.verifier_egress)
        rec.verifier_sandbox = box.sandbox_id
        try:
            await workspace.apply(box, task.workdir, changes, tmp)
            await box.execute(Command(command=["rm", "-rf", "/logs/verifier", "/tests", verifier.WHERE], timeout=60))
            await box.upload_dir(task.tests, "/tests")
        except BaseException:
            await box.stop()
            raise
    rec.timings["verifier_start_ms"] = _ms(t)
    try:
        limit = time_limit(options.verifier_timeout, task.verifier_timeout)
        t = time.perf_counter()
        with tracing.phase("tests"):
            report = await verifier.run(box, task, limit)
        rec.timings["tests_ms"] = _ms(t)
    finally:
        await box.stop()
    t = time.perf_counter()
    with tracing.phase("grading"):
        _grade(task, report, rec)
    rec.timings["grading_ms"] = _ms(t)


def _grade(task: Task, report: dict, rec: RolloutRecord) -> None:
    """The reward from the supervisor's report (and the host's copy of the task's test lists)."""
    results, timed_out = report.get("results"), bool(report.get("timed_out"))
    tests = HiddenTests(runner=task.runner, exit_code=report.get("exit_code"), timed_out=timed_out,
                        output=(report.get("output") or "")[-2000:],
                        reward_txt=(report.get("reward_txt") or "").strip()[:100],
                        leftover_processes=report.get("leftover_processes", 0),
                        foreign_reports=report.get("foreign_reports", 0))
    if task.graded_by_tests:
        config = {"FAIL_TO_PASS": task.fail_to_pass, "PASS_TO_PASS": task.pass_to_pass}
        g = grade.grade(config, results if isinstance(results, dict) and not timed_out else {})
        tests = HiddenTests.model_validate({**tests.to_json(), **g})
        rec.resolved, rec.pass_rate = g["resolved"], g["pass_rate"]
        rec.reward = 1.0 if g["resolved"] else 0.0
    else:
        try:
            rec.reward = 0.0 if timed_out else max(0.0, min(1.0, float(tests.reward_txt)))
        except ValueError:
            # Not a reward of 0: the tests did not decide (a runner missing from the image, a
            # broken test.sh). The task's error, with what test.sh printed.
            rec.tests = tests
            raise TaskError(f"task {task.task_id}: test.sh (exit {tests.exit_code}) wrote no number to "
                            f"/logs/verifier/reward.txt; its output ends: {tests.output[-600:]}",
                            "VerifierFailed") from None
        rec.resolved, rec.pass_rate = rec.reward >= 1.0, rec.reward
    rec.passed = rec.resolved
    rec.tests = tests


def killed_by_signal(harness: HarnessRun, task: Task) -> str | None:
    """Why the agent died, when its exit code says a signal ended it (128 + N as a shell reports it, -N as Python
    does): SIGKILL is most often the out-of-memory killer, whose limit is the task's memory. None for an exit of
    its own."""
    code = harness.exit_code
    if not isinstance(code, int) or isinstance(code, bool) or not (-65 < code < 0 or 128 < code < 128 + 65):
        return None
    number = -code if code < 0 else code - 128  # negative: the process itself was signalled, no shell between
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    why = f"the agent was killed by {name} (exit {code})"
    if number == signal.SIGKILL:
        why += (f": most often the out-of-memory killer; the agent's sandbox has the task's memory "
                f"({task.memory or 'no limit'}), which the agent itself counts against")
    return why


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 1)
