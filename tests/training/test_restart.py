"""Instance ids outlive an admin restart: the new admin serves them from its store, the task's
state goes on where it was, and an id whose sandbox is gone is answered as released."""

from __future__ import annotations

import pytest

from rock.sdk.training import TrainingError, TrainingSandbox
from rock.training.policies import OraclePolicy
from tests.admin import harness

pytestmark = pytest.mark.docker


def test_instances_outlive_an_admin_restart():
    first = harness.Admin("docker").start()
    second = None
    try:
        task = "multi_turn_base_0"
        script = list(OraclePolicy().actions("bfcl", task))
        with TrainingSandbox(first.url) as box:
            iid = box.create_instance("bfcl", task)["info"]["instance_id"]
            assert not box.step(iid, script[0])["is_terminated"]  # the first turn's calls change the backend
            gone = box.create_instance("bfcl", "simple_python_1")["info"]["instance_id"]
            other = box.create_instance("humaneval", "HumanEval/3")["info"]["instance_id"]
        humaneval_sandbox = next(i for i in first.call(_rows(first)) if i["instance_id"] == other)["sandbox_id"]
        first.stop(stop_sandboxes=False)  # sandboxes keep running across admin restarts
        # While no admin runs, one instance's sandbox goes away.
        second = harness.Admin("docker", state_dir=first.state_dir)
        _stop_sandbox(humaneval_sandbox)
        second.start()
        with TrainingSandbox(second.url) as box:
            listed = {i["instance_id"] for i in second.call(_rows(second))}
            assert {iid, gone} <= listed and other not in listed
            out = None
            for action in script[1:]:
                out = box.step(iid, action)
                if out["is_terminated"]:
                    break
            assert out["is_terminated"] and out["reward"] == 1.0  # the state from before the restart was kept
            assert box.release_instance(gone) and box.release_instance(iid)
            with pytest.raises(TrainingError) as err:
                box.step(other, {"role": "assistant", "content": "x"})
            assert err.value.status_code == 410 and "restarted" in err.value.message
        assert second.call(_rows(second)) == []
    finally:
        (second if second is not None and second.server else first).stop(stop_sandboxes=True)


def _rows(admin):
    from rock.admin.training.routes import service

    async def rows():
        return service(admin.app).list(None)

    return rows


def _stop_sandbox(sandbox_id):
    import docker

    containers = docker.from_env().containers.list(filters={"label": f"rock.sandbox_id={sandbox_id}"})
    assert len(containers) == 1
    containers[0].remove(force=True)
