"""Read-only layers a sandbox started from a snapshot stands on, between its own files (``upper``)
and its image root: ``<sandbox dir>/layers/0, 1, ...``, the top one first.

A child of a snapshot does not copy the snapshot's writable layer into its own: it gets a
hard-linked tree of it as a read-only layer and an empty upper layer. Nothing ever writes a
layer (overlayfs copies a file up into the sandbox's own upper layer before changing it), so
sharing the snapshot's inodes is safe, costs one link per file whatever the file's size, and
the page cache of those files is shared by every child instead of held once per copy. The
links (not the snapshot's directory itself) keep a child independent of its snapshot: deleting
the snapshot removes its names, not the files the children link to.

A snapshot of such a sandbox keeps its layers the same way, beside the copy of its upper layer;
its children stand on that copy and then on those layers.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from rock.errors import Conflict

LAYERS = "layers"


def layer_dirs(root: Path) -> list[Path]:
    """The read-only layers under ``root`` (a sandbox's or a snapshot's directory), top first."""
    d = root / LAYERS
    try:
        names = sorted((p for p in d.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    except FileNotFoundError:
        return []
    return names


def link_tree(source: Path, target: Path) -> None:
    """A tree of hard links to ``source``'s files, with its directories made anew (modes, owners
    and the opaque-directory xattrs kept) and its whiteouts (character devices 0/0) linked too."""
    done = subprocess.run(["cp", "-a", "--link", "--", str(source), str(target)], capture_output=True)
    if done.returncode:
        raise OSError(f"linking {source} failed: {done.stderr.decode(errors='replace')[-300:]}")


def _seed(snapshot_path: Path, sandbox_dir: Path) -> None:
    layers = sandbox_dir / LAYERS
    layers.mkdir()
    sources = [snapshot_path / "upper", *layer_dirs(snapshot_path)]
    for i, source in enumerate(sources):
        link_tree(source, layers / str(i))
    (sandbox_dir / "upper").mkdir()


async def seed_layers(snapshot_path: Path, sandbox_dir: Path) -> None:
    """A new sandbox's directory standing on a snapshot: its layers linked from the snapshot's
    (its upper layer on top), and an empty upper layer of its own."""
    try:
        sandbox_dir.mkdir(parents=True)
    except FileExistsError:
        raise Conflict(f"sandbox directory {sandbox_dir.name} exists already: choose another sandbox id") from None
    await asyncio.to_thread(_seed, snapshot_path, sandbox_dir)


def _keep(sandbox_dir: Path, snapshot_path: Path) -> None:
    own = layer_dirs(sandbox_dir)
    if own:
        (snapshot_path / LAYERS).mkdir()
        for i, source in enumerate(own):
            link_tree(source, snapshot_path / LAYERS / str(i))


async def keep_layers(sandbox_dir: Path, snapshot_path: Path) -> None:
    """A snapshot of a sandbox that stands on layers keeps them (linked; they never change, so
    this needs no freeze)."""
    await asyncio.to_thread(_keep, sandbox_dir, snapshot_path)
