"""Monitoring: every stage's Prometheus metrics, their exposition, Prometheus and Grafana
files, and the built-in live page. A leaf layer: it uses numpy and prometheus_client,
nothing of the rest of darktrigger (the DAQ layer feeds it).

- :mod:`monitoring.metrics`: :class:`~monitoring.metrics.StageMetrics` (one per stage, in a
  registry passed in), the metric names, :func:`~monitoring.metrics.metrics_ports`.
- :mod:`monitoring.exposition`: :func:`~monitoring.exposition.serve`, ``/metrics`` in a
  daemon thread that never answers a scrape with an error.
- :mod:`monitoring.config`: the topology's ``metrics:`` section and Prometheus's scrape config
  (``darktrigger monitor config``).
- :mod:`monitoring.live`: the live page (``darktrigger monitor serve``; ``darktrigger run``
  serves it at the supervisor's port), its JavaScript in ``monitoring/static``.
- :mod:`monitoring.dashboard`: the Grafana dashboard in ``monitoring/grafana``.
- :mod:`monitoring.simulate`: a stand-in pipeline feeding the metrics, for tests and demos.
- ``monitoring/prometheus``: ``rules.yml`` (recording rules), ``alerts.yml`` (alerts) and their
  ``promtool test rules`` tests, an example ``prometheus.yml``.

    >>> from prometheus_client import CollectorRegistry
    >>> from monitoring import StageMetrics
    >>> m = StageMetrics(CollectorRegistry(), "trigger")
    >>> m.batch(4096, 0.0008)
"""

from monitoring.errors import MonitoringError
from monitoring.metrics import StageMetrics, metrics_ports, serve

__all__ = ["MonitoringError", "StageMetrics", "metrics_ports", "serve"]
