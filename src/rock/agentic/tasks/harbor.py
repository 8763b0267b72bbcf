"""Tasks in Harbor's layout, as a user brings them or as our suites write them.

    <task>/instruction.md         what the agent is asked to do
    <task>/task.toml              [agent] timeout_sec, [verifier] timeout_sec / env,
                                  [environment] docker_image (a base image) or an environment/Dockerfile,
                                  network_mode / allowed_hosts ([environment], [agent], [verifier])
    <task>/environment/           the image's build context; with docker_image, the files under
                                  environment/workspace/ are the repository the agent works in
    <task>/tests/test.sh          the hidden tests' entry: runs in the verifier's fresh sandbox with
                                  tests/ at /tests and writes the reward to /logs/verifier/reward.txt
    <task>/solution/solve.sh      the reference fix (the oracle), run in the agent's sandbox

``tests/config.json`` (ours, optional, SWE-bench's names) lists ``FAIL_TO_PASS`` and
``PASS_TO_PASS`` test ids: then the reward is SWE-bench's ``resolved`` computed from the per-test
results, not the number test.sh writes. A task id is the folder's name.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rock.agentic.tasks.errors import TaskError, closest

DEFAULT_IMAGE = "python:3.11"
DEFAULT_WORKDIR = "/workspace"
# What an agent's change may not touch: the verifier drops these paths from its diff (pytest
# configuration and plugins would let a "fix" decide the tests' outcome). A task adds its own.
PROTECTED = ["tests/*", "test/*", "*/tests/*", "conftest.py", "*/conftest.py", "pytest.ini", "tox.ini", "setup.cfg",
             "pyproject.toml", "sitecustomize.py", "usercustomize.py", "*.pth", ".pytest_cache/*"]


@dataclass
class Task:
    """One task folder in Harbor's layout, loaded and checked (``load_task``): the instruction, the agent's image
    (None: ``environment/Dockerfile`` is built) and workdir, the agent and verifier time limits in seconds, the
    verifier's environment, the FAIL_TO_PASS / PASS_TO_PASS test ids when it is graded by tests, the paths the
    agent's change may not touch, and the sandboxes' memory and CPUs."""

    task_id: str
    path: Path
    instruction: str
    image: str | None  # a base image; None: environment/Dockerfile is built
    workdir: str = DEFAULT_WORKDIR
    agent_timeout: float = 600.0
    verifier_timeout: float = 120.0
    verifier_env: dict[str, str] = field(default_factory=dict)
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=lambda: list(PROTECTED))
    metadata: dict = field(default_factory=dict)
    memory: str = "2g"
    cpus: float = 1.0
    runner: str = "script"  # [verifier] runner: "script" (tests/test.sh) or "pytest" (ROCK's hermetic runner)
    runner_config: dict = field(default_factory=dict)  # tests/config.json: test_files, pythonpath, overlay
    # Egress policies per phase (``rock.actions.egress``; None: no network), from Harbor's
    # network_mode / allowed_hosts: the agent's [agent] override or the [environment] baseline;
    # the verifier's only its own [verifier] override (its hidden tests reach nothing otherwise).
    agent_egress: str | dict | None = None
    verifier_egress: str | dict | None = None

    @property
    def workspace(self) -> Path:
        """Host folder of the agent's starting repository (may be absent: the image has it)."""
        return self.path / "environment" / "workspace"

    @property
    def dockerfile(self) -> Path:
        """The Dockerfile built for the agent's image when the task names no ``docker_image``."""
        return self.path / "environment" / "Dockerfile"

    @property
    def tests(self) -> Path:
        """Host folder of the hidden tests, mounted at /tests only in the verifier's sandbox."""
        return self.path / "tests"

    @property
    def solution(self) -> Path:
        """Host folder of the reference fix (``solve.sh``, the oracle)."""
        return self.path / "solution"

    @property
    def graded_by_tests(self) -> bool:
        """True when the task lists FAIL_TO_PASS or PASS_TO_PASS ids: the reward is then SWE-bench's ``resolved``
        from the per-test results, not the number test.sh writes."""
        return bool(self.fail_to_pass or self.pass_to_pass)


