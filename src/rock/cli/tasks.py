"""``rock tasks import``: datasets as Harbor task folders (``rock.agentic.importers``).

    rock tasks import terminal-bench DIR --out OUT
    rock tasks import swe ROWS.jsonl --repos DIR --out OUT [--image IMAGE] [--base-image IMAGE] [--test-cmd CMD]

OUT then runs with ``rock job run --suite OUT`` (or Harbor). One line per input: the task folder
written, or why it was not; the exit status is 1 when any input failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rock.cli.output import Out


def add_parser(sub) -> None:
    """Register ``rock tasks import`` (terminal-bench, swe) on the ``rock`` parser ``sub``."""
    p = sub.add_parser("tasks", help="agentic task folders: import terminal-bench tasks and SWE-bench-shaped rows")
    s = p.add_subparsers(dest="tasks_cmd", required=True)
    imp = s.add_parser("import", help="write Harbor task folders from another format")
    fmt = imp.add_subparsers(dest="import_format", required=True)
    tb = fmt.add_parser("terminal-bench", help="terminal-bench tasks (task.yaml, Dockerfile, docker-compose.yaml, "
                        "run-tests.sh, solution.sh, tests/)")
    tb.add_argument("source", type=Path, help="a task folder, or a folder of them")
    tb.add_argument("--out", type=Path, required=True, help="where the task folders are written")
    tb.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    tb.set_defaults(func=cmd_terminal_bench)
    from rock.agentic.importers.swe import BASE_IMAGE, TEST_CMD, WORKDIR

    swe = fmt.add_parser("swe", help="SWE-bench-shaped rows (instance_id, repo, base_commit, patch, test_patch, "
                         "FAIL_TO_PASS, PASS_TO_PASS), JSONL or a JSON list")
    swe.add_argument("rows", type=Path, help="the rows: JSONL, or a JSON list")
    swe.add_argument("--repos", type=Path, help="a folder of local clones: owner__name, owner/name or name")
    swe.add_argument("--out", type=Path, required=True, help="where the task folders are written")
    swe.add_argument("--image", help="rows without a clone: an image the engine has that holds the repository at "
                     "--workdir ({instance_id} is replaced); a row's own image_name comes first")
    swe.add_argument("--base-image", default=BASE_IMAGE, help=f"rows with a clone: the image the repository is "
                     f"copied into (default {BASE_IMAGE}; it needs the test runner and the project's dependencies)")
    swe.add_argument("--test-cmd", default=TEST_CMD, help=f"runs the listed test ids (default: {TEST_CMD})")
    swe.add_argument("--workdir", default=WORKDIR, help=f"the repository's folder in the sandbox (default {WORKDIR})")
    swe.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    swe.set_defaults(func=cmd_swe)


def _report(result, out: Out) -> int:
    rows = [{"task": p.name, "result": "imported", "path": str(p)} for p in result.imported]
    rows += [{"task": name, "result": "failed", "path": error} for name, error in result.failed]
    if out.as_json:
        out.json(result.as_dict())
    else:
        out.rows(rows, ["task", "result", "path"], title="imported tasks")
    return 1 if result.failed else 0


def cmd_terminal_bench(args, out: Out) -> int:
    """``rock tasks import terminal-bench``: write Harbor task folders from terminal-bench tasks."""
    from rock.agentic.importers import import_tasks

    return _report(import_tasks(args.source, args.out), out)


def cmd_swe(args, out: Out) -> int:
    """``rock tasks import swe``: write Harbor task folders from SWE-bench-shaped rows."""
    from rock.agentic.importers import import_rows

    return _report(import_rows(args.rows, args.out, args.repos, image=args.image, base_image=args.base_image,
                               test_cmd=args.test_cmd, workdir=args.workdir), out)
