"""Bursts of spanned and dark asyncio handlers (burst_workload.py) at three
budgets: what is counted of each site, against the calls made.

    python benchmarks/burst.py --repeats 5     # default budget, 0.001 and full rate

Each run is a fresh process: 5 rounds of 200 tasks created at once, half spanned from
their first statement. A spanned handler, or the call it awaits inside its span, must
never be counted; the dark ones should be, at full rate all of them.
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import emit, format_table, median, pct, prepare_child, run_child

BUDGETS = {"default (0.01)": None, "0.001": 0.001, "full rate (1)": 1.0}
SITES = ("dark_handler", "fetch_dark", "spanned_handler", "fetch_spanned")


def child(args: dict[str, Any]) -> None:
    prepare_child()
    import prometheus_client

    import burst_workload
    import spangap

    options: dict[str, Any] = {"registry": prometheus_client.CollectorRegistry()}
    if args["max_overhead"] is not None:
        options["max_overhead"] = args["max_overhead"]
    detector = spangap.enable_gap_detector(include=["burst_workload"], **options)
    made = burst_workload.run(args["rounds"])
    detector.stop()
    counted = {s.split(":", 1)[1]: n for (s, _), n in detector.operation_counts().items()}
    emit({"made": dict(made), "counted": counted})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import json

        child(json.loads(args.one))
        return
    rows = []
    for label, budget in BUDGETS.items():
        runs = [
            run_child(__file__, {"max_overhead": budget, "rounds": args.rounds})
            for _ in range(args.repeats)
        ]
        cells = [label]
        for site in SITES:
            made = [r["made"].get(site, 0) for r in runs]
            got = [r["counted"].get(site, 0) for r in runs]
            if site.startswith(("spanned", "fetch_spanned")):
                cells.append(f"{sum(got)} of {sum(made)}")
            else:
                cells.append(pct(median([g / m for g, m in zip(got, made, strict=True)])))
        rows.append(cells)
    headers = ["budget", "dark handlers", "dark awaited calls", "spanned handlers counted",
               "spanned awaited calls counted"]  # fmt: skip
    print(f"{args.repeats} runs of {args.rounds} rounds of 200 tasks each; recall is the median")
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
