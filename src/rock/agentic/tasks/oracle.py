"""The oracle for agent harnesses: the reference fix as one shell command, for the ``bash`` tool
that every coding harness has (ours, mini-swe-agent). An ``oracle`` chat policy answers the
harness's first model call with a tool call running this command, then a reply without one.

The command carries the task's solution/ folder (base64 of a tar), unpacks it outside the
workspace, runs solve.sh from the workdir and removes it: the same change ``--harness none``
makes, made through the harness.
"""

from __future__ import annotations

import base64
import io
import shlex
import tarfile

from rock.agentic.tasks.harbor import Task


def oracle_command(task: Task) -> str:
    """The task's reference fix as one shell command: the solution/ folder carried inline (base64 of a tar.gz),
    unpacked under /tmp, solve.sh run from the workdir, then removed. Exits with solve.sh's status."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(task.solution.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(task.solution)))
    data = base64.b64encode(buf.getvalue()).decode()
    where = "/tmp/rock-oracle-solution"
    return (f"rm -rf {where} && mkdir -p {where} && echo {data} | base64 -d | tar -xz -C {where} && "
            f"cd {shlex.quote(task.workdir)} && bash {where}/solve.sh; status=$?; rm -rf {where}; exit $status")


def oracle_tool_call(task: Task, call_id: str = "call_oracle") -> dict:
    """An OpenAI tool call of the ``bash`` tool (our harness's and mini-swe-agent's name)."""
    import json

    return {"id": call_id, "type": "function", "function": {"name": "bash",
                                                            "arguments": json.dumps({"command": oracle_command(task)})}}
