"""The benchmarks measure what they say: their arithmetic on known inputs, and one real
child run whose workload is checked against what it was asked to do."""

from __future__ import annotations

import http.client
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import detection
import gil_wait
import http_alternating
import http_app
import http_load
import http_server
import overhead

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SLEEP, SHORT = detection.DARK_SLEEP_SITE, detection.DARK_SHORT_SITE
SPANNED = f"{detection.MODULE}:spanned_cm"


def result(
    counted: dict[str, int],
    real: dict[str, tuple[int, int, int]],
    over_half: dict[str, int] | None = None,
) -> dict[str, object]:
    """A child's result: per site (calls, >= threshold, >= 2x threshold) real calls; the
    calls over half the threshold are those at least the threshold unless given."""
    return {
        "counted": counted,
        "real": {
            site: {
                "calls": c,
                "over_half_threshold": (over_half or {}).get(site, t),
                "ge_threshold": t,
                "ge_2x_threshold": t2,
            }
            for site, (c, t, t2) in real.items()
        },
        "dark_sleep_real_median_s": 0.025,
        "dark_sleep_p50_s": 0.0275,
        "samples": 400,
        "sampler_cpu_s": 0.02,
        "wall_s": 2.0,
    }


def test_recall_is_capped_per_site_and_excess_is_over_count() -> None:
    socket_site = f"{detection.MODULE}:dark_socket"
    m = detection.row_metrics(
        result(
            {SLEEP: 12, socket_site: 5, SHORT: 1},
            {SLEEP: (10, 10, 10), socket_site: (10, 10, 10), SHORT: (10, 0, 0)},
        )
    )
    # 12 counted at a site with 10 real calls cannot make up for 5 misses elsewhere.
    assert m["recall"] == pytest.approx(15 / 20)
    assert m["over_count"] == pytest.approx(2 / 20)
    assert (m["false_pos"], m["fp_short"]) == (1, 1)
    assert m["dur_err"] == pytest.approx(0.1)
    assert (m["samples_per_s"], m["sampler_cpu"]) == (200, 0.01)


def test_short_counts_beyond_the_calls_over_half_the_threshold_are_violations() -> None:
    """3 dark_short calls counted, 2 of them really took over half the threshold (the
    thread waited for the GIL): at least one call of at most half was counted."""
    m = detection.row_metrics(
        result({SLEEP: 10, SHORT: 3}, {SLEEP: (10, 10, 10), SHORT: (10, 1, 0)}, {SHORT: 2})
    )
    assert (m["fp_short"], m["short_slow"], m["half_short"]) == (3, 1, 1)
    m = detection.row_metrics(
        result({SLEEP: 10, SHORT: 2}, {SLEEP: (10, 10, 10), SHORT: (10, 1, 0)}, {SHORT: 2})
    )
    assert m["half_short"] == 0


def test_spanned_sites_never_count_as_found() -> None:
    m = detection.row_metrics(result({SPANNED: 3}, {SLEEP: (4, 4, 4)}))
    assert m["recall"] == 0 and m["false_pos"] == 3


def test_row_filters_keep_only_the_rows_asked_for() -> None:
    rows = detection.settings(rounds=1)
    picked = detection.selected(rows, threads=4, load="cpu-contended", budget="none")
    assert picked and all(
        r.threads == 4 and r.contended and r.max_overhead == detection.NO_BUDGET for r in picked
    )
    # With and without the watcher, and with none of the C extension.
    assert {(r.liveness, r.tracker, r.reader) for r in picked} == {
        ("native", "native", "native"),
        ("sampled", "native", "native"),
        ("sampled", "python", "python"),
    }
    assert detection.selected(rows, None, None, None) == rows
    at_budget = detection.selected(rows, None, "mixed", "default")
    assert at_budget and all(r.max_overhead == detection.DEFAULT_BUDGET for r in at_budget)


def test_a_child_run_does_the_workload_it_describes() -> None:
    setting = detection.Setting(
        max_overhead=1.0, liveness="native", reader="native", threads=2, contended=False, rounds=1
    )
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "detection.py"), "--one", json.dumps(setting.__dict__)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    for site in detection.DARK_SITES:
        expected = 4 if site.endswith("dark_inner") else 2  # dark_outer calls it twice
        assert child["real"][site]["calls"] == expected, site
    assert child["samples"] > 0 and child["wall_s"] > 0
    assert not any(detection.is_never_countable(s) and n for s, n in child["counted"].items())


