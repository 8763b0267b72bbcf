"""How the CLI prints: rich tables on a terminal, plain lines when piped, JSON with ``--json``."""

from __future__ import annotations

import json
import sys
from typing import Any


class Out:
    """Where a command's results go: rich tables on a terminal, plain lines when piped, JSON with
    ``--json``."""

    def __init__(self, as_json: bool = False):
        self.as_json = as_json
        self.tty = sys.stdout.isatty()
        self._console = None

    @property
    def console(self):
        """The rich console (imported on first use: most commands print without it)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return self._console

    def json(self, data: Any) -> None:
        """Print ``data`` as indented JSON."""
        print(json.dumps(data, indent=2, default=str))

    def record(self, data: Any, title: str | None = None, lines: list[str] | None = None,
               table: dict | None = None) -> None:
        """One result: JSON, or a few lines (plus an optional key/value table on a terminal)."""
        if self.as_json:
            return self.json(data)
        for line in lines or []:
            print(line)
        if table and self.tty:
            from rich.table import Table

            t = Table(title=title, show_header=False)
            for k, v in table.items():
                t.add_row(str(k), str(v))
            self.console.print(t)

    def rows(self, data: list[dict], columns: list[str], title: str | None = None) -> None:
        """Print ``data`` as a table of ``columns`` (JSON with ``--json``)."""
        if self.as_json:
            return self.json(data)
        if not self.tty:
            print("\t".join(columns))
            for row in data:
                print("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns))
            return
        from rich.table import Table

        t = Table(title=title)
        for c in columns:
            t.add_column(c)
        for row in data:
            t.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        self.console.print(t)

    def error(self, message: str) -> None:
        """Print an error on stderr: ``error: message``, or a JSON object with ``--json``."""
        if self.as_json:
            print(json.dumps({"error": message}), file=sys.stderr)
        else:
            print(f"error: {message}", file=sys.stderr)


def results_table(out: Out, summary: dict, title: str) -> None:
    """The results table of a job's summary (``rock.training.runner.summarize``): a row per category."""
    rows = [{"category": c, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}}
            for c, s in summary["by_category"].items()]
    rows.append({"category": "ALL", "tasks": summary["tasks"], "mean_reward": round(summary["mean_reward"], 4),
                 "pass_rate": round(summary["pass_rate"], 4), "errors": summary["errors"]})
    out.rows(rows, ["category", "tasks", "mean_reward", "pass_rate", "errors"], title=title)
