"""One error vocabulary: the task error the agentic and the training tasks raise is one class, with
its kind's status from the one kind -> status table; and the training tasks' package, shipped into
env images without rock, still raises it (its copy of the error tree travels with it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from rock import errors
from rock.agentic.tasks.errors import TaskError as AgenticTaskError
from rock.training.suites import task_files
from rock.training.tasks.common import TaskError as TrainingTaskError
from rock.training.tasks.taskenv import TaskEnv


def test_one_task_error_with_the_tables_status():
    assert AgenticTaskError is TrainingTaskError is errors.TaskError
    assert errors.TaskError("no such task", "TaskNotFound").status_code == 404
    assert errors.TaskError("bad task").status_code == 400 and errors.TaskError("bad task").kind == "BadTask"
    # every family answers from the same table
    assert errors.AgentError("x", kind="FileNotFound").status_code == 404
    assert errors.AgentError("x", kind="SomethingElse").status_code == 400  # the class's own for an unknown kind
    assert errors.EnvError("x", "EnvLost").status_code == errors.STATUS["EnvLost"] == 410
    assert errors.TrainingError("x", "InstanceReleased").status_code == 410
    assert set(errors.ENV_STATUS) | set(errors.TRAINING_STATUS) <= set(errors.STATUS)
    # a class that is not a family keeps its status whatever kind it carries
    assert errors.SandboxNotFound("x", kind="BadRequest").status_code == 404


def test_a_task_error_in_process_is_answered_in_the_observation():
    env = TaskEnv("no-such-type", "t")
    out, _ = env.reset()
    assert out["error"]["kind"] == "UnknownEnvType" and "no-such-type" in out["error"]["message"], out


def test_the_shipped_task_package_raises_it_without_rock(tmp_path):
    for name, src in task_files().items():
        dest = tmp_path / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    assert (tmp_path / "rock_training_tasks" / "errors.py").exists()
    # -I -S: no site-packages, no PYTHONPATH, no cwd: the image's situation, where rock is not importable
    script = ("import sys, json; sys.path.insert(0, sys.argv[1])\n"
              "try:\n    import rock\n    print(json.dumps({'rock': True})); raise SystemExit\n"
              "except ImportError:\n    pass\n"  # a control: rock really is out of reach
              "from rock_training_tasks.common import TaskError, check_action\n"
              "try:\n    check_action('not a message')\n"
              "except TaskError as exc:\n"
              "    print(json.dumps({'rock': False, 'module': type(exc).__module__, 'kind': exc.kind,"
              " 'status': exc.status_code, 'message': exc.message}))\n")
    run = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert not out["rock"], "rock was importable: the test did not stand for an env image"
    assert out["module"] == "rock_training_tasks.errors"
    assert (out["kind"], out["status"]) == ("BadRequest", 400) and "message object" in out["message"]
