"""Pause, snapshots and fork at the runtime level, per backend, and gVisor beside the others.

- sandbox_start_ms: create a sandbox (python:3.11) until its agent answers ``echo`` (runtime + agent
  client, no worker: the same path fork's children take), after a first start that prepares the
  image's root in the fresh state dir (``first_start_ms``); on gvisor, floor: a bare ``runsc run``
  of the same image root (read-only, no overlay, no binds, no limits) whose one process is the
  image's ``python3 -I -S`` printing ``hi``, the least a Python agent's first output costs under
  this runsc, alternating with the starts one by one. What a start pays inside gVisor here: a
  syscall costs ~45 us (the ptrace platform), and for a sandbox's first second every clock read
  is one too (runsc 20221219 calibrates its clock from two samples a second apart, and its vDSO
  falls back to the syscall until then), which CPython 3.11 makes on every lock it takes, several
  per import: 295 of the 860 syscalls before the agent says ready. The floor's Python pays both.
- cmd_round_trip_ms: ``echo`` in a persistent session
- pause_resume_ms: pause + unpause of a running sandbox; floor: on cgroup backends, the raw
  freeze + thaw of the same cgroup, in alternating blocks
- snapshot_ms (1 MB, 100 MB written): a filesystem snapshot, total; ``frozen_ms`` is how long
  the sandbox was stopped for it; floor: ``cp -a`` of the same tree, alternating
- fork_8_ready_ms: fork(8) until all 8 children answer; ratio against sandbox_start_ms p50 (target <= 2x);
  floor: 8 plain starts at once, alternating; with the parent's layer as is and with 100 MB more
- fork_child_memory_mb: a forked child's cgroup memory against a plain sandbox's, and the host's
  MemAvailable drop per child (page cache included)
- full_fork_ready_ms (gvisor): a full (memory) fork until every child answers, per child too (the
  fork's time over its children, p50 and p99 over the forks); floor:
  as many children restored from a full snapshot taken before (no checkpoint), alternating; beside
  it a full snapshot alone and as many plain starts at once
- env_fork_8_ms: fork(8) of a GEM env mid-episode through an admin, against 8 plain makes
  (bench/env_fork.py)

gVisor runs here whenever runsc is installed (its numbers only mean something beside the
others', measured in the same run), whatever ``--backends`` says.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench import env_fork
from bench.density import available_bytes  # MemAvailable: what children cost the host, page cache too
from bench.report import Context, percentile, record
from rock.config import Settings
from rock.runtime import cgroups, get_runtime_class
from rock.runtime.base import SandboxSpec
from rock.runtime.image_root import image_lower, image_python
from rock.worker.agent_client import AgentClient

IMAGE = "python:3.11"
SIZES_MB = (1, 100)
FORK_LAYER_MB = (0, 100)  # more in the parent's writable layer than it has, for fork_8
PIDS_LIMIT = Settings().pids_limit  # the admin's default (read once: not inside a timed start)


def _spec() -> SandboxSpec:
    """A sandbox as the admin makes one by default, with its process limit: on gVisor the agent
    sets that limit inside before it says ready (about 11 ms of a start here), which a spec
    without one would leave out of sandbox_start_ms."""
    return SandboxSpec(sandbox_id=f"b{uuid.uuid4().hex[:10]}", image=IMAGE, pids_limit=PIDS_LIMIT)


async def _answers(handle) -> None:
    client = await AgentClient.connect(handle.socket_path, handle)
    try:
        got = await client.exec("echo hi", shell=True)
        assert got.stdout == "hi\n", got
    finally:
        client.close()


async def _start(rt) -> tuple[object, float]:
    t = time.perf_counter()
    handle = await rt.create(_spec())
    await _answers(handle)
    return handle, time.perf_counter() - t


async def _runsc_floor_bundle(rt, state: Path, code: str = "print('hi')") -> Path:
    """The floor's OCI bundle, made once: the bench image's root, read-only, whose one process is
    the image's python3 running ``code`` (printing ``hi``)."""
    lower, image_env = await image_lower(_spec(), rt.settings)
    path = image_env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    python = image_python(state / "no-upper", lower, path)
    if python is None:
        raise RuntimeError(f"no python3 in {IMAGE}'s root")
    bundle = state / "floor-bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                    "args": [python, "-I", "-S", "-c", code], "env": [f"PATH={path}"]},
        "root": {"path": lower, "readonly": True},
        "hostname": "floor",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
    }))
    return bundle


