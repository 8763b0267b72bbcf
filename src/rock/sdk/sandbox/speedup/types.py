"""``SpeedupType``, the kinds of ``Network.speedup``."""

from enum import Enum


class SpeedupType(str, Enum):
    """What ``Network.speedup`` sets: an apt or pip mirror, or github.com's address."""

    APT = "apt"  # value: a mirror's base URL, e.g. http://mirrors.example.com (…/debian, …/ubuntu below it)
    PIP = "pip"  # value: a mirror's base URL (…/pypi/simple/ below it)
    GITHUB = "github"  # value: an IP address github.com resolves to
