"""``gapreport audit``: small code bases written to disk, audited without being imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from spangap.audit.config import AuditConfig, load_config
from spangap.audit.scan import COVERED, OPTED_OUT, UNCOVERED, ScanResult, scan_paths
from spangap.cli import main

CONFIG = """\
[tool.spangap.audit]
decorators = ["instrumented"]
helpers = ["span_for", "obs.timed_block"]
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        document: dict[str, object] = json.loads(self.out)
        return document


Write = Callable[[str, str], Path]
Audit = Callable[..., Run]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """A project directory with a pyproject.toml, made the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(CONFIG)

    def write(relative: str, source: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def audit(capsys: pytest.CaptureFixture[str]) -> Audit:
    def run(*args: str) -> Run:
        code = main(["audit", *args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def scan(root: Path) -> ScanResult:
    return scan_paths([root], load_config(root / "pyproject.toml", root), root)


def statuses(result: ScanResult) -> dict[str, str]:
    return {f.qualname: f.status for f in result.functions}


# --- what counts as a span -------------------------------------------------------------

SPAN_FORMS = {
    "decorator": """
        @tracer.start_as_current_span("load")
        def subject(): return 1
    """,
    "decorator on any receiver": """
        @trace.get_tracer(__name__).start_as_current_span("load")
        def subject(): return 1
    """,
    "with": """
        def subject():
            with tracer.start_as_current_span("load"):
                return 1
    """,
    "async with": """
        async def subject():
            async with tracer.start_span("load") as span:
                return span
    """,
    "use_span": """
        def subject(span):
            with open("x") as f, trace.use_span(span, end_on_exit=True):
                return f
    """,
    "nested block": """
        def subject(items):
            for item in items:
                if item:
                    with tracer.start_as_current_span("item"):
                        pass
    """,
    "traced": """
        @traced
        def subject(): return 1
    """,
    "spangap.traced": """
        @spangap.traced
        def subject(): return 1
    """,
    "traced(...)": """
        @traced(name="load")
        def subject(): return 1
    """,
    "configured decorator": """
        @instrumented
        def subject(): return 1
    """,
    "configured decorator, dotted and called": """
        @observability.instrumented(kind="db")
        def subject(): return 1
    """,
    "configured helper": """
        def subject():
            span_for("load")
            return 1
    """,
    "configured helper as a context manager": """
        def subject():
            with span_for("load"):
                return 1
    """,
    "configured helper by its dotted name": """
        def subject():
            obs.timed_block()
            return 1
    """,
}


@pytest.mark.parametrize("form", list(SPAN_FORMS))
def test_each_span_form_is_recognised(project: Write, tmp_path: Path, form: str) -> None:
    project("src/app.py", SPAN_FORMS[form])
    assert statuses(scan(tmp_path)) == {"subject": COVERED}


NOT_A_SPAN = {
    "span only in an inner function": """
        def subject():
            def inner():
                with tracer.start_as_current_span("inner"):
                    pass
            return inner
    """,
    "a span started but not entered": """
        def subject():
            span = tracer.start_span("load")
            return span
    """,
    "an unconfigured helper": """
        def subject():
            timed_block()
    """,
    "a dotted helper under another name": """
        def subject():
            other.timed_block()
    """,
    "an unrelated decorator": """
        @functools.cache
        def subject(): return 1
    """,
}


@pytest.mark.parametrize("form", list(NOT_A_SPAN))
def test_what_is_not_a_span(project: Write, tmp_path: Path, form: str) -> None:
    project("src/app.py", NOT_A_SPAN[form])
    assert statuses(scan(tmp_path)) == {"subject": UNCOVERED}


# --- which functions count -------------------------------------------------------------


def test_private_functions_tests_and_stubs_are_left_out(project: Write, tmp_path: Path) -> None:
    project(
        "src/shop/api.py",
        """
        from typing import overload

        def public(): return 1
        def _private(): return 1

        class Service:
            def __init__(self): self.x = 1
            def _helper(self): return 1
            def handle(self): return 1

        class _Internal:
            def run(self): return 1

        @overload
        def parse(x: int) -> int: ...
        def parse(x): return x

        class Port(Protocol):
            def send(self, data: bytes) -> None:
                \"\"\"Send it.\"\"\"
            def close(self) -> None:
                raise NotImplementedError
        """,
    )
    for path in ("tests/test_api.py", "src/shop/tests/helpers.py", "src/shop/api_test.py"):
        project(path, "def helper(): return 1\n")
    project("src/shop/test_models.py", "def helper(): return 1\n")
    project("conftest.py", "def fixture(): return 1\n")
    project(".venv/lib/site.py", "def hidden(): return 1\n")
    assert statuses(scan(tmp_path)) == {
        "public": UNCOVERED,
        "Service.handle": UNCOVERED,
        "parse": UNCOVERED,
    }


def test_nested_classes_give_qualified_names(project: Write, tmp_path: Path) -> None:
    project(
        "src/app.py",
        """
        class Outer:
            def method(self): return 1

            class Inner:
                async def deep(self): return 1

                @property
                def size(self): return 1

        if TYPE_CHECKING:
            def typed(): return 1
        else:
            try:
                def fallback(): return 1
            except ImportError:
                pass
        """,
    )
    result = scan(tmp_path)
    assert list(statuses(result)) == [
        "Outer.method",
        "Outer.Inner.deep",
        "Outer.Inner.size",
        "typed",
        "fallback",
    ]
    deep = next(f for f in result.functions if f.qualname == "Outer.Inner.deep")
    assert (deep.path, deep.line, deep.column, deep.module) == ("src/app.py", 6, 9, "app")


def test_module_names_follow_packages(project: Write, tmp_path: Path) -> None:
    project("src/shop/__init__.py", "def setup(): return 1\n")
    project("src/shop/billing/__init__.py", "")
    project("src/shop/billing/invoices.py", "def total(): return 1\n")
    modules = {f.qualname: f.module for f in scan(tmp_path).functions}
    assert modules == {"setup": "shop", "total": "shop.billing.invoices"}


def test_include_and_exclude_globs(project: Write, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.spangap.audit]\ninclude = ["src/**"]\nexclude = ["src/shop/legacy", "**/gen_*.py"]\n'
    )
    project("scripts/tool.py", "def main(): return 1\n")
    project("src/shop/legacy/old.py", "def old(): return 1\n")
    project("src/shop/proto/gen_api.py", "def generated(): return 1\n")
    project("src/shop/api.py", "def kept(): return 1\n")
    assert statuses(scan(tmp_path)) == {"kept": UNCOVERED}
    config = AuditConfig(base=tmp_path, include=("src/**/*.py",), exclude=("migrations",))
    assert config.selects_file(tmp_path / "src/a/b/c.py")
    assert config.selects_file(tmp_path / "src/c.py")  # ** spans zero directories too
    assert not config.selects_file(tmp_path / "src/a/migrations/0001.py")
    assert not config.selects_file(tmp_path / "lib/c.py")


# --- opting out ------------------------------------------------------------------------


def test_opt_out_with_and_without_a_reason(project: Write, tmp_path: Path, audit: Audit) -> None:
    project(
        "src/app.py",
        """
        # spangap: no-span pure arithmetic, microseconds
        def above(): return 1

        def on_the_line(): # spangap: no-span - called only under its caller's span
            return 1

        # spangap: no-span health check, traced by the load balancer
        @app.get("/health")
        @cached
        def decorated(): return 1

        # spangap: no-span
        def without_reason(): return 1

        def in_a_string():
            return "# spangap: no-span not a comment"

        def one_liner(): return 1  # spangap: no-span trivial
        def next_one_liner(): return 1
        """,
    )
    result = scan(tmp_path)
    assert statuses(result) == {
        "above": OPTED_OUT,
        "on_the_line": OPTED_OUT,
        "decorated": OPTED_OUT,
        "without_reason": UNCOVERED,
        "in_a_string": UNCOVERED,
        "one_liner": OPTED_OUT,
        "next_one_liner": UNCOVERED,
    }
    reasons = {f.qualname: f.reason for f in result.functions if f.status == OPTED_OUT}
    assert reasons["on_the_line"] == "called only under its caller's span"
    assert {f.qualname: f.kind for f in result.findings} == {
        "without_reason": "opt-out-without-reason",
        "in_a_string": "missing-span",
        "next_one_liner": "missing-span",
    }
    assert result.coverage.counted == 3 and result.coverage.opted_out == 4

    plain = audit("src")
    assert "4 opted out" in plain.out and "pure arithmetic" not in plain.out
    shown = audit("src", "--show-opted-out")
    assert "src/app.py:3:1  above: pure arithmetic, microseconds" in shown.out
    document = audit("src", "--format", "json").json()
    opted = document["opted_out"]
    assert isinstance(opted, list)
    assert [o["qualname"] for o in opted] == ["above", "on_the_line", "decorated", "one_liner"]


# --- ranking and coverage --------------------------------------------------------------


def test_entry_points_come_first(project: Write, tmp_path: Path) -> None:
    project("src/aaa/__init__.py", "")
    project("src/shop/__init__.py", "")
    project(
        "src/aaa/helpers.py",
        """
        def early_helper(): return 1
        """,
    )
    project(
        "src/shop/api.py",
        """
        app = FastAPI()

        def plain(): return 1

        @router.post("/orders")
        def create(): return 1

        async def lifespan(app): yield

        @bp.route("/old")
        def legacy(): return 1
        """,
    )
    project(
        "src/shop/jobs.py",
        """
        @shared_task
        def resize(): return 1

        @celery.task(bind=True)
        def email(self): return 1

        @app.task
        def report(): return 1
        """,
    )
    project(
        "src/shop/views.py",
        """
        def index(request): return 1

        def not_a_view(value): return 1

        class OrderView(View):
            def get(self, request): return 1
            def helper(self): return 1
        """,
    )
    findings = scan(tmp_path).findings
    ranked = [(f.qualname, f.entry_point) for f in findings]
    assert ranked == [
        ("create", "route"),
        ("lifespan", "asgi"),
        ("legacy", "route"),
        ("resize", "task"),
        ("email", "task"),
        ("report", "task"),
        ("index", "view"),
        ("OrderView.get", "view"),
        ("early_helper", "none"),
        ("plain", "none"),
        ("not_a_view", "none"),
        ("OrderView.helper", "none"),
    ]


def test_coverage_overall_per_module_and_package(project: Write, audit: Audit) -> None:
    project(
        "src/shop/api.py",
        """
        @traced
        def one(): return 1
        @traced
        def two(): return 1
        def three(): return 1
        """,
    )
    project(
        "src/shop/db/repo.py",
        """
        @traced
        def load(): return 1
        def save(): return 1
        def _private(): return 1
        """,
    )
    table = audit("src")
    assert table.out.startswith("spangap audit: 5 public functions, 3 with a span, 60% coverage")
    rows = [line.split() for line in table.out.splitlines()]
    assert ["api", "src/shop/api.py", "3", "2", "66.6%"] in rows
    assert ["repo", "src/shop/db/repo.py", "2", "1", "50%"] in rows
    assert ["src/shop/db", "2", "1", "50%"] in rows

    document = audit("src", "--format", "json").json()
    summary = document["summary"]
    assert isinstance(summary, dict)
    assert (summary["functions"], summary["covered"], summary["coverage"]) == (5, 3, 60.0)
    modules = document["modules"]
    assert isinstance(modules, list)
    assert [(m["path"], m["functions"], m["covered"]) for m in modules] == [
        ("src/shop/api.py", 3, 2),
        ("src/shop/db/repo.py", 2, 1),
    ]
    packages = document["packages"]
    assert isinstance(packages, list)
    assert [(p["package"], p["coverage"]) for p in packages] == [
        ("src/shop", 66.67),
        ("src/shop/db", 50.0),
    ]


# --- formats ---------------------------------------------------------------------------


@pytest.fixture
def two_findings(project: Write) -> None:
    project(
        "src/app.py",
        """
        @app.route("/")
        def home(): return 1

        @traced
        def covered(): return 1

        def helper(): return 1
        """,
    )


@pytest.mark.usefixtures("two_findings")
def test_table_lists_findings_after_the_modules(audit: Audit) -> None:
    run = audit("src")
    assert run.code == 1
    lines = run.out.splitlines()
    assert lines[0].startswith("spangap audit: 3 public functions, 1 with a span, 33.3% coverage")
    findings = lines.index("Findings, span mistakes and entry points first:")
    assert lines[findings + 2].split() == ["1", "src/app.py:3:1", "home", "missing-span", "route"]
    assert lines[findings + 3].split() == ["2", "src/app.py:8:1", "helper", "missing-span", "-"]
    assert "2 findings (no baseline: all are new)" in run.out
    assert lines[-1] == "audit failed: 2 new findings"


@pytest.mark.usefixtures("two_findings")
def test_json_document(audit: Audit) -> None:
    run = audit("src", "--format", "json")
    assert run.code == 1
    assert run.err.strip() == "audit failed: 2 new findings"
    document = run.json()
    assert document["version"] == 1
    assert document["tool"] == "spangap-audit"
    findings = document["findings"]
    assert isinstance(findings, list)
    assert findings[0] == {
        "key": "missing-span:src/app.py:home",
        "kind": "missing-span",
        "path": "src/app.py",
        "line": 3,
        "column": 1,
        "qualname": "home",
        "module": "app",
        "entry_point": "route",
        "message": findings[0]["message"],
        "new": True,
    }
    assert "home" in findings[0]["message"]


@pytest.mark.usefixtures("two_findings")
def test_sarif_document(audit: Audit) -> None:
    run = audit("src", "--format", "sarif")
    document = run.json()
    assert document["version"] == "2.1.0"
    assert "sarif-2.1.0" in str(document["$schema"])
    runs = document["runs"]
    assert isinstance(runs, list) and len(runs) == 1
    driver = runs[0]["tool"]["driver"]
    assert driver["name"] == "spangap-audit"
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert rule_ids == [
        "missing-span", "opt-out-without-reason", "syntax-error",
        "span-not-ended", "span-not-entered", "attach-without-detach", "span-not-propagated",
    ]  # fmt: skip
    results = runs[0]["results"]
    assert len(results) == 2
    first = results[0]
    assert first["ruleId"] == "missing-span"
    assert rule_ids[first["ruleIndex"]] == first["ruleId"]
    assert first["level"] == "warning"
    assert "home" in first["message"]["text"]
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "src/app.py"
    assert location["region"] == {"startLine": 3, "startColumn": 1}
    assert first["partialFingerprints"] == {"spangapKey/v1": "missing-span:src/app.py:home"}


def test_sarif_is_valid_against_the_schema(project: Write, audit: Audit) -> None:
    import jsonschema

    from npm_schemas import sarif_schema

    project("src/app.py", "def plain(): return 1\n# spangap: no-span\ndef bare(): return 1\n")
    project("src/broken.py", "def f(:\n")
    audit("src", "--baseline", "base.json", "--update-baseline")
    project("src/more.py", "def added(): return 1\n")
    document = audit("src", "--baseline", "base.json", "--format", "sarif").json()
    schema = sarif_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [error.message for error in validator.iter_errors(document)] == []
    results = document["runs"][0]["results"]  # type: ignore[index]
    assert [r["ruleId"] for r in results] == [
        "syntax-error",
        "missing-span",
        "opt-out-without-reason",
        "missing-span",
    ]
    assert [r["baselineState"] for r in results] == ["unchanged", "unchanged", "unchanged", "new"]


@pytest.mark.usefixtures("two_findings")
def test_markdown_tables(audit: Audit) -> None:
    run = audit("src", "--format", "markdown")
    assert "| module | file | functions | with span | coverage |" in run.out
    assert "| rank | location | function | kind | entry |" in run.out
    assert "| 1 | `src/app.py:3:1` | `home` | missing-span | route |" in run.out


@pytest.mark.usefixtures("two_findings")
def test_github_annotations(audit: Audit) -> None:
    lines = audit("src", "--format", "github").out.splitlines()
    warnings = [line for line in lines if line.startswith("::warning ")]
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "::warning file=src/app.py,line=3,col=1,title=spangap missing-span::"
    )
    assert lines[-1].startswith("::error title=spangap audit::")


# --- baseline and gate -----------------------------------------------------------------


def test_baseline_ratchet(project: Write, audit: Audit, tmp_path: Path) -> None:
    source = """
        @app.get("/orders")
        def list_orders(): return 1

        class Repo:
            def load(self): return 1
            @property
            def size(self): return 1
            @size.setter
            def size(self, value): self.value = value
    """
    project("src/app.py", source)
    created = audit("src", "--baseline", ".spangap-baseline.json", "--update-baseline")
    assert created.code == 0
    assert "4 findings recorded" in created.out
    text = (tmp_path / ".spangap-baseline.json").read_text()
    assert text.endswith("}\n")
    keys = json.loads(text)["findings"]
    assert keys == sorted(keys)
    assert "missing-span:src/app.py:Repo.size#2" in keys

    project("src/app.py", "\n" * 10 + source)  # everything moves down 10 lines
    moved = audit("src", "--baseline", ".spangap-baseline.json")
    assert moved.code == 0, moved.out
    assert "4 findings: 0 new, 4 known in .spangap-baseline.json" in moved.out

    project("src/app.py", textwrap.dedent(source) + "\ndef added(): return 1\n")
    grown = audit("src", "--baseline", ".spangap-baseline.json", "--format", "json")
    assert grown.code == 1
    summary = grown.json()["summary"]
    assert isinstance(summary, dict)
    assert (summary["new"], summary["known"]) == (1, 4)
    github = audit("src", "--baseline", ".spangap-baseline.json", "--format", "github")
    assert [line for line in github.out.splitlines() if "::warning" in line] == [
        line for line in github.out.splitlines() if "added" in line and "::warning" in line
    ]

    assert audit("src", "--baseline", ".spangap-baseline.json", "--update-baseline").code == 0
    assert audit("src", "--baseline", ".spangap-baseline.json").code == 0


def test_fixed_findings_are_reported_as_gone(project: Write, audit: Audit) -> None:
    project("src/app.py", "def one(): return 1\ndef two(): return 1\n")
    audit("src", "--baseline", "base.json", "--update-baseline")
    project("src/app.py", "def one(): return 1\n")
    run = audit("src", "--baseline", "base.json")
    assert run.code == 0
    assert "1 baseline entry no longer found" in run.out


def test_min_coverage_gate(project: Write, tmp_path: Path, audit: Audit) -> None:
    project("src/app.py", "@traced\ndef a(): return 1\n# spangap: no-span trivial\ndef b(): pass\n")
    project("src/more.py", "def c(): return 1\n")
    audit("src", "--baseline", "base.json", "--update-baseline")
    assert audit("src", "--baseline", "base.json").code == 0
    below = audit("src", "--baseline", "base.json", "--min-coverage", "50.1")
    assert below.code == 1
    assert "coverage 50% is below the minimum 50.1%" in below.out
    assert audit("src", "--baseline", "base.json", "--min-coverage", "50").code == 0

    (tmp_path / "pyproject.toml").write_text("[tool.spangap.audit]\nmin-coverage = 80\n")
    assert audit("src", "--baseline", "base.json").code == 1
    assert audit("src", "--baseline", "base.json", "--min-coverage", "40").code == 0


# --- errors ----------------------------------------------------------------------------


def test_bad_config_key_is_one_line_and_exit_2(project: Write, tmp_path: Path) -> None:
    project("src/app.py", "def a(): return 1\n")
    (tmp_path / "pyproject.toml").write_text("[tool.spangap.audit]\nhelper = ['span_for']\n")
    result = subprocess.run(
        [sys.executable, "-m", "spangap.cli", "audit", "src"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gapreport: audit: ")
    assert "pyproject.toml" in lines[0] and "'helper'" in lines[0]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("[tool.spangap.audit\n", "not valid TOML"),
        ("[tool.spangap.audit]\nhelpers = 'span_for'\n", "helpers must be a list"),
        ("[tool.spangap.audit]\nmin-coverage = 120\n", "min-coverage must be a number"),
        ("[tool.spangap.audit]\nmin-coverage = true\n", "min-coverage must be a number"),
        ("[tool.spangap]\naudit = 1\n", "must be a table"),
    ],
)
def test_bad_config_is_named(
    project: Write, tmp_path: Path, audit: Audit, config: str, fragment: str
) -> None:
    project("src/app.py", "def a(): return 1\n")
    (tmp_path / "pyproject.toml").write_text(config)
    run = audit("src")
    assert run.code == 2 and run.out == ""
    assert run.err.count("\n") == 1
    assert "pyproject.toml" in run.err and fragment in run.err


def test_config_is_found_above_the_path_or_given(
    project: Write, tmp_path: Path, audit: Audit
) -> None:
    project("src/app.py", "@custom\ndef a(): return 1\n")
    assert audit("src/app.py").code == 1
    (tmp_path / "audit.toml").write_text('[tool.spangap.audit]\ndecorators = ["custom"]\n')
    assert audit("src", "--config", "audit.toml").code == 0
    (tmp_path / "pyproject.toml").write_text('[tool.spangap.audit]\ndecorators = ["custom"]\n')
    assert audit("src/app.py").code == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["missing"], "no such file or directory: missing"),
        (["src", "--update-baseline"], "--update-baseline needs --baseline"),
        (["src", "--baseline", "absent.json"], "create it with --update-baseline"),
    ],
)
def test_usage_errors(project: Write, audit: Audit, args: list[str], fragment: str) -> None:
    project("src/app.py", "def a(): return 1\n")
    run = audit(*args)
    assert run.code == 2
    assert run.err.startswith("gapreport: audit: ") and fragment in run.err


def test_syntax_error_is_a_finding(project: Write, tmp_path: Path, audit: Audit) -> None:
    project("src/broken.py", "def f(:\n    pass\n")
    project("src/fine.py", "def g(): return 1\n")
    result = scan(tmp_path)
    assert statuses(result) == {"g": UNCOVERED}
    first = result.findings[0]
    assert (first.kind, first.path, first.line, first.key) == (
        "syntax-error",
        "src/broken.py",
        1,
        "syntax-error:src/broken.py",
    )
    run = audit("src")
    assert run.code == 1 and "1 file could not be parsed" in run.out


def test_warnings_about_the_audited_code_are_not_shown(project: Write, tmp_path: Path) -> None:
    project("src/patterns.py", 'DIGITS = "\\d+"\n\ndef match(): return 1\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert statuses(scan(tmp_path)) == {"match": UNCOVERED}
    assert caught == []


def test_the_audited_code_is_never_imported(project: Write, tmp_path: Path, audit: Audit) -> None:
    project(
        "src/explosive_module.py",
        """
        raise SystemExit("imported!")

        def work(): return 1
        """,
    )
    run = audit("src", "--format", "json")
    assert run.code == 1
    findings = run.json()["findings"]
    assert isinstance(findings, list)
    assert [f["qualname"] for f in findings] == ["work"]
    assert "explosive_module" not in sys.modules
