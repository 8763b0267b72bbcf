"""ROCK's status codes (``rock.codes``): the class of a result, not an HTTP status.

2xxx success, 4xxx the caller's error, 5xxx the server's, 6xxx a command that failed.
"""

from __future__ import annotations

from enum import IntEnum


def _between(low: int, high: int) -> staticmethod[[int], bool]:
    """The test that a code lies in ``low``..``high``, as a static method of ``codes``."""

    def test(value: int) -> bool:
        return low <= value <= high

    return staticmethod(test)


class codes(IntEnum):  # noqa: N801 - rl-rock's name
    phrase: str

    def __new__(cls, value: int, phrase: str = "") -> "codes":
        member = int.__new__(cls, value)
        member._value_ = value
        member.phrase = phrase
        return member

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def get_reason_phrase(cls, value: int) -> str:
        try:
            return cls(value).phrase
        except ValueError:
            return ""

    # The classes of codes (2xxx, 4xxx, 5xxx, 6xxx; 4xxx-6xxx all errors), each a test of one code.
    is_success = _between(2000, 2999)
    is_client_error = _between(4000, 4999)
    is_server_error = _between(5000, 5999)
    is_command_error = _between(6000, 6999)
    is_error = _between(4000, 6999)

    OK = 2000, "OK"
    BAD_REQUEST = 4000, "Bad Request"
    INTERNAL_SERVER_ERROR = 5000, "Internal Server Error"
    COMMAND_ERROR = 6000, "Command Error"
