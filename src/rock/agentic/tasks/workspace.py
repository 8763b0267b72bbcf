"""The agent's changes: the workspace taken from its sandbox, compared on the host with where it
started, as a diff (for the record) and as files (applied in the verifier's fresh sandbox).

What comes out of a sandbox is only read as bytes here, never run: the archive is extracted
with tarfile's ``data`` filter (no absolute paths, no ``..``, no links out), its size is checked
first, and symbolic links, caches and protected paths (tests, pytest configuration) are left
out of the change, each named in the record.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rock.actions import Command

MAX_WORKSPACE_BYTES = 64 << 20
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".git", ".mypy_cache"}
MAX_DIFF_CHARS = 200_000


@dataclass
class Changes:
    """The agent's change to its workspace: new or changed files (path -> content), deleted paths, the paths left
    out (protected, or symbolic links) and a unified diff for the record (cut at MAX_DIFF_CHARS)."""

    files: dict[str, bytes] = field(default_factory=dict)  # new or changed: path -> content
    deleted: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # protected or not regular files
    diff: str = ""

    @property
    def empty(self) -> bool:
        """True when nothing would be written or removed in the verifier's sandbox."""
        return not self.files and not self.deleted


def snapshot_files(root: Path) -> dict[str, bytes]:
    """{path: bytes} of the regular files under ``root``; symbolic links as ``Link`` values."""
    out: dict[str, bytes] = {}
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if SKIP_PARTS & set(rel.parts) or p.suffix == ".pyc":
            continue
        if p.is_symlink():
            out[str(rel)] = Link(os.readlink(p).encode(errors="surrogateescape"))
        elif p.is_file():
            out[str(rel)] = p.read_bytes()
    return out


class Link(bytes):
    """A symbolic link in a snapshot (its target): never carried to the verifier, named instead."""


async def download(box, workdir: str, dest: Path) -> dict[str, bytes]:
    """The sandbox's workspace as {path: bytes} (refused above MAX_WORKSPACE_BYTES); symbolic
    links as ``Link`` values."""
    q = shlex.quote(workdir)
    r = await box.execute(Command(command=f"du -sb {q} 2>/dev/null | cut -f1; cd {q} 2>/dev/null && "
                                          "find . -type l -printf '%P\\0%l\\0'", timeout=60))
    size_text, _, links_text = (r.stdout or "0").partition("\n")
    size = int(size_text.strip() or 0)
    if size > MAX_WORKSPACE_BYTES:
        raise ValueError(f"the workspace holds {size} bytes; more than {MAX_WORKSPACE_BYTES} are not graded")
    if size == 0:
        return {}
    await box.download(workdir, dest, skip_links=True)
    files = snapshot_files(dest)
    fields = links_text.split("\0")
    for rel, target in zip(fields[0::2], fields[1::2]):
        if rel and not SKIP_PARTS & set(Path(rel).parts):
            files[rel] = Link(target.encode(errors="surrogateescape"))
    return files


def protected(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative to the workspace) matches one of the shell-style ``patterns``."""
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def compare(before: dict[str, bytes], after: dict[str, bytes], patterns: list[str]) -> Changes:
    """The change from ``before`` to ``after`` (two snapshots): changed, new and deleted files with their diff;
    symbolic links and paths matching ``patterns`` are named in ``ignored`` and never applied."""
    ch = Changes()
    diffs = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        if isinstance(new, Link):
            ch.ignored.append(f"{path} (symbolic link)")  # the verifier's workspace gets no links
            continue
        if protected(path, patterns):
            ch.ignored.append(path)
            continue
        if new is None:
            ch.deleted.append(path)
        else:
            ch.files[path] = new
        diffs.append(_unified(path, old, new))
    ch.diff = "".join(diffs)[:MAX_DIFF_CHARS]
    return ch


def _unified(path: str, old: bytes | None, new: bytes | None) -> str:
    try:
        a = [] if old is None else old.decode().splitlines(keepends=True)
        b = [] if new is None else new.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"Binary files a/{path} and b/{path} differ\n"
    lines = difflib.unified_diff(a, b, "/dev/null" if old is None else f"a/{path}",
                                 "/dev/null" if new is None else f"b/{path}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)




async def apply(box, workdir: str, changes: Changes, tmp: Path) -> None:
    """The agent's changes in the verifier's sandbox: changed files written, deleted ones removed."""
    if changes.files:
        stage = tmp / "changes"
        shutil.rmtree(stage, ignore_errors=True)
        for path, data in changes.files.items():
            target = stage / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        await box.upload_dir(stage, workdir)
    if changes.deleted:
        await box.execute(Command(command=["rm", "-f", "--", *changes.deleted], cwd=workdir, timeout=60))
