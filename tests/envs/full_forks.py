"""What the full-fork tests of envs and gym sessions share (test_env_fork.py, test_gym_fork.py)."""

from __future__ import annotations

import pytest

from rock.envs.errors import EnvError


def full_fork_or_refused(admin, parent, n: int = 2) -> list | None:
    """``parent.fork(n, how="full")`` on gVisor (after checking its limit of 20), or None after
    checking that any other backend refuses it with a 400 that says why."""
    if admin.backend != "gvisor":
        with pytest.raises(EnvError, match="cannot take full") as refused:
            parent.fork(n, how="full")
        assert refused.value.status_code == 400
        return None
    with pytest.raises(EnvError, match="1 to 20"):
        parent.fork(21, how="full")
    return parent.fork(n, how="full")
