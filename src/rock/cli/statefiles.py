"""The files an admin or proxy keeps in its state dir while it runs (pid, info, log), named
without importing the server: ``rock admin status``/``stop`` and every other ``rock`` command
start without the ~1.6 s that importing the app (FastAPI, its routes and models) costs
(``rock --help`` 1.9 s -> 1.1 s on a 2-core VM)."""

from __future__ import annotations

import os
from pathlib import Path

from rock.config import Settings


def process_name(role: str, port: int) -> str:
    """One admin per state dir (it writes the store and owns the sandboxes); proxies beside it on
    the same state dir and embedded store, one per port (read/write separation on one machine)."""
    return "admin" if role == "admin" else f"proxy-{port}"


def pid_path(settings: Settings) -> Path:
    """The file holding this process's pid in the state dir (one per role and port)."""
    return Path(settings.state_dir) / f"{process_name(settings.role, settings.port)}.pid"


def info_path(settings: Settings) -> Path:
    """The JSON file describing the running process (its URL among others) that ``rock admin status``
    reads."""
    return Path(settings.state_dir) / f"{process_name(settings.role, settings.port)}.json"


def log_path(settings: Settings) -> Path:
    """The log file a background admin or proxy writes."""
    return Path(settings.state_dir) / f"{process_name(settings.role, settings.port)}.log"


def remove_own_files(settings: Settings) -> None:
    """Remove the info file and the pid file if it is still this process's (a newer process may have
    written its own)."""
    for path in (pid_path(settings), info_path(settings)):
        try:
            if path.suffix == ".json" or path.read_text().strip() == str(os.getpid()):
                path.unlink()
        except OSError:
            pass
