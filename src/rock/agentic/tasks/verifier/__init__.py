"""The verifier: the hidden tests run on the agent's changes in a fresh sandbox, under a supervisor
that no change of the agent's can steer (``box/supervise.py`` says how, in the sandbox's terms).

    sandbox of the verifier image   task image (+ the runner's pinned pytest for runner "pytest")
        the agent's changes applied to the workspace; tests/ at /tests; box/ at /opt/rock/verify
        python3 -I -S /opt/rock/verify/supervise.py SPEC     (root)
            the tests as an unprivileged user; every process of that user ended; then
            one JSON document on the supervisor's stdout: exit code, results, reward.txt, output

What the harness reads is only that document, the supervisor's own stdout: not a file the tests'
user could write, and nothing after a process of theirs could still run.

Runners (``[verifier] runner`` in task.toml):

- ``pytest`` (the built-in suites): pytest from the verifier image, pinned here (``PACKAGES``) and
  installed into a copy of the task's image by the env image builder (pip in a build sandbox,
  once per base image, found by content afterwards), never the host's site-packages; no plugin
  autoload; no configuration file of the workspace's; an import path where the workspace comes
  last; one pytest start per verification. ``tests/config.json`` names the test files
  (``test_files``), the workspace's source folders (``pythonpath``) and the folder of tests/
  copied over the workspace first (``overlay``).
- ``script`` (the default, Harbor's tasks): ``bash /tests/test.sh`` as the unprivileged user; its
  reward.txt / results.json read once all its processes are gone.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rock.actions import Command
from rock.agentic.tasks.errors import TaskError

BOX = Path(__file__).with_name("box")
BOX_FILES = ("supervise.py", "pytest_main.py", "pytest.ini", "rock_verify_report.py", "grade.py")
WHERE = "/opt/rock/verify"
SITE = "/opt/rock/site"  # where the env image builder installs the runner's packages
RUNNERS = ("script", "pytest")
# The runner's packages, pinned: pytest 9.0.3 and exactly what it imports (its declared
# dependencies on Python 3.11), nothing else, so no other plugin exists to be loaded.
PACKAGES = ["pytest==9.0.3", "pluggy==1.6.0", "iniconfig==2.3.0", "packaging==26.2", "pygments==2.20.0"]
# Started with the image's python3, or the host's interpreter mounted read-only when the image has
# none; either way isolated (-I) and without site (-S).
LAUNCH = 'command -v python3 >/dev/null 2>&1 && exec python3 -I -S "$@"; exec "$ROCK_HOST_PYTHON" -I -S "$@"'
# The supervisor's own margin past the tests' time limit (its set-up, the kill, the report).
MARGIN_S = 60.0


def spec(base: str):
    """The verifier image's spec: the task's image plus the runner's pinned packages."""
    from rock.envs.images import EnvImageSpec

    return EnvImageSpec(base=base, packages=PACKAGES, no_deps=True, imports=["pytest"])


_images: dict[str, str] = {}


async def image(task, progress=None) -> str | None:
    """The verifier sandbox's image: the task's own for ``script``; for ``pytest`` the task's image
    with the pinned runner (built when missing, with ``progress`` lines; once per base)."""
    if task.runner != "pytest":
        return None
    if not task.image:
        raise TaskError(f"task {task.task_id}: runner \"pytest\" needs [environment] docker_image (the runner is "
                        "installed into a copy of it), not an environment/Dockerfile", "BadTask")
    try:
        return await image_for(task.image, progress)
    except TaskError as exc:
        raise TaskError(f"task {task.task_id}: {exc.message}", exc.kind) from None


async def image_for(base: str, progress=None) -> str:
    """The tag of ``base`` plus the runner's pinned packages (built when missing: minutes, once)."""
    if base not in _images:
        from rock.config import Settings
        from rock.envs.errors import EnvError
        from rock.envs.images import ImageBuilder

        settings = Settings()
        try:
            built = await ImageBuilder(settings.state_dir, settings.host_python, settings).ensure(spec(base), progress)
        except EnvError as exc:
            raise TaskError(f"the verifier image (pytest for {base}) could not be built: {exc.message}",
                            "BuildFailed") from None
        _images[base] = built.tag
    return _images[base]


def supervisor_spec(task, timeout: float) -> dict[str, Any]:
    """The supervisor's spec for ``task`` (its SPEC_JSON): the mode, workdir, timeout in seconds and environment,
    plus the pytest files, import path and overlay for runner ``pytest`` or the test.sh path for runner
    ``script``."""
    out: dict[str, Any] = {"mode": task.runner, "workdir": task.workdir, "timeout": timeout,
                           "env": dict(task.verifier_env)}
    if task.runner == "pytest":
        conf = task.runner_config
        out["overlay"] = [f"/tests/{conf['overlay']}"] if conf.get("overlay") else []
        out["pytest"] = {"files": list(conf["test_files"]), "pythonpath": list(conf.get("pythonpath") or ["."]),
                         "site": [SITE]}
    else:
        out["script"] = "/tests/test.sh"
    return out


@functools.cache
def box_files() -> Path:
    """A folder of exactly the files the sandbox needs (no __init__ or bytecode of the host's)."""
    folder = Path(tempfile.mkdtemp(prefix="rock-verify-box-"))
    for name in BOX_FILES:
        shutil.copyfile(BOX / name, folder / name)
    return folder


async def run(box, task, timeout: float) -> dict:
    """The supervisor in ``box`` (the verifier's sandbox, the changes and /tests already there):
    its report, or a TaskError naming the task when it could not give one."""
    await box.upload_dir(box_files(), WHERE)
    argv = ["sh", "-c", LAUNCH, "sh", f"{WHERE}/supervise.py", json.dumps(supervisor_spec(task, timeout))]
    r = await box.execute(Command(command=argv, cwd="/", timeout=timeout + MARGIN_S))
    try:
        report = json.loads(r.stdout)
    except ValueError:
        raise TaskError(f"task {task.task_id}: the verifier's supervisor gave no report (exit {r.exit_code}"
                        f"{', timed out' if r.timed_out else ''}): {(r.stderr or r.stdout)[-500:]}",
                        "VerifierFailed") from None
    if report.get("error"):
        raise TaskError(f"task {task.task_id}: {report['error']}", "VerifierFailed")
    return report
