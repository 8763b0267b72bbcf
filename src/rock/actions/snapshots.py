"""Wire bodies of pause, resume, snapshots and fork (ours, beside ROCK's sandbox routes).

What is enforced is stated here, so the OpenAPI schema says it: a fork asks for 1 to 20 children
(E2B's range), a mode is ``filesystem`` or ``full``, a snapshot name is what a file name and an
image tag can both carry. Unknown fields are refused (a typo is an error, not a no-op).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rock.actions.numbers import numbers_only
from rock.actions.sandbox import SandboxId

MAX_FORK = 20  # E2B's fork(count=1..20): the one limit of a sandbox fork (the admin, its doors, an env's full fork)
# With tokens on, the stored name is '<name>.<10 hex>' of the caller's namespace (as sandbox ids
# are), and the runtime's names are at most 64 characters: 53 are the caller's.
SNAPSHOT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,52}$"
STORED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SnapshotMode = Literal["filesystem", "full"]


class _Ours(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SnapshotRequest(_Ours):
    """``POST /sandboxes/{id}/snapshot``: save the sandbox's state as a named snapshot."""

    name: str | None = Field(default=None, pattern=SNAPSHOT_NAME_PATTERN, description=(
        "1-53 letters, digits, '_' or '-'; with tokens on the snapshot's name is '<name>.<10 hex>' "
        "(the reply's name: use that one afterwards). Left out: a fresh name"))
    mode: SnapshotMode = Field(default="filesystem", description=(
        "filesystem: the sandbox's writable layer (every backend); full: its memory and processes "
        "too (gvisor only)"))


class ForkRequest(_Ours):
    """``POST /sandboxes/{id}/fork``: ``count`` new sandboxes from a fresh snapshot of this one."""

    count: int = Field(default=1, ge=1, le=MAX_FORK, description=f"how many children: 1 to {MAX_FORK}")
    mode: SnapshotMode = Field(default="filesystem", description=(
        "filesystem: each child starts on the parent's files; full (gvisor): each child goes on "
        "with the parent's processes, memory included"))
    keep_snapshot: bool = Field(default=False, description=(
        "keep the snapshot the children were made from (listed with the others, for more children "
        "later); otherwise it is deleted once they run, where the backend allows"))
    wait: bool = Field(default=True, description="reply once every child runs (or failed); false: at once, "
                       "the children pending")

    _numbers = numbers_only("count")  # "2" and true are not counts (the schema says integer)


class RestoreRequest(_Ours):
    """``POST /sandboxes/{id}/restore``: roll the sandbox back to one of your snapshots in place."""

    snapshot: str = Field(pattern=STORED_NAME_PATTERN, description=(
        "the snapshot's name, as its snapshot reply gave it; taken on this sandbox's backend (any of your "
        "sandboxes', not only this one's)"))


class SandboxIdBody(_Ours):
    """``POST /pause`` and ``/resume`` in ROCK's body style (the id in the body)."""

    sandbox_id: SandboxId


class SnapshotInfo(BaseModel):
    """A snapshot as its owner sees it (never its source's environment or labels)."""

    name: str
    mode: SnapshotMode
    backend: str
    source: str  # the sandbox it was taken from (it may be gone since)
    image: str | None = None  # the image its sandboxes run on
    created_at: float
    size_bytes: int | None = None
    took_ms: float | None = None  # how long the source was frozen for it


class ForkResult(BaseModel):
    """The children, in the order asked for, and the snapshot they came from where it was kept."""

    sandboxes: list[dict]  # ``start``'s result per child (state running, or failed with its reason)
    snapshot: SnapshotInfo | None = None
