"""Run the threaded shop under spangap, put load on it, and show what the traces miss.

    python examples/threaded_shop/demo.py [--requests 300] [--snapshot PATH]

Starts upstream.py (the fake rates / payment / notification service), then the shop
under ``gapreport run run_shop.py``, sends it the load of loadgen.py (4 client threads),
and stops it with SIGINT: gapreport prints the top dark call sites and writes the
snapshot. The steps are in ``examples/_support/demo.py``. Exits with the shop's exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for _support

from _support.demo import Example, main

EXAMPLE = Example(
    directory=Path(__file__).resolve().parent,
    run_script="run_shop.py",
    snapshot=Path("spangap-threaded-shop.json"),
)

if __name__ == "__main__":
    sys.exit(main(EXAMPLE, __doc__.splitlines()[0]))
