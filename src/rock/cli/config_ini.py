"""rl-rock's CLI configuration file (``.rock/config.ini``): where the admin is and how to reach it.

    [rock]
    base_url = http://127.0.0.1:8080
    auth_token = ...            (ours; rl-rock passes it with --auth-token)
    [rock.extra_headers]
    X-Some-Header = value

Looked for at ``--config``, else ``./.rock/config.ini``, else ``$ROCK_CLI_DEFAULT_CONFIG_PATH`` or
``~/.rock/config.ini``. Command-line flags win over it; it wins over ``ROCK_BASE_URL``/``ROCK_TOKEN``.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path

from rock.errors import RockError


@dataclass
class CliConfig:
    """What ``.rock/config.ini`` says: the admin's URL, the token and extra headers (all optional);
    ``path`` is the file read, None when there is none."""

    path: Path | None = None
    base_url: str | None = None
    auth_token: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def _candidates() -> list[Path]:
    home = os.environ.get("ROCK_CLI_DEFAULT_CONFIG_PATH") or str(Path.home() / ".rock" / "config.ini")
    return [Path(".rock") / "config.ini", Path(home)]


def read(path: str | None) -> CliConfig:
    """The configuration file to use (``--config``, else the usual places) parsed; an empty ``CliConfig``
    when there is none, a ``RockError`` when it cannot be read."""
    if path is not None and not Path(path).is_file():
        raise RockError(f"config file {path} does not exist")
    chosen = Path(path) if path else next((p for p in _candidates() if p.is_file()), None)
    if chosen is None:
        return CliConfig()
    parser = configparser.ConfigParser()
    parser.optionxform = str  # header names keep their case
    try:
        parser.read(chosen, encoding="utf-8")
    except configparser.Error as exc:
        raise RockError(f"cannot read config file {chosen}: {exc}") from None
    rock = parser["rock"] if parser.has_section("rock") else {}
    headers = dict(parser["rock.extra_headers"]) if parser.has_section("rock.extra_headers") else {}
    return CliConfig(path=chosen, base_url=rock.get("base_url") or None, auth_token=rock.get("auth_token") or None,
                     extra_headers={k: v.strip() for k, v in headers.items() if v.strip()})
