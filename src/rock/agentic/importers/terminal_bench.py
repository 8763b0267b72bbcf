"""terminal-bench tasks as Harbor task folders, mapped as Harbor's own terminal-bench mapper
(``harbor.mappers.terminal_bench`` in Harbor 0.25) maps them:

    task.yaml            instruction -> instruction.md; max_agent_timeout_sec (360) and
                         max_test_timeout_sec (60) -> [agent] / [verifier] timeout_sec; author,
                         difficulty, category, tags -> [metadata]
    docker-compose.yaml  its main service ("client", else the first) gives the build context,
                         copied into environment/; its environment, working_dir, expose and
                         entrypoint are appended to the Dockerfile, with ENV TEST_DIR=/tests
    run-tests.sh         tests/test.sh, $TEST_DIR read as /tests, plus the reward: 1 when it
                         exits 0, else 0, written to /logs/verifier/reward.txt
    solution.sh          solution/solve.sh (a solution.yaml is refused, as Harbor refuses it)
    tests/               tests/
    anything else        environment/

ROCK runs one sandbox per phase, so a compose file with more than the main service (or with
anything that cannot be folded into the Dockerfile) is refused naming the file. The agent's
working folder ([environment] workdir) is the Dockerfile's last WORKDIR, else the service's
working_dir, else /app (terminal-bench's convention).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dockerfile
import yaml

from rock.agentic.importers.common import (
    NETWORK_MODE,
    ImportResult,
    discard,
    fresh_folder,
    relative_path,
    task_name,
    toml_dumps,
    write_script,
)
from rock.agentic.tasks.errors import TaskError

DEFAULT_WORKDIR = "/app"
REWARD_SUFFIX = """
_EXIT_CODE=$?
if [ $_EXIT_CODE -eq 0 ]; then
    echo 1 > /logs/verifier/reward.txt
else
    echo 0 > /logs/verifier/reward.txt
fi
exit $_EXIT_CODE
"""
_DEFAULT_VOLUMES = {"${T_BENCH_TASK_LOGS_PATH}:${T_BENCH_CONTAINER_LOGS_PATH}",
                    "${T_BENCH_TASK_AGENT_LOGS_PATH}:${T_BENCH_CONTAINER_AGENT_LOGS_PATH}"}
_DEFAULT_ENV = "TEST_DIR=${T_BENCH_TEST_DIR}"
_FOLDED = {"build", "image", "container_name", "command", "volumes", "environment", "working_dir", "expose",
           "entrypoint", "platform"}
_META = ("author_name", "author_email", "difficulty", "category", "tags", "estimated_duration_sec",
         "expert_time_estimate_min", "junior_time_estimate_min")


def task_dirs(source: Path) -> list[Path]:
    """``source`` itself when it holds a task.yaml, else its sub-folders that do."""
    source = Path(source)
    if not source.is_dir():
        raise TaskError(f"{source}: no such folder of terminal-bench tasks", "BadTask")
    if (source / "task.yaml").is_file():
        return [source]
    found = sorted(p for p in source.iterdir() if p.is_dir() and (p / "task.yaml").is_file())
    if not found:
        raise TaskError(f"{source}: holds no terminal-bench task (a folder with task.yaml)", "BadTask")
    return found


def import_tasks(source: Path, out: Path) -> ImportResult:
    """Every terminal-bench task under ``source`` (or ``source`` itself) as a Harbor task folder under ``out``;
    a task that cannot be mapped fails naming the file at fault, and the others go on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = ImportResult()
    for src in task_dirs(source):
        target = None
        try:
            name = task_name(src.name, f"terminal-bench task {src}")
            _check_tree(src)
            config = _task_yaml(src / "task.yaml")
            target = fresh_folder(out, name)
            _map(src, target, config)
            result.imported.append(target)
        except TaskError as exc:
            if target is not None:
                discard(target)
            result.failed.append((src.name, exc.message))
    return result


def _check_tree(src: Path) -> None:
    # Copies read only the task's own files: a link could pull a file of the host into OUT.
    for p in src.rglob("*"):
        if p.is_symlink():
            raise TaskError(f"{p}: a symbolic link; a task's files must be regular files", "BadTask")


