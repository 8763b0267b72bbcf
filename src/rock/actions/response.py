"""Response models with ROCK's names and shapes.

Unknown fields are ignored so that an older SDK keeps working against a newer server.
Fields marked "ours" are additions; rl-rock ignores them.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ResponseStatus(str, Enum):
    SUCCESS = "Success"
    FAILED = "Failed"


class BaseResponse(_Compat):
    status: ResponseStatus = ResponseStatus.SUCCESS
    message: str | None = None
    error: str | None = None


T = TypeVar("T")


class RockResponse(BaseResponse, Generic[T]):
    """The envelope every sandbox route answers with."""

    result: T | None = None


class SandboxResponse(_Compat):
    """What a failed envelope carries in ``result``: ROCK's code (4xxx/5xxx/6xxx) and the reason."""

    code: int | None = None
    exit_code: int | None = None
    failure_reason: str | None = None
    error_type: str | None = None  # ours: the rock.errors class name, so the SDK re-raises the same type


class State(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    ARCHIVING = "archiving"
    ARCHIVED = "archived"
    DELETED = "deleted"


class StateTransitionRecord(_Compat):
    from_state: str
    to_state: str
    event: str
    timestamp: str


class IsAliveResponse(_Compat):
    is_alive: bool
    message: str = ""

    def __bool__(self) -> bool:
        return self.is_alive


class SandboxStartResponse(SandboxResponse):
    sandbox_id: str | None = None
    host_name: str | None = None
    host_ip: str | None = None
    cpus: float | None = None
    memory: str | None = None
    disk: str | None = None
    state: str | None = None  # ours
    backend: str | None = None  # ours


class SandboxStatusResponse(_Compat):
    sandbox_id: str | None = None
    # ROCK: stage name -> {"status": "running"|"failed"|..., "message"}; the SDK reads failures here.
    status: dict | None = None
    port_mapping: dict | None = None
    host_name: str | None = None
    host_ip: str | None = None
    is_alive: bool = True
    image: str | None = None
    user_id: str | None = None
    experiment_id: str | None = None
    namespace: str | None = None
    cpus: float | None = None
    memory: str | None = None
    num_gpus: float | None = None
    disk: str | None = None
    # ROCK's State enum has no "failed": a failed sandbox reports "stopped" here and
    # "failed" in ``lifecycle_state`` (ours), so rl-rock still parses it.
    state: State | None = None
    lifecycle_state: str | None = None
    backend: str | None = None
    failure_reason: str | None = None
    auto_clear_seconds: int | None = None
    last_used_time: str | None = None
    start_time: str | None = None
    stop_time: str | None = None
    create_time: str | None = None
    delete_time: str | None = None
    archive_time: str | None = None
    auto_stop_time: str | None = None
    auto_archive_time: str | None = None
    auto_delete_time: str | None = None
    accelerator_type: str | None = None
    metadata: dict | None = None  # ours: the start request's settings (image, limits, lifecycle)
    state_history: list[StateTransitionRecord] = Field(default_factory=list)


class CommandResponse(_Compat):
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    timed_out: bool = False  # ours
    # ours: stdout or stderr passed the admin's max_output_bytes and its middle was cut (marked in it)
    truncated: bool = False


class _Outcome(_Compat):
    """ROCK's shape for "did it work, and what happened"."""

    success: bool = False
    message: str = ""


class WriteFileResponse(_Outcome):
    pass


class ExecuteBashSessionResponse(_Outcome):
    pass


class CreateBashSessionResponse(_Compat):
    output: str = ""
    session_type: Literal["bash"] = "bash"


CreateSessionResponse = CreateBashSessionResponse


class BashObservation(_Compat):
    session_type: Literal["bash"] = "bash"
    output: str = ""
    exit_code: int | None = None
    failure_reason: str = ""
    expect_string: str = ""
    # ours: how the command ended (completed | timeout | idle | interrupted | ended) and
    # whether the output was cut at the size limit.
    status: str | None = None
    truncated: bool = False


Observation = BashObservation

# ROCK's runtime (rock/rocklet/linux.py, BashSession) returns a session command's output as
# ``_strip_control_chars(shell.before).strip()``: ANSI escape sequences removed with this exact
# pattern, then whitespace stripped at both ends. rl-rock code compares that value as is (its
# model-service loop waits for ``anti_call_llm(...) == "SESSION_END"``, read back through ``cat``).
_ANSI_ESCAPE = re.compile(r"\x1B[@-_][0-?]*[ -/]*[@-~]")


def session_output(text: str) -> str:
    """A finished session command's output as ROCK's runtime returns it: ANSI escape sequences
    removed, leading and trailing whitespace (the final newline included) stripped."""
    return _ANSI_ESCAPE.sub("", text).strip()


class CloseBashSessionResponse(_Compat):
    session_type: Literal["bash"] = "bash"


CloseSessionResponse = CloseBashSessionResponse


class ReadFileResponse(_Compat):
    content: str = ""


class UploadResponse(_Compat):
    success: bool = False
    message: str = ""
    file_name: str = ""


FileUploadResponse = UploadResponse


class CloseResponse(_Compat):
    pass


class CommitPhase(str, Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class CommitErrorCode(str, Enum):
    SANDBOX_NOT_FOUND = "SANDBOX_NOT_FOUND"
    WORKER_NOT_FOUND = "WORKER_NOT_FOUND"
    WORKER_UNREACHABLE = "WORKER_UNREACHABLE"
    SANDBOX_CONTAINER_NOT_FOUND = "SANDBOX_CONTAINER_NOT_FOUND"
    COMMIT_CONFLICT = "COMMIT_CONFLICT"
    DISPATCH_FAILED = "DISPATCH_FAILED"
    LOGIN_FAILED = "LOGIN_FAILED"
    COMMIT_FAILED = "COMMIT_FAILED"
    PUSH_FAILED = "PUSH_FAILED"
    TIMEOUT = "TIMEOUT"
    PROCESS_LOST = "PROCESS_LOST"
    STATUS_NOT_FOUND = "STATUS_NOT_FOUND"
    STATUS_CORRUPTED = "STATUS_CORRUPTED"


class CommitStatusResponse(_Compat):
    sandbox_id: str
    image_tag: str
    phase: CommitPhase
    started_at: str
    completed_at: str | None = None
    exit_code: int | None = None
    failed_stage: str | None = None
    error_code: CommitErrorCode | None = None
    error_message: str | None = None
    image_id: str | None = None  # ours


class OssSetupResponse(_Outcome):
    pass


class ChownResponse(_Outcome):
    pass


class ChmodResponse(_Outcome):
    pass


class DownloadFileResponse(_Outcome):
    pass


class SandboxListResponse(_Compat):
    items: list[SandboxStatusResponse] = Field(default_factory=list)
    total: int = 0
    page: int = 1
    page_size: int = 20
    has_more: bool = False


def envelope(result: Any = None, status: ResponseStatus = ResponseStatus.SUCCESS, **kw) -> dict:
    return {"status": status.value, "message": kw.get("message"), "error": kw.get("error"), "result": result}
