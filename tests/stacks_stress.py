"""A host that moves its stacks as fast as it can, for the native stack reader to read.

Run as ``python stacks_stress.py on|off``. It starts and ends threads (about a thousand
a second), recurses 1,000 deep, runs generators that raise and catch exceptions, and
makes full collections, each a fixed amount of work; it prints one JSON line: what it
computed (the same with the reader on or off) and, with ``on``, what the reader, walking
every thread at its maximum rate without the GIL all the while, counted.
"""

from __future__ import annotations

import gc
import itertools
import json
import sys
import threading
from collections.abc import Iterator

THREADS_STARTED = 3000
DEEP = 1000


def descend(n: int) -> int:
    return descend(n - 1) + 1 if n else 0


def short_lived(results: list[int], i: int) -> None:
    results.append(descend(i % 20))


def churn_threads() -> int:
    results: list[int] = []
    for i in range(THREADS_STARTED):
        thread = threading.Thread(target=short_lived, args=(results, i))
        thread.start()
        thread.join()
    return sum(results)


def recurse_deep() -> int:
    return sum(descend(DEEP) for _ in range(200))


def failing(n: int) -> Iterator[int]:
    for i in range(n):
        if i % 7 == 3:
            try:
                raise ValueError(i)
            except ValueError as exc:
                yield -int(exc.args[0])
        else:
            yield descend(i % 30)


def generators() -> int:
    total = 0
    for _ in range(3000):
        total += sum(failing(40))
    return total


def collections() -> int:
    made = 0
    for _ in range(60):
        junk = [[object() for _ in range(50)] for _ in range(200)]
        for a, b in itertools.pairwise(junk):
            a.append(b)  # cycles, for the collector
            b.append(a)
        made += len(junk)
        del junk
        gc.collect()
    return made


def main() -> None:
    sys.setrecursionlimit(DEEP + 500)
    threading.stack_size(64 * 1024 * 1024)
    reader = None
    if sys.argv[1] == "on":
        from spangap.stacks import open_reader

        reader, why = open_reader()
        if reader is None:
            raise SystemExit(f"no native reader: {why}")
        # At its fastest, following calls too (what stacks="native" runs).
        reader.start(1e-5, threshold_s=0.01, max_correction_s=0.0048)
    results: dict[str, int] = {}

    def run(name: str, work: object) -> None:
        results[name] = work()  # type: ignore[operator]

    work = {
        "threads": churn_threads,
        "deep": recurse_deep,
        "generators": generators,
        "collections": collections,
    }
    threads = [threading.Thread(target=run, args=item) for item in work.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = None
    if reader is not None:
        _, _, counts = reader.latest()
        reader.stop()
        counts["recorded"] = len(reader.take())
    print(json.dumps({"results": results, "counts": counts}, sort_keys=True))


if __name__ == "__main__":
    main()
