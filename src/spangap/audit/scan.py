"""Find the public functions of a code base and whether each opens a span.

Everything here reads source text with :mod:`ast` and :mod:`tokenize`; nothing is
imported or run, so auditing a service cannot start it, connect to its database or fail
on a missing dependency. What counts as a span is what a reader would see in the code:
a span decorator, a ``with`` block that starts or enters a span, or a call to a helper
the project names in its configuration.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .checks import CHECK_KINDS, FunctionNode, check_function, own_nodes
from .config import AuditConfig

MISSING_SPAN = "missing-span"
OPT_OUT_WITHOUT_REASON = "opt-out-without-reason"
SYNTAX_ERROR = "syntax-error"
KINDS = (MISSING_SPAN, OPT_OUT_WITHOUT_REASON, SYNTAX_ERROR, *CHECK_KINDS)

COVERED = "covered"
UNCOVERED = "uncovered"
OPTED_OUT = "opted-out"

#: Where a request, a message or a job enters the code: a span missing there leaves the
#: whole unit of work without a trace, so these come first in the list.
ENTRY_POINT_LABELS = {
    "route": "web route",
    "task": "Celery task",
    "view": "Django view",
    "asgi": "ASGI handler",
    "none": "function",
}

SPAN_CONTEXT_CALLS = frozenset({"start_as_current_span", "start_span", "use_span"})
SPAN_DECORATOR_CALL = "start_as_current_span"
SPANGAP_DECORATOR = "traced"

_ROUTE_METHODS = frozenset(
    {"route", "api_route", "websocket", "get", "post", "put", "delete", "patch", "head", "options"}
)
_VIEW_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})
_ASGI_APPS = frozenset({"FastAPI", "Starlette"})
_STUB_DECORATORS = frozenset({"overload", "abstractmethod"})
_OPT_OUT = re.compile(r"spangap:\s*no-span(?![\w-])(.*)")
_UNKNOWN = "<expr>"


@dataclass(frozen=True)
class Function:
    """A public function or method that the audit counts (or that opted out)."""

    path: str
    line: int
    column: int
    qualname: str
    module: str
    entry_point: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class Finding:
    """Something to fix; ``key`` identifies it across edits that only move code."""

    kind: str
    path: str
    line: int
    column: int
    qualname: str
    module: str
    entry_point: str
    message: str
    key: str = ""


@dataclass(frozen=True)
class Coverage:
    """Counts of public functions; opted-out ones count as neither covered nor not."""

    covered: int = 0
    uncovered: int = 0
    opted_out: int = 0

    @property
    def counted(self) -> int:
        return self.covered + self.uncovered

    @property
    def percent(self) -> float | None:
        """Covered share of the counted functions; None when there are none to count."""
        return 100 * self.covered / self.counted if self.counted else None

    def add(self, status: str) -> Coverage:
        return Coverage(
            self.covered + (status == COVERED),
            self.uncovered + (status == UNCOVERED),
            self.opted_out + (status == OPTED_OUT),
        )


@dataclass(frozen=True)
class ScanResult:
    """The functions found, in file order, and the findings, ranked and keyed."""

    files: int
    functions: tuple[Function, ...]
    findings: tuple[Finding, ...]

    @property
    def coverage(self) -> Coverage:
        return coverage_of(self.functions)


def coverage_of(functions: Iterable[Function]) -> Coverage:
    total = Coverage()
    for function in functions:
        total = total.add(function.status)
    return total


def coverage_by(
    functions: Iterable[Function], group: Callable[[Function], str]
) -> dict[str, Coverage]:
    """Coverage per group (module, package), sorted by the group's name."""
    groups: dict[str, Coverage] = {}
    for function in functions:
        name = group(function)
        groups[name] = groups.get(name, Coverage()).add(function.status)
    return dict(sorted(groups.items()))


def package_of(function: Function) -> str:
    """The directory of the function's file: the unit that teams usually own."""
    directory = os.path.dirname(function.path)
    return directory or "."


# --- files -----------------------------------------------------------------------------


def scan_paths(paths: Sequence[Path], config: AuditConfig, cwd: Path) -> ScanResult:
    """Audit the Python files under ``paths``; file paths are shown relative to ``cwd``."""
    functions: list[Function] = []
    findings: list[Finding] = []
    files = discover_files(paths, config)
    for file in files:
        found, problems = scan_source(
            file.read_bytes(), display_path(file, cwd), module_name(file), config
        )
        functions += found
        findings += problems
    return ScanResult(len(files), tuple(functions), tuple(rank(assign_keys(findings))))


