"""Audit trail: request handlers enqueue events, one writer thread persists them in batches.

Handlers only put an event on a queue, so a slow audit disk never slows a request down.
The writer thread blocks in ``queue.get()`` while there is nothing to write (idle, not
work) and then writes a batch with :func:`write_audit_batch`. The thread was started at
boot, outside any request, so every batch it writes is dark work.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass

from shop import db

log = logging.getLogger(__name__)

MAX_BATCH = 200
BATCH_WINDOW_S = 0.05
# In production the audit log lives on a replicated network volume and every batch is
# fsync'ed; this pause stands in for that flush so the example behaves the same on tmpfs.
SIMULATED_FSYNC_S = 0.025


@dataclass(frozen=True)
class AuditEvent:
    kind: str  # e.g. "order.viewed", "order.created"
    subject: str  # e.g. "order:42"
    at: str


_STOP = object()


class AuditLog:
    """Owns the event queue and the writer thread."""

    def __init__(self, db_path: str) -> None:
        self._db_path = db_path
        self._queue: queue.Queue[AuditEvent | object] = queue.Queue()
        self._last_digest = "0" * 64
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def record(self, kind: str, subject: str) -> None:
        """Enqueue an event; called on request threads, never blocks."""
        self._queue.put(AuditEvent(kind=kind, subject=subject, at=db.now()))

    def stop(self, timeout: float = 2.0) -> None:
        """Write what is queued, then end the writer thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()  # idle until there is something to write
            if first is _STOP:
                break
            batch = [first]
            deadline = time.monotonic() + BATCH_WINDOW_S
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._last_digest = write_audit_batch(
                    self._db_path,
                    [e for e in batch if isinstance(e, AuditEvent)],
                    self._last_digest,
                )
            except sqlite3.Error as exc:
                log.warning("dropped %d audit events: %s", len(batch), exc)


def write_audit_batch(db_path: str, events: list[AuditEvent], last_digest: str) -> str:
    """Append ``events`` as a hash chain (each row's digest covers the previous one),
    make the batch durable, and return the last digest."""
    rows = []
    digest = last_digest
    for event in events:
        digest = hashlib.sha256(
            f"{digest}|{event.at}|{event.kind}|{event.subject}".encode()
        ).hexdigest()
        rows.append((event.at, event.kind, event.subject, digest))
    db.append_audit_rows(db_path, rows)
    time.sleep(SIMULATED_FSYNC_S)
    return digest
