"""Each terminal agent's memory need: the peak memory of its sandbox during a real rollout (harness
``claude-code``, ``codex``, ``qwen-code``, ``opencode`` with the oracle policy over humaneval-repo tasks,
docker backend), read from the container's memory cgroup (``memory.peak`` under cgroup v2,
``memory.max_usage_in_bytes`` under v1: the kernel's own high-water mark, which counts the agent, Node,
its tool processes and the page cache of what they wrote, as the task's ``memory_mb`` limit does). The
cgroup is read every 50 ms while the sandbox lives; its last reading is the rollout's peak. Beside it the
largest anonymous memory seen (``total_rss`` / ``anon``: the processes' own memory, which reclaiming the
page cache cannot free), sampled at the same rate.

Record ``agent_memory_peak_mb`` per agent: the peak of each rollout (max, median) and the largest anonymous
memory (``anon_max_mb``), with the task memory it ran under. ``rock.agentic.terminal_agents.MEMORY_MB`` holds the need documented in
docs/agentic-tasks.md. ``ROCK_BENCH_AGENTS=codex,opencode`` picks some; ``ROCK_BENCH_AGENT_TASKS``
(default 3) sets the rollouts per agent. A full-run part (or ``--only agent_memory``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
from pathlib import Path

from bench.admin import AdminProcess
from bench.report import Context

AGENTS = ("claude-code", "codex", "qwen-code", "opencode")


def _cgroup(container_id: str) -> tuple[int, int] | None:
    """(the cgroup's high-water mark, its anonymous memory now) in bytes; None when it is gone."""
    for folder, peak, anon in ((f"/sys/fs/cgroup/memory/docker/{container_id}", "memory.max_usage_in_bytes", "total_rss"),
                               (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope", "memory.peak", "anon")):
        try:
            stat = dict(line.split() for line in Path(folder, "memory.stat").read_text().splitlines())
            return int(Path(folder, peak).read_text()), int(stat[anon])
        except (OSError, ValueError, KeyError):
            continue
    return None


class PeakWatch:
    """Reads the memory high-water mark and the anonymous memory (the processes' own, which no reclaim frees) of
    every running container of ``image`` that the admin of ``state_dir`` started, until stopped."""

    def __init__(self, image: str, state_dir: str):
        import docker

        self.client, self.image = docker.from_env(), image
        self.filters = {"ancestor": image, "label": f"rock.state_dir={os.path.realpath(state_dir)}"}
        self.peaks: dict[str, int] = {}
        self.anon: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ids: list[str] = []
        tick = 0
        while not self._stop.is_set():
            if tick % 10 == 0:  # the engine is asked for new containers every 0.5 s, the cgroup files every 50 ms
                ids = [c.id for c in self.client.containers.list(filters=self.filters)]
            for cid in ids:
                got = _cgroup(cid)
                if got is not None:
                    self.peaks[cid] = max(got[0], self.peaks.get(cid, 0))
                    self.anon[cid] = max(got[1], self.anon.get(cid, 0))
            tick += 1
            self._stop.wait(0.05)

    def stop(self) -> tuple[list[int], list[int]]:
        self._stop.set()
        self._thread.join()
        return list(self.peaks.values()), list(self.anon.values())


async def measure(url: str, state_dir: str, agent: str, n: int) -> dict:
    from rock.agentic import terminal_agents
    from rock.agentic.tasks.jobs import run_job
    from rock.agentic.tasks.rollout import RolloutOptions
    from rock.agentic.tasks.suites import open_suite

    suite = open_suite("humaneval-repo")
    ids = suite.ids()[:n]
    task = suite.get(ids[0])
    image = (await terminal_agents.ensure_image(agent, task.image or terminal_agents.BASE)).tag
    watch = PeakWatch(image, state_dir)
    try:
        summary = await run_job("humaneval-repo", RolloutOptions(base_url=url, harness=agent, policy="oracle"),
                                tasks=ids, concurrency=1, record=False)
    finally:
        peaks, anon = watch.stop()
    mb, rss = [p / 2**20 for p in peaks], [a / 2**20 for a in anon]
    return {"metric": "agent_memory_peak_mb", "backend": "docker", "agent": agent, "n": len(mb),
            "max_mb": round(max(mb), 1) if mb else None, "p50_mb": round(statistics.median(mb), 1) if mb else None,
            "anon_max_mb": round(max(rss), 1) if rss else None,
            "task_memory": task.memory, "mean_reward": summary["mean_reward"],
            "errors": [r["error"] for r in summary["records"] if r["error"]][:3]}


async def run(ctx: Context) -> list[dict]:
    if "docker" not in ctx.backends:
        ctx.progress("agent_memory: needs the docker backend (its containers' memory cgroups)")
        return []
    agents = [a for a in os.environ.get("ROCK_BENCH_AGENTS", ",".join(AGENTS)).split(",") if a]
    n = int(os.environ.get("ROCK_BENCH_AGENT_TASKS", "3"))
    out = []
    with AdminProcess("docker") as admin:
        for agent in agents:
            ctx.progress(f"agent_memory: {agent}, {n} oracle rollouts")
            out.append(await measure(admin.url, admin.state, agent, n))
            ctx.progress(f"agent_memory: {out[-1]}")
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run(Context(backends=["docker"], quick=True))), indent=1))
