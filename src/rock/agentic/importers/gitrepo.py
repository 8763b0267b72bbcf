"""A local clone read with git's plumbing only (``subprocess`` argument lists, never a shell): the
tree at a commit, and the files a patch changes, computed in a throwaway index. The clone's work
tree, index and refs are never touched, and no checkout runs, so no filter, hook or attribute of
the clone's configuration runs either: blobs are written out as stored."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rock.agentic.importers.common import relative_path
from rock.agentic.tasks.errors import TaskError

_COMMIT = re.compile(r"[0-9a-fA-F]{4,64}")
# Git must not read the user's or the system's configuration for these reads (an alias, a pager,
# an fsmonitor hook there would run on the host).
_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


@dataclass
class Entry:
    """One file of a tree: its path, mode (``100644``, ``100755``, ``120000`` for a link) and blob id."""

    path: str
    mode: str
    blob: str


class Clone:
    """A local git repository (a clone with a work tree, or bare), read by commit."""

    def __init__(self, path: Path, what: str):
        self.what = what
        r = self._run(["git", "-C", str(path), "rev-parse", "--absolute-git-dir"], check=False)
        if r.returncode != 0:
            raise TaskError(f"{what}: {path} is not a git repository", "BadTask")
        self.git_dir = r.stdout.decode().strip()

    def _run(self, argv: list[str], *, input: bytes | None = None, env: dict | None = None, check: bool = True):
        r = subprocess.run(argv, check=False, input=input, capture_output=True, env={**_ENV, **(env or {})}, timeout=600)
        if check and r.returncode != 0:
            raise TaskError(f"{self.what}: git {argv[3] if len(argv) > 3 else ''} failed: "
                            f"{r.stderr.decode(errors='replace').strip()[-500:]}", "BadTask")
        return r

    def git(self, *args: str, input: bytes | None = None, env: dict | None = None) -> bytes:
        """``git --git-dir CLONE args...``; raises TaskError with git's own words."""
        return self._run(["git", "--git-dir", self.git_dir, *args], input=input, env=env).stdout

    def commit(self, rev: object) -> str:
        """``rev`` (a commit id from the row) resolved to the full id; a clear error when the clone lacks it."""
        if not isinstance(rev, str) or not _COMMIT.fullmatch(rev):
            raise TaskError(f"{self.what}: base_commit {rev!r} is not a commit id", "BadTask")
        r = self._run(["git", "--git-dir", self.git_dir, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                      check=False)
        if r.returncode != 0:
            raise TaskError(f"{self.what}: the clone {self.git_dir} has no commit {rev}", "BadTask")
        return r.stdout.decode().strip()

    def entries(self, tree: str) -> list[Entry]:
        """Every file of ``tree`` (a commit or tree id); submodules are left out."""
        out = []
        for line in self.git("ls-tree", "-r", "-z", "--full-tree", tree).split(b"\0"):
            if not line:
                continue
            meta, _, path = line.partition(b"\t")
            mode, kind, blob = meta.decode().split()
            if kind == "blob":
                out.append(Entry(path.decode("utf-8", "surrogateescape"), mode, blob))
        return out

    def write(self, entries: list[Entry], dest: Path) -> None:
        """The blobs of ``entries`` written under ``dest`` at their paths (links as links, modes kept)."""
        if not entries:
            return
        data = self.git("cat-file", "--batch", input="".join(f"{e.blob}\n" for e in entries).encode())
        pos = 0
        for e in entries:
            header_end = data.index(b"\n", pos)
            size = int(data[pos:header_end].split()[2])
            blob = data[header_end + 1:header_end + 1 + size]
            pos = header_end + 1 + size + 1
            target = dest / relative_path(e.path, self.what)
            target.parent.mkdir(parents=True, exist_ok=True)
            if e.mode == "120000":
                os.symlink(blob.decode("utf-8", "surrogateescape"), target)
            else:
                target.write_bytes(blob)
                target.chmod(0o755 if e.mode == "100755" else 0o644)

    def apply(self, commit: str, patch: str, what: str) -> tuple[list[Entry], list[str]]:
        """``patch`` applied to ``commit`` in a throwaway index: the files it adds or changes (as entries of the
        patched tree) and the paths it deletes. A patch that does not apply is a clear error."""
        with tempfile.TemporaryDirectory(prefix="rock-import-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.git("read-tree", commit, env=env)
            r = self._run(["git", "--git-dir", self.git_dir, "apply", "--cached", "-"],
                          input=patch.encode(), env=env, check=False)
            if r.returncode != 0:
                raise TaskError(f"{self.what}: {what} does not apply to {commit[:12]}: "
                                f"{r.stderr.decode(errors='replace').strip()[-500:]}", "BadTask")
            tree = self.git("write-tree", env=env).decode().strip()
        changed, deleted = set(), []
        fields = self.git("diff-tree", "-r", "-z", "--no-renames", "--name-status", f"{commit}^{{tree}}",
                          tree).split(b"\0")
        for status, path in zip(fields[0::2], fields[1::2]):
            name = path.decode("utf-8", "surrogateescape")
            relative_path(name, self.what)
            if status == b"D":
                deleted.append(name)
            else:
                changed.add(name)
        return [e for e in self.entries(tree) if e.path in changed], deleted
