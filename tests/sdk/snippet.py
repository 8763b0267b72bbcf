"""Runs a documentation code sample exactly as written.

Samples that are scripts run as they are. Samples written as notebook cells (top-level
``await``, names the surrounding document imported elsewhere) are compiled with top-level
await allowed, in a namespace that already holds ROCK's public SDK names; the text itself is
not touched.
"""

import ast
import asyncio
import sys


PRELUDE = """
from rock.actions import Action, BashAction, Command, CreateBashSessionRequest
from rock.sdk.sandbox.client import Sandbox, SandboxGroup
from rock.sdk.sandbox.config import SandboxConfig, SandboxGroupConfig
"""


def main(path: str) -> None:
    source = open(path).read()
    namespace = {"__name__": "__main__"}
    exec(PRELUDE, namespace)
    code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & 0x80:  # CO_COROUTINE: the sample awaits at top level
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


if __name__ == "__main__":
    main(sys.argv[1])