def load_task(path: str | Path) -> Task:
    """One task folder, checked: the error names the missing or broken part."""
    root = Path(path)
    if not root.is_dir():
        raise TaskError(f"{root}: not a task folder (a folder with instruction.md, task.toml, environment/, "
                        "tests/test.sh and solution/solve.sh)", "BadTask")
    missing = [part for part in ("instruction.md", "task.toml", "environment", "tests/test.sh", "solution/solve.sh")
               if not (root / part).exists()]
    if missing:
        raise TaskError(f"task {root.name} ({root}) is missing {', '.join(missing)}", "BadTask")
    try:
        conf = tomllib.loads((root / "task.toml").read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TaskError(f"task {root.name}: task.toml is not valid TOML ({exc})", "BadTask") from None
    env = _table(conf, "environment", root)
    agent, verifier = _table(conf, "agent", root), _table(conf, "verifier", root)
    image = env.get("docker_image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise TaskError(f"task {root.name}: [environment] docker_image must be an image name", "BadTask")
    if image is None and not (root / "environment" / "Dockerfile").is_file():
        raise TaskError(f"task {root.name}: environment/ has no Dockerfile and task.toml names no "
                        "[environment] docker_image; give one of them", "BadTask")
    instruction = (root / "instruction.md").read_text()
    if not instruction.strip():
        raise TaskError(f"task {root.name}: instruction.md is empty", "BadTask")
    task = Task(task_id=root.name, path=root, instruction=instruction, image=image,
                workdir=str(env.get("workdir", DEFAULT_WORKDIR)),
                agent_timeout=_seconds(agent, "timeout_sec", 600.0, root),
                verifier_timeout=_seconds(verifier, "timeout_sec", 120.0, root),
                verifier_env={str(k): str(v) for k, v in (verifier.get("env") or {}).items()},
                metadata=dict(conf.get("metadata") or {}),
                memory=f"{int(env.get('memory_mb', 2048))}m", cpus=float(env.get("cpus", 1)))
    task.agent_egress = _egress(agent, env, root, "agent")
    task.verifier_egress = _egress(verifier, {}, root, "verifier")
    task.protected += [str(p) for p in verifier.get("protected", [])]
    task.runner = verifier.get("runner", "script")
    if task.runner not in ("script", "pytest"):
        raise TaskError(f"task {root.name}: [verifier] runner must be \"script\" (tests/test.sh) or \"pytest\" "
                        f"(ROCK's runner), not {task.runner!r}", "BadTask")
    config = root / "tests" / "config.json"
    data = {}
    if config.is_file():
        try:
            data = json.loads(config.read_text())
            task.fail_to_pass, task.pass_to_pass = list(data["FAIL_TO_PASS"]), list(data.get("PASS_TO_PASS", []))
        except (ValueError, KeyError, TypeError) as exc:
            raise TaskError(f"task {root.name}: tests/config.json needs a FAIL_TO_PASS list ({exc})", "BadTask") from None
    if task.runner == "pytest":
        task.runner_config = _runner_config(root, data)
    return task


NETWORK_MODES = ("no-network", "public", "allowlist")


def _egress(phase: dict, baseline: dict, root: Path, name: str) -> str | dict | None:
    """A phase's egress policy from Harbor's fields: ``network_mode`` (no-network, public,
    allowlist) with ``allowed_hosts``, the phase's own or else the baseline's (Harbor's older
    ``allow_internet`` on the baseline too); nothing said: no network."""
    from rock.actions.egress import normalise

    table = phase if "network_mode" in phase else baseline
    mode = table.get("network_mode")
    if mode is None and isinstance(table.get("allow_internet"), bool):
        mode = "public" if table["allow_internet"] else "no-network"
    hosts = table.get("allowed_hosts")
    where = f"task {root.name}: [{name if table is phase else 'environment'}]"
    if mode is None:
        return None
    if mode not in NETWORK_MODES:
        raise TaskError(f"{where} network_mode must be one of {', '.join(NETWORK_MODES)}, not {mode!r}", "BadTask")
    if hosts and mode != "allowlist":
        raise TaskError(f"{where} allowed_hosts is only valid with network_mode = \"allowlist\"", "BadTask")
    if mode == "no-network":
        return None
    if mode == "public":
        return "all"
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise TaskError(f"{where} allowed_hosts must be a list of host names, addresses or CIDRs", "BadTask")
    try:
        return normalise({"allow": hosts}).model_dump()
    except ValueError as exc:
        raise TaskError(f"{where} allowed_hosts: {exc}", "BadTask") from None


def _runner_config(root: Path, data: dict) -> dict:
    """What runner "pytest" needs from tests/config.json, checked: relative paths inside the
    workspace (test files, source folders) and inside tests/ (the overlay)."""
    def relative(value, what: str) -> str:
        if not isinstance(value, str) or not value or value.startswith("/") or ".." in Path(value).parts:
            raise TaskError(f"task {root.name}: tests/config.json {what} must be relative paths inside the "
                            f"workspace, not {value!r}", "BadTask")
        return value

    files = data.get("test_files")
    if not isinstance(files, list) or not files:
        raise TaskError(f"task {root.name}: runner \"pytest\" needs tests/config.json \"test_files\", the test "
                        "files to run (relative to the workspace)", "BadTask")
    paths = data.get("pythonpath", ["."])
    paths = [paths] if isinstance(paths, str) else paths
    overlay = data.get("overlay")
    if overlay is not None and not (root / "tests" / relative(overlay, "overlay")).is_dir():
        raise TaskError(f"task {root.name}: tests/config.json overlay {overlay!r} is not a folder of tests/", "BadTask")
    return {"test_files": [relative(f, "test_files") for f in files],
            "pythonpath": [relative(p, "pythonpath") if p != "." else p for p in paths or ["."]],
            "overlay": overlay}


def _table(conf: dict, name: str, root: Path) -> dict:
    value = conf.get(name) or {}
    if not isinstance(value, dict):
        raise TaskError(f"task {root.name}: [{name}] in task.toml must be a table", "BadTask")
    return value


def _seconds(table: dict, key: str, default: float, root: Path) -> float:
    value = table.get(key, default)
    if not isinstance(value, (int, float)) or value <= 0:
        raise TaskError(f"task {root.name}: {key} must be a positive number of seconds, not {value!r}", "BadTask")
    return float(value)


class TaskFolder:
    """A folder of task folders (a user's, or a built suite's); tasks load when asked for."""

    def __init__(self, root: str | Path, name: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise TaskError(f"{self.root}: no such folder of tasks", "UnknownSuite")
        self.name = name or str(self.root)
        if (self.root / "task.toml").exists() or (self.root / "instruction.md").exists():
            self._ids = [self.root.name]  # one task folder given directly
            self._base = self.root.parent
        else:
            self._ids = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            self._base = self.root
        if not self._ids:
            raise TaskError(f"{self.root}: holds no task folders", "UnknownSuite")

    def ids(self) -> list[str]:
        """The task ids (folder names), sorted; a folder given as one task has just its own."""
        return list(self._ids)

    def get(self, task_id: str) -> Task:
        """The task ``task_id``, loaded and checked; raises TaskError (TaskNotFound, naming the closest ids) for
        one the folder does not hold, or BadTask for a broken one."""
        if task_id not in self._ids:
            raise TaskError(f"{self.name} has no task {task_id!r}{closest(task_id, self._ids)}", "TaskNotFound")
        return load_task(self._base / task_id)
