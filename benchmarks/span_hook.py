"""What the span-activation hook costs the application: time per span, with and without.

spangap wraps OpenTelemetry's ``context.attach`` to note, per thread, when a span was
first activated since the thread's last sample (``spangap/activations.py``). This runs
``with tracer.start_as_current_span(...)`` with the real SDK (no processor, so the span
itself is as cheap as it gets and the hook's share is at its largest), alternating
rounds with the hook installed and not, and prints the medians.

    python benchmarks/span_hook.py               # 10 rounds of 20,000 spans
    python benchmarks/span_hook.py --rounds 4 --spans 5000
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any


def spans_timed(tracer: Any, spans: int) -> float:
    """Microseconds per ``start_as_current_span`` block, over ``spans`` of them."""
    start = time.perf_counter()
    for _ in range(spans):
        with tracer.start_as_current_span("request"):
            pass
    return (time.perf_counter() - start) / spans * 1e6


def measure(rounds: int, spans: int) -> dict[str, Any]:
    """Alternating rounds with the hook off and on; per-round figures and whether the
    hook saw the activations of its rounds."""
    from opentelemetry.sdk.trace import TracerProvider

    from spangap.activations import Activations

    tracer = TracerProvider().get_tracer("span_hook")
    spans_timed(tracer, spans // 4)  # warm up
    per_span: dict[str, list[float]] = {"off": [], "on": []}
    hook_saw = []
    for r in range(rounds):
        for mode in ("off", "on") if r % 2 else ("on", "off"):
            hook = Activations() if mode == "on" else None
            per_span[mode].append(spans_timed(tracer, spans))
            if hook is not None:
                me = {threading.get_ident(): None}
                hook_saw.append(bool(hook.since_last(me, me)))  # it saw this round's spans
                hook.close()
    return {"per_span_us": per_span, "hook_saw_spans": all(hook_saw)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--spans", type=int, default=20000)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.spans < 100:
        parser.error("--rounds must be at least 1 and --spans at least 100")
    result = measure(args.rounds, args.spans)
    off = statistics.median(result["per_span_us"]["off"])
    on = statistics.median(result["per_span_us"]["on"])
    print(
        f"start_as_current_span, SDK without processors, median of {args.rounds} rounds of "
        f"{args.spans:,}: {off:.2f} µs per span without the hook, {on:.2f} µs with it "
        f"(+{on - off:.2f} µs, {100 * (on - off) / off:+.1f}%)"
    )


if __name__ == "__main__":
    main()
