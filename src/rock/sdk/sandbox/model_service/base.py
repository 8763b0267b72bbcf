"""ROCK's ``sandbox.model_service``: the same names and index semantics, on the fast path.

ROCK installs a Python and ``rl_rock[model-service]`` into the sandbox and passes each call
through a log file polled by shell commands (seconds per call). Here the endpoint is the
sandbox's own agent, so ``install`` has nothing to download, and ``start``, ``watch_agent`` and
``anti_call_llm`` are single requests to the admin, where the calls wait and are recorded.
The ROCK command templates (``start_cmd``, ``anti_call_llm_cmd``, ...) are accepted and unused:
the same operations are offered inside the sandbox as ``rock model-service ...`` for code that
shells out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from rock.actions.chat import EndpointLimits
from rock.actions.records import CallRecord
from rock.errors import BadRequest
from rock.sdk.model.trainer import ChatTrainer

if TYPE_CHECKING:
    from rock.sdk.sandbox.client import Sandbox

SESSION_END = "SESSION_END"


class ModelServiceConfig(BaseModel):
    """rl-rock's ``ModelServiceConfig``: whether the sandbox's model endpoint runs and how (``local``: the trainer
    answers each call; ``proxy``: calls are forwarded upstream)."""

    enabled: bool = False
    type: str = Field(default="local", description="local (the trainer answers) or proxy (forwarded upstream)")
    install_cmd: str = ""
    install_timeout: int = Field(default=300, gt=0)
    runtime_env_config: Any = None
    start_cmd: str = "rock model-service start --type ${type}"
    stop_cmd: str = "rock model-service stop"
    config_ini_cmd: str = "mkdir -p ~/.rock && touch ~/.rock/config.ini"
    watch_agent_cmd: str = "rock model-service watch-agent --pid ${pid}"
    anti_call_llm_cmd: str = ("PYTHONWARNINGS=ignore rock model-service anti-call-llm --index ${index} "
                              "--response ${response_payload}")
    anti_call_llm_cmd_file: str = ("PYTHONWARNINGS=ignore rock model-service anti-call-llm --index ${index} "
                                   "--response-file ${response_file}")
    anti_call_llm_cmd_no_response: str = "PYTHONWARNINGS=ignore rock model-service anti-call-llm --index ${index}"
    logging_path: str = "/data/logs"
    logging_file_name: str = "model_service.log"
    # ours (ROCK's `rock model-service start` options, and limits)
    port: int = Field(default=8080, ge=0, le=65535)
    models: list[str] = Field(default_factory=lambda: ["rock-policy"])
    proxy_base_url: str | None = None
    retryable_status_codes: list[int] | None = None
    retry_attempts: int | None = None
    proxy_api_key: str | None = Field(default=None, description="proxy mode: the upstream's key, sent by the admin "
                                      "(it never enters the sandbox)")
    request_timeout: float | None = None
    replay_file: str | None = Field(default=None, description="a ROCK trajectory JSONL on this machine, served in order")
    recording_file: str | None = Field(default=None, description="where stop() writes the calls as ROCK's JSONL")
    call_timeout: float = Field(default=600, gt=0, description="local mode: how long a call waits for the trainer")
    limits: EndpointLimits = Field(default_factory=EndpointLimits)


class ModelService:
    """rl-rock's ``sandbox.agent.model_service``: the Chat endpoint of one sandbox, started and stopped with the
    agent."""

    def __init__(self, sandbox: "Sandbox", config: ModelServiceConfig | None = None):
        self._sandbox = sandbox
        self.config = config or ModelServiceConfig()
        self.is_installed = False
        self.is_started = False
        self._trainer: ChatTrainer | None = None

    @property
    def trainer(self) -> ChatTrainer:
        """The ``ChatTrainer`` that answers this sandbox's model calls (made on first use)."""
        if self._trainer is None:
            self._trainer = ChatTrainer.for_sandbox(self._sandbox)
        return self._trainer

    async def install(self) -> None:
        """Nothing to download: the sandbox's agent serves the endpoint."""
        self.is_installed = True

    def _id(self) -> str:
        sandbox_id: str | None = self._sandbox.sandbox_id
        if sandbox_id is None:
            raise BadRequest("this Sandbox has not been started or attached yet; call start() or attach(id)")
        return sandbox_id

    def _endpoint_config(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"type": c.type, "port": c.port, "models": c.models, "call_timeout": c.call_timeout,
                               "limits": c.limits.model_dump()}
        if c.proxy_base_url:
            out["proxy_base_url"] = c.proxy_base_url
        if c.proxy_api_key:
            out["proxy_api_key"] = c.proxy_api_key
        if c.retry_attempts is not None:
            out["retry_attempts"] = c.retry_attempts
        if c.retryable_status_codes is not None:
            out["retryable_status_codes"] = c.retryable_status_codes
        if c.request_timeout is not None:
            out["request_timeout"] = c.request_timeout
        if c.replay_file:
            from rock.actions.records import read_rock_jsonl

            out["type"] = "proxy"
            out["replay"] = read_rock_jsonl(Path(c.replay_file).read_text(encoding="utf-8"))
        return out

    async def start(self) -> None:
        """Start the sandbox's model endpoint."""
        if not self.is_installed:
            raise RuntimeError(f"[{self._sandbox.sandbox_id}] Cannot start model service: ModelService has not "
                               "been installed yet. Please call install() first.")
        await self.trainer.start(self._id(), **self._endpoint_config())
        self.is_started = True

    async def stop(self) -> None:
        """Stop the sandbox's model endpoint (its records stay)."""
        if not self.is_started:
            return
        await self.trainer.stop(self._id())
        if self.config.recording_file:
            Path(self.config.recording_file).write_text(await self.trainer.trajectory_jsonl(self._id()),
                                                        encoding="utf-8")
        self.is_started = False

    async def watch_agent(self, pid: str | int) -> None:
        """End the endpoint's session when the agent's process ``pid`` exits."""
        if not self.is_started:
            raise RuntimeError(f"[{self._sandbox.sandbox_id}] Cannot watch agent: ModelService is not started. "
                               "Please call start() first.")
        await self.trainer.watch(self._id(), int(pid))

    async def anti_call_llm(self, index: int, response_payload: str | None = None, call_timeout: int = 600,
                            check_interval: int = 3) -> str:
        """Answer call ``index`` with ``response_payload`` (a completion's JSON; none for index 0)
        and return the next request's JSON, or ``SESSION_END``. ``check_interval``: ROCK's polling
        period, unused (nothing polls)."""
        if not self.is_started:
            raise RuntimeError(f"[{self._sandbox.sandbox_id}] Cannot execute anti-call LLM: ModelService is not "
                               "started. Please call start() first.")
        if isinstance(response_payload, dict):
            response_payload = json.dumps(response_payload)
        return await self.trainer.anti_call_llm(self._id(), index, response_payload, call_timeout)

    async def trajectory(self) -> list[CallRecord]:
        """Ours: the session's records (``rock.actions.records.CallRecord``)."""
        return await self.trainer.trajectory(self._id())
