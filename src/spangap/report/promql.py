"""The PromQL behind the Grafana dashboard and ``gapreport top --prometheus``.

Both read the same expressions from here, so the ranking a person sees in the terminal is
by construction the ranking of the dashboard's table. Expressions take the label matchers
to filter by (``job=~"$job", instance=~"$instance"`` in the dashboard, the user's
``--selector`` in the terminal) and the window (``$__range``, ``1h``); every sum is across
instances, which is what makes the figures fleet-wide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import metric_names as names

#: The quantile shown as "p95" everywhere.
P95 = 0.95

_SELECTOR = re.compile(r"^\{(?P<matchers>.*)\}$", re.DOTALL)
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")


class PromQLError(ValueError):
    """A selector or a range a person typed is not valid PromQL; ``str(e)`` says why."""


def parse_selector(text: str) -> str:
    """The label matchers inside ``{...}``, or PromQLError; the server checks the rest."""
    stripped = text.strip()
    found = _SELECTOR.match(stripped)
    if found is None:
        raise PromQLError(f'selector must look like {{job="api"}}, got {text!r}')
    return found.group("matchers").strip().rstrip(",").strip()


def check_duration(text: str) -> str:
    """``text`` if it is a Prometheus duration (``90s``, ``1h``, ``1h30m``), else PromQLError."""
    if not _DURATION.match(text):
        raise PromQLError(
            f"range must be a Prometheus duration such as 15m, 1h or 1d, not {text!r}"
        )
    return text


@dataclass(frozen=True)
class MetricNames:
    """The exported names for one ``metric_prefix`` (see ``spangap.metrics``)."""

    prefix: str = ""

    @property
    def operations(self) -> str:
        return f"{self.prefix}{names.OPERATIONS}_total"

    @property
    def seconds(self) -> str:
        return f"{self.prefix}{names.SECONDS}_total"

    @property
    def self_seconds(self) -> str:
        return f"{self.prefix}{names.SELF_SECONDS}_total"

    @property
    def duration_bucket(self) -> str:
        return f"{self.prefix}{names.DURATION}_bucket"

    @property
    def sampled_seconds(self) -> str:
        return f"{self.prefix}{names.SAMPLED_SECONDS}_total"

    @property
    def spanned_seconds(self) -> str:
        return f"{self.prefix}{names.SPANNED_SECONDS}_total"

    @property
    def sampler_cpu(self) -> str:
        return f"{self.prefix}{names.SAMPLER_CPU}_total"

    @property
    def sampler_interval(self) -> str:
        return f"{self.prefix}{names.SAMPLER_INTERVAL}"

    @property
    def samples(self) -> str:
        return f"{self.prefix}{names.SAMPLES}_total"

    @property
    def sites_dropped(self) -> str:
        return f"{self.prefix}{names.SITES_DROPPED}_total"

    @property
    def internal_errors(self) -> str:
        return f"{self.prefix}{names.INTERNAL_ERRORS}_total"


@dataclass(frozen=True)
class Queries:
    """PromQL for one metric prefix and one set of label matchers."""

    names: MetricNames
    matchers: str = ""

    def select(self, metric: str) -> str:
        return f"{metric}{{{self.matchers}}}" if self.matchers else metric

    # --- over time (rate per second in each step's window) ------------------------------

    def operations_rate_by_site(self, window: str) -> str:
        return f"sum by (site) (rate({self.select(self.names.operations)}[{window}]))"

    def top_sites_rate(self, n: int, window: str) -> str:
        """The ``n`` sites with the most operations per second, chosen again at each step."""
        return f"topk({n}, {self.operations_rate_by_site(window)})"

    def other_sites_rate(self, n: int, window: str) -> str:
        """Everything the top ``n`` leave out, so the panel's lines add up to the total."""
        total = f"sum(rate({self.select(self.names.operations)}[{window}]))"
        return f"{total} - sum({self.top_sites_rate(n, window)})"

    def dark_rate_by_cause(self, window: str) -> str:
        # Self seconds: nested dark calls would otherwise count the same second twice.
        return f"sum by (cause) (rate({self.select(self.names.self_seconds)}[{window}]))"

    def coverage(self, window: str) -> str:
        """Fleet coverage: a ratio of sums, not an average of each instance's ratio."""
        spanned = f"sum(rate({self.select(self.names.spanned_seconds)}[{window}]))"
        sampled = f"sum(rate({self.select(self.names.sampled_seconds)}[{window}]))"
        return f"{spanned} / {sampled}"

    def sampler_cpu_by_instance(self, window: str) -> str:
        return f"sum by (instance) (rate({self.select(self.names.sampler_cpu)}[{window}]))"

    # --- over a whole range (one value per site and cause) ------------------------------

    def increase_by_site(self, metric: str, window: str) -> str:
        return f"sum by (site, cause) (increase({self.select(metric)}[{window}]))"

    def dark_seconds_by_site(self, window: str) -> str:
        """The ranking: dark seconds of each site and cause over the window."""
        return self.increase_by_site(self.names.seconds, window)

    def self_seconds_by_site(self, window: str) -> str:
        return self.increase_by_site(self.names.self_seconds, window)

    def operations_by_site(self, window: str) -> str:
        return self.increase_by_site(self.names.operations, window)

    def quantile_by_site(self, quantile: float, window: str) -> str:
        buckets = self.select(self.names.duration_bucket)
        return (
            f"histogram_quantile({quantile:g}, "
            f"sum by (site, cause, le) (increase({buckets}[{window}])))"
        )

    def total_increase(self, metric: str, window: str) -> str:
        return f"sum(increase({self.select(metric)}[{window}]))"
