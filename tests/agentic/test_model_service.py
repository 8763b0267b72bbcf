"""ROCK's model-service protocol, unchanged: ``anti_call_llm`` index semantics (first call, push
then pop, a repeated index, a lower index refused, SESSION_END when the watched agent exits)
through our SDK, through the in-sandbox ``rock model-service`` command, and through the real
rl-rock 1.11 SDK in its own venv; once per backend."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from rock.errors import BadRequest
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.model_service import ModelService, ModelServiceConfig
from tests.sdk.test_sandbox import config

# The agent under training: three model calls, then it exits.
AGENT = r'''
import json, urllib.request
got = []
for i in (1, 2, 3):
    body = {"model": "m", "messages": [{"role": "user", "content": "q%d" % i}]}
    req = urllib.request.Request("http://127.0.0.1:8080/v1/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    got.append(json.load(urllib.request.urlopen(req, timeout=300))["choices"][0]["message"]["content"])
open("/tmp/agent.out", "w").write(json.dumps(got))
'''


def reply(n: int) -> str:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": f"a{n}"},
                                    "finish_reason": "stop"}]})


def asked(request_json: str) -> str:
    return json.loads(request_json)["messages"][-1]["content"]


@pytest.fixture
async def box(admin):
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    await sandbox.write_bytes("/tmp/agent.py", AGENT.encode())
    yield sandbox
    await sandbox.delete()


async def test_anti_call_llm_semantics_through_our_sdk(box):
    service = ModelService(box, ModelServiceConfig(enabled=True))
    box.model_service = service
    await service.install()
    await service.start()
    proc = await box.start_process('exec "$ROCK_HOST_PYTHON" /tmp/agent.py')
    await service.watch_agent(proc["pid"])
    assert asked(await service.anti_call_llm(0)) == "q1"  # waits for the first request
    with pytest.raises(BadRequest, match="index 0"):
        await service.anti_call_llm(0, reply(1))
    assert asked(await service.anti_call_llm(1, reply(1))) == "q2"  # push the answer, pop the next request
    assert asked(await service.anti_call_llm(1, reply(1))) == "q2"  # a repeated index is skipped
    assert asked(await service.anti_call_llm(2, reply(2))) == "q3"
    with pytest.raises(BadRequest, match="below the last answered index 2"):
        await service.anti_call_llm(1, reply(1))
    assert await service.anti_call_llm(3, reply(3)) == "SESSION_END"  # the watched agent exited
    assert json.loads(await box.read_bytes("/tmp/agent.out")) == ["a1", "a2", "a3"]
    records = await service.trajectory()
    assert [(r.index, r.status, r.answered_via, r.response["choices"][0]["message"]["content"]) for r in records] == [
        (1, "success", "trainer", "a1"), (2, "success", "trainer", "a2"), (3, "success", "trainer", "a3")]
    await service.stop()


async def test_the_in_sandbox_rock_model_service_command(box):
    path = "export PATH=/.rock/lib/rock_agent/bin:$PATH; "
    r = await box.arun(path + "rock model-service stop && rock model-service start --type local")
    assert r.exit_code == 0 and "started (local) on port 8080" in r.output, r.output
    r = await box.arun(path + "rock model-service start --type local")
    assert r.exit_code != 0 and "already serves" in r.output
    r = await box.arun(path + "rock model-service start --type proxy --proxy-base-url http://127.0.0.1:1/v1")
    assert r.exit_code != 0 and "inside a sandbox" in r.output  # the sandbox may not aim the admin anywhere
    await box.start_process('exec "$ROCK_HOST_PYTHON" /tmp/agent.py')
    r = await box.arun(path + 'rock model-service watch-agent --pid $(pgrep -f /tmp/agent.py | head -1)')
    assert r.exit_code == 0 and '"watching"' in r.output, r.output

    async def anti(index: int, response: str | None = None) -> str:
        cmd = f"rock model-service anti-call-llm --index {index}"
        if response is not None:
            await box.write_bytes("/tmp/resp.json", response.encode())
            cmd += " --response-file /tmp/resp.json"
        r = await box.arun(path + cmd)
        assert r.exit_code == 0, r.output
        return r.output  # arun's output is stripped as ROCK's runtime strips it: SESSION_END, no newline

    assert asked(await anti(0)) == "q1"
    assert asked(await anti(1, reply(1))) == "q2"
    assert asked(await anti(2, reply(2))) == "q3"
    r = await box.arun(path + f"rock model-service anti-call-llm --index 1 --response {json.dumps(reply(1))!r}")
    assert r.exit_code != 0 and "below the last answered index" in r.output
    assert await anti(3, reply(3)) == "SESSION_END"
    assert json.loads(await box.read_bytes("/tmp/agent.out")) == ["a1", "a2", "a3"]
    r = await box.arun(path + "rock model-service stop")
    assert r.exit_code == 0 and "stopped" in r.output


RLROCK = r'''
import asyncio, json, os, sys
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from rock.sdk.sandbox.model_service.base import ModelService, ModelServiceConfig

def reply(n):
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "a%d" % n},
                                    "finish_reason": "stop"}]})

async def main():
    # rl-rock polls each nohup command (install, start, watch, anti-call) every max(5, interval) s,
    # capped below auto_clear_seconds - 2: 3 s makes it poll every second, as a user in a hurry
    # would; the admin then reaps the sandbox after a minute idle (it is never idle that long here).
    sandbox = Sandbox(SandboxConfig(base_url=sys.argv[1], image="python:3.11", memory="512m", cpus=1,
                                    auto_clear_seconds=3))
    await sandbox.start()
    out = {}
    try:
        service = ModelService(sandbox, ModelServiceConfig(enabled=True))
        await service.install()
        await service.start()
        await sandbox.write_file_by_path(sys.argv[2], "/tmp/agent.py")
        r = await sandbox.arun('nohup "$ROCK_HOST_PYTHON" /tmp/agent.py > /dev/null 2>&1 & echo PID=$!',
                               session=None)
        pid = r.output.split("PID=")[1].split()[0]
        await service.watch_agent(pid)
        steps = [await service.anti_call_llm(0, check_interval=1)]
        for i in (1, 2, 3):
            steps.append(await service.anti_call_llm(i, reply(i), check_interval=1))
        out["steps"] = steps  # as rl-rock returns them: its own loops compare them as they are
        out["agent"] = (await sandbox.arun("cat /tmp/agent.out")).output
        out["sandbox_id"] = sandbox.sandbox_id
    finally:
        await sandbox.stop()
    print("RESULT" + json.dumps(out))

asyncio.run(main())
'''


def test_the_real_rl_rock_sdk_drives_it(admin, rlrock_python, tmp_path):
    script = tmp_path / "drive.py"
    script.write_text(RLROCK)
    bin_dir = "/.rock/lib/rock_agent/bin"
    env = {**os.environ, "ROCK_RTENV_PYTHON_V31114_INSTALL_CMD": f"{bin_dir}/rock-runtime-env",
           "ROCK_MODEL_SERVICE_INSTALL_CMD": f"{bin_dir}/rock-runtime-env", "ROCK_PIP_INDEX_URL": ""}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(rlrock_python), str(script), admin.url, AGENT], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    steps = out["steps"]
    assert [asked(s) for s in steps[:3]] == ["q1", "q2", "q3"] and steps[3] == "SESSION_END"
    assert json.loads(out["agent"]) == ["a1", "a2", "a3"]
