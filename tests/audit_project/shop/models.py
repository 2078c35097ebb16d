"""Nested classes, methods, properties and stubs."""

from typing import overload

from opentelemetry import trace

tracer = trace.get_tracer(__name__)


class Order:
    class Line:
        def total(self):  # expect: missing-span
            return 0

        @tracer.start_as_current_span("price")
        def price(self):
            return 1

    def load(self):  # expect: missing-span
        return self

    @staticmethod
    def parse(text):  # expect: missing-span
        return text

    @classmethod
    def empty(cls):
        with trace.use_span(trace.INVALID_SPAN):
            return cls()

    @property
    def size(self):  # spangap: no-span a field read
        return 0

    @overload
    def find(self, key: int) -> int: ...

    def _cache(self):
        return None


class _Internal:
    def public_but_hidden(self):
        return 1