def _bare_flags(rt, root: Path) -> list[str]:
    """The runtime's own runsc flags for a default sandbox (no network), with a ``--root`` of the
    floor's own."""
    return [f"--root={root}" if flag.startswith("--root=") else flag for flag in rt._flags(_spec())]


async def _runsc_floor(rt, bundle: Path) -> float:
    """Seconds of one bare ``runsc run`` of ``bundle`` until it exits (``_bare_flags``, its
    ``--root`` beside the bundle)."""
    flags = _bare_flags(rt, bundle.parent / "floor-runsc")
    cid = f"bench-floor-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(rt.runsc, *flags, "run", "--bundle", str(bundle), cid,
                                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    took = time.perf_counter() - t
    await (await asyncio.create_subprocess_exec(rt.runsc, *flags, "delete", "--force", cid,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)).wait()
    if proc.returncode or out.strip() != b"hi":
        raise RuntimeError(f"bare runsc run failed (exit {proc.returncode}): {out[-300:]!r}")
    return took


class RunscRestoreFloor:
    """The least a gVisor restore costs on this machine: a bare ``runsc restore --detach`` until
    runsc returns with the container running, from a checkpoint taken once of a bare container
    (``_runsc_floor_bundle``'s root, read-only, its one process the image's python3 idling: no
    overlay, no binds, no agent), with ``_bare_flags``.
    ``async with RunscRestoreFloor(state) as floor: seconds = await floor.sample()``."""

    def __init__(self, state: Path):
        self.state = state
        self.rt = get_runtime_class("gvisor")(Settings(state_dir=state / "rt"), "bench-restore-floor")

    async def _runsc(self, *args: str, check: bool = True) -> None:
        flags = _bare_flags(self.rt, self.state / "floor-runsc")
        said = self.state / "runsc.log"  # a file, not a pipe: a detached container holds what it is given
        with open(said, "ab") as out:
            proc = await asyncio.create_subprocess_exec(self.rt.runsc, *flags, *args, stdin=subprocess.DEVNULL,
                                                        stdout=out, stderr=subprocess.STDOUT)
            await proc.wait()
        if check and proc.returncode:
            raise RuntimeError(f"bare runsc {args[0]} failed (exit {proc.returncode}): {said.read_bytes()[-300:]!r}")

    async def __aenter__(self) -> "RunscRestoreFloor":
        self.bundle = await _runsc_floor_bundle(self.rt, self.state, "import time\nwhile True: time.sleep(1)")
        self.image = self.state / "floor-image"
        self.image.mkdir(exist_ok=True)
        cid = f"bench-floor-{uuid.uuid4().hex[:8]}"
        await self._runsc("run", "--bundle", str(self.bundle), "--detach", cid)
        await self._runsc("checkpoint", "--image-path", str(self.image), cid)
        await self._runsc("delete", "--force", cid, check=False)
        return self

    async def sample(self) -> float:
        """Seconds of one restore; the container is deleted afterwards, untimed."""
        cid = f"bench-floor-{uuid.uuid4().hex[:8]}"
        t = time.perf_counter()
        await self._runsc("restore", "--image-path", str(self.image), "--bundle", str(self.bundle), "--detach", cid)
        took = time.perf_counter() - t
        await self._runsc("delete", "--force", cid, check=False)
        return took

    async def __aexit__(self, *exc) -> None:
        shutil.rmtree(self.state, ignore_errors=True)


