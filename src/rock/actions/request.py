"""Request models users build in their code, with ROCK's names, fields and defaults.

They accept unknown fields silently, as rl-rock's do: the same classes are the body of the
wire protocol, and a newer rl-rock SDK may send fields we do not know yet.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# A path inside a sandbox. The admin checks it (rock.admin.context.check_path: a 400 naming the
# rule); the schema states the part a schema can say: not empty, no NUL.
SandboxPath = Annotated[str, WithJsonSchema({"type": "string", "minLength": 1, "pattern": "^[^\\u0000]+$"})]


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Command(_Compat):
    """A one-shot command (``Sandbox.execute``): a fresh process, not a session."""

    session_type: Literal["bash"] = "bash"
    command: str | list[str]
    timeout: float | None = 1200
    env: dict[str, str] | None = None
    cwd: SandboxPath | None = None


class CreateBashSessionRequest(_Compat):
    """Open a named persistent bash session (``Sandbox.create_session``): later commands in it share its working
    directory, variables and shell state. ``env`` adds variables; ``startup_source`` lists files in the sandbox
    to source first; ``env_enable`` sets ROCK_ENV_ENABLE=1 in it. ``remote_user`` is accepted for rl-rock and
    not used: the session runs as the sandbox's user. A name already open is an error (SessionExists)."""

    session_type: Literal["bash"] = "bash"
    session: str = "default"
    startup_source: list[str] = Field(default_factory=list)
    env_enable: bool = False
    env: dict[str, str] | None = None
    remote_user: str | None = None


CreateSessionRequest = CreateBashSessionRequest


class BashAction(_Compat):
    """A command run in a named persistent session (``Sandbox.run_in_session``).

    ``check``: ``raise`` turns a non-zero exit into an error, ``silent`` returns it in the
    observation, ``ignore`` does not even collect the exit code.
    """

    action_type: Literal["bash"] = "bash"
    command: str
    session: str = "default"
    timeout: float | None = None
    check: Literal["silent", "raise", "ignore"] = "raise"


# In rl-rock ``Action`` is an annotated alias of BashAction; a plain alias is callable the same way.
Action = BashAction


class CloseBashSessionRequest(_Compat):
    """Close a named session: its shell and anything still running in it are ended."""

    session_type: Literal["bash"] = "bash"
    session: str = "default"


CloseSessionRequest = CloseBashSessionRequest


class ReadFileRequest(_Compat):
    """Read a text file in the sandbox: ``path``, decoded with ``encoding`` (default UTF-8) and ``errors`` (default
    strict, so bytes that do not decode are an error; ``replace`` keeps going)."""

    path: SandboxPath
    encoding: str | None = None
    errors: str | None = None


class WriteFileRequest(_Compat):
    """Write ``content`` (text, UTF-8) to ``path`` in the sandbox, replacing the file."""

    content: str
    path: SandboxPath


class UploadMode(str, Enum):
    """rl-rock's choice of upload path (through an object store, or direct). Accepted and not used: every upload
    streams straight to the sandbox."""

    AUTO = "auto"
    OSS = "oss"
    DIRECT = "direct"


class UploadRequest(_Compat):
    """Upload the local file or directory ``source_path`` to ``target_path`` in the sandbox."""

    source_path: str
    target_path: str
    upload_mode: UploadMode = UploadMode.AUTO
