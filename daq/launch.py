"""One stage of a topology, started in this process: what ``darktrigger stage`` and the
supervisor's children run, and what the in-process runs of :mod:`darktrigger.daq.local` share.

Each stage serves its own metrics (:func:`stage_metrics`) when the topology's ``metrics:``
section enables them:

    >>> from darktrigger.daq.trigger.menu import Menu
    >>> topo = Topology.from_dict({"menu": "m.yaml", "source": {"files": ["a.h5"]}})
    >>> menu = Menu.from_dict({"seeds": [{"name": "MET90", "type": "met", "met_min": 90}]})
    >>> metrics, server = stage_metrics(topo, menu, "recorder", serve=False)
    >>> metrics.seeds, server
    (('MET90',), None)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darktrigger.daq.topology import STAGES, Topology
from darktrigger.replay.errors import ConfigError

if TYPE_CHECKING:
    from darktrigger.daq.trigger.menu import Menu
    from darktrigger.monitoring.exposition import Server
    from darktrigger.monitoring.metrics import StageMetrics


def run_stage(stage: str, config: str | Path, *, index: int = 0, events: int | None = None,
              duration_s: float | None = None, stop: threading.Event | None = None,
              run_id: str | None = None, keys: Path | None = None, resume: bool = False,
              recover: threading.Event | None = None) -> Any:
    """Run one stage of a topology in this process until it is done (or ``stop`` is set);
    the runner's result (the recorder's: the :class:`~darktrigger.daq.summary.RunSummary`).
    ``run_id`` and ``keys`` replace the topology's run identity and CURVE keys (what
    ``darktrigger run`` gives its stages: see :mod:`darktrigger.daq.supervisor`); ``resume``:
    the source or recorder continues the run it was part of; ``recover``: set it to make the
    source send every unacknowledged batch again."""
    from darktrigger.daq.runner import RecorderRunner, ScorerRunner, SourceRunner, TriggerRunner
    from darktrigger.daq.stages import RecorderStage, ScorerStage, SourceStage, TriggerStage
    from darktrigger.daq.trigger.menu import Menu

    topo = Topology.from_yaml(config)
    if run_id is not None:
        topo = dataclasses.replace(topo, run_id=run_id)
    if keys is not None:
        topo = dataclasses.replace(topo, keys=keys)
    stop = stop or threading.Event()
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if stage not in topo.stages:
        raise ConfigError(f"{topo.where}: trigger.placement is in_workers: the scorer workers run the menu, "
                          f"there is no trigger stage to start")
    menu = Menu.from_yaml(topo.menu)
    name = f"scorer-{index}" if stage == "scorer" else stage
    metrics, server = stage_metrics(topo, menu, name)
    try:
        if stage == "source":
            return SourceRunner(topo, SourceStage(topo, max_events=events), duration_s=duration_s,
                                metrics=metrics, resume=resume, recover=recover).run(stop)
        if stage == "scorer":
            scorer = ScorerStage.from_menu(menu, topo.workers.backend, topo.workers.threads)
            trigger = TriggerStage(menu) if topo.trigger_in_workers else None
            return ScorerRunner(topo, scorer, name=name, metrics=metrics, trigger=trigger).run(stop)
        if stage == "trigger":
            return TriggerRunner(topo, TriggerStage(menu), metrics=metrics).run(stop)
        return RecorderRunner(topo, RecorderStage(topo.output, menu, topo.run, resume=resume),
                              metrics=metrics).run(stop)
    finally:
        if server is not None:
            if stage == "recorder" and not stop.is_set():
                # the run's last counts (and events lost) reach the scrapers before the port closes
                time.sleep(METRICS_LINGER_S)
            server.close()


#: How long the recorder keeps serving /metrics after the run ends: two 1 s scrapes.
METRICS_LINGER_S = 2.0


def stage_metrics(topo: Topology, menu: Menu, name: str,
                  serve: bool = True) -> tuple[StageMetrics | None, Server | None]:
    """(StageMetrics, its /metrics server) for one stage, or (None, None) with metrics off."""
    if not topo.metrics.enabled:
        return None, None
    from prometheus_client import CollectorRegistry

    from darktrigger import __version__
    from darktrigger.monitoring.exposition import serve as serve_metrics
    from darktrigger.monitoring.metrics import StageMetrics

    seeds = menu.names if name == "recorder" else ()
    targets = {s.name: s.params["rate_khz"] * 1e3 for s in menu.anomaly_seeds
               if s.params.get("rate_khz")} if name == "recorder" else {}
    registry = CollectorRegistry()
    metrics = StageMetrics(registry, name, seeds=seeds,
                           models=list(menu.used_models) if name.startswith("scorer") else (),
                           bx_rate_hz=menu.bx_rate_mhz * 1e6,
                           budget_hz=menu.budget_khz * 1e3 if menu.budget_khz else None,
                           version=__version__, anomaly_targets_hz=targets,
                           latency_budget_s=topo.metrics.latency_budget_s,
                           seed_bands_hz=topo.metrics.seed_bands_hz if name == "recorder" else None)
    port = topo.metrics.ports(topo.workers.count)[name]
    server = serve_metrics(registry, topo.metrics.host, port) if serve else None
    return metrics, server


