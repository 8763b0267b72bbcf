"""Procedural bugs: one small change to one function of a module, found with ``ast``.

Each mutant changes one node's source text in place (the rest of the file keeps its bytes), so
the oracle is the inverse replacement of the function's text. Operators (SWE-smith's kind):
flip a comparison, change a constant by one, swap the operands of a non-commutative operator,
swap ``and``/``or``, swap ``+``/``-``, negate an ``if``/``while`` condition, drop a statement.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
SWAP = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)


@dataclass
class Mutant:
    """One procedural bug: which function of which module, the operator applied and the line, and the function's
    source text before and after the change (the oracle swaps them back)."""

    path: str  # the module, relative to the repository
    function: str  # Class.method or function
    operator: str
    line: int
    original: str  # the function's source text
    mutated: str  # the same text with the change

    @property
    def key(self) -> str:
        """A stable id of the mutant: path, function, operator and line joined by colons."""
        return f"{self.path}:{self.function}:{self.operator}:{self.line}"


def _functions(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{node.name}.{item.name}", item


def _changes(fn: ast.AST):
    """(operator, node, replacement source) for each site in ``fn`` (nested defs excluded)."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in FLIP:
            new = copy.deepcopy(node)
            new.ops = [FLIP[type(node.ops[0])]()]
            yield "flip_comparison", node, ast.unparse(new)
        elif isinstance(node, ast.BinOp):
            if isinstance(node.op, SWAP):
                new = copy.deepcopy(node)
                new.left, new.right = new.right, new.left
                yield "swap_operands", node, ast.unparse(new)
            if isinstance(node.op, (ast.Add, ast.Sub)):
                new = copy.deepcopy(node)
                new.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
                yield "swap_add_sub", node, ast.unparse(new)
        elif isinstance(node, ast.BoolOp):
            new = copy.deepcopy(node)
            new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            yield "swap_and_or", node, ast.unparse(new)
        elif isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 8:
            yield "off_by_one", node, repr(node.value + 1)
        elif isinstance(node, (ast.If, ast.While)) and not isinstance(node.test, ast.UnaryOp):
            new = ast.UnaryOp(ast.Not(), copy.deepcopy(node.test))
            yield "negate_condition", node.test, ast.unparse(new)
    for body in _bodies(fn):
        if len(body) > 1:
            for stmt in body:
                if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr)) and not _docstring(stmt):
                    yield "drop_statement", stmt, "pass"


def _bodies(fn):
    for node in ast.walk(fn):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body


def _docstring(stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _offset(lines: list[bytes], line: int, col: int) -> int:
    return sum(len(x) for x in lines[:line - 1]) + col


def parses(m: Mutant, source: str) -> bool:
    """Whether the module still parses with the change (checked when a mutant is tried: parsing
    every candidate of a large module up front costs minutes)."""
    try:
        ast.parse(source.replace(m.original, m.mutated, 1))
        return True
    except SyntaxError:
        return False


def mutants(path: str, source: str) -> list[Mutant]:
    """Every single-site mutant of the module's functions (see ``parses``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    data = source.encode()
    lines = data.splitlines(keepends=True)
    out = []
    for name, fn in _functions(tree):
        first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        f0, f1 = _offset(lines, first, 0), _offset(lines, fn.end_lineno, fn.end_col_offset)
        original = data[f0:f1]
        seen = set()
        for op, node, text in _changes(fn):
            if node.lineno != node.end_lineno and op != "drop_statement":
                continue  # one-line changes only: a readable bug, an unambiguous inverse
            a = _offset(lines, node.lineno, node.col_offset) - f0
            b = _offset(lines, node.end_lineno, node.end_col_offset) - f0
            mutated = original[:a] + text.encode() + original[b:]
            if mutated == original or mutated in seen:
                continue
            seen.add(mutated)
            out.append(Mutant(path, name, op, node.lineno, original.decode(), mutated.decode()))
    return out