@pytest.mark.parametrize("workload", ["sleep-dark", "sleep-spanned"])
def test_tick_cost_holds_the_interval_and_counts_only_dark_sleeps(workload: str) -> None:
    """tick_cost.py --interval-ms: the sampler stays at the interval asked for (past half
    the threshold, which the option refuses); the dark sleeps are counted, the same
    sleeps inside a span are not."""
    setting = {"workload": workload, "threads": 2, "seconds": 0.6, "interval_ms": 30.0}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "tick_cost.py"), "--one", json.dumps(setting)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["interval_s"] == 0.030
    assert child["work_done"] > 0 and child["samples"] > 0
    assert (child["operations"] > 0) == (workload == "sleep-dark")


def test_tick_cost_times_every_part_of_real_ticks() -> None:
    """tick_cost.py's child: its timers are really around the sampler's parts (each part
    took time on every run), and it counted the dark calls whose flush it times."""
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "tick_cost.py"),
            "--one",
            json.dumps({"threads": 2, "seconds": 1.0}),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    parts = child["parts_ns"]
    assert set(parts) == {
        "sleep",
        "tick",
        "current_frames",
        "span_reader",
        "tracker",
        "tasks",
        "add_ticks",
        "flush",
    }
    assert all(ns > 0 for ns in parts.values())
    outside = ("sleep", "tick", "flush", "add_ticks")  # per window, not per tick
    inside = sum(ns for part, ns in parts.items() if part not in outside)
    assert inside < parts["tick"]  # the parts are nested in the tick they time
    assert child["samples"] > 0 and child["operations"] > 0
    assert child["work_done"] > 0  # the workload ran: rounds of the mix were completed
    assert child["voluntary_switches"] > 0  # the sampler thread was found and read in /proc


# --- HTTP workloads of overhead.py ---------------------------------------------------------


def test_percentiles_and_throughput_on_known_inputs() -> None:
    ordered = [float(v) for v in range(1, 101)]
    assert http_load.percentile(ordered, 0.50) == 50.0
    assert http_load.percentile(ordered, 0.99) == 99.0
    assert http_load.percentile(ordered, 1.0) == 100.0
    assert http_load.percentile([7.0], 0.99) == 7.0
    assert math.isnan(http_load.percentile([], 0.5))
    tally = http_load.Tally(total=12, errors=1, latencies=[0.3, 0.1, 0.2, 0.4])
    summary = http_load.summarize(tally, window_s=2.0)
    assert summary["requests"] == 4 and summary["total"] == 12 and summary["errors"] == 1
    assert summary["throughput"] == 2.0  # 4 responses inside a 2 s window
    assert (summary["p50_s"], summary["p99_s"]) == (0.2, 0.4)


def test_content_length_is_read_from_any_header_case() -> None:
    head = b"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-LENGTH: 42\r\nDate: y\r\n\r\n"
    assert http_load.content_length(head) == 42
    assert http_load.content_length(b"HTTP/1.1 204 No Content\r\n\r\n") == 0


def check_routes(address: tuple[str, int]) -> int:
    """One keep-alive connection asks for every route; each answers 200 with its JSON.
    Returns the number of requests made."""
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        for path in ("/items?page=2", "/user?id=3", "/report"):
            conn.request("GET", path)
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, path
            assert body["route"] == path[1:].split("?")[0], path
            assert body["items"], path
    finally:
        conn.close()
    return 3


def load(address: tuple[str, int], connections: int) -> dict[str, Any]:
    plan = http_load.Plan(*address, connections, 0.1, 0.3, list(http_app.MIX))
    return http_load.run_load(plan, timeout_s=60)


@pytest.fixture
def threaded_server(tmp_path: Path) -> Iterator[http_server.ThreadedServer]:
    http_app.create_database(tmp_path / "catalogue.sqlite3")
    server = http_server.ThreadedServer(http_app.handle, workers=16)
    yield server
    server.close()