def discover_files(paths: Sequence[Path], config: AuditConfig) -> list[Path]:
    """The audited files, each once, in a stable order. A path given by name is read
    whatever its suffix; a directory contributes its ``*.py`` files."""
    seen: set[str] = set()
    found: list[Path] = []
    for path in paths:
        candidates = [path] if path.is_file() else _walk(path, config)
        for candidate in candidates:
            absolute = os.path.abspath(candidate)
            if absolute not in seen and config.selects_file(candidate):
                seen.add(absolute)
                found.append(candidate)
    return found


def _walk(directory: Path, config: AuditConfig) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        base = Path(root)
        dirs[:] = sorted(d for d in dirs if not config.excludes_directory(base / d))
        for name in sorted(files):
            if name.endswith(".py"):
                yield base / name


def display_path(path: Path, cwd: Path) -> str:
    """Posix and relative to ``cwd`` when inside it, as CI annotations expect."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(os.path.abspath(cwd)).as_posix()
    except ValueError:
        return absolute.as_posix()


def module_name(path: Path) -> str:
    """The dotted name the file would be imported as, found from ``__init__.py`` files."""
    absolute = Path(os.path.abspath(path))
    parts = [] if absolute.name == "__init__.py" else [absolute.stem]
    directory = absolute.parent
    while (directory / "__init__.py").is_file() and directory != directory.parent:
        parts.append(directory.name)
        directory = directory.parent
    return ".".join(reversed(parts)) or absolute.stem


# --- one file --------------------------------------------------------------------------


@dataclass(frozen=True)
class _OptOut:
    """A ``# spangap: no-span`` comment; ``alone`` when no code shares its line."""

    reason: str
    alone: bool


@dataclass(frozen=True)
class _Module:
    """What is known about the file that a function's rank or opt-out depends on."""

    path: str
    name: str
    is_views: bool
    creates_asgi_app: bool
    opt_outs: dict[int, _OptOut]
    config: AuditConfig


def scan_source(
    source: bytes, path: str, module: str, config: AuditConfig
) -> tuple[list[Function], list[Finding]]:
    """The counted functions of one file and its findings (keys not yet assigned)."""
    try:
        with warnings.catch_warnings():
            # Invalid escapes and the like are the code's business, not the audit's output.
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        return [], [_syntax_error(exc, path, module)]
    facts = _Module(
        path=path,
        name=module,
        is_views=os.path.basename(path) == "views.py",
        creates_asgi_app=_creates_asgi_app(tree),
        opt_outs=_opt_out_comments(source),
        config=config,
    )
    functions: list[Function] = []
    findings: list[Finding] = []
    for node, qualname, in_class in _public_functions(tree.body, "", in_class=False):
        if _is_stub(node):
            continue
        reason = _opt_out_reason(node, facts)
        function = _audit_function(node, qualname, in_class, facts, reason)
        functions.append(function)
        if function.status == UNCOVERED:
            findings.append(_finding(function, bare_opt_out=reason is not None))
    findings += _correctness_findings(tree, facts)
    return functions, findings


def _correctness_findings(tree: ast.Module, facts: _Module) -> list[Finding]:
    """The span mistakes (checks.py) of every function in the file, private and nested
    ones included: a span left open is a bug wherever it is."""
    found: list[Finding] = []
    for node, qualname in _all_functions(tree.body, ""):
        for problem in check_function(node):
            found.append(
                Finding(
                    kind=problem.kind,
                    path=facts.path,
                    line=problem.line,
                    column=problem.column + 1,
                    qualname=qualname,
                    module=facts.name,
                    entry_point="none",
                    message=f"{qualname}: {problem.message}",
                )
            )
    return found


def _all_functions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[FunctionNode, str]]:
    """Every function with its qualified name (``outer.<locals>.inner`` as Python
    names it)."""
    for statement in body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            qualname = prefix + statement.name
            yield statement, qualname
            yield from _all_functions(statement.body, qualname + ".<locals>.")
        elif isinstance(statement, ast.ClassDef):
            yield from _all_functions(statement.body, f"{prefix}{statement.name}.")
        else:
            for block in _blocks(statement):
                yield from _all_functions(block, prefix)


