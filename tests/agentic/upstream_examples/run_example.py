"""Runs one of upstream's example files, unmodified, with the real rl-rock SDK (this file runs in
rl-rock's venv, never with our package): ``python run_example.py FILE`` executes FILE as
``python FILE`` would (``__main__``, its own ``__file__``), then prints ``RESULT`` and a JSON line.

It watches the example from outside, without changing what it does:
- every value rl-rock's ``ModelService.anti_call_llm`` returned to it, in order;
- whether the tasks the example started (``asyncio.create_task``: local_demo.py's model-service
  loop, which ends only when it reads exactly "SESSION_END") ended by themselves. The demo stops
  its sandbox as soon as ``agent.run`` returns, which may be while its loop waits between two
  polls, and ``asyncio.run`` then cancels the loop: so ``Sandbox.stop`` first gives those tasks
  up to ``LOOP_GRACE`` seconds to end, and records whether they did, and how.
"""

import asyncio
import json
import runpy
import sys

from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.model_service.base import ModelService

LOOP_GRACE = 120.0
report = {"anti_call_llm": [], "tasks": []}

_anti_call_llm = ModelService.anti_call_llm
_stop = Sandbox.stop
_create_task = asyncio.create_task
created: list = []  # the tasks the example started itself (asyncio.create_task)


async def anti_call_llm(self, index, response_payload=None, *args, **kwargs):
    returned = await _anti_call_llm(self, index, response_payload, *args, **kwargs)
    report["anti_call_llm"].append([index, returned])
    return returned


def create_task(coro, **kwargs):
    task = _create_task(coro, **kwargs)
    created.append(task)
    return task


async def stop(self, *args, **kwargs):
    if running := [t for t in created if not t.done()]:
        await asyncio.wait(running, timeout=LOOP_GRACE)
    for task in created:
        how = "running" if not task.done() else "cancelled" if task.cancelled() else \
            f"raised {task.exception()!r}" if task.exception() is not None else "returned"
        report["tasks"].append({"name": getattr(task.get_coro(), "__qualname__", "?"), "ended": how})
    return await _stop(self, *args, **kwargs)


ModelService.anti_call_llm = anti_call_llm
Sandbox.stop = stop
asyncio.create_task = create_task

if __name__ == "__main__":
    runpy.run_path(sys.argv[1], run_name="__main__")
    print("RESULT" + json.dumps(report), flush=True)
