"""``rock.sdk.training``: AgentScope's TrainingSandbox API against a ROCK admin.

    from rock.sdk.training import TrainingSandbox

    with TrainingSandbox() as box:                      # ROCK_BASE_URL or http://127.0.0.1:8080
        ids = box.get_env_profile(env_type="bfcl", split="train")
        first = box.create_instance(env_type="bfcl", task_id=ids[0])
        out = box.step(first["info"]["instance_id"], {"role": "assistant", "content": "..."})
        reward = box.evaluate(first["info"]["instance_id"])
        box.release_instance(first["info"]["instance_id"])

``AsyncTrainingSandbox`` has the same methods as coroutines. Errors raise ``TrainingError``
with the service's message and ``kind`` (``TaskNotFound``, ``InstanceReleased``, ...).
"""

from rock.errors import TrainingError
from rock.sdk.training.client import AsyncTrainingSandbox, TrainingSandbox

__all__ = ["TrainingSandbox", "AsyncTrainingSandbox", "TrainingError"]
