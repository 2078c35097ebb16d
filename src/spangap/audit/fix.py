"""``gapreport audit --fix``: add ``@traced`` to chosen functions, keeping the code's
formatting and comments (libcst edits the syntax tree and prints everything else back
as it was).

``@traced`` goes last in the decorator list, right above the ``def``, so that what a
framework registers (a route, a task) is the traced function. ``from spangap import
traced`` is added after the module's last top-level import unless ``traced`` is
already imported from spangap.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DECORATOR = "traced"
IMPORT_LINE = "from spangap import traced\n"


class FixError(Exception):
    """libcst is missing, or a file cannot be rewritten (one line for the user)."""


def _libcst() -> Any:
    try:
        import libcst
    except ImportError:
        raise FixError("--fix needs libcst: pip install 'spangap[audit]'") from None
    return libcst


def fixed_source(source: str, qualnames: Iterable[str]) -> str:
    """``source`` with ``@traced`` on each function named by its qualified name
    (``Class.method``); functions already decorated with it are left alone."""
    cst = _libcst()
    wanted = set(qualnames)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise FixError(f"cannot parse: {str(exc).splitlines()[0]}") from None
    adder = _decorator_adder(cst, wanted)
    changed = module.visit(adder)
    if not adder.added:
        return source
    if not _imports_traced(cst, changed):
        changed = _with_import(cst, changed)
    return str(changed.code)


def diff(path: Path, before: str, after: str) -> str:
    """A unified diff, as ``ruff --fix --diff`` prints one."""
    name = path.as_posix()
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), name, name
    )
    return "".join(lines)


def _decorator_adder(cst: Any, wanted: set[str]) -> Any:
    class AddTraced(cst.CSTTransformer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.scope: list[str] = []
            self.added = 0

        def visit_ClassDef(self, node: Any) -> bool:
            self.scope.append(node.name.value)
            return True

        def leave_ClassDef(self, original: Any, updated: Any) -> Any:
            self.scope.pop()
            return updated

        def visit_FunctionDef(self, node: Any) -> bool:
            self.scope.append(node.name.value)
            return True

        def leave_FunctionDef(self, original: Any, updated: Any) -> Any:
            qualname = ".".join(self.scope)
            self.scope.pop()
            if qualname not in wanted or _has_traced(cst, updated):
                return updated
            self.added += 1
            decorator = cst.Decorator(decorator=cst.Name(DECORATOR))
            return updated.with_changes(decorators=[*updated.decorators, decorator])

    return AddTraced()


def _has_traced(cst: Any, function: Any) -> bool:
    for decorator in function.decorators:
        target = decorator.decorator
        if isinstance(target, cst.Call):
            target = target.func
        if isinstance(target, cst.Name) and target.value == DECORATOR:
            return True
        if isinstance(target, cst.Attribute) and target.attr.value == DECORATOR:
            return True
    return False


def _imports_traced(cst: Any, module: Any) -> bool:
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if (
                isinstance(small, cst.ImportFrom)
                and isinstance(small.module, cst.Name)
                and small.module.value == "spangap"
                and not isinstance(small.names, cst.ImportStar)
                and any(alias.name.value == DECORATOR for alias in small.names)
            ):
                return True
    return False


def _with_import(cst: Any, module: Any) -> Any:
    """The import after the last top-level import (or after the docstring)."""
    body = list(module.body)
    position = 0
    for index, statement in enumerate(body):
        if isinstance(statement, cst.SimpleStatementLine) and any(
            isinstance(small, cst.Import | cst.ImportFrom) for small in statement.body
        ):
            position = index + 1
        elif index == 0 and _is_docstring(cst, statement):
            position = 1
    body.insert(position, cst.parse_statement(IMPORT_LINE))
    return module.with_changes(body=body)


def _is_docstring(cst: Any, statement: Any) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )
