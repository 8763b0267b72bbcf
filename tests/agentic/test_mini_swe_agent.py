"""``sandbox.agent`` with mini-swe-agent 2.4.6 from PyPI (its env image: ``rock.agentic.mini_swe``)
fixing a one-line bug, answered by a scripted policy through the trainer's fast path, once per
backend, in a sandbox without a network: its real exit code, the fix, its trajectory file and
the admin's records of its model calls."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rock.agentic import mini_swe
from rock.envs.errors import EnvError
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.agent import RockAgentConfig
from rock.sdk.sandbox.agent.config import MINI_TRAJECTORY
from rock.sdk.sandbox.config import SandboxConfig
from tests.agentic.test_agents import CALC
from tests.conftest import SESSION_ROOT

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


@pytest.fixture(scope="session")
def mini_image() -> str:
    """Built here on a host's first run (set-up no longer builds it: ~2 minutes, once), found after."""
    try:
        image = asyncio.run(mini_swe.ensure_image(progress=lambda line: print("[mini-swe-agent image]", line)))
    except EnvError as exc:
        pytest.fail(f"the mini-swe-agent env image could not be built ({exc.message}); "
                    "run `python -m rock.agentic.mini_swe` to see why")
    keep_unpacked(image.tag)
    return image.tag


def keep_unpacked(tag: str) -> None:
    """bwrap unpacks an image once per test session (into the session's images dir, removed at its
    end): this one's 21,000 files take ~20 s to unpack and ~40 s to remove. Its root lives in the
    host's cache instead, linked into that dir: unpacked once per machine and image id."""
    from rock.config import Settings
    from rock.runtime.docker.rootfs import _safe, inspect_image

    image_id, _ = inspect_image(tag)
    key = _safe(tag) + "-" + image_id.split(":")[-1][:12]  # image_rootfs's key; another key: unpacked as before
    keep = Path.home() / ".cache" / "rock" / "test-image-roots" / key
    keep.mkdir(parents=True, exist_ok=True)
    images = Settings(state_dir=SESSION_ROOT).images_path  # where every worker of the session looks
    images.mkdir(exist_ok=True)
    link = images / key
    if not link.exists():
        link.symlink_to(keep)


def bash(command: str, n: int) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "rock-policy",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": f"step {n}", "tool_calls": [
                    {"id": f"call_{n}", "type": "function",
                     "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def scripted_fixer(call) -> dict:
    """Fix and check in one command, then submit: mini-swe-agent's bash tool, its observations."""
    messages = call.request["messages"]
    assert [t["function"]["name"] for t in call.request["tools"]] == ["bash"]
    tool_results = [m["content"] for m in messages if m["role"] == "tool"]
    if not tool_results:
        assert "make add() in calc.py add" in messages[1]["content"]
        return bash("sed -i 's/a - b/a + b/' calc.py && python3 calc.py", 1)
    assert json.loads(tool_results[0]) == {"returncode": 0, "output": "5\n"}, tool_results  # mini.yaml's form
    return bash(SUBMIT, 2)


async def test_mini_swe_agent_fixes_a_bug_with_a_scripted_policy(admin, mini_image, tmp_path):
    (tmp_path / "calc.py").write_text(CALC)
    sandbox = Sandbox(SandboxConfig(base_url=admin.url, image=mini_image, network=False, memory="1g", cpus=1))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        await sandbox.agent.install(RockAgentConfig.mini_swe_agent(step_limit=5, working_dir=str(tmp_path),
                                                                   agent_run_timeout=300))
        result, answered = await asyncio.gather(
            sandbox.agent.run("make add() in calc.py add"),
            trainer.serve(scripted_fixer, sandbox_ids=[sandbox.sandbox_id], wait=2))
        assert result.exit_code == 0, result.output
        assert answered == 2
        fixed = await sandbox.arun(f"cd {sandbox.agent.working_dir} && python3 calc.py")
        assert fixed.output.strip() == "5"
        run = json.loads(await sandbox.read_bytes(MINI_TRAJECTORY))
        assert run["info"]["exit_status"] == "Submitted" and run["info"]["mini_version"] == mini_swe.VERSION
        records = await trainer.trajectory(sandbox.sandbox_id)
        assert [(r.index, r.status) for r in records] == [(1, "success"), (2, "success")]
        assert records[0].model == "rock-policy" and records[0].request["tools"][0]["function"]["name"] == "bash"
        assert "sed -i" in records[1].request["messages"][2]["tool_calls"][0]["function"]["arguments"]
        assert (await trainer.status(sandbox.sandbox_id)).ended  # its exit ended the model session
    finally:
        await trainer.aclose()
        await sandbox.delete()
