"""ROCK's status codes (``rock.codes``): the class of a result, not an HTTP status.

2xxx success, 4xxx the caller's error, 5xxx the server's, 6xxx a command that failed.
"""

from __future__ import annotations

from enum import IntEnum


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

    @staticmethod
    def is_success(value: int) -> bool:
        return 2000 <= value <= 2999

    @staticmethod
    def is_client_error(value: int) -> bool:
        return 4000 <= value <= 4999

    @staticmethod
    def is_server_error(value: int) -> bool:
        return 5000 <= value <= 5999

    @staticmethod
    def is_command_error(value: int) -> bool:
        return 6000 <= value <= 6999

    @classmethod
    def is_error(cls, value: int) -> bool:
        return 4000 <= value <= 6999

    OK = 2000, "OK"
    BAD_REQUEST = 4000, "Bad Request"
    INTERNAL_SERVER_ERROR = 5000, "Internal Server Error"
    COMMAND_ERROR = 6000, "Command Error"
