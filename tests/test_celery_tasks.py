"""A span lost on the way into a Celery task, seen in one process with a real Celery app
running its tasks eagerly (the prefork worker end to end is in test_launchers.py): the
message's traceparent header decides between context_lost and no_span, and the task's
arguments are never read."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from opentelemetry import trace

pytest.importorskip("celery", reason="celery is installed with spangap[examples]")

from celery import Celery

PRODUCER = "00-" + "4bf92f3577b34da6a3ce929d0e0e4736" + "-" + "00f067aa0ba902b7" + "-01"

app = Celery("shop", broker="memory://")
app.conf.task_always_eager = True


@app.task(name="shop.reports.build")
def build_report(secret: str) -> str:
    time.sleep(0.03)  # dark: no span in the task body
    return secret


def sent(*headers: str | None) -> None:
    for header in headers:
        build_report.apply(args=("card-4111",), headers={"traceparent": header} if header else {})


def causes(detector) -> dict[str, int]:
    detector.stop()
    return {cause: n for (site, cause), n in detector.operation_counts().items()
            if site.endswith(":build_report")}  # fmt: skip


def test_a_producer_span_on_the_message_makes_the_body_context_lost(start_detector) -> None:
    detector = start_detector(threshold_ms=10)
    sent(PRODUCER, PRODUCER, None, "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01")
    assert causes(detector) == {"context_lost": 2, "no_span": 3}
    lost = next(s for s in detector.snapshot().sites if s.cause == "context_lost")
    assert lost.lost_context is not None
    assert lost.lost_context.submitters[0].name == "the Celery producer of shop.reports.build"
    assert lost.lost_context.examples[0]["span_id"] == "00f067aa0ba902b7"
    assert "card-4111" not in str(detector.snapshot().to_dict())  # arguments never read


def test_a_task_run_inside_a_span_is_not_counted(start_detector) -> None:
    detector = start_detector(threshold_ms=10)
    with trace.get_tracer("test").start_as_current_span("consume"):
        sent(PRODUCER)
    assert causes(detector) == {}


def test_the_receivers_go_with_the_detector(start_detector) -> None:
    from celery.signals import task_prerun

    before = len(task_prerun.receivers)
    start_detector().stop()
    assert len(task_prerun.receivers) == before


LATE_IMPORT = f"""
import sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
import spangap

trace.set_tracer_provider(TracerProvider())
detector = spangap.enable_gap_detector(max_overhead=1, registry=CollectorRegistry())
assert "celery" not in sys.modules
from celery import Celery  # after the start, as under opentelemetry-instrument

app = Celery("late", broker="memory://")
app.conf.task_always_eager = True

@app.task
def late_task():
    time.sleep(0.03)

time.sleep(1.5)  # the detector connects within a second of the import
late_task.apply(headers={{"traceparent": "{PRODUCER}"}})
detector.stop()
print(sorted(cause for (site, cause) in detector.operation_counts() if "late_task" in site))
"""


def test_celery_imported_after_the_start_is_seen(tmp_path) -> None:
    script = tmp_path / "late.py"
    script.write_text(LATE_IMPORT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['context_lost']"
