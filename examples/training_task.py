"""A training task through AgentScope's TrainingSandbox API (seed 004): create an instance, step
it with the assistant's messages, evaluate, release.

Run against a running admin: `rock admin start`, then `python examples/training_task.py`.
Suites: bfcl, humaneval, reasoning_gym; `rock job run` runs a policy over a whole split.
"""

from rock.sdk.training import TrainingSandbox
from rock.training.policies import OraclePolicy


def main() -> None:
    task_id = "basic_arithmetic/1/3"  # reasoning_gym: generator/seed/index
    with TrainingSandbox() as box:  # ROCK_BASE_URL or http://127.0.0.1:8080
        for policy, answers in (("a wrong answer", [{"role": "assistant", "content": "<answer>banana</answer>"}]),
                                ("the oracle", list(OraclePolicy().actions("reasoning_gym", task_id)))):
            first = box.create_instance(env_type="reasoning_gym", task_id=task_id)
            instance = first["info"]["instance_id"]
            print(f"task {task_id}: {first['state'][-1]['content'].splitlines()[0][:80]}")
            for message in answers:  # a model's messages go here
                out = box.step(instance, message)
            reward = box.evaluate(instance)
            print(f"  {policy}: terminated={out['is_terminated']}, reward {reward}")
            assert reward == (1.0 if policy == "the oracle" else 0.0)
            assert box.release_instance(instance)


if __name__ == "__main__":
    main()
