"""``spangap.traced``: the spans it makes, when they are current, what they record."""

from __future__ import annotations

import asyncio
import gc
import inspect
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import spangap
from conftest import counts_by_site
from spangap import traced

# A provider of these tests' own, passed as tracer_provider=: the global one is the
# suite's (conftest.py), shared with other tests and without an exporter.
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
in_memory = traced(tracer_provider=PROVIDER)
OUTER = PROVIDER.get_tracer("consumer")
SECRET = "s3cr3t-token-value"
traced_module = sys.modules["spangap.traced"]


@pytest.fixture(autouse=True)
def _clear_exporter() -> Iterator[None]:
    EXPORTER.clear()
    yield
    EXPORTER.clear()


def finished() -> list[ReadableSpan]:
    return list(EXPORTER.get_finished_spans())


def only_span() -> ReadableSpan:
    spans = finished()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def current_id() -> int:
    return trace.get_current_span().get_span_context().span_id


# --- names, nesting, attributes -----------------------------------------------------


@in_memory
def place_order(order_id: int) -> int:
    return check_stock(order_id) + 1


@in_memory
def check_stock(order_id: int) -> int:
    return order_id * 2


class OrderRepo:
    @in_memory
    def load(self, key: str) -> str:
        return key.upper()

    @in_memory
    @classmethod
    def build(cls, size: int) -> int:
        return size

    @classmethod
    @in_memory
    def build_inner(cls, size: int) -> int:
        return size + 1

    @in_memory
    @staticmethod
    def parse(text: str) -> int:
        return len(text)

    @staticmethod
    @in_memory
    def parse_inner(text: str) -> int:
        return len(text) + 1


def test_span_named_after_the_qualname_with_code_attributes() -> None:
    assert check_stock(4) == 8
    span = only_span()
    assert span.name == "check_stock"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "code.function": "check_stock",
        "code.namespace": __name__,
    }


def test_locals_are_left_out_of_the_name() -> None:
    @in_memory
    def helper() -> None:
        pass

    helper()
    assert only_span().name == "test_locals_are_left_out_of_the_name.helper"


def test_a_traced_call_inside_another_is_its_child() -> None:
    assert place_order(3) == 7
    inner, outer = finished()  # the inner one ends first
    assert (inner.name, outer.name) == ("check_stock", "place_order")
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id
    assert outer.parent is None


def test_the_span_is_current_during_the_call_only() -> None:
    @in_memory
    def inside() -> int:
        return current_id()

    seen = inside()
    assert seen == only_span().context.span_id
    assert not trace.get_current_span().get_span_context().is_valid


@pytest.mark.parametrize(
    ("call", "name", "result"),
    [
        (lambda: OrderRepo().load("ab"), "OrderRepo.load", "AB"),
        (lambda: OrderRepo.build(3), "OrderRepo.build", 3),
        (lambda: OrderRepo().build(3), "OrderRepo.build", 3),
        (lambda: OrderRepo.build_inner(3), "OrderRepo.build_inner", 4),
        (lambda: OrderRepo.parse("abc"), "OrderRepo.parse", 3),
        (lambda: OrderRepo().parse("abc"), "OrderRepo.parse", 3),
        (lambda: OrderRepo.parse_inner("abc"), "OrderRepo.parse_inner", 4),
    ],
    ids=["method", "classmethod", "classmethod-on-instance", "classmethod-inner",
         "staticmethod", "staticmethod-on-instance", "staticmethod-inner"],
)  # fmt: skip
def test_methods(call: Any, name: str, result: Any) -> None:
    assert call() == result
    assert only_span().name == name


def test_decorator_order_keeps_the_descriptor_type() -> None:
    assert isinstance(OrderRepo.__dict__["build"], classmethod)
    assert isinstance(OrderRepo.__dict__["parse"], staticmethod)


