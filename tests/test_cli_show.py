"""``gapreport show``, run as a person would: a separate process, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snapshot_factory import make_site, make_snapshot, varied_snapshot
from spangap.snapshot import Counted, Snapshot

LONG_SITE = "acme_enterprise.billing.repositories.postgres:OrderRepository.load_rows_for_customer"


def gapreport(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spangap.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    path = tmp_path / "snap.json"
    varied_snapshot().save(path)
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gapreport: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_show_prints_the_table(snapshot_file: Path) -> None:
    result = gapreport("show", snapshot_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("spangap: 1,234 uninstrumented operations at 4 sites")
    assert "What to do" in result.stdout
    assert result.stderr == ""


def test_table_fits_80_columns_with_long_names(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    long_wait = "psycopg2.extensions.connection.cursor.execute"
    make_snapshot([make_site(LONG_SITE, waited_in=[Counted(long_wait, 3)])]).save(path)
    result = gapreport("show", path)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    row = next(line for line in result.stdout.splitlines() if line.startswith("1 "))
    assert "…" in row and "load_rows_for_customer" in row  # cut on the left, end kept
    assert "waited in psycopg2.extensions.connection.cursor.execute" in result.stdout


@pytest.mark.parametrize(
    ("sort", "first"),
    [
        ("total", "shop.db:load_rows"),
        ("self", "shop.api:save"),
        ("count", "shop.api:save"),
        ("p95", "shop.db:load_rows"),
    ],
)
def test_sort_decides_the_first_row(snapshot_file: Path, sort: str, first: str) -> None:
    result = gapreport("show", snapshot_file, "--sort", sort, "--format", "json")
    assert json.loads(result.stdout)["sites"][0]["site"] == first


def test_sort_orders_the_table(snapshot_file: Path) -> None:
    rows = gapreport("show", snapshot_file, "--sort", "count").stdout.split("What to do")[0]
    order = ["shop.api:save", "shop.jobs:resize", "shop.render:page", "shop.db:load_rows"]
    assert sorted(order, key=rows.index) == order


def test_top_limits_the_rows(snapshot_file: Path) -> None:
    result = gapreport("show", snapshot_file, "--top", "1")
    table = result.stdout.split("What to do")[0]
    assert "shop.db:load_rows" in table
    assert "shop.api:save" not in table


def test_json_output_parses_and_loads_as_a_snapshot(snapshot_file: Path) -> None:
    result = gapreport("show", snapshot_file, "--format", "json", "--top", "2")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert len(document["sites"]) == 2
    assert Snapshot.from_dict(document).totals.operations == 1234


def test_markdown_has_a_header_row(snapshot_file: Path) -> None:
    result = gapreport("show", snapshot_file, "--format", "markdown")
    assert result.returncode == 0
    assert "| rank | site | count |" in result.stdout
    assert "| ---: | :--- |" in result.stdout


def test_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    path.write_text('{"format": "spangap-snapshot", "version": 1, "sites": [')
    assert_one_line_error(gapreport("show", path), "snap.json", "truncated")


def test_wrong_field_type_is_named(tmp_path: Path) -> None:
    document = varied_snapshot().to_dict()
    document["sites"][3]["count"] = "many"
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(document))
    assert_one_line_error(gapreport("show", path), "sites[3].count: expected an integer")


def test_foreign_document_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text('{"$schema": "https://www.speedscope.app/file-format-schema.json"}')
    assert_one_line_error(gapreport("show", path), "not a spangap snapshot")


def test_nonexistent_file_is_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(gapreport("show", tmp_path / "missing.json"), "missing.json")


def test_bad_option_is_a_usage_error(snapshot_file: Path) -> None:
    result = gapreport("show", snapshot_file, "--top", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
