"""Span correctness: the mistakes that leave a span open, unentered, attached for ever,
or behind when the work moves to another thread.

Each check reads one function's body with :mod:`ast` and errs towards silence: a span
or token that leaves the function (returned, yielded, stored, passed on) is the
receiver's business, and a call whose target cannot be told from the code is not
reported. What is reported is what a reviewer would point at:

- ``span-not-ended``: ``span = tracer.start_span(...)`` with no ``span.end()`` in a
  ``finally`` (or no ``end()`` at all), nor a ``with`` that ends it;
- ``span-not-entered``: ``tracer.start_as_current_span(...)`` called and dropped: the
  span never starts, the code below it runs without it;
- ``attach-without-detach``: ``token = context.attach(...)`` with no
  ``context.detach(token)`` in a ``finally``: an exception leaves the context attached;
- ``span-not-propagated``: inside a span, work handed to ``executor.submit``,
  ``loop.run_in_executor`` or ``threading.Thread(target=...)`` runs without it (the
  static twin of the runtime cause ``context_lost``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

SPAN_NOT_ENDED = "span-not-ended"
SPAN_NOT_ENTERED = "span-not-entered"
ATTACH_WITHOUT_DETACH = "attach-without-detach"
SPAN_NOT_PROPAGATED = "span-not-propagated"
CHECK_KINDS = (SPAN_NOT_ENDED, SPAN_NOT_ENTERED, ATTACH_WITHOUT_DETACH, SPAN_NOT_PROPAGATED)

#: One line a reader can act on, per kind.
CHECK_HELP = {
    SPAN_NOT_ENDED: "a span started with start_span is not ended on every path",
    SPAN_NOT_ENTERED: "start_as_current_span was called but neither entered nor used as a "
    "decorator",
    ATTACH_WITHOUT_DETACH: "context.attach without context.detach in a finally",
    SPAN_NOT_PROPAGATED: "work handed to another thread inside a span runs without it",
}

_SPAN_OPENERS = frozenset({"start_as_current_span", "use_span"})
_EXECUTOR_HINTS = ("executor", "pool")
#: A ``def`` or ``async def``: what the audit counts and checks.
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class CheckFinding:
    """One mistake: its kind, where, and a message naming the variable or call."""

    kind: str
    line: int
    column: int
    message: str


def check_function(node: FunctionNode) -> list[CheckFinding]:
    """The mistakes in ``node``'s own body (nested functions are checked on their own)."""
    body = list(own_nodes(node))
    found = [*_unended_spans(body), *_unentered_spans(node, body), *_undetached_tokens(body)]
    found += _unpropagated(node, _decorated_with_span(node))
    return sorted(found, key=lambda f: (f.line, f.column, f.kind))


# --- walking one function's own code -------------------------------------------------


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def own_nodes(node: FunctionNode) -> Iterator[ast.AST]:
    """The function's body, without the bodies of functions and classes defined in it
    (a span opened there covers only them); its decorators and defaults are not in it."""
    pending: list[ast.AST] = [s for s in node.body if not isinstance(s, _SCOPES)]
    while pending:
        current = pending.pop()
        yield current
        pending += [c for c in ast.iter_child_nodes(current) if not isinstance(c, _SCOPES)]


