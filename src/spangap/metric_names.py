"""Every exported metric's name, defined once: ``metrics`` registers them and ``promql``
queries them, each with the detector's ``metric_prefix`` in front (and ``_total`` or
``_bucket`` after, as Prometheus exposes counters and histograms)."""

from __future__ import annotations

OPERATIONS = "uninstrumented_operations"
SECONDS = "uninstrumented_operation_seconds"
SELF_SECONDS = "uninstrumented_operation_self_seconds"
DURATION = "uninstrumented_operation_duration_seconds"
COVERAGE_RATIO = "span_coverage_ratio"
SAMPLED_SECONDS = "span_coverage_sampled_seconds"
SPANNED_SECONDS = "span_coverage_spanned_seconds"
SAMPLER_CPU = "spangap_sampler_cpu_seconds"
SAMPLES = "spangap_samples"
SITES_DROPPED = "spangap_sites_dropped"
INTERNAL_ERRORS = "spangap_internal_errors"
SAMPLER_INTERVAL = "spangap_sampler_interval_seconds"
SAMPLER_STRIDE = "spangap_sampler_stride"
SAMPLER_OVERHEAD = "spangap_sampler_overhead_ratio"
SAMPLER_MAX_OVERHEAD = "spangap_sampler_max_overhead_ratio"
SAMPLER_OVER_BUDGET = "spangap_sampler_over_budget"
SAMPLER_RATE = "spangap_sampler_rate_hertz"
NATIVE_WALKS = "spangap_sampler_native_walks"
INFERRED_SPANS = "spangap_inferred_spans"
UNTRACED_OUTBOUND = "untraced_outbound_requests"