def _task_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: not valid YAML ({exc})", "BadTask") from None
    if not isinstance(data, dict):
        raise TaskError(f"{path}: must be a mapping with an instruction", "BadTask")
    if not isinstance(data.get("instruction"), str) or not data["instruction"].strip():
        raise TaskError(f"{path}: instruction is missing or not text", "BadTask")
    for key in ("max_agent_timeout_sec", "max_test_timeout_sec"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise TaskError(f"{path}: {key} must be a positive number of seconds, not {value!r}", "BadTask")
    return data


def _compose(src: Path) -> tuple[str, dict]:
    """The main service's build context and the service, from docker-compose.yaml (a missing file: the task's
    own folder and Dockerfile)."""
    path = src / "docker-compose.yaml"
    if not path.is_file():
        return ".", {}
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: not valid YAML ({exc})", "BadTask") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict) or not services:
        raise TaskError(f"{path}: names no services", "BadTask")
    extra = [k for k in data if k not in ("services", "version")]
    if len(services) != 1 or extra:
        raise TaskError(f"{path}: ROCK runs a task in one sandbox; this file has {len(services)} services"
                        + (f" and {', '.join(extra)}" if extra else ""), "BadTask")
    name = "client" if "client" in services else next(iter(services))
    service = services[name]
    if not isinstance(service, dict):
        raise TaskError(f"{path}: service {name} must be a mapping", "BadTask")
    unknown = sorted(set(service) - _FOLDED)
    if unknown:
        raise TaskError(f"{path}: service {name} sets {', '.join(unknown)}, which a Dockerfile cannot hold", "BadTask")
    volumes = service.get("volumes") or []
    if not isinstance(volumes, list) or not set(volumes) <= _DEFAULT_VOLUMES:
        raise TaskError(f"{path}: service {name} mounts volumes of its own; ROCK's sandboxes take none", "BadTask")
    build = service.get("build", {})
    context = build.get("context", ".") if isinstance(build, dict) else build if isinstance(build, str) else "."
    if context not in (".", "./"):
        relative_path(context.removeprefix("./").rstrip("/"), str(path))
        if not (src / context).is_dir():
            raise TaskError(f"{path}: build context {context!r} is not a folder of the task", "BadTask")
    return ("." if context in (".", "./") else context.removeprefix("./").rstrip("/")), service


def _additions(service: dict, path: Path) -> list[str]:
    lines = ["ENV TEST_DIR=/tests"]
    env = service.get("environment") or []
    pairs = env.items() if isinstance(env, dict) else [e.split("=", 1) if "=" in e else (e, None) for e in env]
    for key, value in pairs:
        if f"{key}={value}" == _DEFAULT_ENV:
            continue
        lines.append(f"ENV {key}={json.dumps(str(value))}" if value is not None else f"ENV {key}")
    workdir = service.get("working_dir")
    if isinstance(workdir, str) and "${" not in workdir:
        lines.append(f"WORKDIR {workdir}")
    expose = service.get("expose")
    if expose is not None:
        lines += [f"EXPOSE {p}" for p in (expose if isinstance(expose, list) else [expose])]
    entry = service.get("entrypoint")
    if entry is not None:
        lines.append(f"ENTRYPOINT {json.dumps(entry if isinstance(entry, list) else [entry])}")
    if any("\n" in line for line in lines):
        raise TaskError(f"{path}: a value spans lines, which a Dockerfile line cannot hold", "BadTask")
    return lines


def _workdir(text: str, path: Path) -> str:
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise TaskError(f"{path}: not a Dockerfile ({exc})", "BadTask") from None
    dirs = [c.value[0] for c in commands if c.cmd.upper() == "WORKDIR" and c.value]
    last = dirs[-1] if dirs else DEFAULT_WORKDIR
    return last if last.startswith("/") and "$" not in last else DEFAULT_WORKDIR


def _map(src: Path, target: Path, config: dict) -> None:
    if (src / "solution.yaml").exists():
        raise TaskError(f"{src / 'solution.yaml'}: solution.yaml is not supported (nor by Harbor); convert it to "
                        "solution.sh", "BadTask")
    if not (src / "run-tests.sh").is_file():
        raise TaskError(f"{src}: has no run-tests.sh", "BadTask")
    context, service = _compose(src)
    env = target / "environment"
    handled = {"task.yaml", "solution.sh", "run-tests.sh", "tests", "docker-compose.yaml"}
    if context == ".":
        handled.add("Dockerfile")
        if (src / "Dockerfile").is_file():
            env.mkdir()
            shutil.copy(src / "Dockerfile", env / "Dockerfile")
    else:
        handled.add(context.split("/")[0])
        shutil.copytree(src / context, env)
    docker = env / "Dockerfile"
    if not docker.is_file():
        raise TaskError(f"{src}: no Dockerfile in its build context {context!r}", "BadTask")
    text = docker.read_text()
    for what, name in (("tests", "tests"), ("solution.sh", "solution.sh")):
        if any(f"{verb} {prefix}{what}" in text for verb in ("COPY", "ADD") for prefix in ("", "./")):
            if (src / name).is_dir():
                shutil.copytree(src / name, env / name, dirs_exist_ok=True)
            elif (src / name).is_file():
                shutil.copy(src / name, env / name)
    text = text + ("" if text.endswith("\n") else "\n") + "\n# Mapped from docker-compose.yaml\n" + \
        "\n".join(_additions(service, src / "docker-compose.yaml")) + "\n"
    docker.write_text(text)
    workdir = _workdir(text, docker)
    for item in sorted(src.rglob("*")):
        rel = item.relative_to(src)
        if rel.parts[0] in handled or item.is_dir():
            continue
        (env / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(item, env / rel)
    tests = target / "tests"
    if (src / "tests").is_dir():
        shutil.copytree(src / "tests", tests)
    run_tests = (src / "run-tests.sh").read_text()
    write_script(tests / "test.sh", (run_tests + ("" if run_tests.endswith("\n") else "\n") + REWARD_SUFFIX)
                 .replace("$TEST_DIR", "/tests").replace("${TEST_DIR}", "/tests"))
    if (src / "solution.sh").is_file():
        write_script(target / "solution" / "solve.sh", (src / "solution.sh").read_text())
    else:
        raise TaskError(f"{src}: has no solution.sh (the oracle)", "BadTask")
    instruction = config["instruction"]
    (target / "instruction.md").write_text(instruction if instruction.endswith("\n") else instruction + "\n")
    meta = {k: config[k] for k in _META if isinstance(config.get(k), (str, int, float, list))}
    if isinstance(meta.get("tags"), list):
        meta["tags"] = [str(t) for t in meta["tags"]]
    (target / "task.toml").write_text(toml_dumps({
        "metadata": meta,
        "agent": {"timeout_sec": float(config.get("max_agent_timeout_sec") or 360.0)},
        "verifier": {"timeout_sec": float(config.get("max_test_timeout_sec") or 60.0)},
        "environment": {"workdir": workdir, "network_mode": NETWORK_MODE}}))
