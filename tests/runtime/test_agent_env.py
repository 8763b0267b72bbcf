"""What the agent takes out of its environment (``rock.agent.fastos.take``) no process it starts
inherits, also when ``os`` is half loaded at that moment (another of the agent's threads importing
it), which once made every docker sandbox's agent die at boot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
CHILD = """
import subprocess, sys, types
from rock.agent import fastos
if sys.argv[1] == "half":  # 'os' in sys.modules without its environ, as mid-import in another thread
    saved, sys.modules["os"] = sys.modules["os"], types.ModuleType("os")
    try:
        taken = fastos.take("ROCK_T_TAKEN")
    finally:
        sys.modules["os"] = saved
elif sys.argv[1] == "whole":
    taken = fastos.take("ROCK_T_TAKEN")
else:
    taken = None
print(taken, subprocess.run(["sh", "-c", "echo ${ROCK_T_TAKEN-unset}"], capture_output=True, text=True).stdout.strip())
"""


def _run(how: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(SRC), "ROCK_T_TAKEN": "process"}
    return subprocess.run([sys.executable, "-c", CHILD, how], env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()


def test_a_taken_variable_reaches_no_child_even_with_os_half_loaded():
    assert _run("whole") == "process unset"
    assert _run("half") == "process unset"
    assert _run("none") == "None process"  # the control: not taken, the child has it
