"""The audit on a fixture code base (tests/audit_project) with Flask-, FastAPI-, Django-
and Celery-shaped modules, nested classes, decorators, an async generator, opt-outs and
planted span mistakes. Each planted finding is marked on its line with ``expect:
<kind>``; the audit must find exactly those, no more and no fewer."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).parent / "audit_project"
MARK = re.compile(r"expect: ([a-z-]+)")


def planted(root: Path) -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [(kind, path.relative_to(root).as_posix(), number)
                      for kind in MARK.findall(line)]  # fmt: skip
    return sorted(found)


def audit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "spangap.cli", "audit", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_audit_finds_exactly_the_planted_findings(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    run = audit(root, "shop", "tests", "--format", "json")
    assert run.returncode == 1, run.stderr  # findings, and none known
    document = json.loads(run.stdout)
    found = sorted((f["kind"], f["path"], f["line"]) for f in document["findings"])
    expected = planted(root)
    assert found == expected
    kinds = {kind for kind, _, _ in expected}
    assert len(expected) == 19 and len(kinds) == 6  # every kind is planted


def test_the_fixture_coverage_is_what_a_reader_counts(tmp_path: Path) -> None:
    """21 public functions outside tests, private ones, stubs and a private class's
    methods aside; 7 open a span (orders, users, report, stream_spanned, price, empty,
    and build's with block), 2 opt out with a reason (compress, size)."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    summary = json.loads(audit(root, "shop", "tests", "--format", "json").stdout)["summary"]
    assert (summary["covered"], summary["uncovered"], summary["opted_out"]) == (7, 14, 2)


def test_the_fixture_sarif_validates_against_the_schema(tmp_path: Path) -> None:
    import jsonschema

    from npm_schemas import sarif_schema

    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    document = json.loads(audit(root, "shop", "--format", "sarif").stdout)
    schema = sarif_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [error.message for error in validator.iter_errors(document)] == []
    rules = {r["ruleId"] for r in document["runs"][0]["results"]}
    assert len(rules) == 6  # every planted kind


@pytest.mark.parametrize("package", ["flask", "celery", "opentelemetry.instrumentation"])
def test_the_audit_reads_real_packages(package: str, tmp_path: Path) -> None:
    """Installed packages from PyPI: the audit reads them to the end, every file parses,
    and the figures add up."""
    module = pytest.importorskip(package)
    directory = Path(next(iter(module.__path__)))  # opentelemetry.instrumentation: a namespace
    run = audit(tmp_path, str(directory), "--format", "json")
    assert run.returncode in (0, 1), run.stderr
    document = json.loads(run.stdout)
    summary = document["summary"]
    assert summary["covered"] + summary["uncovered"] > 20
    assert not [f for f in document["findings"] if f["kind"] == "syntax-error"]


AZURE_BLOB = "azure-storage-blob==12.31.1"
TRACE_DECORATORS = ("distributed_trace", "distributed_trace_async")


def azure_blob_source() -> Path:
    """The azure-storage-blob wheel from PyPI, unpacked once into the test cache: a real
    code base whose spans come from its own decorators (azure-core's tracing)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spangap-tests"
    unpacked = cache / AZURE_BLOB.replace("==", "-")
    if not (unpacked / "azure").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache),
             AZURE_BLOB], check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        wheel = next(cache.glob("azure_storage_blob-12.31.1-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
    return unpacked


def decorated_by_text(root: Path, names: tuple[str, ...]) -> int:
    """Public functions with one of ``names`` among their decorators, counted from the
    text: a ``def`` line of a public name and the ``@`` lines right above it."""
    count = 0
    definition = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z]\w*)\s*\(")
    for path in root.rglob("*.py"):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if not definition.match(line):
                continue
            above = number - 1
            decorators = []
            while above >= 0 and lines[above].lstrip().startswith("@"):
                decorators.append(lines[above].strip())
                above -= 1
            if any(d.lstrip("@").split("(")[0].split(".")[-1] in names for d in decorators):
                count += 1
    return count


def test_the_coverage_of_a_real_package_matches_a_count_from_its_text(tmp_path: Path) -> None:
    """azure-storage-blob opens its spans with azure-core's ``@distributed_trace``
    decorators, named in the configuration; the audit's covered functions are exactly
    the public functions that a plain reading of the decorator lines finds."""
    source = azure_blob_source()
    decorators = ", ".join(f'"{name}"' for name in TRACE_DECORATORS)
    (source / "pyproject.toml").write_text(f"[tool.spangap.audit]\ndecorators = [{decorators}]\n")
    run = audit(source, "azure/storage/blob", "--format", "json")
    summary = json.loads(run.stdout)["summary"]
    by_text = decorated_by_text(source / "azure" / "storage" / "blob", TRACE_DECORATORS)
    assert by_text > 100
    assert summary["covered"] == by_text
    assert summary["uncovered"] > 0
