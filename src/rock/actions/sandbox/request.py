"""rl-rock's ``rock.actions.sandbox.request`` import path: the request models."""

from pydantic import Field

# rl-rock's path re-exports every request model (the list is rock.actions.request's)
from rock.actions.request import *  # noqa: F401,F403
from rock.actions.request import _Compat


class ChownRequest(_Compat):
    """``chown [-R] remote_user:remote_user paths...`` inside the sandbox."""

    remote_user: str
    paths: list[str] = Field(default_factory=list)
    recursive: bool = False


class ChmodRequest(_Compat):
    """``chmod [-R] mode paths...`` inside the sandbox; ``mode`` is octal text such as ``755``."""

    paths: list[str] = Field(default_factory=list)
    mode: str = "755"
    recursive: bool = False
