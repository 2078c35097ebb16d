"""What the span-activation hook costs the application: time per span, with and without.

spangap wraps OpenTelemetry's ``context.attach`` to note, per thread and per asyncio
task, the calls running at the first and the latest span activation since the sampler
last looked (``spangap/activations.py``).
This runs ``with tracer.start_as_current_span(...)`` with the real SDK (no processor, so
the span itself is as cheap as it gets and the hook's share is at its largest),
alternating rounds without the hook, with it, and with it when every span is the first
since a sample (the notes are dropped after each span, as if the sampler had examined
the thread in between: the whole stack is read every time), and prints the medians.

    python benchmarks/span_hook.py               # 10 rounds of 20,000 spans
    python benchmarks/span_hook.py --rounds 4 --spans 5000
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

#: No hook; the hook; the hook, with every span the first since a sample.
MODES = ("off", "on", "every")


def spans_timed(tracer: Any, spans: int, between: Callable[[], None]) -> float:
    """Microseconds per ``start_as_current_span`` block, over ``spans`` of them, with
    ``between`` called after each."""
    start = time.perf_counter()
    for _ in range(spans):
        with tracer.start_as_current_span("request"):
            pass
        between()
    return (time.perf_counter() - start) / spans * 1e6


def measure(rounds: int, spans: int) -> dict[str, Any]:
    """Alternating rounds with the hook off and on; per-round figures and whether the
    hook saw the activations of its rounds."""
    from opentelemetry.sdk.trace import TracerProvider

    from spangap.activations import Activations

    tracer = TracerProvider().get_tracer("span_hook")
    nothing: dict[int, object] = {}
    spans_timed(tracer, spans // 4, nothing.clear)  # warm up
    per_span: dict[str, list[float]] = {mode: [] for mode in MODES}
    hook_saw = []
    for r in range(rounds):
        for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
            hook = Activations() if mode != "off" else None
            # The same call after each span in every mode: a no-op, or taking the note.
            between = hook.reset if hook is not None and mode == "every" else nothing.clear
            per_span[mode].append(spans_timed(tracer, spans, between))
            if hook is not None:
                if mode == "every":  # each note was taken: the next span is noted again
                    spans_timed(tracer, 1, nothing.clear)
                me = {threading.get_ident(): None}
                noted = hook.since_last(me, me, hook.count()).get(threading.get_ident(), ())
                hook_saw.append(len(noted) > 0)  # the frames running at the activation
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
    off, on, every = (statistics.median(result["per_span_us"][mode]) for mode in MODES)
    print(
        f"start_as_current_span, SDK without processors, median of {args.rounds} rounds of "
        f"{args.spans:,}: {off:.2f} µs per span without the hook, {on:.2f} µs with it "
        f"(+{on - off:.2f} µs, {100 * (on - off) / off:+.1f}%), {every:.2f} µs when every "
        f"span is the first since a sample (+{every - off:.2f} µs, "
        f"{100 * (every - off) / off:+.1f}%)"
    )


if __name__ == "__main__":
    main()
