"""The Grafana dashboard, built here and shipped as ``monitoring/grafana/dashboards/darktrigger.json``.

Writing it from code keeps its queries in one reviewable place; the tests check that the
shipped JSON is what :func:`dashboard` builds, that every query parses (``promtool``), and
that a real Prometheus scraping a pipeline answers each one with data.

    $ darktrigger monitor dashboard --out monitoring/grafana/dashboards/darktrigger.json

    >>> d = dashboard()
    >>> d["uid"], len(expressions(d)) > 10
    ('darktrigger-pipeline', True)
    >>> fill_variables('rate(darktrigger_events_total{job="$job"}[$__rate_interval])')
    'rate(darktrigger_events_total{job="darktrigger"}[30s])'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

JSON_PATH = Path(__file__).parent / "grafana" / "dashboards" / "darktrigger.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
J = '{job="$job"}'


def _target(expr: str, legend: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True, **extra}


def _panel(pid: int, title: str, targets: list[tuple[str, str]], grid: tuple[int, int, int, int], *,
           unit: str = "short", kind: str = "timeseries", description: str = "", log: bool = False,
           **extra: Any) -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 8, "spanNulls": False}}
    if log:
        defaults["custom"]["scaleDistribution"] = {"type": "log", "log": 10}
    panel: dict[str, Any] = {
        "id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                    "tooltip": {"mode": "multi"}},
        "targets": [_target(e, leg, chr(ord("A") + i)) for i, (e, leg) in enumerate(targets)],
    }
    panel.update(extra)
    return panel


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {"id": pid, "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schema 38, Grafana 10/11)."""
    budget = f"max by (job) (darktrigger_rate_budget_hz{J})"
    panels = [
        _row(1, "Trigger rates", 0),
        _panel(2, "Total L1 accept rate against the budget",
               [(f"darktrigger:l1_rate_hz{J}", "L1 rate"), (budget, "budget")], (0, 1, 16, 8), unit="hertz",
               description="Accepted fraction of events × the bunch-crossing rate (30 s window), and the "
                           "menu's budget.",
               fieldConfig={"defaults": {"unit": "hertz", "custom": {"lineWidth": 2, "fillOpacity": 8}},
                            "overrides": [{"matcher": {"id": "byName", "options": "budget"},
                                           "properties": [{"id": "custom.lineStyle",
                                                           "value": {"fill": "dash", "dash": [10, 10]}},
                                                          {"id": "color", "value": {"mode": "fixed",
                                                                                    "fixedColor": "red"}}]}]}),
        _panel(3, "Budget used", [(f"darktrigger:l1_rate_hz{J} / on (job) {budget}", "of budget")],
               (16, 1, 8, 8), unit="percentunit", kind="gauge",
               options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "showThresholdMarkers": True},
               fieldConfig={"defaults": {"unit": "percentunit", "min": 0, "max": 1.2,
                                         "thresholds": {"mode": "absolute", "steps": [
                                             {"color": "green", "value": None}, {"color": "orange", "value": 0.9},
                                             {"color": "red", "value": 1.0}]}}, "overrides": []}),
        _panel(4, "Per-seed rate (after prescale)", [(f"darktrigger:seed_rate_hz{J}", "{{seed}}")],
               (0, 9, 12, 9), unit="hertz"),
        _panel(5, "Per-seed pure rate", [(f"darktrigger:seed_pure_rate_hz{J}", "{{seed}}")],
               (12, 9, 12, 9), unit="hertz", description="Events this seed alone accepted."),
        _panel(6, "Per-seed rate before prescale", [(f"darktrigger:seed_raw_rate_hz{J}", "{{seed}}")],
               (0, 18, 12, 8), unit="hertz", log=True),
        _panel(7, "Input: events per second seen by the recorder",
               [(f"darktrigger:input_events_per_second{J}", "events/s")], (12, 18, 12, 8), unit="short"),
        _row(8, "Anomaly scores", 26),
        _panel(9, "Anomaly score distribution over time: $model",
               [('darktrigger:anomaly_score_bucket:rate30s{job="$job", model="$model"}', "{{le}}")],
               (0, 27, 12, 9), kind="heatmap", repeat="model", repeatDirection="h", maxPerRow=2,
               description="Scores per second in each log-spaced bucket (powers of two, 6e-5 … 16384).",
               options={"calculate": False, "yAxis": {"axisPlacement": "left", "unit": "short"},
                        "color": {"mode": "scheme", "scheme": "Viridis", "exponent": 0.5, "steps": 64},
                        "cellGap": 0, "tooltip": {"show": True, "yHistogram": True},
                        "legend": {"show": True}},
               targets_format="heatmap"),
        _panel(10, "Anomaly score quantiles",
               [(f"darktrigger:anomaly_score:p50{J}", "{{model}} p50"),
                (f"darktrigger:anomaly_score:p99{J}", "{{model}} p99")], (12, 27, 12, 9), log=True),
        _row(11, "Latency and throughput", 36),
        _panel(12, "Software pipeline latency (source emit → recorder write)",
               [(f"darktrigger:software_end_to_end_latency_seconds:p50{J}", "p50"),
                (f"darktrigger:software_end_to_end_latency_seconds:p99{J}", "p99"),
                (f"max by (job) (darktrigger_software_latency_budget_seconds{J})", "p99 budget")],
               (0, 37, 12, 8), unit="s", log=True),
        _panel(13, "Batch processing time p99, by stage",
               [(f"darktrigger:batch_processing_seconds:p99{J}", "{{stage}}")], (12, 37, 12, 8), unit="s",
               log=True),
        _panel(14, "Events per second, by stage", [(f"darktrigger:stage_events_per_second{J}", "{{stage}}")],
               (0, 45, 24, 8), unit="short"),
        _row(15, "Worker health, re-sends and drops", 53),
        _panel(16, "Stages up", [(f"up{J}", "{{component}}")], (0, 54, 8, 8), kind="state-timeline",
               fieldConfig={"defaults": {"mappings": [{"type": "value", "options": {
                   "0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}}}]},
                            "overrides": []}),
        _panel(17, "Workers and batches in flight",
               [(f"sum by (job) (darktrigger_workers_alive{J})", "workers alive"),
                (f"sum by (job) (darktrigger_inflight_batches{J})", "batches in flight")], (8, 54, 8, 8)),
        _panel(18, "Worker losses and restarts (per minute)",
               [(f"sum by (job) (increase(darktrigger_workers_lost_total{J}[1m]))", "workers lost"),
                (f"sum by (job) (increase(darktrigger_worker_restarts_total{J}[1m]))", "restarts")],
               (16, 54, 8, 8)),
        _panel(19, "Re-sends, malformed messages and dropped events",
               [(f"sum by (job) (rate(darktrigger_resent_batches_total{J}[$__rate_interval]))", "re-sent batches/s"),
                (f"sum by (job, stage) (rate(darktrigger_malformed_messages_total{J}[$__rate_interval]))",
                 "malformed/s {{stage}}"),
                (f"sum by (job, stage, reason) (rate(darktrigger_dropped_events_total{J}[$__rate_interval]))",
                 "dropped/s {{stage}} ({{reason}})")], (0, 62, 16, 8)),
        _panel(20, "Events lost", [(f"max by (job) (darktrigger_lost_events_total{J})", "lost")], (16, 62, 8, 8),
               kind="stat", options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                     "colorMode": "background"},
               fieldConfig={"defaults": {"thresholds": {"mode": "absolute", "steps": [
                   {"color": "green", "value": None}, {"color": "red", "value": 1}]}}, "overrides": []}),
        _panel(21, "Build", [(f"darktrigger_build_info{J}", "{{component}} {{version}} (Python {{python}})")],
               (0, 70, 24, 5), kind="table", targets_instant=True),
    ]
    for p in panels:  # panel-level switches for the targets
        if p.pop("targets_format", None):
            for t in p["targets"]:
                t["format"] = "heatmap"
        if p.pop("targets_instant", None):
            for t in p["targets"]:
                t.update(instant=True, range=False, format="table")
    return {
        "uid": "darktrigger-pipeline",
        "title": "darktrigger pipeline",
        "description": "Trigger rates against the budget, pure rates, anomaly scores, latency and worker "
                       "health of a darktrigger pipeline (recording rules from monitoring/prometheus/rules.yml).",
        "tags": ["darktrigger", "trigger", "anomaly-detection"],
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {"refresh_intervals": ["1s", "5s", "10s", "30s", "1m"]},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {"text": "Prometheus (darktrigger)", "value": "darktrigger-prometheus"}},
            {"name": "job", "label": "pipeline", "type": "query", "datasource": DS,
             "query": {"query": "label_values(darktrigger_build_info, job)", "refId": "job"},
             "definition": "label_values(darktrigger_build_info, job)", "refresh": 2, "sort": 1},
            {"name": "model", "label": "model", "type": "query", "datasource": DS, "multi": True,
             "includeAll": True,
             "query": {"query": 'label_values(darktrigger_anomaly_score_bucket{job="$job"}, model)',
                       "refId": "model"},
             "definition": 'label_values(darktrigger_anomaly_score_bucket{job="$job"}, model)', "refresh": 2},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def expressions(board: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every (panel title, PromQL expression) of the dashboard."""
    board = board or dashboard()
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def fill_variables(expr: str, job: str = "darktrigger", model: str = "vae", rate_interval: str = "30s") -> str:
    """A dashboard query with Grafana's variables (``$job``, ``$model``,
    ``$__rate_interval``) filled in, as Grafana sends it to Prometheus."""
    return expr.replace("$job", job).replace("$model", model).replace("$__rate_interval", rate_interval)


def render() -> str:
    """The dashboard's JSON text, as shipped in :data:`JSON_PATH`."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


__all__ = ["JSON_PATH", "dashboard", "expressions", "fill_variables", "render"]
