"""Where the seed documents are: their code samples are the public API and must run unchanged.

They sit in ``shared/seeds`` beside the checkout (as CI lays it out), or where ROCK_SEEDS_DIR says.
A missing seed is a failure, never a skip: these tests are the proof of compatibility.
"""

import os
import re
from pathlib import Path

SEEDS = Path(os.environ.get("ROCK_SEEDS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "seeds")


def python_blocks(prefix: str) -> list[str]:
    """The ```python blocks of the seed document whose name starts with ``prefix`` ([] if absent)."""
    found = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    return re.findall(r"```python\n(.*?)```", found[0].read_text(), flags=re.S) if found else []


def missing(what: str) -> str:
    return f"{what} not found under {SEEDS}; put the seed documents there or set ROCK_SEEDS_DIR"
