"""WSGI entry point: the Django instrumentation spans every request."""

import os

from django.core.wsgi import get_wsgi_application
from opentelemetry import trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.trace import TracerProvider

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
trace.set_tracer_provider(TracerProvider())
DjangoInstrumentor().instrument()
application = get_wsgi_application()
