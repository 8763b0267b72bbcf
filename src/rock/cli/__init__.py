"""The ``rock`` command. Options shared by the sub-commands that talk to a running admin live here."""

import os

DEFAULT_URL = "http://127.0.0.1:8080"


def add_admin_options(parser) -> None:
    """``--url`` and ``--token`` for commands that call a running admin (defaults from the environment)."""
    parser.add_argument("--url", default=os.environ.get("ROCK_BASE_URL", DEFAULT_URL), help="admin URL")
    parser.add_argument("--token", default=os.environ.get("ROCK_TOKEN"), help="API token (or $ROCK_TOKEN)")
