"""ROCK's ``RockAgentConfig`` (YAML or object): how an agent harness is installed and run in a sandbox."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from rock.sdk.sandbox.model_service.base import ModelServiceConfig

# Where every sandbox sees our agent's package (rock.runtime.agent_boot.SANDBOX_LIB), with the harness.
AGENT_LIB = "/.rock/lib/rock_agent"
# mini-swe-agent's image (rock.agentic.mini_swe): its packages' folder, and where ``mini`` saves its run
MINI_SITE = "/opt/rock/site"
MINI_TRAJECTORY = "/tmp/mini-swe-agent/last.traj.json"


class AgentBashCommand(BaseModel):
    """A command the agent's install runs, with its timeout."""

    command: str
    timeout_seconds: int = Field(default=300, gt=0)


class RockAgentConfig(BaseModel):
    """rl-rock's ``RockAgentConfig``: how to install and run an agent in the sandbox (commands, session, model
    service)."""

    agent_type: str = "default"
    agent_name: str = Field(default_factory=lambda: uuid.uuid4().hex)
    version: str = "default"
    agent_installed_dir: str = "/tmp/installed_agent"
    instance_id: str = Field(default_factory=lambda: f"instance-id-{uuid.uuid4().hex}")
    project_path: str | None = None
    use_deploy_working_dir_as_fallback: bool = True
    agent_session: str = Field(default_factory=lambda: f"agent-session-{uuid.uuid4().hex}")
    env: dict[str, str] = Field(default_factory=dict)
    pre_init_cmds: list[AgentBashCommand] = Field(default_factory=list)
    post_init_cmds: list[AgentBashCommand] = Field(default_factory=list)
    agent_install_timeout: int = Field(default=600, gt=0)
    agent_run_timeout: int = Field(default=1800, gt=0)
    agent_run_check_interval: int = Field(default=30, gt=0, description="ROCK's polling period; nothing polls here")
    working_dir: str | None = Field(default=None, description="a local directory uploaded into the sandbox")
    run_cmd: str | None = Field(default=None, description="with ${prompt} (shell-quoted), ${working_dir}, ${bin_dir}")
    skip_wrap_run_cmd: bool = False
    runtime_env_config: Any = Field(default=None, description="accepted for ROCK; the runtime is the sandbox's "
                                    "Python (the image's or the host's), linked into ${bin_dir}")
    model_service_config: ModelServiceConfig = Field(default_factory=ModelServiceConfig)

    @model_validator(mode="after")
    def _check(self) -> "RockAgentConfig":
        if self.agent_run_check_interval >= self.agent_run_timeout:
            raise ValueError(f"agent_run_check_interval ({self.agent_run_check_interval}s) must be less than "
                             f"agent_run_timeout ({self.agent_run_timeout}s)")
        if self.working_dir is not None and not Path(self.working_dir).is_dir():
            raise ValueError(f"working_dir is not a directory: {self.working_dir}")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RockAgentConfig":
        """Read a config from a YAML file."""
        import yaml

        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"Agent config file not found: {path}")
        if p.suffix.lower() not in (".yaml", ".yml"):
            raise ValueError(f"Unsupported config file format: {p.suffix}. Only .yaml is supported.")
        return cls(**(yaml.safe_load(p.read_text(encoding="utf-8")) or {}))

    @classmethod
    def rock_harness(cls, max_steps: int = 30, **fields: Any) -> "RockAgentConfig":
        """Our small standard-library coding agent (bash and file-edit tools), answered by the
        sandbox's model endpoint in local mode unless ``model_service_config`` says otherwise."""
        fields.setdefault("model_service_config", ModelServiceConfig(enabled=True))
        env = {"ROCK_AGENT_MAX_STEPS": str(max_steps), **fields.pop("env", {})}
        return cls(run_cmd=f"${{bin_dir}}/python3 {AGENT_LIB}/chat/harness.py ${{prompt}}", env=env, **fields)

    @classmethod
    def mini_swe_agent(cls, step_limit: int = 30, command_timeout: int = 60, **fields: Any) -> "RockAgentConfig":
        """mini-swe-agent's ``mini`` (non-interactive: yolo, exits when it submits, no cost limit: a
        local policy has no price), in a sandbox of the image ``python -m rock.agentic.mini_swe``
        builds. Its model is ``openai/<the endpoint's first model>`` at the sandbox's endpoint; its
        trajectory file is ``MINI_TRAJECTORY``. ``env`` adds to or overrides the settings below."""
        fields.setdefault("model_service_config", ModelServiceConfig(enabled=True))
        env = {"MSWEA_CONFIGURED": "true", "MSWEA_COST_TRACKING": "ignore_errors",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MSWEA_GLOBAL_CONFIG_DIR": "/tmp/mini-swe-agent",
               **fields.pop("env", {})}
        # -S and the site folder first on the path: the image's packages, not the interpreter's own
        # (the host's, mounted); not PYTHONPATH, which the agent's own commands would inherit.
        launch = (f"import sys; sys.path[:0] = [{MINI_SITE!r}]; sys.argv[0] = 'mini'; "
                  "from minisweagent.run.mini import app; app()")
        run = (f"${{bin_dir}}/python3 -S -c \"{launch}\" -m \"openai/$ROCK_AGENT_MODEL\" -t ${{prompt}} "
               f"-y --exit-immediately -l 0 -o {MINI_TRAJECTORY} -c mini.yaml -c agent.step_limit={int(step_limit)} "
               f"-c environment.timeout={int(command_timeout)}")
        return cls(agent_type="mini-swe-agent", run_cmd=run, env=env, **fields)

    @classmethod
    def terminal_agent(cls, agent: str, model: str = "rock-policy", max_steps: int | None = None,
                       **fields: Any) -> "RockAgentConfig":
        """An npm terminal agent (``claude-code``, ``codex``, ``qwen-code`` or ``opencode``) run
        non-interactively with its own tools against the sandbox's model endpoint (model ``model``),
        in a sandbox of its image (``python -m rock.agentic.terminal_agents AGENT`` builds it);
        ``max_steps`` caps its turns where it has a cap. ``env`` adds to or overrides its settings,
        ``pre_init_cmds`` run after its own set-up. ValueError names the known agents."""
        from rock.agentic.terminal_agents import launch  # the images' facts live there (and load lazily)

        env, setup, run = launch(agent, model, max_steps)
        fields.setdefault("model_service_config", ModelServiceConfig(enabled=True, models=[model]))
        env = {**env, **fields.pop("env", {})}
        pre = [AgentBashCommand(command=c) for c in setup] + list(fields.pop("pre_init_cmds", []))
        return cls(agent_type=agent, run_cmd=run, env=env, pre_init_cmds=pre, **fields)

    @classmethod
    def claude_code(cls, model: str = "rock-policy", max_turns: int | None = None, **fields: Any) -> "RockAgentConfig":
        """Claude Code in print mode on the endpoint's Anthropic Messages API (see ``terminal_agent``)."""
        return cls.terminal_agent("claude-code", model, max_turns, **fields)

    @classmethod
    def codex(cls, model: str = "rock-policy", **fields: Any) -> "RockAgentConfig":
        """``codex exec`` on the endpoint's OpenAI Responses API (see ``terminal_agent``)."""
        return cls.terminal_agent("codex", model, None, **fields)

    @classmethod
    def qwen_code(cls, model: str = "rock-policy", max_turns: int | None = None, **fields: Any) -> "RockAgentConfig":
        """Qwen Code, headless, on the endpoint's chat completions (see ``terminal_agent``)."""
        return cls.terminal_agent("qwen-code", model, max_turns, **fields)

    @classmethod
    def opencode(cls, model: str = "rock-policy", max_steps: int | None = None, **fields: Any) -> "RockAgentConfig":
        """``opencode run`` on the endpoint's chat completions (see ``terminal_agent``)."""
        return cls.terminal_agent("opencode", model, max_steps, **fields)
