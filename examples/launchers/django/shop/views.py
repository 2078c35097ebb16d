"""A view the Django instrumentation covers, and the ORM work it hands to a thread,
which runs without the request's span: spangap counts it, as context_lost."""

import threading
import time

from django.http import HttpResponse, JsonResponse
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from shop.models import Item


def refresh_stock() -> None:
    for item in Item.objects.all():
        item.stock += 1
        item.save()
    time.sleep(0.03)  # the rest of a slow batch


def invoice(request):
    total = sum(item.stock for item in Item.objects.all())  # inside the request's span
    worker = threading.Thread(target=refresh_stock)
    worker.start()  # fire and forget: the span does not travel with it
    worker.join()
    return JsonResponse({"stock": total})


def metrics(request):
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type="text/plain")
