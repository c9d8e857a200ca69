"""The built-in live page: the pipeline's rates, scores and latencies, refreshed every second.

No Prometheus and no network needed: :class:`LivePage` scrapes each stage's ``/metrics``
itself once a second, keeps five minutes of history, and serves ``/`` (the page, with its
JavaScript shipped in ``monitoring/static``), ``/api/series`` (the figures as JSON) and,
given a registry, ``/metrics`` on the same port. The figures are those of the recording
rules (``monitoring/prometheus/rules.yml``), computed the same way over a 5 s window.

    >>> page = serve_live({"recorder": "127.0.0.1:1"}, "127.0.0.1", 0)   # port 0: any free one
    >>> page.url.startswith("http://127.0.0.1:")
    True
    >>> page.page.tick()                       # one scrape, here of a stage that is not up
    >>> page.page.series()["targets"]["recorder"]["up"]
    False
    >>> page.close()
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from darktrigger.monitoring.catalogue import exported_by
from darktrigger.monitoring.exposition import MetricsRoute, Response, Route, Server

log = logging.getLogger(__name__)

HISTORY = 300          # points kept (5 minutes at one a second)
WINDOW_S = 5.0         # rates and quantiles over this much history
SCRAPE_TIMEOUT_S = 0.5
STATIC = {
    "uPlot.iife.min.js": "application/javascript",
    "uPlot.min.css": "text/css",
    "live.js": "application/javascript",
    "live.css": "text/css",
}

#: (name, labels) → value: one scrape of every target, summed over targets.
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str, into: Sample | None = None) -> Sample:
    """The samples of a text exposition (format 0.0.4): the same series from several stages
    summed (counters, histograms), or their largest kept (gauges: every stage exports the
    bunch-crossing rate). ``_created`` series are skipped.

    A small parser for what prometheus_client writes, cheaper than prometheus_client's own
    (the live page parses every stage once a second; its cost: BENCHMARKS.md, "Monitoring
    overhead"); label values keep their escapes.

        >>> sample = parse_exposition('x_total{stage="a"} 2')      # one stage's scrape
        >>> parse_exposition('x_total{stage="a"} 3', into=sample)   # another's, summed in
        {('x_total', (('stage', 'a'),)): 5.0}
    """
    out: Sample = {} if into is None else into
    gauges: set[str] = set()
    for line in text.splitlines():
        if not line or line[0] == "#":
            if line.startswith("# TYPE ") and line.endswith(" gauge"):
                gauges.add(line[7:-6])
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        name, labels, value = m.groups()
        if name.endswith("_created"):
            continue
        try:
            v = float(value)
        except ValueError:
            continue
        key = (name, tuple(sorted(_LABEL.findall(labels))) if labels else ())
        old = out.get(key)
        out[key] = v if old is None else (max(old, v) if name in gauges else old + v)
    return out


def histogram_quantile(q: float, bounds: list[float], cumulative: list[float]) -> float:
    """Prometheus's ``histogram_quantile`` on cumulative bucket counts (``bounds`` ends with +Inf).

        >>> histogram_quantile(0.5, [1.0, 2.0, math.inf], [0.0, 10.0, 10.0])
        1.5
    """
    if not cumulative or cumulative[-1] <= 0:
        return math.nan
    rank = q * cumulative[-1]
    i = int(np.searchsorted(np.asarray(cumulative), rank, side="left"))
    i = min(i, len(bounds) - 1)
    if math.isinf(bounds[i]):
        return bounds[-2] if len(bounds) > 1 else math.nan
    lo = 0.0 if i == 0 else bounds[i - 1]
    if i == 0 and bounds[0] <= 0:
        return bounds[0]
    below = 0.0 if i == 0 else cumulative[i - 1]
    inside = cumulative[i] - below
    return bounds[i] if inside <= 0 else lo + (bounds[i] - lo) * (rank - below) / inside


@dataclass
class Target:
    url: str
    up: bool = False
    error: str | None = "not scraped yet"
    last_ok: float | None = None


@dataclass
class _Point:
    t: float
    sample: Sample
    up: dict[str, bool] = field(default_factory=dict)


def _by(sample: Sample, name: str, label: str | None = None) -> dict[str, float]:
    """{label value: value} of one metric (summed over the other labels); label None: {"": total}."""
    out: dict[str, float] = {}
    for (n, labels), v in sample.items():
        if n != name:
            continue
        key = dict(labels).get(label, "") if label else ""
        out[key] = out.get(key, 0.0) + v
    return out


def _buckets(sample: Sample, name: str, label: str | None) -> dict[str, dict[float, float]]:
    """{label value: {le: cumulative count}} of a histogram's ``_bucket`` series."""
    out: dict[str, dict[float, float]] = {}
    for (n, labels), v in sample.items():
        if n != f"{name}_bucket":
            continue
        d = dict(labels)
        key = d.get(label, "") if label else ""
        le = float(d["le"])
        b = out.setdefault(key, {})
        b[le] = b.get(le, 0.0) + v
    return out


class LivePage:
    """Scrapes ``targets`` ({stage: "host:port" or URL}) every ``interval_s`` and keeps the figures.

    ``registries``: in-process registries read directly each tick (the supervisor's own).
    ``fetch``: how a target's text is read (tests and benchmarks may pass their own).
    """

    def __init__(self, targets: Mapping[str, str], *, registries: Iterable[CollectorRegistry] = (),
                 interval_s: float = 1.0, history: int = HISTORY, window_s: float = WINDOW_S,
                 fetch: Callable[[str], str] | None = None) -> None:
        self.targets = {name: Target(_metrics_url(addr)) for name, addr in targets.items()}
        self.registries = tuple(registries)
        self.interval_s = interval_s
        self.window_s = window_s
        self.points: deque[_Point] = deque(maxlen=history + 1 + int(window_s / interval_s) + 1)
        self.rows: deque[tuple[float, dict[str, dict[str, float]]]] = deque(maxlen=history)
        self.fetch = fetch or _fetch
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- scraping ------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Scrape every target once and add a row of figures."""
        now = time.time() if now is None else now
        sample: Sample = {}
        up: dict[str, bool] = {}
        for name, target in self.targets.items():
            try:
                parse_exposition(self.fetch(target.url), sample)
            except Exception as exc:  # down, starting, stopping: shown, never fatal
                target.up, target.error = False, f"{type(exc).__name__}: {exc}"
            else:
                target.up, target.error, target.last_ok = True, None, now
            up[name] = target.up
        for reg in self.registries:
            parse_exposition(generate_latest(reg).decode(), sample)
        with self._lock:
            self.points.append(_Point(now, sample, up))
            old = self._window_start(now)
            self.rows.append((now, figures(old.sample, sample, now - old.t, up) if old else
                              figures({}, sample, 0.0, up)))

    def _window_start(self, now: float) -> _Point | None:
        for p in self.points:
            if now - p.t <= self.window_s + 1e-6 and p.t < now:
                return p
        return None

    def start(self) -> LivePage:
        def loop() -> None:
            next_t = time.monotonic()
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:  # never let the page's thread die
                    log.exception("live page: a tick failed")
                next_t += self.interval_s
                self._stop.wait(max(0.0, next_t - time.monotonic()))

        self._thread = threading.Thread(target=loop, name="live-page", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- what the page reads ---------------------------------------------------------------
    def series(self) -> dict[str, Any]:
        """Every chart's series over the history, for ``/api/series``.

        Each chart carries ``sources`` ({metric family: the stages exporting it}); each
        logarithmic one ``y_range`` ([low, high], whole decades around its non-zero values;
        the total's also spans the budget and the lowest non-zero seed rate, so that both
        are always in view). ``now`` holds the last window's figures, ``errors`` their
        uncertainties ({"chart/series": Hz}), ``over_budget`` whether the last total rate
        exceeds the budget."""
        with self._lock:
            rows = list(self.rows)
        t = [round(r[0], 3) for r in rows]
        by = exported_by()
        charts = []
        for spec in CHARTS:
            if spec["id"] == "scores":
                continue
            keys: dict[str, None] = {}
            for _, row in rows:
                keys.update(dict.fromkeys(row.get(spec["id"], {})))
            if spec["id"] == "anomaly":  # each seed followed by its target
                seeds = [k.removesuffix(TARGET) for k in keys]
                keys = dict.fromkeys(k for seed in dict.fromkeys(seeds) for k in (seed, seed + TARGET) if k in keys)
            charts.append({**spec, "series": {k: [_num(row.get(spec["id"], {}).get(k)) for _, row in rows]
                                              for k in keys}})
        models: dict[str, None] = {}
        for _, row in rows:
            models.update(dict.fromkeys(k.split("/")[0] for k in row.get("scores", {})))
        for i, model in enumerate(models):
            qs = [f"{model}/{q}" for q in ("p50", "p90", "p99", "p99.9")]
            charts.insert(4 + i, {"id": f"scores-{model}", "title": f"anomaly score {model}: quantiles",
                                  "unit": "", "log": True, "sources": ["darktrigger_anomaly_score"],
                                  "series": {q.split("/")[1]: [_num(row.get("scores", {}).get(q)) for _, row in rows]
                                             for q in qs}})
        lowest_seed = _lowest(next(c for c in charts if c["id"] == "seeds")["series"].values())
        for chart in charts:
            chart["sources"] = {name: list(by.get(name, ())) for name in chart["sources"]}
            if chart["log"]:
                extra = [lowest_seed] if chart["id"] == "total" and lowest_seed is not None else []
                chart["y_range"] = log_range([*chart["series"].values(), extra])
        last = rows[-1][1] if rows else {}
        now = dict(last.get("now", {}))
        over = "L1 rate" in now and "budget" in now and now["L1 rate"] > now["budget"]
        return {"t": t, "charts": charts, "window_s": self.window_s,
                "targets": {n: {"url": tg.url, "up": tg.up, "error": tg.error} for n, tg in self.targets.items()},
                "now": {k: v for k, v in now.items() if math.isfinite(v)},
                "errors": {k: _num(v) for k, v in last.get("errors", {}).items()},
                "over_budget": over}

    def routes(self) -> dict[str, Route]:
        routes: dict[str, Route] = {
            "/": lambda h, q: Response(_static("live.html"), "text/html; charset=utf-8"),
            "/api/series": lambda h, q: Response(json.dumps(self.series(), allow_nan=False).encode(),
                                                 "application/json"),
        }
        for name, ctype in STATIC.items():
            routes[f"/static/{name}"] = (lambda n, c: lambda h, q: Response(_static(n), c))(name, ctype)
        return routes


#: The page's charts: id, title, unit, log scale, and the metric families each one draws (the
#: page names the stage exporting each, from :mod:`darktrigger.monitoring.catalogue`); the
#: scores' charts are added per model. Rates span decades (a menu of 100 kHz, seeds of 1 kHz),
#: so every rate chart is logarithmic.
_RATE = ["darktrigger_recorded_input_weight_total", "darktrigger_bx_rate_hz"]
CHARTS: list[dict[str, Any]] = [
    {"id": "total", "title": "total L1 accept rate against the budget", "unit": "Hz", "log": True,
     "sources": ["darktrigger_accepted_weight_total", *_RATE, "darktrigger_rate_budget_hz"]},
    {"id": "seeds", "title": "per-seed rate (after prescale)", "unit": "Hz", "log": True,
     "sources": ["darktrigger_seed_weighted_accepts_total", *_RATE]},
    {"id": "anomaly", "title": "anomaly seeds (before prescale) against their target rates", "unit": "Hz",
     "log": True, "sources": ["darktrigger_seed_weighted_events_total", *_RATE,
                              "darktrigger_anomaly_seed_target_rate_hz"]},
    {"id": "pure", "title": "per-seed pure rate", "unit": "Hz", "log": True,
     "sources": ["darktrigger_seed_weighted_pure_accepts_total", *_RATE]},
    {"id": "scores", "title": "", "unit": "", "log": True, "sources": ["darktrigger_anomaly_score"]},
    {"id": "latency", "title": "software pipeline latency quantiles", "unit": "s", "log": True,
     "sources": ["darktrigger_software_end_to_end_latency_seconds", "darktrigger_batch_processing_seconds"]},
    {"id": "throughput", "title": "events per second, by stage", "unit": "events/s", "log": False,
     "sources": ["darktrigger_events_total"]},
    {"id": "workers", "title": "worker health", "unit": "", "log": False,
     "sources": ["darktrigger_workers_alive", "darktrigger_inflight_batches", "darktrigger_workers_lost_total",
                 "darktrigger_worker_restarts_total"]},
    {"id": "problems", "title": "re-sends and drops", "unit": "/s", "log": False,
     "sources": ["darktrigger_resent_batches_total", "darktrigger_malformed_messages_total",
                 "darktrigger_dropped_events_total", "darktrigger_lost_events_total"]},
]
#: The suffix of an anomaly seed's target series in the "anomaly" chart.
TARGET = " target"


def weighted_rate(kept_w: float, kept_w2: float, all_w: float, all_w2: float,
                  bx_hz: float) -> tuple[float, float]:
    """(rate, uncertainty) in Hz of the events kept, from sums of weights over a window.

    The fraction p = Σw(kept) / Σw(all); var(p) = Σ wᵢ²(xᵢ − p)² / (Σw)², which with
    xᵢ ∈ {0, 1} is ((1 − p)² Σw²(kept) + p² Σw²(not kept)) / (Σw)² — for unit weights the
    binomial p(1 − p)/n. Where nothing was kept the uncertainty is one effective event,
    1/n_eff = Σw²/(Σw)², as :class:`~darktrigger.daq.trigger.rates.MenuCounts` gives it. Both
    scale with the crossing rate ``bx_hz``.

        >>> weighted_rate(10, 10, 1000, 1000, 28.61e6)[0] == 0.01 * 28.61e6
        True
        >>> round(weighted_rate(10, 10, 1000, 1000, 1.0)[1] ** 2 * 1000 / (0.01 * 0.99), 9)
        1.0
        >>> weighted_rate(0, 0, 1000, 1000, 1.0)
        (0.0, 0.001)
    """
    if not all_w > 0:
        return math.nan, math.nan
    if not kept_w > 0:
        return 0.0, all_w2 / (all_w * all_w) * bx_hz
    p = kept_w / all_w
    var = ((1 - p) ** 2 * kept_w2 + p * p * max(all_w2 - kept_w2, 0.0)) / (all_w * all_w)
    return p * bx_hz, math.sqrt(max(var, 0.0)) * bx_hz


def figures(old: Sample, new: Sample, dt: float, up: Mapping[str, bool]) -> dict[str, dict[str, float]]:
    """One row of the page's figures from two scrapes ``dt`` seconds apart (as the rules compute them).

    Rates are weighted fractions of the events the recorder saw in the window times the
    menu's crossing rate (``darktrigger_bx_rate_hz``; no rates while no stage exports it);
    ``errors`` holds their uncertainties, by chart and series."""

    def delta(name: str, label: str | None = None) -> dict[str, float]:
        a, b = _by(old, name, label), _by(new, name, label)
        # a counter that went down was restarted (a worker): count from zero, as rate() does
        return {k: (v - a.get(k, 0.0)) if v >= a.get(k, 0.0) else v for k, v in b.items()}

    def one(name: str) -> float:
        return delta(name).get("", 0.0)

    row: dict[str, dict[str, float]] = {}
    bx_rates = _by(new, "darktrigger_bx_rate_hz")
    bx = max(bx_rates.values()) if bx_rates else None
    seen = one("darktrigger_recorded_input_events_total")
    weight, weight2 = one("darktrigger_recorded_input_weight_total"), one("darktrigger_recorded_input_weight_squared_total")
    targets = {k: v for k, v in _by(new, "darktrigger_anomaly_seed_target_rate_hz", "seed").items() if v > 0}
    if dt > 0 and weight > 0 and bx is not None:
        errors: dict[str, float] = {}
        rate, err = weighted_rate(one("darktrigger_accepted_weight_total"),
                                  one("darktrigger_accepted_weight_squared_total"), weight, weight2, bx)
        row["total"] = {"L1 rate": rate}
        errors["total/L1 rate"] = err
        for chart, family in (("seeds", "accepts"), ("anomaly", "events"), ("pure", "pure_accepts")):
            kept = delta(f"darktrigger_seed_weighted_{family}_total", "seed")
            kept2 = delta(f"darktrigger_seed_weighted_{family}_squared_total", "seed")
            row[chart] = {}
            for seed, w in kept.items():
                if chart == "anomaly" and seed not in targets:
                    continue
                row[chart][seed], errors[f"{chart}/{seed}"] = weighted_rate(w, kept2.get(seed, 0.0), weight,
                                                                            weight2, bx)
        row["errors"] = errors
    budget = _by(new, "darktrigger_rate_budget_hz")
    if budget:
        row.setdefault("total", {})["budget"] = max(budget.values())
    if targets:
        anomaly = row.setdefault("anomaly", {})
        for seed, hz in targets.items():
            anomaly[seed + TARGET] = hz
    if dt > 0:
        ever = _by(new, "darktrigger_events_total", "stage")  # stages that handle events (not the supervisor)
        row["throughput"] = {k: v / dt for k, v in delta("darktrigger_events_total", "stage").items() if ever[k] > 0}
        row["latency"] = {}
        for name, label, stat in (("darktrigger_software_end_to_end_latency_seconds", None, "software end to end"),
                                  ("darktrigger_batch_processing_seconds", "stage", "")):
            for key, qs in _quantiles(old, new, name, label, (0.5, 0.99)).items():
                what = stat or key
                if stat or not math.isnan(qs[1]):
                    row["latency"][f"{what} p99"] = qs[1]
                if stat:
                    row["latency"][f"{what} p50"] = qs[0]
        row["scores"] = {}
        for model, qs in _quantiles(old, new, "darktrigger_anomaly_score", "model",
                                    (0.5, 0.9, 0.99, 0.999)).items():
            for q, v in zip(("p50", "p90", "p99", "p99.9"), qs, strict=True):
                row["scores"][f"{model}/{q}"] = v
        problems = {"re-sent batches/s": one("darktrigger_resent_batches_total") / dt,
                    "malformed messages/s": sum(delta("darktrigger_malformed_messages_total", "stage").values()) / dt,
                    "dropped events/s": sum(delta("darktrigger_dropped_events_total", "stage").values()) / dt}
        row["problems"] = problems
    lost = _by(new, "darktrigger_lost_events_total").get("")
    if lost is not None:
        row.setdefault("problems", {})["lost events"] = lost
    workers: dict[str, float] = {}
    for name, label in (("darktrigger_workers_alive", "alive"), ("darktrigger_inflight_batches", "batches in flight"),
                        ("darktrigger_workers_lost_total", "workers lost"),
                        ("darktrigger_worker_restarts_total", "restarts")):
        value = _by(new, name).get("")
        if value is not None:
            workers[label] = value
    workers["stages up"] = float(sum(up.values()))
    # trouble in seconds, not at the acknowledgement timeout: a pipeline that stopped
    # acknowledging, and a paced source below the rate it was asked for (issue 17, point 8)
    stalled = _by(new, "darktrigger_stalled_seconds").get("")
    if stalled is not None:
        workers["stalled s"] = stalled
    asked = _by(new, "darktrigger_source_requested_rate_hz").get("")
    if asked is not None and "throughput" in row:
        row["throughput"]["source asked"] = asked
    row["workers"] = workers
    total = row.get("total", {})
    row["now"] = {"events_per_s": seen / dt if dt > 0 else 0.0,
                  "effective_events": weight * weight / weight2 if weight2 > 0 else 0.0,
                  "recorded_events": _by(new, "darktrigger_recorded_input_events_total").get("", 0.0),
                  "accepted_events": _by(new, "darktrigger_accepted_events_total").get("", 0.0),
                  **({"bx_rate_hz": bx} if bx is not None else {}), **total}
    if "L1 rate" in total:
        row["now"]["L1 rate error"] = row["errors"]["total/L1 rate"]
    return row


def _quantiles(old: Sample, new: Sample, name: str, label: str | None,
               qs: tuple[float, ...]) -> dict[str, list[float]]:
    a, b = _buckets(old, name, label), _buckets(new, name, label)
    out = {}
    for key, bnew in b.items():
        bounds = sorted(bnew)
        prev = a.get(key, {})
        cum = [bnew[le] - prev.get(le, 0.0) for le in bounds]
        if cum and cum[-1] < 0:  # restarted: this scrape's counts from zero
            cum = [bnew[le] for le in bounds]
        out[key] = [histogram_quantile(q, bounds, cum) for q in qs]
    return out


def _lowest(columns: Iterable[Iterable[float | None]]) -> float | None:
    values = [v for col in columns for v in col if v is not None and v > 0]
    return min(values) if values else None


def log_range(columns: Iterable[Iterable[float | None]]) -> list[float] | None:
    """[low, high] of a logarithmic axis: the whole decades around the positive values
    (None when there are none); a single value gets the decade below and above.

        >>> log_range([[1500.0, None, 0.0], [110e3]])
        [1000.0, 1000000.0]
        >>> log_range([[100.0]])
        [10.0, 1000.0]
    """
    values = [v for col in columns for v in col if v is not None and v > 0]
    if not values:
        return None
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    if lo == hi or 10.0 ** hi == max(values):
        hi += 1
    if 10.0 ** lo == min(values):
        lo -= 1
    return [10.0 ** lo, 10.0 ** hi]


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, 9)


def _metrics_url(addr: str) -> str:
    if addr.startswith(("http://", "https://")):
        return addr if addr.rstrip("/").endswith("/metrics") else addr.rstrip("/") + "/metrics"
    return f"http://{addr}/metrics"


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as resp:  # noqa: S310 - our own stages
        return str(resp.read().decode())


def _static(name: str) -> bytes:
    return (resources.files("darktrigger.monitoring") / "static" / name).read_bytes()


class LiveServer(Server):
    """The live page's HTTP server and its scraping thread; ``close()`` stops both."""

    page: LivePage

    def close(self) -> None:
        self.page.stop()
        super().close()


def serve_live(targets: Mapping[str, str], host: str, port: int, extra_registry: CollectorRegistry | None = None,
               *, interval_s: float = 1.0) -> LiveServer:
    """Start a :class:`LivePage` on ``targets`` and serve it at ``http://host:port/``; with
    ``extra_registry`` (the supervisor's), also ``/metrics`` of it on the same port."""
    page = LivePage(targets, registries=[extra_registry] if extra_registry is not None else [],
                    interval_s=interval_s)
    routes = page.routes()
    if extra_registry is not None:
        routes["/metrics"] = MetricsRoute(extra_registry)
    server = LiveServer(host, port, routes, name="live page")
    server.page = page
    if extra_registry is not None:  # read in-process: scraping our own /metrics too would count it twice
        own = _metrics_url(f"{server.url[len('http://'):]}")
        page.targets = {n: t for n, t in page.targets.items() if t.url != own}
    page.start()
    return server


__all__ = ["CHARTS", "TARGET", "LivePage", "LiveServer", "figures", "histogram_quantile", "log_range",
           "parse_exposition", "serve_live", "weighted_rate"]
