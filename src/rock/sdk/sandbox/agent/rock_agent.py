"""ROCK's ``sandbox.agent`` (``RockAgent``): install an agent harness in a sandbox and run it.

``install(config)``: working dir uploaded -> agent session -> pre-init commands -> the runtime
(the sandbox's Python linked into ``${bin_dir}``) beside the model service -> post-init commands.
``run(prompt)``: the run command in the background in the agent session, its pid watched by the
model service (its exit ends the model session: SESSION_END), then waited for without polling.
Unlike ROCK (which reports 0 for every finished run), the Observation carries the run's real
exit code. With a model service the command's environment has ``OPENAI_BASE_URL``,
``OPENAI_API_BASE`` and ``OPENAI_API_KEY``, the names OpenAI-style clients read.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
import uuid
from string import Template
from typing import TYPE_CHECKING

from rock.actions import CreateBashSessionRequest, Observation
from rock.sdk.sandbox.agent.config import AGENT_LIB, AgentBashCommand, RockAgentConfig
from rock.sdk.sandbox.model_service.base import ModelService

if TYPE_CHECKING:
    from rock.sdk.sandbox.client import Sandbox

log = logging.getLogger("rock.sdk.agent")


class RockAgent:
    """rl-rock's ``sandbox.agent``: install an agent (``install(config)``) and run it on a prompt (``run(prompt)``)."""

    def __init__(self, sandbox: "Sandbox"):
        self._sandbox = sandbox
        self.config: RockAgentConfig | None = None
        self.model_service: ModelService | None = None
        self.agent_session: str | None = None
        self.working_dir: str | None = None
        self.bin_dir: str | None = None

    def format(self, template: str, **values: str) -> str:
        """ROCK's placeholders: ${working_dir}, ${bin_dir} (and ${prompt} for the run command)."""
        subs = {"working_dir": self.working_dir or "", "bin_dir": self.bin_dir or "", **values}
        return Template(template).safe_substitute(subs)

    async def install(self, config: str | RockAgentConfig = "rock_agent_config.yaml") -> None:
        """Install the agent by its config (a YAML path or a ``RockAgentConfig``): its commands, session and model
        service."""
        self.config = RockAgentConfig.from_yaml(config) if isinstance(config, str) else config
        self.agent_session = self.config.agent_session
        sid = self._sandbox.sandbox_id
        started = time.monotonic()
        if self.config.working_dir:
            self.working_dir = f"/tmp/rock_workdir_{uuid.uuid4().hex}"
            await self._sandbox.upload_dir(self.config.working_dir, self.working_dir)
        await self._sandbox.create_session(CreateBashSessionRequest(session=self.agent_session, env_enable=True,
                                                                    env=self.config.env or None))
        await self._commands(self.config.pre_init_cmds, "pre-init")
        steps = [self._runtime()]
        if self.config.model_service_config.enabled:
            steps.append(self._model_service())
        await asyncio.gather(*steps)
        await self._commands(self.config.post_init_cmds, "post-init")
        log.info("sandbox %s: agent %s installed (%.2fs)", sid, self.config.agent_name, time.monotonic() - started)

    async def _commands(self, commands: list[AgentBashCommand], step: str) -> None:
        for n, c in enumerate(commands, 1):
            r = await self._sandbox.arun(f"bash -c {shlex.quote(self.format(c.command))}", timeout=c.timeout_seconds)
            if r.exit_code != 0:
                raise RuntimeError(f"[{self._sandbox.sandbox_id}] {step} command {n} failed with exit code "
                                   f"{r.exit_code} ({r.status}): {r.output[-500:]}")

    def _installed_config(self) -> RockAgentConfig:
        if self.config is None:
            raise RuntimeError("the agent is not installed yet: call install(config) first")
        return self.config

    async def _runtime(self) -> None:
        cfg = self._installed_config()
        workdir = f"/tmp/rock-runtime-envs/python/default/{uuid.uuid4().hex[:8]}"
        r = await self._sandbox.arun(f"mkdir -p {workdir} && cd {workdir} && {AGENT_LIB}/bin/rock-runtime-env",
                                     timeout=cfg.agent_install_timeout)
        if r.exit_code != 0:
            raise RuntimeError(f"[{self._sandbox.sandbox_id}] linking the runtime failed: {r.output[-500:]}")
        self.bin_dir = f"{workdir}/runtime-env/bin"

    async def _model_service(self) -> None:
        cfg = self._installed_config()
        service = self._sandbox.model_service or ModelService(self._sandbox, cfg.model_service_config)
        if not service.is_installed:
            await service.install()
        if not service.is_started:
            await service.start()
        self._sandbox.model_service = self.model_service = service

    def _run_cmd(self, prompt: str) -> str:
        cfg = self._installed_config()
        if not cfg.run_cmd:
            raise ValueError("RockAgentConfig.run_cmd is not set: say how to start the agent, with ${prompt}")
        cmd = self.format(cfg.run_cmd, prompt=shlex.quote(prompt))
        exports = ""
        if self.model_service is not None:
            ms = self.model_service.config
            url = f"http://127.0.0.1:{ms.port}/v1"
            env = {"OPENAI_BASE_URL": url, "OPENAI_API_BASE": url, "ROCK_AGENT_MODEL": ms.models[0]}
            env.setdefault("OPENAI_API_KEY", cfg.env.get("OPENAI_API_KEY", "rock-local"))
            exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in env.items())
        if not cfg.skip_wrap_run_cmd:
            cmd = f"export PATH={shlex.quote(self.bin_dir or '')}:$PATH; {cmd}"
        cmd = f"bash -c {shlex.quote(exports + cmd)}"
        path = cfg.project_path or (self.working_dir if cfg.use_deploy_working_dir_as_fallback else None)
        if path:
            cmd = f"mkdir -p {shlex.quote(path)} && cd {shlex.quote(path)} && {cmd}"
        return cmd

    async def run(self, prompt: str) -> Observation:
        """Run the agent on ``prompt``; returns its output and its real exit code."""
        if self.config is None:
            raise RuntimeError("call install(config) before run(prompt)")
        sandbox, session = self._sandbox, self.agent_session
        out = f"/tmp/rock_agent_{time.time_ns()}.out"
        # In the session's shell, as a background job: `wait` there gives its real exit status.
        launch = f"( {self._run_cmd(prompt)} ) < /dev/null > {out} 2>&1 & echo __ROCK_PID=$!"
        r = await sandbox.arun(launch, session=session, timeout=60)
        if "__ROCK_PID=" not in r.output:
            return Observation(output=r.output, exit_code=1, failure_reason="the agent did not start: " + r.output[-300:])
        pid = int(r.output.split("__ROCK_PID=")[1].split()[0])
        log.info("sandbox %s: agent running as pid %d", sandbox.sandbox_id, pid)
        if self.model_service is not None:
            await self.model_service.watch_agent(pid)
        waited = await sandbox.arun(f"wait {pid}", session=session, timeout=self.config.agent_run_timeout)
        failure = ""
        code = waited.exit_code
        if waited.status != "completed":
            failure = f"the agent ran past agent_run_timeout ({self.config.agent_run_timeout}s) and was stopped"
            # its own process group (a job of the session's shell): the harness and what it started
            await sandbox.arun(f"kill -TERM -- -{pid} 2>/dev/null; sleep 1; kill -KILL -- -{pid} 2>/dev/null; true",
                               session=None, timeout=30)
            code = 124
        data = await sandbox.read_bytes(out)
        return Observation(output=data.decode(errors="replace"), exit_code=code, failure_reason=failure,
                           status=waited.status)
