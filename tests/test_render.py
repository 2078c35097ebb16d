"""Renderers: ordering, limits, widths, and the advice a reader acts on."""

from __future__ import annotations

import json

import pytest

from snapshot_factory import make_site, make_snapshot, varied_snapshot
from spangap.report.render import render, sort_sites
from spangap.snapshot import Counted, LostContext, Snapshot

LONG_SITE = "acme_enterprise.billing.repositories.postgres:OrderRepository.load_rows_for_customer"
LONG_WAIT = "psycopg2.extensions.connection.cursor.execute"


def site_order(text: str, names: list[str]) -> list[str]:
    """The given site names in the order they first appear in ``text``."""
    return sorted((n for n in names if n in text), key=text.index)


def long_names_snapshot() -> Snapshot:
    return make_snapshot(
        [
            make_site(LONG_SITE, waited_in=[Counted(LONG_WAIT, 9)], count=1_234_567),
            make_site("a:b", cause="context_lost", total_seconds=12_345.6, self_seconds=12_000.0),
        ],
        dark_seconds=12_003.9,
    )


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("total", ["shop.db:load_rows", "shop.api:save", "shop.render:page", "shop.jobs:resize"]),
        ("self", ["shop.api:save", "shop.render:page", "shop.jobs:resize", "shop.db:load_rows"]),
        ("count", ["shop.api:save", "shop.jobs:resize", "shop.render:page", "shop.db:load_rows"]),
        ("p95", ["shop.db:load_rows", "shop.render:page", "shop.jobs:resize", "shop.api:save"]),
    ],
)
def test_sort_keys_order_worst_first(sort: str, expected: list[str]) -> None:
    assert [s.site for s in sort_sites(varied_snapshot().sites, sort)] == expected
    table = render(varied_snapshot(), sort=sort, width=120)
    assert site_order(table.split("What to do")[0], expected) == expected


def test_ties_are_broken_by_site_name() -> None:
    sites = [make_site("b:x"), make_site("c:x"), make_site("a:x")]
    assert [s.site for s in sort_sites(sites, "total")] == ["a:x", "b:x", "c:x"]


def test_top_limits_the_rows_and_says_how_many_there_were() -> None:
    table = render(varied_snapshot(), top=2)
    assert "shop.api:save" in table and "shop.render:page" not in table
    assert "top 2 of 4 sites" in table
    assert len(json.loads(render(varied_snapshot(), fmt="json", top=1))["sites"]) == 1


@pytest.mark.parametrize("width", [60, 80, 100, 132])
def test_every_table_line_fits_the_width(width: int) -> None:
    for snapshot in (varied_snapshot(), long_names_snapshot(), make_snapshot([])):
        lines = render(snapshot, width=width).splitlines()
        assert max(len(line) for line in lines) <= width, "\n".join(lines)


def test_long_names_keep_their_distinctive_end() -> None:
    table = render(long_names_snapshot(), width=80)
    row = next(line for line in table.splitlines() if line.startswith("2 "))
    assert "…" in row
    assert row.split()[1].startswith("…") and LONG_SITE.endswith(row.split()[1][1:])


def test_header_and_settings_lines() -> None:
    table = render(varied_snapshot(), width=200)
    header, settings = table.splitlines()[:2]
    assert header == (
        "spangap: 1,234 uninstrumented operations at 4 sites, 10.0 s dark (self); "
        "span coverage 41% of 30.1 s in-scope time"
    )
    assert settings == "threshold 10 ms, sampled every 5 ms, 6,010 samples, sampler CPU 0.08 s"


def test_header_without_in_scope_time_says_coverage_is_unknown() -> None:
    table = render(make_snapshot(in_scope_seconds=0.0, spanned_seconds=0.0), width=200)
    assert "span coverage unknown" in table.splitlines()[0]


def test_row_columns() -> None:
    table = render(make_snapshot(dark_seconds=7.8), width=120)
    row = next(line for line in table.splitlines() if line.startswith("1 "))
    assert row.split() == [
        "1", "shop.db:load_rows", "812", "4.21", "3.90", "15.2", "50%", "socket.socket.recv",
        "no_span",
    ]  # fmt: skip