def test_threaded_server_answers_exactly_what_the_generator_counts(
    threaded_server: http_server.ThreadedServer,
) -> None:
    asked = check_routes(threaded_server.address)
    # More connections than workers: keep-alive connections must not hold a worker.
    result = load(threaded_server.address, connections=32)
    assert result["errors"] == 0
    assert 0 < result["requests"] <= result["total"]
    assert threaded_server.served == asked + result["total"]


def test_asyncio_server_answers_exactly_what_the_generator_counts() -> None:
    server = http_server.AsyncServer(http_app.handle_async)
    try:
        asked = check_routes(server.address)
        result = load(server.address, connections=200)
    finally:
        server.close()
    assert result["errors"] == 0
    assert 0 < result["requests"] <= result["total"]
    assert server.served == asked + result["total"]


def test_alternation_pairs_windows_in_abba_order_and_compares_within_pairs() -> None:
    order = http_alternating.abba(3)
    assert order == [False, True, True, False, False, True]
    windows = [{"on": on, "throughput": 100.0 if on else 125.0} for on in order]
    assert http_alternating.pair_ratios(windows, "throughput") == [0.8, 0.8, 0.8]
    with pytest.raises(ValueError, match="one on and one off"):
        http_alternating.pair_ratios([{"on": True, "x": 1.0}, {"on": True, "x": 1.0}], "x")


def test_median_interval_is_the_binomial_order_statistics() -> None:
    values = [float(v) for v in range(20, 0, -1)]  # order does not matter
    assert http_alternating.median_interval(values) == (6.0, 15.0)  # 95.9% for n = 20
    assert http_alternating.median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (1.0, 6.0)
    low, high = http_alternating.median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert math.isnan(low) and math.isnan(high)  # five values cannot give 95%


def test_load_generator_windows_leave_out_each_windows_settling_time() -> None:
    tally = http_load.Tally(bin_s=1.0, settle_s=0.25, bins=[[], []])
    for done in (10.1, 10.5, 10.99, 11.2, 11.3, 12.4):
        tally.add(10.0, done, latency=0.002)
    assert [len(b) for b in tally.bins] == [2, 1]  # settling and past the end left out
    assert tally.bins[0] == [2000, 2000]  # microseconds
    assert len(tally.latencies) == 6  # the run's own figures keep every response
    assert http_load.summarize(tally, 2.0)["bins"] == tally.bins


def test_alternating_run_switches_a_real_detector_on_and_off() -> None:
    timing = http_alternating.Timing(pairs=1, window_s=0.6, settle_s=0.2)
    result = http_alternating.measure("http_threaded", timing)
    windows = result["windows"]
    assert [w["on"] for w in windows] == [False, True]
    assert all(w["throughput"] > 0 and w["cpu_per_request_s"] > 0 for w in windows)
    off, on = windows
    assert on["sampler_share"] > 0  # the detector sampled while it was on ...
    assert off["sampler_share"] == 0  # ... and only then
    assert result["p99_on_s"] >= result["p50_on_s"] > 0
    assert result["pairs"] == 1 and math.isfinite(result["loss"][0])


def test_paired_overhead_compares_each_round_with_its_own_off_run() -> None:
    """Throughput drifting down over the rounds: each round's pair shows 2%, whatever
    the drift, while the medians of the two columns would not pair them."""
    item = next(w for w in overhead.workloads(True, 1) if w.kind == "http_threaded")
    off = overhead.Cell([1000.0, 900.0, 800.0], [])
    on = overhead.Cell([v / 1.02 for v in off.values], [])
    assert overhead.paired_overhead(item, off, on) == pytest.approx(0.02)
    peer = overhead.Cell([off.values[0] / 1.5], [])  # ran in the first round only
    assert overhead.paired_overhead(item, off, peer) == pytest.approx(0.5)


def test_span_hook_benchmark_times_spans_with_the_hook_really_installed() -> None:
    """span_hook.py: the rounds with the hook ran with the wrapper in place (it noted
    their span activations, with the frames running then), every mode has a figure per
    round, and the wrapper is gone after."""
    from opentelemetry import context

    import span_hook

    result = span_hook.measure(rounds=2, spans=200)
    assert result["hook_saw_spans"]
    assert [len(v) for v in result["per_span_us"].values()] == [2, 2, 2]
    assert all(us > 0 for v in result["per_span_us"].values() for us in v)
    assert "attach" not in vars(context._RUNTIME_CONTEXT)  # type: ignore[attr-defined]


