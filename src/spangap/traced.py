"""``@traced``: put a function's work inside a span with one line.

What spangap reports is work that runs outside spans; this is the shortest way to bring
one such site in. It depends only on ``opentelemetry-api``: it works, and costs the
same, where the detector is off (PyPy, an untested CPython).

Each call gets a span named after the function's ``__qualname__`` (``.<locals>`` parts
dropped), from a tracer looked up at call time, so an SDK configured after import is
used. Argument values are never recorded unless named in ``record_args``. See
docs/traced.md for the semantics of generators and the measured cost.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, overload

from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
    get_tracer_provider,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

__all__ = ["traced"]

if TYPE_CHECKING:  # typing.ParamSpec is 3.10+; PyPy's 3.9 imports spangap too (off)
    from typing import ParamSpec

    P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Prefix of the attributes that hold the arguments named in ``record_args``.
ARG_PREFIX = "arg."
#: Argument values recorded as they are; any other value is recorded as its type's name.
#: Exact types: a subclass of ``str`` may be a wrapper that exists to hide its value.
_PLAIN = frozenset({str, bool, int, float})
_MISSING = object()

#: Picks one argument's value out of a call's ``args`` and ``kwargs`` (or ``_MISSING``).
_Getter = Callable[[tuple[Any, ...], dict[str, Any]], object]


class _Decorator(Protocol):
    """What ``traced(...)`` returns: keeps the decorated object's type."""

    @overload
    def __call__(self, func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, func: staticmethod[P, R], /) -> staticmethod[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def traced(func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
@overload
def traced(func: staticmethod[P, R], /) -> staticmethod[P, R]: ...
@overload
def traced(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def traced(
    name: str | None = None,
    /,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    record_args: Sequence[str] = (),
    kind: SpanKind = SpanKind.INTERNAL,
    tracer_provider: TracerProvider | None = None,
) -> _Decorator: ...
def traced(
    name: Any = None,
    /,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    record_args: Sequence[str] = (),
    kind: SpanKind = SpanKind.INTERNAL,
    tracer_provider: TracerProvider | None = None,
) -> Any:
    """Run each call of the decorated function inside a span of its own.

    ``@traced`` or ``@traced("name", attributes=..., record_args=("user_id",), ...)``.
    Sync and async functions, generators and async generators, methods, class and
    static methods (either side of ``@classmethod``/``@staticmethod``).
    """
    if name is not None and not isinstance(name, str):
        return _decorate(name, None, attributes, record_args, kind, tracer_provider)

    def decorate(func: Any) -> Any:
        return _decorate(func, name, attributes, record_args, kind, tracer_provider)

    return decorate


def _decorate(
    func: Any,
    name: str | None,
    attributes: Mapping[str, AttributeValue] | None,
    record_args: Sequence[str],
    kind: SpanKind,
    tracer_provider: TracerProvider | None,
) -> Any:
    if isinstance(func, (classmethod, staticmethod)):  # 3.9-safe tuple; wrapper inside
        wrapped = _decorate(func.__func__, name, attributes, record_args, kind, tracer_provider)
        return type(func)(wrapped)
    if not callable(func):
        raise TypeError(f"@traced decorates a function, not {type(func).__name__}")
    if isinstance(record_args, str):  # ("user_id") for ("user_id",): one name, not letters
        record_args = (record_args,)
    module = getattr(func, "__module__", None) or type(func).__module__
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    span_name = name or qualname.replace(".<locals>", "")
    given: dict[str, AttributeValue] = dict(attributes or {})
    code = tuple(
        (key, value)
        for key, value in (
            ("code.function", getattr(func, "__name__", qualname)),
            ("code.namespace", module),
        )
        if key not in given  # the user's value wins
    )
    getters = _arg_getters(func, record_args)
    tracer = _tracer_lookup(module, tracer_provider)

    def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
        """Start the call's span, not yet current. The user's attributes and arguments
        go in at the start, where a sampler sees them; ``code.*`` are set just after,
        and only on a recording span: the SDK checks a mapping given at the start as a
        whole, which costs it more than the two attributes themselves."""
        attrs = (given or None) if not getters else _with_args(given, getters, args, kwargs)
        span = tracer().start_span(span_name, kind=kind, attributes=attrs)
        if span.is_recording():
            for key, value in code:
                span.set_attribute(key, value)
        return span

    if inspect.isasyncgenfunction(func):
        return _wrap_async_generator(func, start)
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(func, start)
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(func, start)
    return _wrap_sync(func, start)


def _wrap_sync(func: Callable[..., Any], start: Callable[..., Span]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = start(args, kwargs)
        # attach/detach rather than trace.use_span: two generator-based context managers
        # fewer, which pays for the wrapper and the attributes (benchmarks/traced_cost.py).
        token = attach(set_span_in_context(span))
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            detach(token)
            span.end()

    return wrapper


def _wrap_coroutine(func: Callable[..., Any], start: Callable[..., Span]) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = start(args, kwargs)
        token = attach(set_span_in_context(span))
        try:
            return await func(*args, **kwargs)
        except Exception as exc:  # asyncio.CancelledError is not an Exception: no error
            _failed(span, exc)
            raise
        finally:
            detach(token)
            span.end()

    return wrapper


def _wrap_generator(func: Callable[..., Any], start: Callable[..., Span]) -> Callable[..., Any]:
    """The span lasts from the first ``next`` to the end, and is current only while the
    generator's own body runs: between yields, the consumer's context is its own."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        gen = func(*args, **kwargs)
        span = start(args, kwargs)
        ctx = set_span_in_context(span)
        step: Callable[[Any], Any] = gen.send
        value: Any = None
        try:
            while True:
                item = _in_context(ctx, step, value)
                try:
                    value = yield item
                    step = gen.send
                except GeneratorExit:  # closed, or garbage-collected, before the end
                    _in_context(ctx, lambda _: gen.close(), None)
                    raise
                except BaseException as exc:  # thrown in by the consumer
                    step, value = gen.throw, exc
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    return wrapper


def _wrap_async_generator(
    func: Callable[..., Any], start: Callable[..., Span]
) -> Callable[..., Any]:
    """As :func:`_wrap_generator`, one ``asend``/``athrow``/``aclose`` at a time."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = func(*args, **kwargs)
        span = start(args, kwargs)
        ctx = set_span_in_context(span)
        step: Callable[[Any], Any] = agen.asend
        value: Any = None
        try:
            while True:
                token = attach(ctx)
                try:
                    item = await step(value)
                finally:
                    detach(token)
                try:
                    value = yield item
                    step = agen.asend
                except GeneratorExit:
                    token = attach(ctx)
                    try:
                        await agen.aclose()
                    finally:
                        detach(token)
                    raise
                except BaseException as exc:
                    step, value = agen.athrow, exc
        except StopAsyncIteration:
            return
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    return wrapper


def _in_context(ctx: Context, step: Callable[[Any], Any], value: Any) -> Any:
    token = attach(ctx)
    try:
        return step(value)
    finally:
        detach(token)


def _failed(span: Span, exc: Exception) -> None:
    """An exception left the function: an error, unless it is how iteration ends."""
    if isinstance(exc, (StopIteration, StopAsyncIteration)):  # a tuple: 3.9 (PyPy) too
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def _tracer_lookup(module: str, provider: TracerProvider | None) -> Callable[[], Tracer]:
    """The tracer for ``module`` from ``provider`` or, if None, from the global provider
    as it is at call time. ``get_tracer`` builds a new tracer on each call (several
    microseconds with the SDK), so one is kept per provider object."""
    cached: list[tuple[TracerProvider | None, Tracer | None]] = [(None, None)]

    def tracer() -> Tracer:
        current = provider if provider is not None else get_tracer_provider()
        known, found = cached[0]  # one tuple: threads never see a provider with another's
        if current is not known or found is None:
            found = current.get_tracer(module)
            cached[0] = (current, found)
        return found

    return tracer


def _arg_getters(func: Callable[..., Any], names: Sequence[str]) -> dict[str, _Getter]:
    """For each name in ``names``, how to find that parameter's value in a call, worked
    out once from the signature (``Signature.bind`` on every call costs microseconds)."""
    if not names:
        return {}
    params = inspect.signature(func).parameters
    unknown = [n for n in names if n not in params]
    if unknown:
        raise TypeError(
            f"@traced(record_args=...) names {', '.join(map(repr, unknown))}, not a "
            f"parameter of {getattr(func, '__qualname__', func)!r} "
            f"(its parameters: {', '.join(params) or 'none'})"
        )
    positional = [
        p.name for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    keyword = [p.name for p in params.values() if p.kind is not p.POSITIONAL_ONLY]
    return {name: _getter(params[name], positional, keyword) for name in names}


def _getter(param: inspect.Parameter, positional: list[str], keyword: list[str]) -> _Getter:
    name, default = param.name, param.default
    if default is param.empty:
        default = _MISSING
    if param.kind is param.VAR_POSITIONAL:
        start = len(positional)
        return lambda args, kwargs: args[start:]
    if param.kind is param.VAR_KEYWORD:
        named = frozenset(keyword)
        return lambda args, kwargs: {k: v for k, v in kwargs.items() if k not in named}
    index = positional.index(name) if name in positional else None
    keyword_ok = param.kind is not param.POSITIONAL_ONLY

    def get(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        if index is not None and index < len(args):
            return args[index]
        if keyword_ok:
            return kwargs.get(name, default)
        return default

    return get


def _with_args(
    given: dict[str, AttributeValue],
    getters: dict[str, _Getter],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, AttributeValue]:
    attrs = dict(given)
    for name, get in getters.items():
        value = get(args, kwargs)
        if value is _MISSING:  # a call that will fail with the function's own TypeError
            continue
        kind = type(value)
        attrs[ARG_PREFIX + name] = cast(AttributeValue, value) if kind in _PLAIN else kind.__name__
    return attrs