def _called_name(node: ast.AST) -> str | None:
    """``start_span`` for ``tracer.start_span(...)`` or ``start_span(...)``."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _receiver_text(node: ast.Call) -> str:
    func = node.func
    return ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""


def _assigned(body: list[ast.AST], call: str) -> Iterator[tuple[str, ast.Assign]]:
    """``name = <...>.call(...)`` statements."""
    for stmt in body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and _called_name(stmt.value) == call
        ):
            yield stmt.targets[0].id, stmt


def _finally_nodes(body: list[ast.AST]) -> list[ast.AST]:
    nodes: list[ast.AST] = []
    for stmt in body:
        if isinstance(stmt, ast.Try | ast.TryStar):
            for part in stmt.finalbody:
                nodes.append(part)
                nodes.extend(ast.walk(part))
    return nodes


def _uses(body: list[ast.AST], name: str) -> list[ast.Name]:
    return [n for n in body if isinstance(n, ast.Name) and n.id == name]


def _escapes(body: list[ast.AST], name: str, allowed_calls: frozenset[str]) -> bool:
    """Whether the value bound to ``name`` leaves the function or is handed to code
    that may end it: returned, yielded, stored elsewhere, or passed to a call other
    than ``allowed_calls``. ``use_span(name)`` is allowed only as a ``with`` item: its
    result kept to be entered and exited by hand may end the span anywhere."""
    with_items = {
        id(item.context_expr)
        for node in body
        if isinstance(node, ast.With | ast.AsyncWith)
        for item in node.items
    }
    for node in body:
        if (
            isinstance(node, ast.Call)
            and _called_name(node) == "use_span"
            and id(node) not in with_items
            and any(isinstance(a, ast.Name) and a.id == name for a in node.args)
        ):
            return True
        leaves = isinstance(node, ast.Return | ast.Yield | ast.YieldFrom) and node.value
        if leaves and any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(leaves)):
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            stored = any(not isinstance(t, ast.Name) for t in targets)
            if stored and isinstance(node.value, ast.Name) and node.value.id == name:
                return True
        if isinstance(node, ast.Call) and _called_name(node) not in allowed_calls:
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if any(isinstance(a, ast.Name) and a.id == name for a in arguments):
                return True
    return False


def _method_calls_on(nodes: list[ast.AST], name: str, method: str) -> list[ast.Call]:
    return [
        n
        for n in nodes
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == method
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == name
    ]


# --- the checks ----------------------------------------------------------------------


def _unended_spans(body: list[ast.AST]) -> Iterator[CheckFinding]:
    for stmt in body:  # a start_span whose result is dropped can never be ended
        if isinstance(stmt, ast.Expr) and _called_name(stmt.value) == "start_span":
            yield CheckFinding(
                SPAN_NOT_ENDED, stmt.lineno, stmt.col_offset,
                "the span from start_span(...) is dropped and never ended",
            )  # fmt: skip
    for name, stmt in _assigned(body, "start_span"):
        if _escapes(body, name, frozenset({"use_span"})):
            continue
        if _entered(body, name):
            continue
        if _method_calls_on(_finally_nodes(body), name, "end"):
            continue
        ended = _method_calls_on(body, name, "end")
        why = "is ended, but not in a finally" if ended else "is never ended"
        yield CheckFinding(
            SPAN_NOT_ENDED, stmt.lineno, stmt.col_offset,
            f"span {name!r} from start_span(...) {why}: an exception leaves it open"
            if ended else f"span {name!r} from start_span(...) {why}",
        )  # fmt: skip


def _entered(body: list[ast.AST], name: str) -> bool:
    """``with name:`` or ``with use_span(name, end_on_exit=True):``."""
    for node in body:
        if not isinstance(node, ast.With | ast.AsyncWith):
            continue
        for item in node.items:
            expr = item.context_expr
            if isinstance(expr, ast.Name) and expr.id == name:
                return True
            if _called_name(expr) == "use_span" and isinstance(expr, ast.Call):
                first = expr.args[0] if expr.args else None
                ends = any(
                    k.arg == "end_on_exit"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is True
                    for k in expr.keywords
                )
                if isinstance(first, ast.Name) and first.id == name and ends:
                    return True
    return False


def _unentered_spans(node: FunctionNode, body: list[ast.AST]) -> Iterator[CheckFinding]:
    for stmt in body:
        if isinstance(stmt, ast.Expr) and _called_name(stmt.value) == "start_as_current_span":
            yield CheckFinding(
                SPAN_NOT_ENTERED, stmt.lineno, stmt.col_offset,
                "start_as_current_span(...) is called and dropped: use it in a with "
                "statement or as a decorator",
            )  # fmt: skip
    for name, stmt in _assigned(body, "start_as_current_span"):
        read = any(
            isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
            for n in ast.walk(node)
        )
        if not read:  # entered, decorating, returned, passed on: any read is a use
            yield CheckFinding(
                SPAN_NOT_ENTERED, stmt.lineno, stmt.col_offset,
                f"{name!r} = start_as_current_span(...) is never entered (with {name}:)",
            )  # fmt: skip


def _undetached_tokens(body: list[ast.AST]) -> Iterator[CheckFinding]:
    for name, stmt in _assigned(body, "attach"):
        if not _is_context_call(stmt.value):
            continue
        if _escapes(body, name, frozenset({"detach"})):
            continue
        in_finally = [
            n for n in _finally_nodes(body)
            if _called_name(n) == "detach" and isinstance(n, ast.Call)
            and any(isinstance(a, ast.Name) and a.id == name for a in n.args)
        ]  # fmt: skip
        if not in_finally:
            yield CheckFinding(
                ATTACH_WITHOUT_DETACH, stmt.lineno, stmt.col_offset,
                f"token {name!r} from attach(...) is not detached in a finally: an "
                "exception leaves the context attached to this thread",
            )  # fmt: skip


def _is_context_call(node: ast.AST) -> bool:
    """``context.attach(...)`` / ``otel_context.attach(...)`` / a bare ``attach(...)``:
    not every ``attach`` is OpenTelemetry's, so the receiver must say context."""
    if not isinstance(node, ast.Call):
        return False
    receiver = _receiver_text(node)
    return receiver == "" or "context" in receiver.lower()


