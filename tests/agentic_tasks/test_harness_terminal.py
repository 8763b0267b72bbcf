"""Rollouts with harnesses ``claude-code``, ``codex``, ``qwen-code`` and ``opencode`` (the npm agents in the task's
sandbox, their Messages, Responses and chat calls answered by the job's trainer in chat form), per
backend: the oracle policy through each agent's own shell tool resolves a sampled pypi-bugs task
(reward 1.0 from the hidden tests, in the task's own image), null resolves nothing, every model
call is in the record with its API, and the export says the answers carried no token ids. The
jobs run at once. From the CLI, ``--policy openai`` runs an agent on a scripted model server (its records are
the server's log) and a model server that refuses connections is the rollout's clear error."""

import asyncio
import json
import subprocess
import sys
from types import SimpleNamespace

import httpx

from rock.agentic import trajectories
from rock.agentic.tasks.jobs import run_job
from rock.agentic.tasks.rollout import RolloutOptions
from rock.agentic.tasks.suites import open_suite
from tests.agentic.upstream import LoopbackServer, QuietHandler
from tests.agentic_tasks.test_harness_ours import closed_port


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


class ScriptedChat(LoopbackServer):
    """A model server on loopback speaking chat completions (streamed when asked, as the agents ask): each answer
    is ``answer(call)``'s, and ``log`` keeps every (request, answer) in order."""

    def __init__(self, answer):
        self.answer, self.log = answer, []
        super().__init__()

    def _handler(self):
        up = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self._json()
                out = up.answer(SimpleNamespace(request=body))
                up.log.append((body, out))
                n, choice = len(up.log), out["choices"][0]
                usage = {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}
                head = {"id": f"chat-{n}", "created": 1, "model": body["model"]}
                if not body.get("stream"):
                    whole = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
                    return self._send(200, json.dumps(whole).encode(), "application/json")
                msg = choice["message"]
                delta = {"role": "assistant", "content": msg.get("content") or ""}
                if msg.get("tool_calls"):
                    delta["tool_calls"] = [dict(tc, index=i) for i, tc in enumerate(msg["tool_calls"])]
                chunks = [{**head, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                          {**head, "object": "chat.completion.chunk", "usage": usage,
                           "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}]
                self._sse([b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"])

        return Handler


def job_argv(admin, folder, out, harness: str, url: str) -> list[str]:
    return [sys.executable, "-m", "rock.cli.main", "--json", "job", "run", "--url", admin.url, "--suite", str(folder),
            "--harness", harness, "--policy", "openai", "--policy-url", url, "--model", "my-model",
            "--api-key", "sk-test", "--out", str(out), "--jsonl"]


def job_cli(admin, folder, out, harness: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run(job_argv(admin, folder, out, harness, url), capture_output=True, text=True, timeout=900)


def user_tasks(root, names=("fix-add",), memory_mb: dict[str, int] | None = None):
    """A folder of the user's own tasks (Harbor's layout) on python:3.11, time enough for a Node agent's start;
    ``memory_mb`` gives some of them their [environment] memory_mb."""
    from tests.agentic_tasks.conftest import harbor_task

    for name in names:
        memory = f"memory_mb = {memory_mb[name]}\n" if name in (memory_mb or {}) else ""
        (harbor_task(root, name) / "task.toml").write_text(
            'version = "1.0"\n[agent]\ntimeout_sec = 300.0\n[verifier]\ntimeout_sec = 60.0\n'
            '[environment]\ndocker_image = "python:3.11"\n' + memory)
    return root


def test_cli_runs_a_terminal_agent_on_a_model_server_and_a_refusing_one_is_a_clear_error(admin, suites, tmp_path):
    from rock.agentic.tasks.harness_terminal import OpencodeHarness
    from rock.agentic.tasks.suites import open_suite as open_folder

    folder = user_tasks(tmp_path / "my-tasks")
    task = open_folder(str(folder)).get("fix-add")
    server = ScriptedChat(OpencodeHarness().oracle_policy(task))  # the model knows the fix, through opencode's tool
    try:
        out = tmp_path / "up.jsonl"
        proc = job_cli(admin, folder, out, "opencode", server.url)
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    [r] = [json.loads(line) for line in out.read_text().splitlines()]
    assert r["error"] is None and r["reward"] == 1.0, (r["error"], r["harness"])
    assert r["harness"] == {**r["harness"], "name": "opencode", "policy": "openai", "exit_code": 0}
    calls = r["model_calls"]
    assert calls and all(c["status"] == "success" and c["mode"] == "proxy" for c in calls), calls
    # the records are the server's log: the same requests, in order, and the answers it sent
    assert [c["request"]["messages"] for c in calls] == [req["messages"] for req, _ in server.log]
    assert [c["request"]["model"] for c in calls] == ["my-model"] * len(server.log)
    for c, (_, answer) in zip(calls, server.log):
        got, sent = c["response"]["choices"][0]["message"], answer["choices"][0]["message"]
        assert (got.get("content") or "") == (sent.get("content") or "")
        assert [t["function"] for t in got.get("tool_calls") or ()] == [t["function"] for t in sent.get("tool_calls") or ()]
    assert any(c["response"]["choices"][0]["message"].get("tool_calls") for c in calls)  # the fix went through its tool
    # the admin recorded the job as it ran (its UI's Jobs pages): the same record, the job ended
    job_id = json.loads(proc.stdout)["job_id"]
    job = httpx.get(f"{admin.url}/apis/v1/jobs/{job_id}").json()["result"]
    assert (job["harness"], job["policy"], job["done"], job["running"]) == ("opencode", "openai", 1, False)
    assert httpx.get(f"{admin.url}/apis/v1/jobs/{job_id}/rollouts/0").json()["result"] == r

    dead = f"http://127.0.0.1:{closed_port()}/v1"
    out = tmp_path / "down.jsonl"
    proc = job_cli(admin, folder, out, "opencode", dead)
    assert proc.returncode == 1, proc.stderr[-3000:]  # every rollout failed
    [r] = [json.loads(line) for line in out.read_text().splitlines()]
    assert r["error"].startswith(f"policy openai ({dead}): the model server does not accept connections at "
                                 f"127.0.0.1:{dead.split(':')[2].split('/')[0]}"), r["error"]
    assert r["reward"] == 0.0


def test_cli_runs_claude_code_codex_and_qwen_code_each_on_its_own_api(admin, suites, tmp_path):
    """One job per agent from the CLI, at once, each on a model server speaking the agent's API (Claude Code's
    Messages, Codex's Responses, Qwen Code's chat completions) through the admin's proxy; beside them a job of two
    tasks on a URL that refuses connections, each rollout its own clear error, one task with less memory than
    the agent needs, which the job warns about before it starts."""
    from rock.agentic.tasks.harness_terminal import ClaudeCodeHarness, CodexHarness, QwenCodeHarness
    from rock.agentic.tasks.oracle import oracle_command
    from rock.agentic.tasks.suites import open_suite as open_folder
    from tests.agentic_tasks.model_server import ScriptedModel

    folder = user_tasks(tmp_path / "my-tasks")
    two = user_tasks(tmp_path / "two-tasks", ("fix-add", "fix-add-2"), memory_mb={"fix-add-2": 128})
    task = open_folder(str(folder)).get("fix-add")
    apis = {"claude-code": ("messages", ClaudeCodeHarness()), "codex": ("responses", CodexHarness()),
            "qwen-code": (None, QwenCodeHarness())}
    servers = {name: ScriptedModel(h.shell, {h.shell_arg: h.oracle_shell(oracle_command(task))})
               for name, (_, h) in apis.items()}
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, argv: list[str]) -> None:
        with open(tmp_path / f"{name}.err", "w") as err:  # files, not pipes: nothing blocks on a full pipe
            procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)

    try:
        for name in apis:
            start(name, job_argv(admin, folder, tmp_path / f"{name}.jsonl", name, servers[name].url))
        start("dead", job_argv(admin, two, tmp_path / "dead.jsonl", "claude-code", dead))
        ended = {name: (p.wait(timeout=900), None, (tmp_path / f"{name}.err").read_text()) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for server in servers.values():
            server.close()

    for name, (api, _) in apis.items():
        code, _, err = ended[name]
        assert code == 0, (name, err[-3000:])
        [r] = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        where = (name, r["error"], r["harness"])
        assert r["error"] is None and r["reward"] == 1.0, where
        assert r["harness"] == {**r["harness"], "name": name, "policy": "openai", "exit_code": 0}, where
        calls, log = r["model_calls"], servers[name].log
        assert calls and all(c["status"] == "success" and c["mode"] == "proxy" for c in calls), (name, calls)
        assert {path for path, _, _ in log} == {f"/v1/{api or 'chat/completions'}"}, name  # the agent's own API
        assert [(c["native"] or {}).get("api") for c in calls] == [api] * len(log), name
        # the records are the server's log: the requests as the agent sent them, in order, and the answers sent
        if api:
            assert [c["native"]["request"] for c in calls] == [body for _, body, _ in log], name
            part = "content" if api == "messages" else "output"
            assert [c["native"]["response"][part] for c in calls] == [answer[part] for _, _, answer in log], name
        else:
            assert [c["request"]["messages"] for c in calls] == [body["messages"] for _, body, _ in log], name
            assert [c["response"]["choices"][0]["message"].get("tool_calls") for c in calls] == \
                [answer["choices"][0]["message"].get("tool_calls") for _, _, answer in log], name
        assert sum(bool(c["response"]["choices"][0]["message"].get("tool_calls")) for c in calls) == 1, name

    code, _, err = ended["dead"]
    assert code == 1, err[-3000:]  # every rollout failed
    events = [json.loads(line) for line in err.splitlines() if line.startswith('{"event"')]
    kinds = [e["event"] for e in events]
    assert "warning" in kinds and kinds.index("warning") < kinds.index("start"), events  # said before it starts
    [warning] = [e["message"] for e in events if e["event"] == "warning"]
    assert warning.startswith("1 task(s) give the agent's sandbox 128 MB (fix-add-2); claude-code needs about "), warning
    records = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in records) == ["fix-add", "fix-add-2"]
    port = dead.split(":")[2].split("/")[0]
    for r in records:
        assert r["error"].startswith(f"policy openai ({dead}): the model server does not accept connections at "
                                     f"127.0.0.1:{port} (Connection refused)"), r["error"]
        assert r["reward"] == 0.0 and not r["model_calls"], r


def test_a_task_below_an_agents_memory_need_is_warned_about():
    from pathlib import Path

    from rock.agentic import terminal_agents
    from rock.agentic.tasks.harbor import Task
    from rock.agentic.tasks.harness_terminal import QwenCodeHarness

    need = terminal_agents.MEMORY_MB["qwen-code"]
    tasks = [Task(task_id=f"t{i}", path=Path("."), instruction="x", image="python:3.11", memory=memory)
             for i, memory in enumerate([f"{need - 1}m", "8g", f"{need - 1}m", "0.25g"])]
    assert QwenCodeHarness().warnings(tasks) == [
        f"1 task(s) give the agent's sandbox 256 MB (t3); qwen-code needs about {need} MB there (its measured peak, "
        "docs/agentic-tasks.md) and may be killed for memory: raise [environment] memory_mb in task.toml",
        f"2 task(s) give the agent's sandbox {need - 1} MB (t0, t2); qwen-code needs about {need} MB there (its "
        "measured peak, docs/agentic-tasks.md) and may be killed for memory: raise [environment] memory_mb in task.toml"]
    assert QwenCodeHarness().warnings(tasks[1:2]) == []  # enough memory: nothing said


def test_a_terminal_agent_pulls_the_tasks_base_image_as_a_plain_sandbox_does(admin, suites, tmp_path):
    """A task on an image the engine lacks, in a registry: the agent's image is built FROM it after a pull (pull
    policy ``missing``, a plain sandbox's), and the rollout resolves."""
    import docker

    from rock.agentic.tasks.harness_terminal import TerminalAgentHarness
    from rock.runtime.docker.images import push
    from tests.registry import Registry

    registry = Registry(login=False)
    api = docker.from_env().api
    image = f"{registry.host}/rock-test/agent-base-{tmp_path.name[-6:].lower()}:v1"
    try:
        api.tag("python:3.11", image.rsplit(":", 1)[0], "v1")
        try:
            push(image, None, None)
        finally:
            api.remove_image(image)
        folder = user_tasks(tmp_path / "pulled")
        toml = folder / "fix-add" / "task.toml"
        toml.write_text(toml.read_text().replace('"python:3.11"', f'"{image}"'))
        TerminalAgentHarness._images.clear()  # no agent image remembered by this process for that base
        summary = asyncio.run(run_job(str(folder), RolloutOptions(base_url=admin.url, harness="claude-code",
                                                                  policy="oracle"), record=False))
        [r] = summary["records"]
        assert r["error"] is None and r["reward"] == 1.0, r["error"]
        assert api.inspect_image(image)["Id"] == api.inspect_image("python:3.11")["Id"]  # pulled, the same image
    finally:
        try:
            api.remove_image(image)
        except docker.errors.ImageNotFound:
            pass
        registry.close()
