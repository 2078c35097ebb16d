"""What both shops' run scripts do around their own server.

:func:`parse_args` reads the options both take. :meth:`Runtime.start` makes SIGINT and
SIGTERM stop the process, sets up the span pipeline (:mod:`_support.tracing`) and makes a
scratch directory for the database; :meth:`Runtime.close`, called once the server has
stopped and the spans are flushed, closes the spans file and removes the directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from opentelemetry.sdk.trace import TracerProvider

from _support.signals import stop_on_signals
from _support.tracing import configure_tracing


def parse_args(
    description: str, refreshes: str, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """``--port --upstream --spans-file --refresh-interval``; ``upstream`` loses its slash.

    ``refreshes`` says what the background refresh refreshes, for the help text.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--upstream", required=True, help="base URL of upstream.py")
    parser.add_argument(
        "--spans-file", type=Path, help="JSON-lines file for exported spans (default: a temp file)"
    )
    parser.add_argument(
        "--refresh-interval", type=float, default=0.3, help=f"seconds between {refreshes}"
    )
    args = parser.parse_args(argv)
    args.upstream = args.upstream.rstrip("/")
    return args


@dataclass
class Runtime:
    """The span pipeline and the scratch directory of one shop process."""

    provider: TracerProvider
    spans_out: IO[str]
    data_dir: Path

    @property
    def db_path(self) -> str:
        return str(self.data_dir / "shop.sqlite3")

    @classmethod
    def start(cls, service_name: str, spans_file: Path | None) -> Runtime:
        """Stop signals, tracing and a scratch directory for ``service_name``.

        Spans go to ``spans_file``, or to a new temporary file; the path is printed.
        """
        stop_on_signals()
        if spans_file is None:
            fd, name = tempfile.mkstemp(prefix=f"{service_name}-spans-", suffix=".jsonl")
            os.close(fd)
            spans_file = Path(name)
        provider, spans_out = configure_tracing(service_name, spans_file)
        data_dir = Path(tempfile.mkdtemp(prefix=f"{service_name}-"))
        print(f"spans are written to {spans_file}", flush=True)
        return cls(provider, spans_out, data_dir)

    def close(self) -> None:
        """Close the spans file and remove the scratch directory.

        Call ``provider.shutdown()`` first, which flushes the spans still queued. The run
        scripts do that themselves, so that the wait for the flush stays part of their
        ``main``, as it would in a service that sets up its SDK in ``main``.
        """
        self.spans_out.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
