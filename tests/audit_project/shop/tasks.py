"""Celery-shaped tasks and span API mistakes."""

from celery import Celery, shared_task
from opentelemetry import context, trace

tracer = trace.get_tracer(__name__)
app = Celery("shop")


@app.task
def send_mail(to):  # expect: missing-span
    return to


@shared_task
def resize(image):  # expect: missing-span (start_span makes no span current)
    span = tracer.start_span("resize")
    try:
        return image
    finally:
        span.end()


def sync_stock():  # expect: missing-span
    span = tracer.start_span("sync")  # expect: span-not-ended
    span.set_attribute("items", 3)
    span.end()


def nightly():  # expect: missing-span
    token = context.attach(context.set_value("job", "nightly"))  # expect: attach-without-detach
    run()
    context.detach(token)


# spangap: no-span
def run():  # expect: opt-out-without-reason
    return 1
