"""Monitoring: every stage's Prometheus metrics, their exposition, Prometheus and Grafana
files, and the built-in live page. A leaf layer: it uses numpy, prometheus_client and
(for long batches of scores) numba, nothing of the rest of darktrigger (the DAQ layer
feeds it).

- :mod:`darktrigger.monitoring.metrics`: :class:`~darktrigger.monitoring.metrics.StageMetrics` (one per stage, in a
  registry passed in), the metric names, :func:`~darktrigger.monitoring.metrics.metrics_ports`;
  :mod:`darktrigger.monitoring.fasthist` counts its long score histograms.
- :mod:`darktrigger.monitoring.exposition`: :func:`~darktrigger.monitoring.exposition.serve`, ``/metrics`` in a
  daemon thread that never answers a scrape with an error.
- :mod:`darktrigger.monitoring.config`: the topology's ``metrics:`` section and Prometheus's scrape config
  (``darktrigger monitor config``).
- :mod:`darktrigger.monitoring.live`: the live page (``darktrigger monitor serve``; ``darktrigger run``
  serves it at the supervisor's port), its JavaScript in ``monitoring/static``.
- :mod:`darktrigger.monitoring.dashboard`: the Grafana dashboard in ``monitoring/grafana``
  (``darktrigger monitor dashboard``).
- :mod:`darktrigger.monitoring.simulate`: a stand-in pipeline feeding the metrics, for tests and demos.
- ``monitoring/prometheus``: ``rules.yml`` (recording rules), ``alerts.yml`` (alerts) and their
  ``promtool test rules`` tests, an example ``prometheus.yml``.

    >>> from prometheus_client import CollectorRegistry
    >>> from darktrigger.monitoring import StageMetrics
    >>> registry = CollectorRegistry()
    >>> StageMetrics(registry, "trigger").batch(4096, 0.0008)
    >>> registry.get_sample_value("darktrigger_events_total", {"stage": "trigger"})
    4096.0
"""

from darktrigger.monitoring.errors import MonitoringError
from darktrigger.monitoring.exposition import serve
from darktrigger.monitoring.metrics import StageMetrics, metrics_ports

__all__ = ["MonitoringError", "StageMetrics", "metrics_ports", "serve"]
