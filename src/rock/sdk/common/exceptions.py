"""ROCK's SDK exceptions (``rock.sdk.common.exceptions``), rooted in rock.errors.RockError.

The SDK raises the rock.errors type the admin named (SandboxNotFound, SessionBusy, ...) when
there is one; these ROCK classes cover the rest, so ``except RockException`` in ROCK code and
``except RockError`` in ours both work.
"""

from __future__ import annotations

from typing import Any

from rock.errors import RockError

OK, BAD_REQUEST, INTERNAL_SERVER_ERROR, COMMAND_ERROR = 2000, 4000, 5000, 6000


class RockException(RockError):
    """rl-rock's base exception, with ROCK's numeric ``code`` (4xxx client, 5xxx server)."""

    def __init__(self, message: str = "", code: int | None = None):
        super().__init__(message)
        self._code = code

    @property
    def code(self) -> int | None:
        """ROCK's numeric code, or None."""
        return self._code


class InvalidParameterRockException(RockException):
    """rl-rock's: a parameter was refused."""

    status_code = 400


class BadRequestRockError(RockException):
    """rl-rock's: a 4xxx code."""

    status_code = 400

    def __init__(self, message: str = "", code: int = BAD_REQUEST):
        super().__init__(message, code)


class InternalServerRockError(RockException):
    """rl-rock's: a 5xxx code."""

    def __init__(self, message: str = "", code: int = INTERNAL_SERVER_ERROR):
        super().__init__(message, code)


class CommandRockError(RockException):
    """A command failed under ``check="raise"``; ``observation`` holds its output and exit code."""

    status_code = 200

    def __init__(self, message: str = "", code: int = COMMAND_ERROR, observation: Any = None):
        super().__init__(message, code)
        self.observation = observation


def raise_for_code(code: int | None, message: str) -> None:
    """Raise the rl-rock exception of ROCK's ``code`` (nothing for None or 2xxx)."""
    if code is None or 2000 <= code <= 2999:
        return
    if 4000 <= code <= 4999:
        raise BadRequestRockError(message)
    if 5000 <= code <= 5999:
        raise InternalServerRockError(message)
    if 6000 <= code <= 6999:
        raise CommandRockError(message)
    raise RockException(message, code=code)
