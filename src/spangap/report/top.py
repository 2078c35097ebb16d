"""``gapreport top``: the worst dark sites of a running process, or of a whole fleet.

A process is read from its ``/metrics`` page; a fleet from Prometheus, with the same PromQL
as the dashboard's ranking table (:mod:`spangap.report.promql`). Either way the result is a
:class:`~spangap.snapshot.Snapshot`, so the report is the one ``gapreport show`` prints.
Everything that can go wrong with an endpoint becomes a :class:`SourceError` whose text is
one line for a person.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from ..snapshot import SiteStats, Snapshot, Totals
from .promql import P95, MetricNames, Queries

#: Larger answers are not what either endpoint sends; reading stops there.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

SiteKey = tuple[str, str]  # (site, cause)


class SourceError(Exception):
    """An endpoint could not be read or is not what was expected; one line for people."""


# --- HTTP --------------------------------------------------------------------------------


def check_url(url: str, option: str) -> str:
    """``url`` if it is an http(s) URL with a host, else SourceError naming ``option``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"{option}: expected an http:// URL, got {url!r}")
    return url


def fetch(url: str, timeout: float, accept: str) -> tuple[str, bytes]:
    """GET ``url``: (content type, body). Non-2xx answers raise HTTPStatus; the rest
    SourceError."""
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "gapreport"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
            return response.headers.get_content_type(), body
    except urllib.error.HTTPError as exc:
        body = b""
        with contextlib.suppress(OSError, http.client.HTTPException):
            body = exc.read(MAX_RESPONSE_BYTES)
        raise HTTPStatus(url, exc.code, str(exc.reason), body) from None
    except urllib.error.URLError as exc:
        raise SourceError(f"cannot reach {url}: {_reason(exc.reason, timeout)}") from None
    except TimeoutError:
        raise SourceError(f"{url}: no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise SourceError(f"{url}: {_reason(exc, timeout)}") from None


class HTTPStatus(SourceError):
    """The server answered with an error status; the body may say more."""

    def __init__(self, url: str, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"{url}: HTTP {status} {reason}".rstrip())
        self.status = status
        self.body = body


def _reason(reason: object, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is it running, and on that port?)"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return str(reason) or type(reason).__name__


# --- one process: its /metrics page ------------------------------------------------------


@dataclass
class _Family:
    """The samples of one process that a report needs, keyed by site and cause."""

    operations: dict[SiteKey, float]
    seconds: dict[SiteKey, float]
    self_seconds: dict[SiteKey, float]
    buckets: dict[SiteKey, dict[float, float]]
    scalars: dict[str, float]


def read_metrics(url: str, prefix: str = "", timeout: float = 5.0) -> Snapshot:
    """The snapshot of the process behind ``url`` (its ``/metrics``), since it started."""
    content_type, body = fetch(check_url(url, "--url"), timeout, "text/plain;version=0.0.4")
    if content_type in ("text/html", "application/json"):
        raise SourceError(f"{url}: not a Prometheus /metrics page (it sent {content_type})")
    if len(body) > MAX_RESPONSE_BYTES:
        raise SourceError(f"{url}: answer larger than {MAX_RESPONSE_BYTES // 2**20} MiB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{url}: not a Prometheus /metrics page (not UTF-8 text)") from None
    names = MetricNames(prefix)
    return _metrics_snapshot(_parse_exposition(text, names, url), names, url)


def _parse_exposition(text: str, names: MetricNames, url: str) -> _Family:
    per_site: dict[str, dict[SiteKey, float]] = {
        names.operations: {},
        names.seconds: {},
        names.self_seconds: {},
    }
    buckets: dict[SiteKey, dict[float, float]] = defaultdict(dict)
    scalar_names = {
        names.sampled_seconds,
        names.spanned_seconds,
        names.sampler_cpu,
        names.samples,
        names.sites_dropped,
        names.internal_errors,
        names.sampler_interval,
    }
    scalars: dict[str, float] = {}
    try:
        for metric_family in text_string_to_metric_families(text):
            for sample in metric_family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                # Summed, not assigned: a series may carry labels beyond site and cause.
                if name in per_site:
                    key = _key(labels)
                    per_site[name][key] = per_site[name].get(key, 0.0) + value
                elif name == names.duration_bucket:
                    le = float(labels["le"])
                    site_buckets = buckets[_key(labels)]
                    site_buckets[le] = site_buckets.get(le, 0.0) + value
                elif name in scalar_names:
                    scalars[name] = scalars.get(name, 0.0) + value
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"{url}: not a Prometheus /metrics page ({exc})") from None
    if names.samples not in scalars:
        raise SourceError(
            f"{url}: no spangap metrics there ({names.samples} is missing; is the detector "
            "enabled in that process, and is --prefix its metric_prefix?)"
        )
    return _Family(
        operations=per_site[names.operations],
        seconds=per_site[names.seconds],
        self_seconds=per_site[names.self_seconds],
        buckets=dict(buckets),
        scalars=scalars,
    )


