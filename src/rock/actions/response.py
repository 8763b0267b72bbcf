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
    """Whether a request worked: ``Success``, or ``Failed`` with the reason in ``message``/``error``."""

    SUCCESS = "Success"
    FAILED = "Failed"


class BaseResponse(_Compat):
    """The outer fields of every reply: ``status``, and on a failure a ``message`` and ``error`` saying why."""

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
    """A sandbox's state in ROCK's terms. A failed sandbox shows ``stopped`` here; ``lifecycle_state`` says
    ``failed``."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    ARCHIVING = "archiving"
    ARCHIVED = "archived"
    DELETED = "deleted"


class StateTransitionRecord(_Compat):
    """One change of a sandbox's state: from, to, the event that caused it, and when (ISO 8601)."""

    from_state: str
    to_state: str
    event: str
    timestamp: str


class IsAliveResponse(_Compat):
    """Whether the sandbox is running; true in a boolean context when it is. ``message`` names its host, or its
    state when it is not running."""

    is_alive: bool
    message: str = ""

    def __bool__(self) -> bool:
        return self.is_alive


class SandboxStartResponse(SandboxResponse):
    """The sandbox just started: its id, where it runs, the resources it got (``cpus``, ``memory`` and ``disk`` as
    sizes like ``8g``) and its state."""

    sandbox_id: str | None = None
    host_name: str | None = None
    host_ip: str | None = None
    cpus: float | None = None
    memory: str | None = None
    disk: str | None = None
    state: str | None = None  # ours
    backend: str | None = None  # ours


class SandboxStatusResponse(_Compat):
    """Everything known about one sandbox: state, placement, resources, ownership labels (user, experiment,
    namespace), port mappings, lifecycle times (ISO 8601; None when it has not happened) and the history of its
    states. A failed start is reported in ``status`` (per stage) and ``failure_reason``."""

    sandbox_id: str | None = None
    # ROCK: stage name -> {"status": "running"|"failed"|..., "message"}; the SDK reads failures here.
    status: dict[str, Any] | None = None
    port_mapping: dict[str, Any] | None = None
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
    metadata: dict[str, Any] | None = None  # ours: the start request's settings (image, limits, lifecycle)
    state_history: list[StateTransitionRecord] = Field(default_factory=list)


class CommandResponse(_Compat):
    """The result of a one-shot command: its stdout, stderr and exit code (None when it did not exit, e.g. killed
    at the timeout; ``timed_out`` then says so). ``truncated``: the output passed the admin's limit and its
    middle was cut."""

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
    """Whether the file was written; ``message`` says why not."""

    pass


class ExecuteBashSessionResponse(_Outcome):
    """Whether the command ran in the session; ``message`` says why not."""

    pass


class CreateBashSessionResponse(_Compat):
    """The session is open. ``output`` is ROCK's field, kept for rl-rock; it is always empty here."""

    output: str = ""
    session_type: Literal["bash"] = "bash"


CreateSessionResponse = CreateBashSessionResponse


class BashObservation(_Compat):
    """What a command run in a session produced: its output (ANSI escapes removed, ends stripped, as ROCK returns
    it), its exit code (None while it still runs or when it was not collected), and a failure reason when it
    failed. ``status`` says how it ended: completed, timeout, idle (no new output within idle_timeout; still
    running), interrupted or ended."""

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
    if "\x1b" not in text:  # every sequence begins with ESC: most outputs have none, and skip the scan
        return text.strip()
    return _ANSI_ESCAPE.sub("", text).strip()


class CloseBashSessionResponse(_Compat):
    """The session is closed: its shell and what it ran are gone."""

    session_type: Literal["bash"] = "bash"


CloseSessionResponse = CloseBashSessionResponse


class ReadFileResponse(_Compat):
    """The file's text, decoded with the request's encoding (UTF-8 by default)."""

    content: str = ""


class UploadResponse(_Compat):
    """Whether the upload worked, the reason when it did not, and the file's name in the sandbox."""

    success: bool = False
    message: str = ""
    file_name: str = ""


FileUploadResponse = UploadResponse


class CloseResponse(_Compat):
    """An empty reply: the thing asked to close is closed."""

    pass


class CommitPhase(str, Enum):
    """Where a commit stands: RUNNING in the background, SUCCEEDED, or FAILED (with an error code)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class CommitErrorCode(str, Enum):
    """Why a commit failed: the sandbox, its worker or its container was not found or unreachable; another commit
    was running; the commit, the registry login or the push failed; it timed out; the process running it was
    lost; or its status record is missing or unreadable."""

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
    """A sandbox's last commit: the image tag, its phase, when it started and ended (ISO 8601), and on a failure
    the stage, error code and message. ``image_id`` is the committed image's id once it exists."""

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
    """Whether the object-store upload path was set up; ``message`` says why not."""

    pass


class ChownResponse(_Outcome):
    """Whether the owner of every path was changed; ``message`` says why not."""

    pass


class ChmodResponse(_Outcome):
    """Whether the mode of every path was changed; ``message`` says why not."""

    pass


class DownloadFileResponse(_Outcome):
    """Whether the file was downloaded; ``message`` says why not."""

    pass


class SandboxListResponse(_Compat):
    """One page of sandboxes (``page`` counts from 1); ``has_more`` says whether a later page has any."""

    items: list[SandboxStatusResponse] = Field(default_factory=list)
    total: int = 0
    page: int = 1
    page_size: int = 20
    has_more: bool = False


def envelope(result: Any = None, status: ResponseStatus = ResponseStatus.SUCCESS, **kw: Any) -> dict[str, Any]:
    """The reply envelope as a plain dict (what RockResponse parses): status, message, error and result."""
    return {"status": status.value, "message": kw.get("message"), "error": kw.get("error"), "result": result}