def _decorated_with_span(node: FunctionNode) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("start_as_current_span", "traced"):
            return True
    return False


def _unpropagated(node: FunctionNode, whole_body_spanned: bool) -> list[CheckFinding]:
    """Hand-offs to another thread made while a span is current in this function."""
    found: list[CheckFinding] = []

    def visit(stmts: list[ast.stmt], spanned: bool) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            opens = isinstance(stmt, ast.With | ast.AsyncWith) and any(
                _called_name(item.context_expr) in _SPAN_OPENERS for item in stmt.items
            )
            if spanned:
                found.extend(_handoffs_in(stmt))
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list):
                    visit(inner, spanned or opens)
            for handler in getattr(stmt, "handlers", []):
                visit(handler.body, spanned or opens)

    visit(node.body, whole_body_spanned)
    return found


def _handoffs_in(stmt: ast.stmt) -> Iterator[CheckFinding]:
    """Hand-offs in ``stmt`` itself (not in its nested blocks, which are visited)."""
    for node in _statement_nodes(stmt):
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node)
        job: ast.expr | None = None
        what = ""
        if name == "submit" and _looks_like_executor(_receiver_text(node)) and node.args:
            job, what = node.args[0], "executor.submit"
        elif name == "run_in_executor" and len(node.args) >= 2:
            job, what = node.args[1], "run_in_executor"
        elif name == "Thread":
            job = next((k.value for k in node.keywords if k.arg == "target"), None)
            what = "threading.Thread"
        if job is not None and not _carries_context(job):
            text = ast.unparse(job)
            fix = (
                f"target=contextvars.copy_context().run, args=({text}, ...)"
                if what == "threading.Thread"
                else f"contextvars.copy_context().run, {text}"
            )
            yield CheckFinding(
                SPAN_NOT_PROPAGATED, node.lineno, node.col_offset,
                f"{text} is handed to {what} inside a span and runs without it: pass {fix}",
            )  # fmt: skip


def _statement_nodes(stmt: ast.stmt) -> Iterator[ast.AST]:
    """The nodes of ``stmt`` outside its nested statement blocks and functions."""
    blocks = {id(s) for field in ("body", "orelse", "finalbody", "handlers")
              for s in getattr(stmt, field, []) or []}  # fmt: skip
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if id(child) in blocks or isinstance(child, ast.Lambda | FunctionNode):
                continue
            stack.append(child)


def _looks_like_executor(receiver: str) -> bool:
    lowered = receiver.lower()
    return any(hint in lowered for hint in _EXECUTOR_HINTS)


def _carries_context(job: ast.expr) -> bool:
    """``ctx.run`` / ``copy_context().run`` / ``context.run``: the job takes a context."""
    return isinstance(job, ast.Attribute) and job.attr == "run"
