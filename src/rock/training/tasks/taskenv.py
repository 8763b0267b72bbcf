"""A task instance as an env of the env host (``agent/envhost/host.py``): make builds the task,
reset answers its initial state, and every later call is a step whose action names the
operation (``{"op": "step" | "evaluate" | "info", ...}``), so the env host needs nothing new.

Task errors travel in the observation (``{"error": {"kind", "message"}}``) rather than as
exceptions: a bad action is the caller's 4xx, and it must not mark the env broken.
"""

from .common import TaskError

SUITES = ("bfcl", "humaneval", "reasoning_gym")


def make_task(env_type, task_id, params=None, payload=None):
    """The task object of ``env_type`` for ``task_id`` (its module imported only then: each suite's grader
    pulls its own packages)."""
    if env_type == "bfcl":
        from .bfcl import BfclTask

        return BfclTask(task_id, params)
    if env_type == "humaneval":
        from .humaneval import HumanEvalTask

        return HumanEvalTask(task_id, params, payload)
    if env_type == "reasoning_gym":
        from .reasoning_gym import ReasoningGymTask

        return ReasoningGymTask(task_id, params)
    raise TaskError("unknown env_type %r; known: %s" % (env_type, ", ".join(SUITES)), "UnknownEnvType")


def _error(exc):
    return {"error": {"kind": exc.kind, "message": exc.message}}


class TaskEnv:
    """A training task as an env of the env host; a task that cannot be made answers its error on every
    call instead of failing the make."""

    def __init__(self, env_type, task_id, params=None, payload=None):
        self.task, self.failure = None, None
        try:
            self.task = make_task(env_type, task_id, params, payload)
        except TaskError as exc:
            self.failure = exc

    def reset(self, seed=None, **_):
        """The task's first messages (or its error), and an empty info."""
        if self.failure is not None:
            return _error(self.failure), {}
        try:
            return self.task.create(), {}
        except TaskError as exc:
            return _error(exc), {}

    def step(self, action):
        """One task operation (``op``: step, evaluate or info) as a gym step; task errors come back in the
        observation, never as exceptions."""
        if self.failure is not None:
            return _error(self.failure), 0.0, True, False, {}
        if not isinstance(action, dict):
            return _error(TaskError("a task call must be {\"op\": ...}", "BadRequest")), 0.0, False, False, {}
        op = action.get("op")
        try:
            if op == "step":
                out = self.task.step(action.get("action"), action.get("params"))
                return out, out["reward"], out["is_terminated"], False, {}
            if op == "evaluate":
                return {"result": self.task.evaluate(action.get("messages"), action.get("params"))}, 0.0, False, False, {}
            if op == "info":
                return {"result": self.task.info()}, 0.0, False, False, {}
            raise TaskError("unknown task op %r" % (op,), "BadRequest")
        except TaskError as exc:
            return _error(exc), 0.0, False, False, {}

    def close(self):
        """Close the task, if it was made."""
        if self.task is not None:
            self.task.close()
