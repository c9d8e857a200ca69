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

from darktrigger.monitoring.catalogue import cite

JSON_PATH = Path(__file__).parent / "grafana" / "dashboards" / "darktrigger.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
J = '{job="$job"}'
#: Grafana's counting unit with a suffix: 400000 shows as "400 K events/s"
EVENTS_PER_S = "count:events/s"


def _target(expr: str, legend: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True, **extra}


def _panel(pid: int, title: str, targets: list[tuple[str, str]], grid: tuple[int, int, int, int], *,
           unit: str = "short", kind: str = "timeseries", description: str = "", log: bool = False,
           sources: tuple[str, ...] = (), overrides: list[dict[str, Any]] | None = None,
           **extra: Any) -> dict[str, Any]:
    """One panel; ``sources``: the metric families it draws, named with their exporting
    stages at the end of its description (:func:`darktrigger.monitoring.catalogue.cite`)."""
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 8, "spanNulls": False}}
    if log:
        defaults["custom"]["scaleDistribution"] = {"type": "log", "log": 10}
    if sources:
        description = (description + " " if description else "") + f"From {cite(sources)}."
    panel: dict[str, Any] = {
        "id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                    "tooltip": {"mode": "multi"}},
        "targets": [_target(e, leg, chr(ord("A") + i)) for i, (e, leg) in enumerate(targets)],
    }
    panel.update(extra)
    return panel


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {"id": pid, "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def _style(match: dict[str, Any], *, colour: str | None = None, dash: bool = False,
           width: int | None = None, fill: int | None = None) -> dict[str, Any]:
    """A field override: the series ``match`` selects drawn in a fixed colour, dashed, wider."""
    props: list[dict[str, Any]] = []
    if colour:
        props.append({"id": "color", "value": {"mode": "fixed", "fixedColor": colour}})
    if dash:
        props.append({"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 6]}})
    if width is not None:
        props.append({"id": "custom.lineWidth", "value": width})
    if fill is not None:
        props.append({"id": "custom.fillOpacity", "value": fill})
    return {"matcher": match, "properties": props}


def _name(name: str) -> dict[str, Any]:
    return {"id": "byName", "options": name}


def _regex(pattern: str) -> dict[str, Any]:
    return {"id": "byRegexp", "options": pattern}


#: The families a rate is made of: Σ weights seen and the menu's crossing rate.
RATE = ("darktrigger_recorded_input_weight_total", "darktrigger_bx_rate_hz")
RATE_NOTE = ("A rate is Σ weights of the events kept / Σ weights of the events seen (30 s window) × the "
             "menu's colliding-bunch crossing rate; log axis.")


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schema 38, Grafana 10/11)."""
    budget = f"max by (job) (darktrigger_rate_budget_hz{J})"
    l1 = f"darktrigger:l1_rate_hz{J}"
    anomaly = f"darktrigger:seed_raw_rate_hz{J} and on (job, seed) darktrigger_anomaly_seed_target_rate_hz{J}"
    panels = [
        _row(1, "Trigger rates", 0),
        _panel(2, "Total L1 accept rate against the budget",
               [(l1, "L1 rate"), (budget, "budget"), (f"{l1} > on (job) {budget}", "over budget"),
                (f"{l1} + on (job) darktrigger:l1_rate_uncertainty_hz{J}", "+1σ"),
                (f"{l1} - on (job) darktrigger:l1_rate_uncertainty_hz{J}", "−1σ"),
                (f"min by (job) (darktrigger:seed_rate_hz{J} > 0)", "lowest seed")],
               (0, 1, 16, 9), unit="hertz", log=True,
               description=f"{RATE_NOTE} The budget is the dashed line, the total turns red above it, ±1σ is "
                           "its statistical uncertainty (Σ w²), and the lowest non-zero seed rate keeps the "
                           "bottom of the axis in view.",
               sources=("darktrigger_accepted_weight_total", "darktrigger_accepted_weight_squared_total", *RATE,
                        "darktrigger_recorded_input_weight_squared_total", "darktrigger_rate_budget_hz",
                        "darktrigger_seed_weighted_accepts_total"),
               overrides=[_style(_name("L1 rate"), colour="blue", width=2),
                          _style(_name("budget"), colour="#1d2330", dash=True, width=2, fill=0),
                          _style(_name("over budget"), colour="red", width=4, fill=0),
                          _style(_regex("^[+−]1σ$"), colour="#8ab8e6", width=1, fill=0),
                          _style(_name("lowest seed"), colour="#9aa3b2", dash=True, width=1, fill=0)]),
        _panel(3, "Budget used", [(f"{l1} / on (job) {budget}", "of budget")],
               (16, 1, 8, 9), unit="percentunit", kind="gauge",
               sources=("darktrigger_accepted_weight_total", *RATE, "darktrigger_rate_budget_hz"),
               options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "showThresholdMarkers": True},
               fieldConfig={"defaults": {"unit": "percentunit", "min": 0, "max": 1.2,
                                         "thresholds": {"mode": "absolute", "steps": [
                                             {"color": "green", "value": None}, {"color": "orange", "value": 0.9},
                                             {"color": "red", "value": 1.0}]}}, "overrides": []}),
        _panel(4, "Per-seed rate (after prescale)", [(f"darktrigger:seed_rate_hz{J}", "{{seed}}")],
               (0, 10, 12, 9), unit="hertz", log=True, description=RATE_NOTE,
               sources=("darktrigger_seed_weighted_accepts_total", *RATE)),
        _panel(22, "Anomaly seeds against their target rates (before prescale)",
               [(anomaly, "{{seed}}"),
                (f"max by (job, seed) (darktrigger_anomaly_seed_target_rate_hz{J})", "{{seed}} target")],
               (12, 10, 12, 9), unit="hertz", log=True,
               description=f"{RATE_NOTE} Each anomaly seed's rate before prescale (solid) and the rate its "
                           "threshold was calibrated to (dashed: its rate_khz in the menu).",
               sources=("darktrigger_seed_weighted_events_total", *RATE, "darktrigger_anomaly_seed_target_rate_hz"),
               overrides=[_style(_regex(".* target$"), dash=True, width=1, fill=0)]),
        _panel(5, "Per-seed pure rate", [(f"darktrigger:seed_pure_rate_hz{J}", "{{seed}}")],
               (0, 19, 12, 8), unit="hertz", log=True,
               description=f"Events this seed alone accepted. {RATE_NOTE}",
               sources=("darktrigger_seed_weighted_pure_accepts_total", *RATE)),
        _panel(6, "Per-seed rate before prescale", [(f"darktrigger:seed_raw_rate_hz{J}", "{{seed}}")],
               (12, 19, 12, 8), unit="hertz", log=True, description=RATE_NOTE,
               sources=("darktrigger_seed_weighted_events_total", *RATE)),
        _panel(7, "Input: events per second seen by the recorder",
               [(f"darktrigger:input_events_per_second{J}", "events/s")], (0, 27, 24, 6), unit=EVENTS_PER_S,
               description="The replay's speed (any: rates are fractions of the crossing rate).",
               sources=("darktrigger_recorded_input_events_total",)),
        _row(8, "Anomaly scores", 33),
        _panel(9, "Anomaly score distribution over time: $model",
               [('darktrigger:anomaly_score_bucket:rate30s{job="$job", model="$model"}', "{{le}}")],
               (0, 34, 12, 9), kind="heatmap", repeat="model", repeatDirection="h", maxPerRow=2,
               description="Scores per second in each log-spaced bucket (powers of two, 6e-5 … 16384).",
               sources=("darktrigger_anomaly_score",),
               options={"calculate": False, "yAxis": {"axisPlacement": "left", "unit": "short"},
                        "color": {"mode": "scheme", "scheme": "Viridis", "exponent": 0.5, "steps": 64},
                        "cellGap": 0, "tooltip": {"show": True, "yHistogram": True},
                        "legend": {"show": True}},
               targets_format="heatmap"),
        _panel(10, "Anomaly score quantiles",
               [(f"darktrigger:anomaly_score:p50{J}", "{{model}} p50"),
                (f"darktrigger:anomaly_score:p99{J}", "{{model}} p99")], (12, 34, 12, 9), log=True,
               sources=("darktrigger_anomaly_score",)),
        _row(11, "Latency and throughput", 43),
        _panel(12, "Software pipeline latency (source emit → recorder write)",
               [(f"darktrigger:software_end_to_end_latency_seconds:p50{J}", "p50"),
                (f"darktrigger:software_end_to_end_latency_seconds:p99{J}", "p99"),
                (f"max by (job) (darktrigger_software_latency_budget_seconds{J})", "p99 budget")],
               (0, 44, 12, 8), unit="s", log=True,
               sources=("darktrigger_software_end_to_end_latency_seconds",
                        "darktrigger_software_latency_budget_seconds")),
        _panel(13, "Batch processing time p99, by stage",
               [(f"darktrigger:batch_processing_seconds:p99{J}", "{{stage}}")], (12, 44, 12, 8), unit="s",
               log=True, sources=("darktrigger_batch_processing_seconds",)),
        _panel(14, "Events per second, by stage", [(f"darktrigger:stage_events_per_second{J}", "{{stage}}")],
               (0, 52, 24, 8), unit=EVENTS_PER_S, sources=("darktrigger_events_total",)),
        _row(15, "Worker health, re-sends and drops", 60),
        _panel(16, "Stages up", [(f"up{J}", "{{component}}")], (0, 61, 8, 8), kind="state-timeline",
               description="Prometheus's own `up` of each stage's /metrics.",
               fieldConfig={"defaults": {"mappings": [{"type": "value", "options": {
                   "0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}}}]},
                            "overrides": []}),
        _panel(17, "Workers and batches in flight",
               [(f"sum by (job) (darktrigger_workers_alive{J})", "workers alive"),
                (f"sum by (job) (darktrigger_inflight_batches{J})", "batches in flight")], (8, 61, 8, 8),
               sources=("darktrigger_workers_alive", "darktrigger_inflight_batches")),
        _panel(18, "Worker losses and restarts (per minute)",
               [(f"sum by (job) (increase(darktrigger_workers_lost_total{J}[1m]))", "workers lost"),
                (f"sum by (job) (increase(darktrigger_worker_restarts_total{J}[1m]))", "restarts")],
               (16, 61, 8, 8), sources=("darktrigger_workers_lost_total", "darktrigger_worker_restarts_total")),
        _panel(19, "Re-sends, malformed messages and dropped events",
               [(f"sum by (job) (rate(darktrigger_resent_batches_total{J}[$__rate_interval]))", "re-sent batches/s"),
                (f"sum by (job, stage) (rate(darktrigger_malformed_messages_total{J}[$__rate_interval]))",
                 "malformed/s {{stage}}"),
                (f"sum by (job, stage, reason) (rate(darktrigger_dropped_events_total{J}[$__rate_interval]))",
                 "dropped/s {{stage}} ({{reason}})")], (0, 69, 16, 8),
               sources=("darktrigger_resent_batches_total", "darktrigger_malformed_messages_total",
                        "darktrigger_dropped_events_total")),
        _panel(20, "Events lost", [(f"max by (job) (darktrigger_lost_events_total{J})", "lost")], (16, 69, 8, 8),
               kind="stat", sources=("darktrigger_lost_events_total",),
               options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background"},
               fieldConfig={"defaults": {"thresholds": {"mode": "absolute", "steps": [
                   {"color": "green", "value": None}, {"color": "red", "value": 1}]}}, "overrides": []}),
        _panel(21, "Build", [(f"darktrigger_build_info{J}", "{{component}} {{version}} (Python {{python}})")],
               (0, 77, 24, 5), kind="table", targets_instant=True, sources=("darktrigger_build_info",)),
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
