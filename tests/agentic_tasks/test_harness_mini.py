"""Rollouts with harness ``mini-swe-agent`` (mini-swe-agent 2.4.6 in the task's sandbox, its calls
answered by the job's trainer), per backend: the oracle policy through mini's bash tool resolves
a sampled pypi-bugs task (reward 1.0 from the hidden tests, in the task's own image), null
resolves nothing, and every model call is in the record. The two jobs run at once."""

import asyncio

from rock.agentic.tasks.jobs import run_job
from rock.agentic.tasks.rollout import RolloutOptions
from rock.agentic.tasks.suites import open_suite
from tests.agentic.test_mini_swe_agent import mini_image  # noqa: F401 - built once per session


def test_mini_swe_agent_oracle_resolves_and_null_does_not(admin, suites, mini_image):  # noqa: F811
    task = open_suite("pypi-bugs").ids()[0]

    async def both():
        return await asyncio.gather(*(
            run_job("pypi-bugs", RolloutOptions(base_url=admin.url, harness="mini-swe-agent", policy=policy),
                    tasks=[task]) for policy in ("oracle", "null")))

    for (policy, reward, calls), summary in zip((("oracle", 1.0, 2), ("null", 0.0, 1)), asyncio.run(both())):
        [r] = summary["records"]
        assert (r["reward"], r["error"]) == (reward, None), r
        assert r["harness"]["name"] == "mini-swe-agent" and r["harness"]["exit_code"] == 0, r["harness"]
        assert [c["status"] for c in r["model_calls"]] == ["success"] * calls
        assert r["model_calls"][0]["request"]["tools"][0]["function"]["name"] == "bash"
        assert bool(r["diff"]) is (policy == "oracle")