def test_options_name_attributes_kind() -> None:
    @traced(
        "orders.reserve",
        attributes={"team": "orders", "code.function": "overridden"},
        kind=SpanKind.CLIENT,
        tracer_provider=PROVIDER,
    )
    def reserve() -> None:
        pass

    reserve()
    span = only_span()
    assert span.name == "orders.reserve"
    assert span.kind is SpanKind.CLIENT
    assert span.attributes is not None
    assert span.attributes["team"] == "orders"
    assert span.attributes["code.function"] == "overridden"  # the user's value wins
    assert span.attributes["code.namespace"] == __name__


def test_the_global_provider_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider given: the global one as it is at each call, so an SDK set up after
    the module was imported is used."""
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    providers = []
    for exporter in (first, second):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(provider)

    @traced
    def work() -> None:
        pass

    for provider in (trace.NoOpTracerProvider(), providers[0], providers[1], providers[1]):
        monkeypatch.setattr(traced_module, "get_tracer_provider", lambda p=provider: p)
        work()
    assert [s.name for s in first.get_finished_spans()] == [
        "test_the_global_provider_is_read_at_call_time.work"
    ]
    assert len(second.get_finished_spans()) == 2
    assert finished() == []


def test_the_suites_global_sdk_provider_by_default() -> None:
    @traced
    def inside() -> Any:
        return trace.get_current_span()

    span = inside()
    assert isinstance(span, ReadableSpan) and span.end_time is not None
    assert span.name == "test_the_suites_global_sdk_provider_by_default.inside"


def test_metadata_is_kept() -> None:
    def original(a: int, b: str = "x") -> str:
        """The docstring."""
        return b * a

    wrapped = traced(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__qualname__ == original.__qualname__
    assert wrapped.__doc__ == "The docstring."
    assert wrapped.__module__ == __name__
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert spangap.traced is traced and "traced" in spangap.__all__


def test_kinds_of_function_are_kept() -> None:
    def plain() -> None:
        pass

    async def coro() -> None:
        pass

    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> AsyncIterator[int]:
        yield 1

    checks = (
        inspect.iscoroutinefunction,
        inspect.isgeneratorfunction,
        inspect.isasyncgenfunction,
    )
    for func in (plain, coro, gen, agen):
        wrapped = traced(func)
        assert [check(wrapped) for check in checks] == [check(func) for check in checks]


def test_not_a_function() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        traced(tracer_provider=PROVIDER)(42)


# --- exceptions ----------------------------------------------------------------------


class OrderError(Exception):
    pass


def test_an_exception_is_recorded_and_re_raised_unchanged() -> None:
    error = OrderError("out of stock")

    @in_memory
    def fail() -> None:
        raise error

    with pytest.raises(OrderError) as raised:
        fail()
    assert raised.value is error
    assert raised.traceback[-1].name == "fail"  # the original traceback, not a new one
    span = only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "OrderError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"].endswith("OrderError")


@pytest.mark.parametrize("error", [StopIteration, StopAsyncIteration, SystemExit])
def test_exceptions_that_are_not_failures(error: type[BaseException]) -> None:
    @in_memory
    def end() -> None:
        raise error

    with pytest.raises(error):
        end()
    span = only_span()
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


# --- async ---------------------------------------------------------------------------


@in_memory
async def fetch_order(order_id: int) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"id": order_id, "lines": await count_lines(order_id)}


@in_memory
async def count_lines(order_id: int) -> int:
    await asyncio.sleep(0)
    return current_id()


def test_async_function() -> None:
    result = asyncio.run(fetch_order(5))
    inner, outer = finished()
    assert (inner.name, outer.name) == ("count_lines", "fetch_order")
    assert result == {"id": 5, "lines": inner.context.span_id}
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id


def test_async_exception() -> None:
    error = OrderError("late")

    @in_memory
    async def fail() -> None:
        await asyncio.sleep(0)
        raise error

    with pytest.raises(OrderError) as raised:
        asyncio.run(fail())
    assert raised.value is error
    span = only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_cancellation_ends_the_span_without_an_error() -> None:
    started = []

    @in_memory
    async def wait_forever() -> None:
        started.append(current_id())
        await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(wait_forever())
        while not started:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = only_span()
    assert span.context.span_id == started[0]
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


# --- generators ----------------------------------------------------------------------


@in_memory
def read_rows(count: int, seen: list[tuple[str, int]]) -> Iterator[int]:
    try:
        for i in range(count):
            seen.append(("body", current_id()))
            sent = yield i
            if sent is not None:
                seen.append(("sent", sent))
        return count
    finally:
        seen.append(("finally", current_id()))


def test_generator_span_is_current_only_while_its_body_runs() -> None:
    seen: list[tuple[str, int]] = []
    with OUTER.start_as_current_span("consumer") as consumer:
        outer_id = consumer.get_span_context().span_id
        for _ in read_rows(3, seen):
            seen.append(("consumer", current_id()))
    gen_span, consumer_span = finished()
    assert gen_span.name == "read_rows"
    assert gen_span.parent is not None and gen_span.parent.span_id == outer_id
    body = gen_span.context.span_id
    assert seen == [
        ("body", body),
        ("consumer", outer_id),
        ("body", body),
        ("consumer", outer_id),
        ("body", body),
        ("consumer", outer_id),
        ("finally", body),
    ]
    assert consumer_span.name == "consumer"
    assert gen_span.end_time is not None and gen_span.status.status_code is StatusCode.UNSET


def test_generator_span_covers_the_whole_iteration() -> None:
    seen: list[tuple[str, int]] = []
    rows = read_rows(2, seen)
    assert finished() == [] and seen == []  # nothing starts before the first next
    assert next(rows) == 0
    assert rows.send("hello") == 1
    assert finished() == []
    with pytest.raises(StopIteration) as stop:
        next(rows)
    assert stop.value.value == 2  # the return value comes through
    span = only_span()
    assert ("sent", "hello") in seen
    assert span.status.status_code is StatusCode.UNSET


def test_generator_closed_early_ends_its_span() -> None:
    seen: list[tuple[str, int]] = []
    rows = read_rows(10, seen)
    next(rows)
    rows.close()
    span = only_span()
    assert span.status.status_code is StatusCode.UNSET and span.events == ()
    assert seen[-1] == ("finally", span.context.span_id)  # close ran inside the span


def test_generator_garbage_collected_ends_its_span() -> None:
    seen: list[tuple[str, int]] = []
    rows = read_rows(10, seen)
    next(rows)
    del rows
    gc.collect()
    span = only_span()
    assert span.end_time is not None and span.status.status_code is StatusCode.UNSET


def test_generator_yield_from_and_throw() -> None:
    @in_memory
    def tolerant() -> Iterator[str]:
        while True:
            try:
                yield "ok"
            except KeyError:
                yield "recovered"
                return

    def outer() -> Iterator[str]:
        yield from tolerant()

    it = outer()
    assert next(it) == "ok"
    assert it.throw(KeyError("k")) == "recovered"
    assert list(it) == []
    span = only_span()
    assert span.name == "test_generator_yield_from_and_throw.tolerant"
    assert span.status.status_code is StatusCode.UNSET


def test_generator_exception() -> None:
    error = OrderError("bad row")

    @in_memory
    def broken() -> Iterator[int]:
        yield 1
        raise error

    with pytest.raises(OrderError) as raised:
        list(broken())
    assert raised.value is error
    span = only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_exception_thrown_in_and_not_handled() -> None:
    rows = read_rows(5, [])
    next(rows)
    with pytest.raises(OrderError):
        rows.throw(OrderError("from the consumer"))
    assert only_span().status.status_code is StatusCode.ERROR


@in_memory
async def stream_rows(count: int, seen: list[tuple[str, int]]) -> AsyncIterator[int]:
    try:
        for i in range(count):
            await asyncio.sleep(0)
            seen.append(("body", current_id()))
            yield i
            await asyncio.sleep(0)
    finally:
        await asyncio.sleep(0)
        seen.append(("finally", current_id()))


def test_async_generator_span_is_current_only_while_its_body_runs() -> None:
    seen: list[tuple[str, int]] = []

    async def main() -> int:
        with OUTER.start_as_current_span("consumer") as consumer:
            async for _ in stream_rows(2, seen):
                await asyncio.sleep(0)
                seen.append(("consumer", current_id()))
            return consumer.get_span_context().span_id

    outer_id = asyncio.run(main())
    gen_span, _ = finished()
    body = gen_span.context.span_id
    assert gen_span.name == "stream_rows"
    assert gen_span.parent is not None and gen_span.parent.span_id == outer_id
    assert seen == [
        ("body", body),
        ("consumer", outer_id),
        ("body", body),
        ("consumer", outer_id),
        ("finally", body),
    ]


def test_async_generator_closed_early_ends_its_span() -> None:
    seen: list[tuple[str, int]] = []

    async def main() -> None:
        rows = stream_rows(10, seen)
        assert await anext(rows) == 0
        assert finished() == []
        await rows.aclose()

    asyncio.run(main())
    span = only_span()
    assert span.status.status_code is StatusCode.UNSET and span.events == ()
    assert seen[-1] == ("finally", span.context.span_id)


def test_async_generator_left_unfinished_is_ended_by_the_loop() -> None:
    """``break`` out of ``async for`` without ``aclose``: once collected, asyncio closes
    the generator in a task of its own."""
    seen: list[tuple[str, int]] = []

    async def main() -> None:
        async for _ in stream_rows(10, seen):
            break
        gc.collect()
        for _ in range(5):  # the closing task's steps (the body's finally awaits)
            await asyncio.sleep(0)

    asyncio.run(main())
    span = only_span()
    assert span.status.status_code is StatusCode.UNSET and span.events == ()
    assert seen[-1] == ("finally", span.context.span_id)


def test_async_generator_exception() -> None:
    error = OrderError("bad page")

    @in_memory
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise error

    async def main() -> None:
        async for _ in broken():
            pass

    with pytest.raises(OrderError) as raised:
        asyncio.run(main())
    assert raised.value is error
    assert only_span().status.status_code is StatusCode.ERROR


def test_async_generator_cancelled() -> None:
    @in_memory
    async def slow() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(60)
        yield 2

    async def consume() -> None:
        async for _ in slow():
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = only_span()
    assert span.end_time is not None and span.status.status_code is StatusCode.UNSET


# --- arguments -----------------------------------------------------------------------


class Token(str):
    """A str subclass, as a secret wrapper might be: recorded by type only."""


@traced(tracer_provider=PROVIDER, record_args=("user_id", "region", "retry", "ratio", "body"))
def update_user(
    user_id: int,
    token: str,
    region: str = "eu",
    *,
    retry: bool = False,
    ratio: float = 0.5,
    body: object = None,
) -> None:
    pass


def recorded_args(span: ReadableSpan) -> dict[str, Any]:
    return {k: v for k, v in (span.attributes or {}).items() if k.startswith("arg.")}


def test_only_the_named_arguments_are_recorded() -> None:
    update_user(7, SECRET, retry=True, body={"password": SECRET})
    assert recorded_args(only_span()) == {
        "arg.user_id": 7,
        "arg.region": "eu",  # the default, as the function saw it
        "arg.retry": True,
        "arg.ratio": 0.5,
        "arg.body": "dict",  # not a plain value: its type's name, never its repr
    }


def test_named_arguments_given_by_keyword_and_position() -> None:
    update_user(token=SECRET, user_id=8, region=Token("us"), ratio=2.0)
    assert recorded_args(only_span()) == {
        "arg.user_id": 8,
        "arg.region": "Token",
        "arg.retry": False,
        "arg.ratio": 2.0,
        "arg.body": "NoneType",
    }


def test_variadic_and_positional_only_parameters() -> None:
    @traced(tracer_provider=PROVIDER, record_args=("first", "rest", "options"))
    def variadic(first: int, /, *rest: int, **options: int) -> None:
        pass

    variadic(1, 2, 3, depth=4)
    assert recorded_args(only_span()) == {
        "arg.first": 1,
        "arg.rest": "tuple",
        "arg.options": "dict",
    }


def test_one_name_as_a_string() -> None:
    @traced(tracer_provider=PROVIDER, record_args="user_id")
    def one(user_id: int) -> None:
        pass

    one(3)
    assert recorded_args(only_span()) == {"arg.user_id": 3}


def test_record_args_on_a_method() -> None:
    class Repo:
        @traced(tracer_provider=PROVIDER, record_args=("key",))
        def get(self, key: str) -> str:
            return key

    assert Repo().get("k1") == "k1"
    assert recorded_args(only_span()) == {"arg.key": "k1"}


def test_a_bad_call_fails_as_it_would_without_the_decorator() -> None:
    with pytest.raises(TypeError, match="user_id"):
        update_user(token=SECRET)  # type: ignore[call-arg]
    assert "arg.user_id" not in recorded_args(only_span())


def test_a_name_that_is_not_a_parameter_is_refused_at_decoration() -> None:
    with pytest.raises(
        TypeError, match=r"'password'.*not a parameter.*\(its parameters: user_id\)"
    ):

        @traced(record_args=("user_id", "password"))
        def login(user_id: int) -> None:
            pass


def all_recorded_text(span: ReadableSpan) -> str:
    texts = [span.name, repr(dict(span.attributes or {}))]
    texts += [f"{e.name} {dict(e.attributes or {})!r}" for e in span.events]
    return " ".join(texts)


@pytest.mark.parametrize("kind", ["sync", "generator", "async", "async-generator", "error"])
def test_no_argument_is_recorded_by_default(kind: str) -> None:
    @in_memory
    def sync(token: str, *, also: str) -> str:
        return token

    @in_memory
    def gen(token: str, *, also: str) -> Iterator[str]:
        yield token

    @in_memory
    async def coro(token: str, *, also: str) -> str:
        return token

    @in_memory
    async def agen(token: str, *, also: str) -> AsyncIterator[str]:
        yield token

    @in_memory
    def error(token: str, *, also: str) -> None:
        raise OrderError("failed")

    async def drain() -> None:
        async for _ in agen(SECRET, also=SECRET):
            pass

    if kind == "sync":
        sync(SECRET, also=SECRET)
    elif kind == "generator":
        list(gen(SECRET, also=SECRET))
    elif kind == "async":
        asyncio.run(coro(SECRET, also=SECRET))
    elif kind == "async-generator":
        asyncio.run(drain())
    else:
        with pytest.raises(OrderError):
            error(SECRET, also=SECRET)
    span = only_span()
    assert SECRET not in all_recorded_text(span)
    assert recorded_args(span) == {}


# --- the detector's view -------------------------------------------------------------


def site(name: str) -> str:
    return f"{__name__}:{name}"


@traced
def traced_sleep() -> None:
    time.sleep(0.03)


def untraced_sleep() -> None:
    time.sleep(0.03)


def test_work_inside_a_traced_function_is_spanned_for_the_detector(start_detector) -> None:
    detector = start_detector(include=[__name__])
    for _ in range(4):
        traced_sleep()
        untraced_sleep()
    detector.stop()
    counted = counts_by_site(detector)
    assert counted[site("untraced_sleep")] >= 3, dict(counted)
    assert site("traced_sleep") not in counted, dict(counted)
    assert not [s for s in counted if "traced" in s and s != site("untraced_sleep")]
