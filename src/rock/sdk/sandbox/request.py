"""ROCK's ``rock.sdk.sandbox.request`` import path for the request models."""

from rock.actions.request import (  # noqa: F401
    Action,
    BashAction,
    CloseBashSessionRequest,
    Command,
    CreateBashSessionRequest,
    ReadFileRequest,
    UploadRequest,
    WriteFileRequest,
)