def test_share_without_dark_time_is_a_dash() -> None:
    row = render(make_snapshot(dark_seconds=0.0), width=120).splitlines()[4]
    assert " - " in row


def test_no_sites_says_so() -> None:
    table = render(make_snapshot([], operations=0))
    assert "no uninstrumented operations of 10 ms or more were seen" in table
    assert "What to do" not in table


def test_no_span_advice_names_the_site_with_the_most_self_time() -> None:
    # load_rows has the largest total, but most of it is in counted children; save has
    # the most time of its own, so a span there explains the most.
    table = render(varied_snapshot())
    assert 'with tracer.start_as_current_span("save"):' in table
    assert 'start_as_current_span("load_rows")' not in table


def test_long_qualname_snippet_is_split_to_fit() -> None:
    table = render(make_snapshot([make_site(LONG_SITE)]), width=80)
    assert '"OrderRepository.load_rows_for_customer"' in table


def test_context_lost_advice_names_submitter_and_fix() -> None:
    advice = render(varied_snapshot(), width=200).split("What to do")[1]
    assert "shop.jobs:resize" in advice and "shop.api:upload" in advice
    assert "executor.submit(contextvars.copy_context().run, fn, *args)" in advice
    assert "asyncio.to_thread" in advice
    assert "opentelemetry-instrumentation-threading" in advice


def test_no_context_lost_advice_without_such_sites() -> None:
    assert "copy_context" not in render(make_snapshot())


def test_json_is_a_sorted_limited_snapshot() -> None:
    document = json.loads(render(varied_snapshot(), fmt="json", sort="count", top=2))
    assert [s["site"] for s in document["sites"]] == ["shop.api:save", "shop.jobs:resize"]
    assert document["totals"]["coverage"] == pytest.approx(0.41)
    assert document["sites_total"] == 4
    assert Snapshot.from_dict(document).sites[0].site == "shop.api:save"


def test_json_key_order_is_stable() -> None:
    first = render(varied_snapshot(), fmt="json")
    assert first == render(varied_snapshot(), fmt="json")
    assert list(json.loads(first))[:2] == ["format", "version"]


def test_markdown_has_header_line_and_table() -> None:
    text = render(varied_snapshot(), fmt="markdown")
    lines = text.splitlines()
    assert lines[0].startswith("spangap: 1,234 uninstrumented operations")
    header = next(line for line in lines if line.startswith("| rank"))
    assert header == (
        "| rank | site | count | dark total (s) | self (s) | p95 (ms) | share | waited in | cause |"
    )
    assert lines[lines.index(header) + 1].startswith("| ---: | :--- |")
    assert "| `shop.db:load_rows` |" in text


def test_markdown_keeps_long_names_whole_and_escapes_pipes() -> None:
    text = render(make_snapshot([make_site(LONG_SITE), make_site("m:a|b")]), fmt="markdown")
    assert f"`{LONG_SITE}`" in text
    assert "`m:a\\|b`" in text


@pytest.mark.parametrize(
    "kwargs", [{"fmt": "svg"}, {"sort": "name"}, {"top": 0}], ids=["fmt", "sort", "top"]
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        render(varied_snapshot(), **kwargs)  # type: ignore[arg-type]


def test_context_lost_from_a_celery_producer_gets_the_worker_fix() -> None:
    producer = "the Celery producer of shop.reports.build"
    lost = LostContext(submitters=[Counted(producer, 40)], examples=[])
    site = make_site("shop.reports:build", cause="context_lost", lost_context=lost)
    advice = render(make_snapshot([site]), width=200).split("What to do")[1]
    assert f"handed over by {producer}, which had a span" in advice
    assert "CeleryInstrumentor().instrument()" in advice and "worker_process_init" in advice
    assert "CeleryInstrumentor" not in render(varied_snapshot(), width=200)
