"""rl-rock's ``rock.actions.sandbox.request`` import path: the request models."""

from pydantic import Field

# rl-rock's path re-exports every request model (the list is rock.actions.request's)
from rock.actions.request import *  # noqa: F401,F403
from rock.actions.request import _Compat


class ChownRequest(_Compat):
    remote_user: str
    paths: list[str] = Field(default_factory=list)
    recursive: bool = False


class ChmodRequest(_Compat):
    paths: list[str] = Field(default_factory=list)
    mode: str = "755"
    recursive: bool = False