def _key(labels: dict[str, str]) -> SiteKey:
    return labels.get("site", ""), labels.get("cause", "")


def _metrics_snapshot(family: _Family, names: MetricNames, url: str) -> Snapshot:
    keys = set(family.operations) | set(family.seconds)
    quantiles = {
        key: (
            bucket_quantile(0.5, b.items()),
            bucket_quantile(P95, b.items()),
            bucket_quantile(1.0, b.items()),
        )
        for key, b in family.buckets.items()
    }
    sites = [
        _site(
            key,
            family.operations.get(key, 0.0),
            family.seconds.get(key, 0.0),
            family.self_seconds.get(key, 0.0),
            *quantiles.get(key, (math.nan, math.nan, math.nan)),
        )
        for key in keys
    ]
    s = family.scalars
    settings: dict[str, object] = {}
    interval = s.get(names.sampler_interval)
    if interval is not None and interval > 0:
        settings["interval_ms"] = round(interval * 1000, 2)
    totals = Totals(
        samples=round(s.get(names.samples, 0.0)),
        operations=sum(site.count for site in sites),
        dark_seconds=sum(family.self_seconds.values()),
        in_scope_seconds=s.get(names.sampled_seconds, 0.0),
        spanned_seconds=s.get(names.spanned_seconds, 0.0),
        sampler_cpu_seconds=s.get(names.sampler_cpu, 0.0),
        internal_errors=round(s.get(names.internal_errors, 0.0)),
        sites_dropped=round(s.get(names.sites_dropped, 0.0)),
    )
    program: dict[str, object] = {"source": url, "window": "since the process started"}
    return Snapshot(time.time(), program, settings, totals, _active(sites))


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile`` over cumulative ``(le, count)`` buckets.

    The same interpolation as the server's, so a process read from ``/metrics`` and a
    fleet read from Prometheus report comparable p95s. NaN when there are no observations.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return math.nan
    rank = q * ordered[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for index, (le, count) in enumerate(ordered):
        if count >= rank:
            if le == math.inf:
                # As Prometheus: the +Inf bucket answers with the highest finite bound.
                return ordered[index - 1][0] if index > 0 else math.nan
            if index == 0 and le <= 0:
                return le
            if count == previous_count:
                return le
            return previous_le + (le - previous_le) * (rank - previous_count) / (
                count - previous_count
            )
        previous_le, previous_count = le, count
    return math.nan


def _site(
    key: SiteKey,
    count: float,
    total: float,
    self_seconds: float,
    p50: float,
    p95: float,
    highest: float,
) -> SiteStats:
    """A SiteStats from numbers alone: code locations are only in the snapshot."""
    site, cause = key
    return SiteStats(
        site=site,
        cause=cause,
        file="",
        line=0,
        count=round(count),
        total_seconds=total,
        self_seconds=self_seconds,
        p50_seconds=_finite(p50),
        p95_seconds=_finite(p95),
        max_seconds=_finite(highest),
        last_seen_unix=0.0,
        callers=[],
        waited_in=[],
        threads=[],
        example_stack=[],
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _active(sites: list[SiteStats]) -> list[SiteStats]:
    """Sites with something to report: in a window, a site may have been quiet."""
    return [s for s in sites if s.count > 0 or s.total_seconds > 0]


# --- a fleet: Prometheus -----------------------------------------------------------------


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus server's instant-query API."""

    url: str
    timeout: float = 10.0

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """``expr`` evaluated now: (labels, value) for each series of the instant vector."""
        endpoint = self.url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            _, body = fetch(endpoint, self.timeout, "application/json")
        except HTTPStatus as exc:
            # Prometheus explains a bad query in the body of its 400/422 answer.
            raise SourceError(_api_error(self.url, exc.body) or str(exc)) from None
        return _vector(self.url, body)


def _api_error(url: str, body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(answer, dict) and answer.get("status") == "error":
        return f"Prometheus at {url}: {answer.get('errorType', 'error')}: {answer.get('error')}"
    return None


def _vector(url: str, body: bytes) -> list[tuple[dict[str, str], float]]:
    not_prometheus = f"{url}: not a Prometheus server (its /api/v1/query answer is not"
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SourceError(f"{not_prometheus} JSON)") from None
    if not isinstance(answer, dict) or "status" not in answer:
        raise SourceError(f"{not_prometheus} a query result)")
    if answer["status"] != "success":
        raise SourceError(_api_error(url, body) or f"{not_prometheus} a success)")
    data = answer.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise SourceError(f"{not_prometheus} an instant vector)")
    try:
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]
    except (KeyError, IndexError, TypeError, ValueError):
        raise SourceError(f"{not_prometheus} a well-formed vector)") from None


def read_prometheus(
    url: str, window: str = "1h", matchers: str = "", prefix: str = "", timeout: float = 10.0
) -> Snapshot:
    """The fleet's snapshot over the last ``window``: every series that ``matchers`` selects,
    summed across instances, ranked by the dashboard's table query."""
    server = Prometheus(check_url(url, "--prometheus"), timeout)
    names = MetricNames(prefix)
    queries = Queries(names, matchers)
    instances = server.query(f"count(last_over_time({queries.select(names.samples)}[{window}]))")
    if not instances:
        selector = f"{{{matchers}}}" if matchers else ""
        raise SourceError(
            f"Prometheus at {url} has no spangap metrics ({names.samples}{selector}) in the "
            f"last {window}; check --selector, --range and --prefix"
        )

    def by_site(expr: str) -> dict[SiteKey, float]:
        return {_key(labels): value for labels, value in server.query(expr)}

    def total(metric: str) -> float:
        return sum(value for _, value in server.query(queries.total_increase(metric, window)))

    dark = by_site(queries.dark_seconds_by_site(window))
    count = by_site(queries.operations_by_site(window))
    self_seconds = by_site(queries.self_seconds_by_site(window))
    p50 = by_site(queries.quantile_by_site(0.5, window))
    p95 = by_site(queries.quantile_by_site(P95, window))
    highest = by_site(queries.quantile_by_site(1.0, window))
    sites = [
        _site(
            key,
            count.get(key, 0.0),
            dark.get(key, 0.0),
            self_seconds.get(key, 0.0),
            p50.get(key, math.nan),
            p95.get(key, math.nan),
            highest.get(key, math.nan),
        )
        for key in set(dark) | set(count)
    ]
    active = _active(sites)
    totals = Totals(
        samples=round(total(names.samples)),
        operations=sum(site.count for site in active),
        dark_seconds=sum(v for v in self_seconds.values() if math.isfinite(v)),
        in_scope_seconds=total(names.sampled_seconds),
        spanned_seconds=total(names.spanned_seconds),
        sampler_cpu_seconds=total(names.sampler_cpu),
        internal_errors=round(total(names.internal_errors)),
        sites_dropped=round(total(names.sites_dropped)),
    )
    program: dict[str, object] = {
        "source": url,
        "window": f"last {window}",
        "selector": f"{{{matchers}}}",
        "instances": round(instances[0][1]),
    }
    return Snapshot(time.time(), program, {}, totals, active)


def describe(snapshot: Snapshot) -> str:
    """One line above the report: where the numbers come from and over which time."""
    program = snapshot.program
    source, window = program.get("source"), program.get("window")
    if "instances" in program:
        instances = program["instances"]
        plural = "instance" if instances == 1 else "instances"
        selector = program.get("selector")
        scope = f", {selector}" if selector and selector != "{}" else ""
        return f"{source}: {instances} {plural}, {window}{scope}"
    return f"{source}: {window}"
