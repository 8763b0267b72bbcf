"""rl-rock's ``rock.actions.sandbox.request`` import path: the request models."""

from pydantic import Field

from rock.actions.request import (  # noqa: F401
    Action,
    BashAction,
    CloseBashSessionRequest,
    CloseSessionRequest,
    Command,
    CreateBashSessionRequest,
    CreateSessionRequest,
    ReadFileRequest,
    UploadMode,
    UploadRequest,
    WriteFileRequest,
    _Compat,
)


class ChownRequest(_Compat):
    remote_user: str
    paths: list[str] = Field(default_factory=list)
    recursive: bool = False


class ChmodRequest(_Compat):
    paths: list[str] = Field(default_factory=list)
    mode: str = "755"
    recursive: bool = False