def test_a_comparison_child_imports_spangap_from_the_tree_asked_for(tmp_path) -> None:
    """``--against SRC``: the child's path puts SRC first, and a child that imported
    spangap from anywhere else stops the benchmark instead of being compared."""
    src = tmp_path / "other" / "src"
    (src / "spangap").mkdir(parents=True)
    env = detection.child_env(str(src))
    assert env is not None and env["PYTHONPATH"].split(os.pathsep)[0] == str(src)
    assert detection.child_env(None) is None  # this checkout: the environment as it is
    detection.check_source({"spangap_file": str(src / "spangap" / "__init__.py")}, str(src))
    with pytest.raises(SystemExit, match="imported spangap from"):
        detection.check_source({"spangap_file": detection.__file__}, str(src))


def test_the_side_by_side_summary_counts_every_missed_call() -> None:
    setting = detection.selected(detection.settings(rounds=1), 4, "cpu-contended", "none")[0]
    runs = [
        detection.row_metrics(result({SLEEP: found}, {SLEEP: (10, 10, 10)})) for found in (10, 9, 8)
    ]
    cells = detection.comparison_row(setting, "this", runs)
    row = dict(zip(detection.COMPARISON_HEADERS, cells, strict=True))
    assert row["runs"] == "3" and row["missed"] == "3"
    assert (row["recall p50"], row["mean"], row["worst"]) == ("90.00%", "90.00%", "80.00%")


def test_gil_wait_figures_on_known_wake_ups() -> None:
    """Lateness is measured from each deadline; gaps between consecutive wake-ups, and
    those over 15 ms counted per second of the run."""
    deadlines = [0.000, 0.005, 0.010, 0.030]
    woke = [0.001, 0.006, 0.029, 0.031]  # the third waited 19 ms, a 23 ms gap
    figures = gil_wait.run_figures({"deadlines": deadlines, "woke": woke})
    assert figures["late_max"] == pytest.approx(0.019)
    assert figures["late_p50"] == pytest.approx(0.001)
    assert figures["gap_max"] == pytest.approx(0.023)
    assert figures["long_gaps_per_s"] == pytest.approx(1 / 0.030)


def test_gil_wait_child_sleeps_to_every_deadline_beside_running_threads() -> None:
    """A real child run: the busy threads really ran, and the waking thread never ran
    before a deadline (each wait is measured from a deadline it slept to)."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gil_wait.py"), "--one", '{"busy": 2, "seconds": 0.2}'],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(child["busy_loops"]) == 2 and all(n > 0 for n in child["busy_loops"])
    deadlines, woke = child["deadlines"], child["woke"]
    assert len(deadlines) == len(woke) > 0
    assert all(w >= d for w, d in zip(woke, deadlines, strict=True))
    assert deadlines == sorted(deadlines)


def test_why_missed_tells_unseen_calls_from_calls_seen_too_late() -> None:
    """By the ticks' times: a long call with no tick inside is unseen; one first seen
    too near its end for the estimate to reach the threshold is late; one seen early
    enough, a spanned call and a short dark call are neither."""
    cpu, sleep = detection.DARK_CPU_SITE, detection.DARK_SLEEP_SITE
    ticks = [0.000, 0.005, 0.100, 0.200, 0.205]
    calls = [
        (cpu, 0.010, 0.090, "unseen: ticks at 5 and 100 ms only"),
        (sleep, 0.150, 0.201, "late: first seen 1 ms before its end, 50 ms after a tick"),
        (sleep, 0.001, 0.030, "counted: seen at 5 ms, ran 25 ms more"),
        (SPANNED, 0.010, 0.090, "never countable: not a dark site"),
        (SHORT, 0.010, 0.015, "shorter than twice the threshold"),
    ]
    why = detection.why_missed([c[:3] for c in calls], ticks, credit_cap=0.48)
    assert why == {"unseen": 1, "late": 1}
    # The credit for the unseen start is capped: 4 ms after a 100 ms gap, with half of
    # the gap credited uncapped, would have counted.
    late_only = [(sleep, 0.150, 0.204)]
    assert detection.why_missed(late_only, ticks, credit_cap=0.48)["late"] == 1
    assert detection.why_missed(late_only, ticks, credit_cap=10.0)["late"] == 0
