"""The topology's ``metrics:`` section, the stages' metrics ports, and Prometheus's scrape config.

.. code-block:: yaml

    metrics:
      enabled: true          # every stage serves /metrics (default true)
      host: 127.0.0.1        # where the stages serve it
      base_port: 9300        # source +0, trigger +1, recorder +2, supervisor +3, scorer-i +10+i
      live_page: true        # `darktrigger run` serves the live page at the supervisor's port
      latency_budget_s: 2.0  # end-to-end p99 above this raises an alert
      seed_bands_hz:         # optional: a seed's rate outside [low, high] raises an alert
        SingleMu22: [5000, 20000]

This module knows nothing of the rest of the topology: the DAQ layer passes the worker
count and the ports its endpoints use, so that a clash is found before anything starts.

    >>> cfg = MetricsConfig.from_mapping({"base_port": 9400})
    >>> cfg.targets(workers=1)
    {'source': '127.0.0.1:9400', 'trigger': '127.0.0.1:9401', 'recorder': '127.0.0.1:9402', 'supervisor': '127.0.0.1:9403', 'scorer-0': '127.0.0.1:9410'}
    >>> print(scrape_config(cfg.targets(1), job="darktrigger").splitlines()[1])
      scrape_interval: 1s
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darktrigger.monitoring.errors import MonitoringError
from darktrigger.monitoring.metrics import metrics_ports

DEFAULT_BASE_PORT = 9300
#: ``darktrigger monitor serve`` (standalone live page): base_port + this by default.
MONITOR_OFFSET = 4
KEYS = {"enabled", "host", "base_port", "live_page", "latency_budget_s", "seed_bands_hz"}
PROMETHEUS_DIR = Path(__file__).parent / "prometheus"
GRAFANA_DIR = Path(__file__).parent / "grafana"
RULE_FILES = ("rules.yml", "alerts.yml")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


@dataclass
class MetricsConfig:
    """The ``metrics:`` section, validated (see module docs)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    base_port: int = DEFAULT_BASE_PORT
    live_page: bool = True
    latency_budget_s: float = 2.0
    seed_bands_hz: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, where: str = "topology") -> MetricsConfig:
        data = dict(data or {})
        unknown = sorted(set(map(str, data)) - KEYS)
        if unknown:
            raise MonitoringError(f"{where}: metrics: unknown key(s) {unknown}; expected some of {sorted(KEYS)}")
        out = cls()
        for key in ("enabled", "live_page"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise MonitoringError(f"{where}: metrics.{key} must be true or false, got {data[key]!r}")
                setattr(out, key, data[key])
        if "host" in data:
            if not isinstance(data["host"], str) or not data["host"]:
                raise MonitoringError(f"{where}: metrics.host must be a host name or address, got {data['host']!r}")
            out.host = data["host"]
        if "base_port" in data:
            out.base_port = data["base_port"]
            try:
                metrics_ports(out.base_port, 0)
            except MonitoringError as exc:
                raise MonitoringError(f"{where}: {exc}") from None
        if "latency_budget_s" in data:
            v = data["latency_budget_s"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise MonitoringError(f"{where}: metrics.latency_budget_s must be a number > 0, got {v!r}")
            out.latency_budget_s = float(v)
        bands = data.get("seed_bands_hz") or {}
        if not isinstance(bands, Mapping):
            raise MonitoringError(f"{where}: metrics.seed_bands_hz must map seed names to [low, high] in Hz")
        for seed, band in bands.items():
            ok = (isinstance(band, (list, tuple)) and len(band) == 2
                  and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in band)
                  and 0 <= band[0] <= band[1])
            if not ok:
                raise MonitoringError(f"{where}: metrics.seed_bands_hz.{seed} must be [low, high] in Hz with "
                                      f"0 <= low <= high, got {band!r}")
            out.seed_bands_hz[str(seed)] = (float(band[0]), float(band[1]))
        return out

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def ports(self, workers: int) -> dict[str, int]:
        """{stage: port} of every ``/metrics`` (see :func:`darktrigger.monitoring.metrics.metrics_ports`)."""
        return metrics_ports(self.base_port, workers)

    @property
    def monitor_port(self) -> int:
        return self.base_port + MONITOR_OFFSET

    def targets(self, workers: int) -> dict[str, str]:
        """{stage: "host:port"}: Prometheus's scrape targets and the live page's."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {name: f"{host}:{port}" for name, port in self.ports(workers).items()}

    def check(self, workers: int, taken: Mapping[str, int] | None = None, where: str = "topology") -> None:
        """No two stages on one port, and none on a port of ``taken`` ({what: port}, e.g. the
        pipeline's tcp endpoints on the same host): a clash is an error before anything starts."""
        seen: dict[int, str] = {port: f"endpoints.{name}" for name, port in (taken or {}).items()}
        for stage, port in self.ports(workers).items():
            if port in seen:
                raise MonitoringError(f"{where}: the {stage} stage's metrics port {port} "
                                      f"(metrics.base_port {self.base_port}) is also {seen[port]}: a port "
                                      f"clash; choose another metrics.base_port")
            seen[port] = f"the {stage} stage's metrics port"

    def check_bindable(self, stages: list[str], workers: int, where: str = "topology") -> None:
        """Each named stage's metrics port is free now (a clear error if another program has it)."""
        ports = self.ports(workers)
        for stage in stages:
            port_in_use(self.host, ports[stage], f"{where}: the {stage} stage's metrics port")


def port_in_use(host: str, port: int, what: str) -> None:
    """Raise a :class:`MonitoringError` naming ``what`` if ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise MonitoringError(f"{what} {host}:{port} cannot be bound ({exc.strerror}): is another run "
                                  f"or program using it? Choose another metrics.base_port") from None


def _duration(value: str, what: str) -> str:
    if not _DURATION.match(value):
        raise MonitoringError(f"{what} must be a Prometheus duration such as 1s, 500ms or 1m, got {value!r}")
    return value


def scrape_config(targets: Mapping[str, str], *, job: str = "darktrigger", scrape_interval: str = "1s",
                  rule_dir: str | Path | None = None, source: str | None = None) -> str:
    """A ``prometheus.yml`` scraping every stage of one pipeline, with the shipped rules.

    Each target carries a ``component`` label (``source``, ``scorer-0``...); the recording
    and alert rules match on ``job`` (keep it starting with ``darktrigger``). ``rule_dir``:
    where ``rules.yml`` and ``alerts.yml`` are (default: the installed package's copies).
    """
    _duration(scrape_interval, "the scrape interval")
    if not re.fullmatch(r"darktrigger[a-zA-Z0-9_.:-]*", job):
        raise MonitoringError(f"the job name must start with 'darktrigger' (the rules match job=~\"darktrigger.*\") "
                              f"and use letters, digits, _ . : -; got {job!r}")
    rule_dir = str(PROMETHEUS_DIR if rule_dir is None else rule_dir)
    q = json.dumps  # a JSON string is a valid YAML scalar, quoted where needed
    lines = [
        *([f"# generated by `darktrigger monitor config` from {source}"] if source else []),
        "global:",
        f"  scrape_interval: {scrape_interval}",
        f"  evaluation_interval: {scrape_interval}",
        "rule_files:",
        *[f"  - {q(str(Path(rule_dir) / name) if rule_dir else name)}" for name in RULE_FILES],
        "scrape_configs:",
        f"  - job_name: {q(job)}",
        f"    scrape_interval: {scrape_interval}",
        f"    scrape_timeout: {scrape_interval}",
        "    metrics_path: /metrics",
        "    static_configs:",
    ]
    for name, target in targets.items():
        lines += [f"      - targets: [{q(target)}]", f"        labels: {{component: {q(name)}}}"]
    return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_BASE_PORT", "GRAFANA_DIR", "MONITOR_OFFSET", "PROMETHEUS_DIR", "MetricsConfig",
           "port_in_use", "scrape_config"]
