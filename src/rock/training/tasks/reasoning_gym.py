"""reasoning-gym: procedurally generated questions; task id ``generator/seed/index``, reward from
the generator's own ``score_answer``."""

import re

from .common import COMPLETED, TaskError, check_action, messages_arg

SYSTEM = "Solve the problem. Put your final answer, and nothing else, between <answer> and </answer>."
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
MAX_INDEX = 100000
_datasets = {}


def parse_id(task_id):
    """``generator/seed/index`` as its three parts; a ``TaskError`` for anything else."""
    parts = str(task_id).split("/")
    if len(parts) != 3 or not parts[1].lstrip("-").isdigit() or not parts[2].isdigit():
        raise TaskError("reasoning_gym task ids are generator/seed/index (like basic_arithmetic/1/0), "
                        "not %r" % (task_id,), "TaskNotFound")
    gen, seed, index = parts[0], int(parts[1]), int(parts[2])
    if index >= MAX_INDEX:
        raise TaskError("index %d is past the limit %d" % (index, MAX_INDEX), "TaskNotFound")
    return gen, seed, index


def dataset(gen, seed, size):
    """reasoning-gym's dataset of ``gen`` (made once per generator, seed and size; a bounded cache)."""
    key = (gen, seed, size)
    if key not in _datasets:
        import reasoning_gym
        from reasoning_gym.factory import DATASETS

        if gen not in DATASETS:
            raise TaskError("reasoning_gym has no generator %r" % gen, "TaskNotFound")
        if len(_datasets) > 256:
            _datasets.clear()
        _datasets[key] = reasoning_gym.create_dataset(gen, seed=seed, size=size)
    return _datasets[key]


def extract_answer(content):
    """The answer in ``content``: the last ``<answer>`` block, else the whole text."""
    found = ANSWER_RE.findall(content or "")
    return (found[-1] if found else (content or "")).strip()


class ReasoningGymTask:
    """One reasoning-gym item: the question, one answer, graded by the generator's own ``score_answer``."""

    def __init__(self, task_id, params=None):
        gen, seed, index = parse_id(task_id)
        # The item is the index-th of a dataset of (at least) index+1 items: the same item for any
        # size, since generators draw each item from Random(seed + index).
        self.data = dataset(gen, seed, index + 1)
        self.entry = self.data[index]
        self.task_id, self.generator = task_id, gen
        self.answer = None
        self.done = False

    def create(self):
        """The first messages: how to answer, and the question."""
        return {"state": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.entry["question"]}],
                "info": {"task_id": self.task_id, "generator": self.generator}}

    def info(self):
        """The task's id and generator (it has no tools)."""
        return {"task_id": self.task_id, "generator": self.generator, "tools": []}

    def step(self, action, params=None):
        """The assistant's answer: graded at once, and the task ends."""
        if self.done:
            raise TaskError("task %s has terminated; evaluate or release it" % self.task_id, "BadRequest")
        content, _ = check_action(action)
        self.answer = extract_answer(content)
        self.done = True
        evaluation = self.evaluate(params={"details": True})
        return {"state": [{"role": "user", "content": COMPLETED}], "reward": evaluation["accuracy"],
                "is_terminated": True, "info": {"evaluation": evaluation}}

    def score(self, answer):
        """The generator's score of ``answer`` (0.0 when its scorer fails on odd text)."""
        try:
            return float(self.data.score_answer(answer, self.entry))
        except Exception:  # noqa: BLE001 - a generator's scorer failing on odd text is a wrong answer
            return 0.0

    def evaluate(self, messages=None, params=None):
        """The score of the answer given (or of ``messages``): the reward, or with ``details`` the whole
        result."""
        answer = self.answer
        for msg in messages_arg(messages) or ():
            if isinstance(msg, dict) and msg.get("role") == "assistant":
                answer = extract_answer(msg.get("content"))
        reward = 0.0 if answer is None else self.score(answer)
        if (params or {}).get("details") or (params or {}).get("sparse") is False:
            return {"valid": reward >= 1.0, "accuracy": reward, "answer": answer, "task_id": self.task_id}
        return reward

    def close(self):
        """Nothing to release."""
        pass
