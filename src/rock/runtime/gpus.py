"""The GPUs of one node, handed out whole: each to one sandbox at a time.

Found from ``nvidia-smi`` (index and UUID), else from the ``/dev/nvidiaN`` device files, unless
the ``gpus`` setting lists the indices this node may use. A sandbox gets its devices (Docker
device requests; bind-mounted device files in bwrap) and ``CUDA_VISIBLE_DEVICES`` naming them
by UUID where known, which means the same inside a container, whose GPUs are renumbered from 0,
and inside bwrap, which keeps the host's numbering.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

from rock.errors import BadRequest, Conflict

# Device files every CUDA process needs beside its GPUs' own /dev/nvidiaN.
CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")


def detect(configured: str | None = None) -> dict[int, str | None]:
    """GPU index -> UUID (None when unknown)."""
    if configured is not None:
        return {int(i): None for i in configured.replace(" ", "").split(",") if i != ""}
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout
            found = {int(i): u.strip() for i, u in (line.split(",", 1) for line in out.splitlines() if "," in line)}
            if found:
                return found
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return {int(m.group(1)): None for p in glob.glob("/dev/nvidia[0-9]*")
            if (m := re.fullmatch(r"/dev/nvidia(\d+)", p))}


def wanted(num_gpus: float | None) -> int:
    """A request's ``num_gpus`` as a whole count (GPUs are not shared between sandboxes)."""
    if not num_gpus:
        return 0
    if num_gpus < 0 or num_gpus != int(num_gpus):
        raise BadRequest(f"num_gpus must be a whole number of GPUs (0, 1, 2, …), not {num_gpus:g}")
    return int(num_gpus)


def device_files(ids: list[int]) -> list[str]:
    """The device files a sandbox with GPUs ``ids`` needs: each GPU's and the driver's control devices."""
    return [f"/dev/nvidia{i}" for i in ids] + [d for d in CONTROL_DEVICES if os.path.exists(d)]


class Gpus:
    """This node's GPUs and which sandbox holds each: a GPU is never given to two sandboxes."""

    def __init__(self, configured: str | None = None):
        self.uuids = detect(configured)
        self.owner: dict[int, str] = {}  # GPU index -> sandbox id

    @property
    def total(self) -> int:
        """How many GPUs the node has."""
        return len(self.uuids)

    @property
    def free(self) -> int:
        """How many are not held."""
        return self.total - len(self.owner)

    def take(self, count: int, sandbox_id: str) -> list[int]:
        """Hold ``count`` free GPUs for ``sandbox_id``: their indices; ``BadRequest`` when the node has too
        few."""
        if count > self.total:
            raise BadRequest(f"sandbox asks for {count} GPU(s); this node has {self.total}"
                             + ("" if self.total else " (no GPU found: nvidia-smi and /dev/nvidia* show none)"))
        free = [i for i in sorted(self.uuids) if i not in self.owner]
        if count > len(free):
            raise Conflict(f"sandbox asks for {count} GPU(s); {len(free)} of this node's {self.total} are free")
        ids = free[:count]
        for i in ids:
            self.owner[i] = sandbox_id
        return ids

    def claim(self, ids: list[int], sandbox_id: str) -> None:
        """Mark GPUs as held by a sandbox found running (re-attach after a restart)."""
        for i in ids:
            self.owner[i] = sandbox_id

    def release(self, ids: list[int]) -> None:
        """Let GPUs ``ids`` go."""
        for i in ids:
            self.owner.pop(i, None)

    def visible(self, ids: list[int]) -> str:
        """``CUDA_VISIBLE_DEVICES`` for GPUs ``ids`` (their UUIDs where known)."""
        return ",".join(self.uuids.get(i) or str(i) for i in ids)
