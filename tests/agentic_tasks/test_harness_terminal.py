"""Rollouts with harnesses ``claude-code``, ``codex``, ``qwen-code`` and ``opencode`` (the npm agents in the task's
sandbox, their Messages, Responses and chat calls answered by the job's trainer in chat form), per
backend: the oracle policy through each agent's own shell tool resolves a sampled pypi-bugs task
(reward 1.0 from the hidden tests, in the task's own image), null resolves nothing, every model
call is in the record with its API, and the export says the answers carried no token ids. The
jobs run at once."""

import asyncio

from rock.agentic import trajectories
from rock.agentic.tasks.jobs import run_job
from rock.agentic.tasks.rollout import RolloutOptions
from rock.agentic.tasks.suites import open_suite


def test_terminal_agents_oracle_resolves_and_null_does_not(admin, suites):
    task = open_suite("pypi-bugs").ids()[0]
    runs = [(harness, policy) for harness in ("claude-code", "codex", "qwen-code", "opencode")
            for policy in ("oracle", "null")]

    async def all_runs():
        return await asyncio.gather(*(
            run_job("pypi-bugs", RolloutOptions(base_url=admin.url, harness=harness, policy=policy), tasks=[task])
            for harness, policy in runs))

    for (harness, policy), summary in zip(runs, asyncio.run(all_runs())):
        [r] = summary["records"]
        where = (harness, policy, r["error"], r["harness"])
        assert r["reward"] == (1.0 if policy == "oracle" else 0.0) and r["error"] is None, where
        assert r["harness"]["name"] == harness and r["harness"]["exit_code"] == 0, where
        calls = r["model_calls"]
        assert calls and all(c["status"] == "success" for c in calls), where
        api = {"claude-code": "messages", "codex": "responses", "qwen-code": None, "opencode": None}[harness]
        assert all((c["native"] or {}).get("api") == api for c in calls)
        shell = {"claude-code": "Bash", "codex": "exec_command", "qwen-code": "run_shell_command",
                 "opencode": "bash"}[harness]
        main = [c for c in calls if shell in [t["function"]["name"] for t in c["request"].get("tools") or ()]
                and "memory extraction" not in str(c["request"]["messages"][0].get("content"))]  # Qwen's side agent
        assert len(main) == (2 if policy == "oracle" else 1), where
        assert bool(r["diff"]) is (policy == "oracle")
        if policy == "oracle":  # the fix's output went back to the policy as a tool result
            assert main[1]["request"]["messages"][-1]["role"] == "tool"
        # no token ids came with these answers: the export says so rather than inventing them
        [row] = trajectories.rows(next(trajectories.from_job([r])))
        assert row["token_ids"] is None and "carried no token ids" in row["reason"]


def test_an_agent_image_that_cannot_build_names_the_package_and_the_job_goes_on(admin, suites, monkeypatch):
    from rock.agentic import terminal_agents
    from rock.agentic.tasks.harness_terminal import TerminalAgentHarness

    # A pinned version the registry does not have (npm's ETARGET): the build sandbox's npm says so.
    monkeypatch.setitem(terminal_agents.AGENTS, "opencode", f"{terminal_agents.OPENCODE_PACKAGE}@0.0.1")
    monkeypatch.setattr(TerminalAgentHarness, "_images", {})  # no image found earlier in this process
    tasks = open_suite("pypi-bugs").ids()[:2]
    summary = asyncio.run(run_job("pypi-bugs", RolloutOptions(base_url=admin.url, harness="opencode", policy="oracle"),
                                  tasks=tasks))
    # every task has its record: the job went on
    assert sorted(r["task_id"] for r in summary["records"]) == sorted(tasks)
    for r in summary["records"]:
        assert r["reward"] == 0.0 and r["error"], r
        assert f"npm install {terminal_agents.OPENCODE_PACKAGE}@0.0.1 failed" in r["error"], r["error"]
        assert "No matching version" in r["error"] or "ETARGET" in r["error"], r["error"]  # npm's own reason
