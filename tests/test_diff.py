"""``gapreport diff``: classifying the sites of two snapshots, its formats and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snapshot_factory import make_site, make_snapshot
from spangap.cli import main
from spangap.snapshot import SiteStats


def site(name: str, total: float, count: int = 100, **overrides: Any) -> SiteStats:
    return make_site(name, total_seconds=total, self_seconds=total, count=count, **overrides)


def write(path: Path, sites: list[SiteStats], **totals: Any) -> str:
    make_snapshot(sites, **totals).save(path)
    return str(path)


@pytest.fixture
def old_sites() -> list[SiteStats]:
    return [
        site("shop.db:steady", 4.0),
        site("shop.db:grows", 1.0),
        site("shop.db:shrinks", 2.0),
        site("shop.jobs:retired", 0.5),
    ]


@pytest.fixture
def new_sites() -> list[SiteStats]:
    return [
        site("shop.db:steady", 4.1),
        site("shop.db:grows", 1.5, count=150),
        site("shop.db:shrinks", 1.0),
        site("shop.api:fresh", 0.3),
    ]


@pytest.fixture
def files(tmp_path: Path, old_sites: list[SiteStats], new_sites: list[SiteStats]) -> list[str]:
    return [write(tmp_path / "old.json", old_sites), write(tmp_path / "new.json", new_sites)]


def diff_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["diff", *args, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def names(document: dict[str, Any], kind: str) -> list[str]:
    return [entry["site"] for entry in document[kind]]


def classify(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: float, new: float, *options: str
) -> str:
    """The kind of one site whose total dark seconds go from ``old`` to ``new``."""
    old_file = write(tmp_path / "a.json", [site("shop.db:load", old)])
    new_file = write(tmp_path / "b.json", [site("shop.db:load", new)])
    _, document = diff_json(capsys, old_file, new_file, *options)
    [kind] = [k for k, n in document["counts"].items() if n]
    return str(kind)


# --- classification --------------------------------------------------------------------


def test_each_kind(capsys: pytest.CaptureFixture[str], files: list[str]) -> None:
    code, document = diff_json(capsys, *files)
    assert code == 1
    assert document["version"] == 1
    assert names(document, "new") == ["shop.api:fresh"]
    assert names(document, "gone") == ["shop.jobs:retired"]
    assert names(document, "grown") == ["shop.db:grows"]
    assert names(document, "shrunk") == ["shop.db:shrinks"]
    assert names(document, "unchanged") == ["shop.db:steady"]
    assert document["counts"] == {"new": 1, "gone": 1, "grown": 1, "shrunk": 1, "unchanged": 1}


def test_entries_carry_both_sides(capsys: pytest.CaptureFixture[str], files: list[str]) -> None:
    _, document = diff_json(capsys, *files)
    [grown] = document["grown"]
    assert (grown["old_count"], grown["new_count"]) == (100, 150)
    assert grown["old_total_seconds"] == 1.0 and grown["new_total_seconds"] == 1.5
    assert grown["change_percent"] == pytest.approx(50)
    [fresh] = document["new"]
    assert fresh["old_count"] is None and fresh["change_percent"] is None
    assert document["gone"][0]["change_percent"] == pytest.approx(-100)


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (4.0, 4.8, "grown"),  # exactly the 20% threshold
        (4.0, 4.79, "unchanged"),  # just under it
        (4.0, 3.2, "shrunk"),
        (4.0, 3.21, "unchanged"),
        (0.1, 0.15, "grown"),  # +50% and exactly the 0.05 s minimum
        (0.1, 0.14, "unchanged"),  # +40%, but only 0.04 s: noise
        (0.1, 0.06, "unchanged"),
        (4.0, 4.0, "unchanged"),
    ],
)
def test_threshold_and_min_seconds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: float, new: float, kind: str
) -> None:
    assert classify(capsys, tmp_path, old, new) == kind


def test_threshold_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert classify(capsys, tmp_path, 4.0, 4.4, "--threshold", "10") == "grown"
    assert classify(capsys, tmp_path, 4.0, 4.4, "--threshold", "11%") == "unchanged"


def test_min_seconds_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert classify(capsys, tmp_path, 0.1, 0.14, "--min-seconds", "0.01") == "grown"
    assert classify(capsys, tmp_path, 4.0, 6.0, "--min-seconds", "3") == "unchanged"


def test_a_different_cause_is_a_different_site(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = write(tmp_path / "a.json", [site("shop.jobs:resize", 2.0)])
    new = write(tmp_path / "b.json", [site("shop.jobs:resize", 2.0, cause="context_lost")])
    code, document = diff_json(capsys, old, new)
    assert code == 1
    assert [(e["site"], e["cause"]) for e in document["new"]] == [
        ("shop.jobs:resize", "context_lost")
    ]
    assert [(e["site"], e["cause"]) for e in document["gone"]] == [("shop.jobs:resize", "no_span")]
    assert document["unchanged"] == []


# --- exit codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old_total", "new_total", "fail_on", "expected"),
    [
        (None, 1.0, "new", 1),
        (None, 1.0, "grown", 0),
        (1.0, None, "gone", 1),
        (1.0, None, "new,grown", 0),
        (1.0, 2.0, "grown", 1),
        (1.0, 2.0, "new,shrunk", 0),
        (2.0, 1.0, "shrunk", 1),
        (2.0, 1.0, "new,grown", 0),
        (None, 1.0, "none", 0),
        (1.0, 2.0, "new,gone,grown,shrunk", 1),
    ],
)
def test_fail_on(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    old_total: float | None,
    new_total: float | None,
    fail_on: str,
    expected: int,
) -> None:
    def sites(total: float | None) -> list[SiteStats]:
        return [] if total is None else [site("shop.db:load", total)]

    old = write(tmp_path / "a.json", sites(old_total))
    new = write(tmp_path / "b.json", sites(new_total))
    assert main(["diff", old, new, "--fail-on", fail_on]) == expected
    assert ("failing:" in capsys.readouterr().out) == bool(expected)


def test_default_fails_on_new_and_grown(
    capsys: pytest.CaptureFixture[str], files: list[str]
) -> None:
    assert main(["diff", *files]) == 1
    assert "failing: 1 new, 1 grown (--fail-on new,grown)" in capsys.readouterr().out


def test_only_gone_and_shrunk_pass_by_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = write(tmp_path / "a.json", [site("shop.db:a", 2.0), site("shop.db:b", 1.0)])
    new = write(tmp_path / "b.json", [site("shop.db:a", 1.0)])
    assert main(["diff", old, new]) == 0
    assert "failing" not in capsys.readouterr().out


@pytest.mark.parametrize("value", ["bigger", "none,new", ""])
def test_bad_fail_on_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], files: list[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", *files, "--fail-on", value])
    assert exit_info.value.code == 2
    assert "--fail-on" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--threshold", "--min-seconds"])
def test_negative_rules_are_usage_errors(
    capsys: pytest.CaptureFixture[str], files: list[str], option: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", *files, option, "-1"])
    assert exit_info.value.code == 2
    assert "at least 0" in capsys.readouterr().err


def test_identical_snapshots(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sites = [site("shop.db:a", 2.0), site("shop.db:b", 1.0)]
    old, new = write(tmp_path / "a.json", sites), write(tmp_path / "b.json", sites)
    assert main(["diff", old, new, "--fail-on", "new,gone,grown,shrunk"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spangap: 0 new dark sites, 0 gone, 0 grown, 0 shrunk\n")
    assert "no changes: 2 dark sites, none new, gone, grown or shrunk" in out.splitlines()
    assert main(["diff", old, new, "--format", "markdown"]) == 0
    assert "No changes: 2 dark sites, none new, gone, grown or shrunk." in capsys.readouterr().out


def test_two_empty_snapshots(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old, new = write(tmp_path / "a.json", []), write(tmp_path / "b.json", [])
    assert main(["diff", old, new]) == 0
    assert "no changes: no dark sites in either run" in capsys.readouterr().out


# --- output ----------------------------------------------------------------------------


def test_table_lists_each_kind(capsys: pytest.CaptureFixture[str], files: list[str]) -> None:
    main(["diff", *files])
    out = capsys.readouterr().out
    assert out.startswith("spangap: 1 new dark site, 1 gone, 1 grown, 1 shrunk\n")
    for title in ("new (1)", "gone (1)", "grown (1)", "shrunk (1)"):
        assert title in out.splitlines()
    row = next(line for line in out.splitlines() if line.startswith("shop.db:grows"))
    assert row.split() == ["shop.db:grows", "no_span", "100", "150", "1.00", "1.50", "+50%"]
    assert "shop.db:steady" not in out  # unchanged sites are only counted
    assert "1 site unchanged" in out


def test_markdown_for_a_pull_request(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    piped = "shop.render:Page|Header.draw"
    old = write(tmp_path / "a.json", [site("shop.db:load", 1.0)])
    new = write(tmp_path / "b.json", [site("shop.db:load", 2.0), site(piped, 0.5)])
    assert main(["diff", old, new, "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("### spangap: 1 new dark site, 0 gone, 1 grown, 0 shrunk\n")
    assert "#### New (1)" in out and "#### Grown (1)" in out
    header = "| site | cause | old count | new count | old dark s | new dark s | change |"
    assert header in out
    assert "| :--- | :--- | ---: | ---: | ---: | ---: | ---: |" in out
    assert "| `shop.render:Page\\|Header.draw` | no_span | - | 100 | - | 0.50 | new |" in out
    assert "| `shop.db:load` | no_span | 100 | 100 | 1.00 | 2.00 | +100% |" in out


def test_long_names_are_never_shortened(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    long_name = "acme_enterprise.billing.repositories.postgres:OrderRepository.load_rows"
    old = write(tmp_path / "a.json", [])
    new = write(tmp_path / "b.json", [site(long_name, 1.0)])
    for fmt in ("table", "markdown"):
        main(["diff", old, new, "--format", fmt])
        assert long_name in capsys.readouterr().out


def test_top_limits_each_section(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = write(tmp_path / "a.json", [site(f"shop.old:f{i}", 1.0 + i) for i in range(3)])
    new = write(tmp_path / "b.json", [site(f"shop.new:f{i}", 1.0 + i) for i in range(3)])
    code, document = diff_json(capsys, old, new, "--top", "2")
    assert code == 1
    assert names(document, "new") == ["shop.new:f2", "shop.new:f1"]  # largest first
    assert names(document, "gone") == ["shop.old:f2", "shop.old:f1"]
    assert document["counts"]["new"] == 3
    main(["diff", old, new, "--top", "1"])
    out = capsys.readouterr().out
    assert "new (3, top 1 of 3)" in out
    assert "shop.new:f2" in out and "shop.new:f1" not in out


def test_json_document(capsys: pytest.CaptureFixture[str], files: list[str]) -> None:
    code, document = diff_json(capsys, *files, "--fail-on", "gone")
    assert code == 1
    assert document["fail_on"] == ["gone"] and document["failed"] is True
    assert document["rules"] == {"threshold_percent": 20.0, "min_seconds": 0.05}
    assert document["totals"]["old"]["sites"] == 4
    assert set(document) >= {"new", "gone", "grown", "shrunk", "unchanged"}
    assert document["new"][0]["file"] == "/srv/shop/db.py"


def test_different_settings_are_noted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = write(tmp_path / "a.json", [site("shop.db:load", 1.0)])
    changed = make_snapshot([site("shop.db:load", 1.0)])
    changed.settings["threshold_ms"] = 5.0
    changed.save(tmp_path / "b.json")
    main(["diff", old, str(tmp_path / "b.json")])
    assert "threshold_ms 10.0 → 5.0" in capsys.readouterr().out


# --- bad files -------------------------------------------------------------------------


def test_missing_file_names_it(capsys: pytest.CaptureFixture[str], files: list[str]) -> None:
    assert main(["diff", files[0], files[1] + ".missing"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"gapreport: {files[1]}.missing: no such file\n"


def test_invalid_file_is_one_line_in_a_real_process(tmp_path: Path, files: list[str]) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"format": "spangap-snapshot", "version": 1, "sites": [')
    result = subprocess.run(
        [sys.executable, "-m", "spangap.cli", "diff", str(bad), files[1]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("gapreport: ") and "broken.json" in line