def _mb_p50(values: list[float]) -> float | None:
    return round(sorted(values)[len(values) // 2] / 2**20, 1) if values else None


def _group(rt, handle):
    if rt.name == "bwrap":
        return cgroups.Cgroup(handle.runtime_id)
    if rt.name == "local" and handle.extra.get("cgroup"):
        return cgroups.Cgroup(handle.extra["cgroup"])
    return None


async def _backend(ctx: Context, name: str, state: Path) -> list[dict]:
    rt = get_runtime_class(name)(Settings(state_dir=state / name, allow_host_paths=True), "bench-snapshots")
    await rt.start()
    records: list[dict] = []
    try:
        # 10 even in --quick: gVisor's p50 of 5 moved by 17 ms between two runs of one hour (249.5
        # and 266.8), as much as its distance to the 250 ms target
        n = ctx.n(10, 20)
        starts, handles, bare = [], [], []
        floor_bundle = await _runsc_floor_bundle(rt, state / "floor") if name == "gvisor" else None
        # The first start on this fresh state dir prepares the image's root (2.2-2.7 s on bwrap
        # here): reported on its own (first_start_ms), not as one of the starts, whose p95 it was.
        first, first_s = await _start(rt)
        await rt.destroy(first)
        for _ in range(n):
            handle, took = await _start(rt)
            starts.append(took)
            handles.append(handle)
            if floor_bundle is not None:  # gvisor's floor, alternating with the starts
                bare.append(await _runsc_floor(rt, floor_bundle))
        for handle in handles[1:]:
            await rt.destroy(handle)
        handle = handles[0]
        records.append(record("sandbox_start_ms", name, starts, floor_s=bare or None,
                              floor="bare runsc run of the image's python3 printing hi" if bare else None,
                              first_start_ms=round(first_s * 1e3, 1)))
        start_p50 = records[-1]["p50_ms"]

        client = await AgentClient.connect(handle.socket_path, handle)
        await client.create_session("bench")
        trips = []
        for _ in range(ctx.n(100, 500)):
            t = time.perf_counter()
            await client.run("bench", "echo hi")
            trips.append(time.perf_counter() - t)
        records.append(record("cmd_round_trip_ms", name, trips))

        pauses, floors = [], []
        group = _group(rt, handle)
        for _ in range(ctx.n(5, 20)):  # alternating blocks of 5
            for _ in range(5):
                t = time.perf_counter()
                await rt.pause(handle)
                await rt.unpause(handle)
                pauses.append(time.perf_counter() - t)
            if group is not None:
                for _ in range(5):
                    t = time.perf_counter()
                    await group.set_frozen(True)
                    await group.set_frozen(False)
                    floors.append(time.perf_counter() - t)
        records.append(record("pause_resume_ms", name, pauses, floor_s=floors or None,
                              floor="raw cgroup freeze + thaw" if floors else None))
        assert (await client.exec("echo hi", shell=True)).stdout == "hi\n"  # it runs on after all that

        for size in SIZES_MB:
            await client.exec(f'head -c {size}m /dev/urandom > "$HOME/bench-{size}"', shell=True, timeout=120)
            took, frozen, copies = [], [], []
            for _ in range(ctx.n(3, 10)):
                t = time.perf_counter()
                snap = await rt.snapshot(handle, f"bench-{uuid.uuid4().hex[:8]}", "bench")
                took.append(time.perf_counter() - t)
                frozen.append(snap.took_ms)
                await rt.delete_snapshot(snap)
                if name in ("bwrap", "gvisor", "local"):  # floor: copying the same writable layer
                    layer = Path(handle.run_dir).parent / ("work" if name == "local" else "upper")
                    target = Path(tempfile.mkdtemp(dir=state))
                    t = time.perf_counter()
                    subprocess.run(["cp", "-a", f"{layer}/.", str(target)], check=True)
                    copies.append(time.perf_counter() - t)
                    shutil.rmtree(target)
            records.append(record("snapshot_ms", name, took, floor_s=copies or None, size_mb=size,
                                  frozen_p50_ms=round(sorted(frozen)[len(frozen) // 2], 2),
                                  floor="cp -a of the layer" if copies else None))
            await client.exec(f'rm -f "$HOME/bench-{size}"', shell=True)

        # fork(8) against its floor, 8 plain starts at once (what 8 children cost on this machine
        # whatever fork does), in alternating blocks; once over the layer as it is, once with
        # 100 MB more in it (children link it, they do not copy it: rock.runtime.layers).
        for extra_mb in FORK_LAYER_MB:
            if extra_mb:
                await client.exec(f'head -c {extra_mb}m /dev/urandom > "$HOME/fork-{extra_mb}"', shell=True, timeout=120)
            forks, plain8, child_mem, plain_mem, host_mem = [], [], [], [], []
            for _ in range(ctx.n(2, 5)):
                available = available_bytes()
                t = time.perf_counter()
                snap, children = await rt.fork(handle, 8, "bench")
                await asyncio.gather(*(_answers(c) for c in children))
                forks.append(time.perf_counter() - t)
                host_mem.append((available - available_bytes()) / 8)
                child_mem += [m for m in [(await rt.stats(c)).memory_bytes for c in children] if m]
                for child in children:
                    await rt.destroy(child)
                await rt.delete_snapshot(snap)
                t = time.perf_counter()
                plain = await asyncio.gather(*(rt.create(_spec()) for _ in range(8)))
                await asyncio.gather(*(_answers(c) for c in plain))
                plain8.append(time.perf_counter() - t)
                plain_mem += [m for m in [(await rt.stats(c)).memory_bytes for c in plain] if m]
                for other in plain:
                    await rt.destroy(other)
            rec = record("fork_8_ready_ms", name, forks, floor_s=plain8, floor="8 plain starts at once",
                         start_p50_ms=start_p50, layer_extra_mb=extra_mb)
            rec["ratio_to_one_start"] = round(rec["p50_ms"] / start_p50, 2) if start_p50 else None
            records.append(rec)
            records.append({"metric": "fork_child_memory_mb", "backend": name, "n": len(child_mem),
                            "layer_extra_mb": extra_mb, "cgroup_p50_mb": _mb_p50(child_mem),
                            "floor_cgroup_p50_mb": _mb_p50(plain_mem), "floor": "a plain sandbox's cgroup",
                            "host_available_drop_per_child_mb": _mb_p50(host_mem)})
            if extra_mb:
                await client.exec(f'rm -f "$HOME/fork-{extra_mb}"', shell=True)

        if rt.full_snapshots:
            # Floors, alternating with the forks: the same number of children restored from a full
            # snapshot taken beforehand (the restores alone, no checkpoint), and as many plain starts.
            fulls, per_child, restores, plains, snaps = [], [], [], [], []
            kids = 4
            for _ in range(ctx.n(2, 5)):
                t = time.perf_counter()
                snap, children = await rt.fork(handle, kids, "bench", mode="full")
                await asyncio.gather(*(_answers(c) for c in children))
                fulls.append(time.perf_counter() - t)
                per_child.append(fulls[-1] / kids)
                for child in children:
                    await rt.destroy(child)
                t = time.perf_counter()
                children = await asyncio.gather(*(rt.start_from(snap) for _ in range(kids)))
                await asyncio.gather(*(_answers(c) for c in children))
                restores.append(time.perf_counter() - t)
                for child in children:
                    await rt.destroy(child)
                await rt.delete_snapshot(snap)
                t = time.perf_counter()
                plain = await asyncio.gather(*(rt.create(_spec()) for _ in range(kids)))
                await asyncio.gather(*(_answers(c) for c in plain))
                plains.append(time.perf_counter() - t)
                for other in plain:
                    await rt.destroy(other)
                client.close()  # the parent's agent was restored: connect again
                client = await AgentClient.connect(handle.socket_path, handle)
                t = time.perf_counter()
                snap = await rt.snapshot(handle, f"bench-{uuid.uuid4().hex[:8]}", "bench", mode="full")
                snaps.append(time.perf_counter() - t)
                await rt.delete_snapshot(snap)
                client.close()
                client = await AgentClient.connect(handle.socket_path, handle)
            records.append(record("full_fork_ready_ms", name, fulls, floor_s=restores, children=kids,
                                  floor=f"{kids} restores at once from a snapshot taken before",
                                  per_child_p50_ms=round(sorted(per_child)[len(per_child) // 2] * 1e3, 1),
                                  # the target: 250 ms a child at p99 (api_full_fork_ready_ms's too)
                                  per_child_p99_ms=round(percentile(per_child, 0.99) * 1e3, 1),
                                  full_snapshot_p50_ms=round(sorted(snaps)[len(snaps) // 2] * 1e3, 1),
                                  plain_starts_at_once_p50_ms=round(sorted(plains)[len(plains) // 2] * 1e3, 1)))
        client.close()
        await rt.destroy(handle)
    finally:
        await rt.reap(set())
        await rt.close()
    return records


async def run(ctx: Context) -> list[dict]:
    state = Path(tempfile.mkdtemp(prefix="rock-bench-snap-", dir="/tmp"))
    names = list(ctx.backends)
    if "gvisor" not in names and get_runtime_class("gvisor").available() is None:
        names.append("gvisor")
    records = []
    try:
        for name in names:
            ctx.progress(f"snapshots: {name}")
            records += await _backend(ctx, name, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return records + await env_fork.run(ctx, names)
