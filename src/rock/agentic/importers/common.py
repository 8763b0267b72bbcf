"""What both importers share: the result, safe task names and paths, and task.toml's writer."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rock.agentic.tasks.errors import TaskError

# Imported tasks run offline (ROCK's rollouts give the agent's and the verifier's sandboxes no
# network); task.toml says so, so Harbor enforces the same (its default would be a public network).
NETWORK_MODE = "no-network"
# A task id becomes a folder name under OUT: letters, digits, ".", "_", "-", not starting with a dot.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


@dataclass
class ImportResult:
    """The task folders an import wrote, and the inputs it could not import with the reason for each."""

    imported: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (the input's name, why)

    def as_dict(self) -> dict:
        """JSON-safe: ``{"imported": [paths], "failed": [{"name", "error"}]}``."""
        return {"imported": [str(p) for p in self.imported],
                "failed": [{"name": n, "error": e} for n, e in self.failed]}


def task_name(name: object, what: str) -> str:
    """``name`` checked as a task folder's name (it must not leave OUT or hide)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TaskError(f"{what}: {name!r} cannot name a task folder (letters, digits, '.', '_', '-'; "
                        "not starting with a dot)", "BadTask")
    return name


def relative_path(path: str, what: str) -> PurePosixPath:
    """A relative POSIX path that stays inside the folder it is joined to."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\x00" in path:
        raise TaskError(f"{what}: path {path!r} is not a relative path inside its folder", "BadTask")
    return p


def fresh_folder(out: Path, name: str) -> Path:
    """OUT/name, made; an existing task folder is not overwritten."""
    target = out / name
    if target.exists():
        raise TaskError(f"task {name}: {target} already exists; import into an empty --out", "BadTask")
    target.mkdir(parents=True)
    return target


def discard(target: Path) -> None:
    """A half-written task folder removed, so OUT holds only whole tasks."""
    shutil.rmtree(target, ignore_errors=True)


def write_script(path: Path, text: str) -> None:
    """A shell script, executable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def toml_dumps(tables: dict[str, dict]) -> str:
    """task.toml from ``{table: {key: value}}`` (values: str, int, float, bool, lists of them, or
    one nested table level such as ``[verifier.env]``). TOML's basic strings escape as JSON does."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(float(v)) if isinstance(v, float) else str(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"task.toml cannot hold {type(v).__name__}")

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    lines: list[str] = []
    for table, items in tables.items():
        flat = {k: v for k, v in items.items() if v is not None and not isinstance(v, dict)}
        nested = {k: v for k, v in items.items() if isinstance(v, dict)}
        lines.append(f"[{table}]")
        lines += [f"{key(k)} = {value(v)}" for k, v in flat.items()]
        for sub, inner in nested.items():
            lines.append(f"\n[{table}.{key(sub)}]")
            lines += [f"{key(k)} = {value(v)}" for k, v in inner.items() if v is not None]
        lines.append("")
    return "\n".join(lines)
