"""The reporting side: the table (``render``), live figures from ``/metrics`` or
Prometheus (``top``), the PromQL both the table and the dashboard use (``promql``), and
the Grafana dashboard (``dashboard``)."""