def _syntax_error(exc: SyntaxError | ValueError, path: str, module: str) -> Finding:
    if isinstance(exc, SyntaxError):
        line, column, text = exc.lineno or 1, exc.offset or 1, exc.msg
    else:
        line, column, text = 1, 1, str(exc)
    return Finding(
        kind=SYNTAX_ERROR,
        path=path,
        line=line,
        column=max(column, 1),
        qualname="",
        module=module,
        entry_point="none",
        message=f"cannot parse the file, so none of its functions were audited: {text}",
    )


def _public_functions(
    body: list[ast.stmt], prefix: str, *, in_class: bool
) -> Iterator[tuple[FunctionNode, str, bool]]:
    """Module-level functions and methods of public classes, nested classes included;
    not functions defined inside functions, which run only as part of their parent."""
    for statement in body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            if not statement.name.startswith("_"):
                yield statement, prefix + statement.name, in_class
        elif isinstance(statement, ast.ClassDef):
            if not statement.name.startswith("_"):
                yield from _public_functions(
                    statement.body, f"{prefix}{statement.name}.", in_class=True
                )
        else:
            for block in _blocks(statement):
                yield from _public_functions(block, prefix, in_class=in_class)


def _blocks(statement: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists inside ``if``, ``try``, ``with``, ``match``...: functions
    defined under ``if TYPE_CHECKING`` or ``try: ... except ImportError`` still count."""
    for name in ("body", "orelse", "finalbody"):
        block = getattr(statement, name, None)
        if isinstance(block, list):
            yield block
    for handler in getattr(statement, "handlers", []):
        yield handler.body
    for case in getattr(statement, "cases", []):
        yield case.body


def _audit_function(
    node: FunctionNode, qualname: str, in_class: bool, facts: _Module, reason: str | None
) -> Function:
    if _has_span(node, facts.config):
        status, reason = COVERED, None
    elif reason:
        status = OPTED_OUT
    else:
        status = UNCOVERED
    return Function(
        path=facts.path,
        line=node.lineno,
        column=node.col_offset + 1,
        qualname=qualname,
        module=facts.name,
        entry_point=_entry_point(node, in_class, facts),
        status=status,
        reason=reason or "",
    )


def _finding(function: Function, *, bare_opt_out: bool) -> Finding:
    label = ENTRY_POINT_LABELS[function.entry_point]
    if bare_opt_out:
        kind = OPT_OUT_WITHOUT_REASON
        message = (
            f"{label} {function.qualname} opts out of a span without a reason: "
            "write it after the marker, as in '# spangap: no-span <reason>'"
        )
    else:
        kind = MISSING_SPAN
        message = (
            f"{label} {function.qualname} opens no span: decorate it with "
            "tracer.start_as_current_span(...) or open one in a with block"
        )
    return Finding(
        kind=kind,
        path=function.path,
        line=function.line,
        column=function.column,
        qualname=function.qualname,
        module=function.module,
        entry_point=function.entry_point,
        message=message,
    )


# --- spans -----------------------------------------------------------------------------


def _has_span(node: FunctionNode, config: AuditConfig) -> bool:
    if any(_is_span_decorator(decorator, config) for decorator in node.decorator_list):
        return True
    for child in own_nodes(node):
        if isinstance(child, ast.With | ast.AsyncWith) and any(
            _opens_span(item.context_expr) for item in child.items
        ):
            return True
        if (
            config.helpers
            and isinstance(child, ast.Call)
            and _named_in(_dotted(child.func), config.helpers)
        ):
            return True
    return False


def _is_span_decorator(decorator: ast.expr, config: AuditConfig) -> bool:
    parts = _dotted(_callee(decorator))
    if isinstance(decorator, ast.Call) and parts[-1] == SPAN_DECORATOR_CALL:
        return True
    return parts[-1] == SPANGAP_DECORATOR or _named_in(parts, config.decorators)


def _opens_span(expression: ast.expr) -> bool:
    return isinstance(expression, ast.Call) and _dotted(expression.func)[-1] in SPAN_CONTEXT_CALLS


def _callee(expression: ast.expr) -> ast.expr:
    """What a call calls (``app.route`` in ``@app.route("/")``); other expressions as is."""
    return expression.func if isinstance(expression, ast.Call) else expression


def _dotted(node: ast.expr) -> list[str]:
    """``a.b.c`` as its parts; a part that is not a plain name (a call, a subscript)
    stands as ``<expr>``, so that the last part can still be matched."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [*_dotted(node.value), node.attr]
    return [_UNKNOWN]


def _named_in(parts: list[str], names: Iterable[str]) -> bool:
    """Whether a configured name means this one: the last part, or the dotted text."""
    text = ".".join(parts)
    return any(name in (parts[-1], text) or text.endswith("." + name) for name in names)


def _is_stub(node: FunctionNode) -> bool:
    """Overloads, abstract methods and bodies of only ``...``/``pass``: no work runs."""
    if any(_dotted(_callee(d))[-1] in _STUB_DECORATORS for d in node.decorator_list):
        return True
    body = node.body
    if body and _is_constant_expression(body[0]):
        body = body[1:]  # the docstring
    return all(_is_placeholder(statement) for statement in body)


def _is_constant_expression(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _is_placeholder(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return statement.value.value is Ellipsis
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        return _dotted(_callee(statement.exc))[-1] == "NotImplementedError"
    return False


# --- opt-out ---------------------------------------------------------------------------


def _opt_out_comments(source: bytes) -> dict[int, _OptOut]:
    """The ``# spangap: no-span`` comments by line; a reason may be empty.

    Comments come from the tokenizer, so the marker inside a string does not count.
    """
    if b"no-span" not in source:
        return {}
    comments: dict[int, _OptOut] = {}
    try:
        for token in tokenize.tokenize(io.BytesIO(source).readline):
            if token.type == tokenize.COMMENT:
                match = _OPT_OUT.search(token.string)
                if match:
                    reason = match.group(1).strip().lstrip(":-–— ").strip()
                    alone = token.line.lstrip().startswith("#")
                    comments[token.start[0]] = _OptOut(reason, alone)
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass  # the parser accepted the file; a tokenizer quirk must not stop the audit
    return comments


def _opt_out_reason(node: FunctionNode, facts: _Module) -> str | None:
    """The reason of the function's opt-out comment: on a line of its own just above it
    (or above its decorators), on a decorator line, or on a line of its signature.
    None without such a comment; a comment after the code of the line above belongs to
    that code, not to this function."""
    first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
    above = facts.opt_outs.get(first - 1)
    if above is not None and above.alone:
        return above.reason
    last = max(node.lineno, node.body[0].lineno - 1)
    for line in range(first, last + 1):
        if line in facts.opt_outs:
            return facts.opt_outs[line].reason
    return None


# --- entry points ----------------------------------------------------------------------


def _entry_point(node: FunctionNode, in_class: bool, facts: _Module) -> str:
    for decorator in node.decorator_list:
        target = _callee(decorator)
        last = _dotted(target)[-1]
        is_method_call = isinstance(target, ast.Attribute)
        if isinstance(decorator, ast.Call) and is_method_call and last in _ROUTE_METHODS:
            return "route"
        if last == "shared_task" or (is_method_call and last == "task"):
            return "task"
    if facts.is_views and _is_django_view(node, in_class):
        return "view"
    if facts.creates_asgi_app and isinstance(node, ast.AsyncFunctionDef):
        return "asgi"
    return "none"


def _is_django_view(node: FunctionNode, in_class: bool) -> bool:
    if in_class:
        return node.name in _VIEW_METHODS
    arguments = [*node.args.posonlyargs, *node.args.args]
    return bool(arguments) and arguments[0].arg == "request"


def _creates_asgi_app(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Call) and _dotted(node.func)[-1] in _ASGI_APPS
        for node in ast.walk(tree)
    )


# --- ranking and keys ------------------------------------------------------------------


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Files that could not be read first (they hide everything in them), then span
    mistakes, then entry points without a span, then the other functions; by module
    and line within each."""
    return sorted(
        findings,
        key=lambda f: (
            f.kind != SYNTAX_ERROR,
            f.kind not in CHECK_KINDS,  # bugs before gaps
            f.entry_point == "none",
            f.module,
            f.path,
            f.line,
            f.column,
        ),
    )


def assign_keys(findings: Iterable[Finding]) -> list[Finding]:
    """Give each finding a key made of its kind, file and qualified name, without line
    numbers, so that code moving within its file keeps its key. Two functions with
    the same qualified name in one file (a property's getter and setter, definitions
    under ``if``/``else``) are told apart by their order in the file."""
    seen: Counter[str] = Counter()
    keyed: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.path, f.line, f.column, f.kind)):
        base = ":".join(part for part in (finding.kind, finding.path, finding.qualname) if part)
        seen[base] += 1
        key = base if seen[base] == 1 else f"{base}#{seen[base]}"
        keyed.append(replace(finding, key=key))
    return keyed
