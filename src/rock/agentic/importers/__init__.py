"""Importers: datasets in the formats teams train on, written as task folders in Harbor's layout
(``instruction.md``, ``task.toml``, ``environment/Dockerfile``, ``tests/test.sh``,
``solution/solve.sh``) that ``rock job run --suite OUT`` and Harbor both run.

- ``terminal_bench.import_tasks``: terminal-bench tasks (``task.yaml``, ``Dockerfile``,
  ``docker-compose.yaml``, ``run-tests.sh``, ``solution.sh``, ``tests/``), mapped as Harbor's own
  terminal-bench mapper maps them.
- ``swe.import_rows``: SWE-bench-shaped rows (``instance_id``, ``repo``, ``base_commit``, ``patch``,
  ``test_patch``, ``FAIL_TO_PASS``, ``PASS_TO_PASS``) with the repository from a local clone or
  from an image the engine has.

Both return an ``ImportResult``: the task folders written and, per input that could not be
imported, its name and why; one bad input never stops the others.
"""

from rock.agentic.importers.common import ImportResult
from rock.agentic.importers.swe import import_rows
from rock.agentic.importers.terminal_bench import import_tasks

__all__ = ["ImportResult", "import_rows", "import_tasks"]
