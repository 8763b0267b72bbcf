"""Public docstring coverage of ``src/rock``: modules, classes, functions and methods, by package.

Public: a module whose path has no ``_``-led part (``__init__.py`` counts as its package), and a
class, function or method whose name does not start with ``_``, defined at a module's top level or
in a public class's body (functions nested in functions are local, not API). Read with ``ast``, so
nothing is imported.

    python3 scripts/docstrings.py [--min PERCENT] [--missing PACKAGE]

Exits 1 when the total is under ``--min``; ``--missing`` lists what lacks one in a package.
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys
from pathlib import Path

ROCK = Path(__file__).resolve().parent.parent / "src" / "rock"


def public_names(path: Path, root: Path = ROCK) -> list[tuple[str, bool]]:
    """(qualified name, has a docstring) for each public object the file defines (``root``: the
    package folder its module names start from)."""
    rel = path.relative_to(root)
    tree = ast.parse(path.read_text(), str(path))
    module = ".".join(("rock", *rel.with_suffix("").parts)).removesuffix(".__init__")
    out = []
    if not any(part.startswith("_") and part != "__init__.py" for part in rel.parts):
        out.append((module, ast.get_docstring(tree) is not None))

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                out.append((f"{prefix}.{node.name}", ast.get_docstring(node) is not None))
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}.{node.name}")

    walk(tree.body, module)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min", type=float, default=0.0, help="fail under this percentage")
    parser.add_argument("--missing", help="list the undocumented names of this package (e.g. cli)")
    args = parser.parse_args()
    total, have = collections.Counter(), collections.Counter()
    missing = []
    for path in sorted(ROCK.rglob("*.py")):
        rel = path.relative_to(ROCK)
        package = rel.parts[0] if len(rel.parts) > 1 else "(top)"
        for name, ok in public_names(path):
            total[package] += 1
            have[package] += ok
            if not ok and package == args.missing:
                missing.append(f"{rel}: {name}")
    for package in sorted(total):
        print(f"{package:14} {have[package]:5}/{total[package]:<5} {100 * have[package] / total[package]:5.1f}%")
    percent = 100 * sum(have.values()) / sum(total.values())
    print(f"{'total':14} {sum(have.values()):5}/{sum(total.values()):<5} {percent:5.1f}%")
    print("\n".join(missing))
    return 1 if percent < args.min else 0


if __name__ == "__main__":
    sys.exit(main())
