"""Every stage's Prometheus metrics, in a registry passed in (never the global one).

One :class:`StageMetrics` per stage; the runner calls a method per batch, never per
event (what that costs a stage: BENCHMARKS.md, "Monitoring overhead"). Score and latency
histograms are numpy bucket counts behind a custom collector: a whole batch of values
goes in at once, counted by ``bincount`` (or, for long batches of scores, by the
compiled kernel of :mod:`darktrigger.monitoring.fasthist`).

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> reg = CollectorRegistry()
    >>> m = StageMetrics(reg, "recorder", seeds=["SingleMu22", "AXO_Loose"], budget_hz=100e3)
    >>> m.decisions(4096, raw=np.array([12, 40]), counts=np.array([12, 40]),
    ...             pure=np.array([10, 38]), accepted=50)
    >>> b'darktrigger_seed_accepts_total{seed="AXO_Loose"} 40.0' in generate_latest(reg)
    True

Trigger rates come from the weighted counters (``darktrigger_..._weight_total``): a rate is
Σ weights of the events kept / Σ weights of the events seen × the crossing rate. A batch
without weights counts each event once (unit weights), so the weighted counters then equal
the plain ones:

    >>> reg.get_sample_value("darktrigger_seed_weighted_accepts_total", {"seed": "AXO_Loose"})
    40.0

Metric names (every rule, dashboard and the live page use these), their types, labels,
units and which stage exports each: docs/METRICS.md, generated from the definitions below by
``darktrigger monitor metrics-doc`` (:mod:`darktrigger.monitoring.catalogue`). Latencies
are the software pipeline's (``darktrigger_software_...``): milliseconds to seconds, not the
hardware trigger's microseconds.
"""

from __future__ import annotations

import math
import platform
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from darktrigger.monitoring.errors import MonitoringError

#: Batch processing and end-to-end latency buckets, seconds: sub-millisecond at the bottom.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Anomaly-score buckets: powers of two from 2^-14 (6e-5) to 2^14 (16384), log-spaced so that
#: AE/VAE losses, CWoLa probabilities and HT in GeV all fit; powers of two because a value's
#: bucket is then its floating-point exponent, read without a search (see ``_Histograms``).
SCORE_BUCKETS: tuple[float, ...] = tuple(2.0 ** k for k in range(-14, 15))
#: Why events may be dropped: a small fixed set keeps the label bounded.
DROP_REASONS = ("invalid",)
#: Port offsets from ``metrics.base_port``: fixed stages first, scorer workers from +10.
PORT_OFFSETS = {"source": 0, "trigger": 1, "recorder": 2, "supervisor": 3}
WORKER_OFFSET = 10
MAX_WORKERS = 990


def metrics_ports(base_port: int, workers: int) -> dict[str, int]:
    """The port of each stage's ``/metrics``: source, trigger, recorder, supervisor, scorer-i.

        >>> metrics_ports(9300, 2)
        {'source': 9300, 'trigger': 9301, 'recorder': 9302, 'supervisor': 9303, 'scorer-0': 9310, 'scorer-1': 9311}
    """
    if isinstance(base_port, bool) or not isinstance(base_port, int) or not 1024 <= base_port:
        raise MonitoringError(f"metrics.base_port must be an integer port >= 1024, got {base_port!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_WORKERS:
        raise MonitoringError(f"the worker count must be 0-{MAX_WORKERS}, got {workers!r}")
    last = base_port + WORKER_OFFSET + workers - 1
    if max(last, base_port + max(PORT_OFFSETS.values())) > 65535:
        raise MonitoringError(f"metrics.base_port {base_port} with {workers} worker(s) needs ports up to "
                              f"{last}, past 65535: choose a lower base_port")
    ports = {name: base_port + off for name, off in PORT_OFFSETS.items()}
    ports.update({f"scorer-{i}": base_port + WORKER_OFFSET + i for i in range(workers)})
    return ports


#: batches at least this long are counted by the compiled kernel (:mod:`darktrigger.monitoring.fasthist`);
#: smaller ones by numpy, so that a few values never wait for numba's start-up
FASTHIST_MIN_VALUES = 4096


class _Histograms(Collector):
    """Fixed-bucket histograms kept as numpy counts, one per label value, fed whole arrays.

    ``observe_many`` counts a whole array per call: by ``searchsorted`` and ``bincount``,
    or, when the bounds are consecutive powers of two, from each value's exponent bits
    (numpy, or :mod:`darktrigger.monitoring.fasthist` for long arrays); a scrape reads
    consistent counts (one lock).
    """

    def __init__(self, name: str, doc: str, buckets: Sequence[float], label: str | None) -> None:
        self.name, self.doc, self.label = name, doc, label
        self.edges = np.asarray(buckets, dtype=np.float64)
        if np.any(np.diff(self.edges) <= 0):
            raise MonitoringError(f"{name}: bucket bounds must increase, got {list(buckets)}")
        self._le = [floatToGoString(b) for b in buckets] + ["+Inf"]
        k = np.log2(self.edges)
        # consecutive powers of two: the bucket of x is read off its exponent bits
        self._pow2 = int(k[0]) if np.all(k == np.round(k)) and np.all(np.diff(k) == 1) else None
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._tables: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def declare(self, key: str) -> None:
        """Expose a series (all zero) before its first value, so rates start at the run's start."""
        with self._lock:
            if key not in self._counts:
                self._counts[key] = np.zeros(len(self.edges) + 1, np.int64)
                self._sums[key] = 0.0

    def observe_many(self, key: str, values: np.ndarray) -> None:
        v = np.asarray(values).ravel()  # contiguous: a copy when it was not
        if v.dtype not in (np.float32, np.float64):
            v = v.astype(np.float64)
        if self._pow2 is not None and len(v) >= FASTHIST_MIN_VALUES:
            from darktrigger.monitoring import fasthist

            add, total = fasthist.count(v, self._exponent_table(v.dtype), len(self.edges) + 1)
        else:
            with np.errstate(invalid="ignore", over="ignore"):  # inf − inf: handled below
                total = float(v.sum(dtype=v.dtype))
            if not np.isfinite(total):  # rare: keep NaN out of every bucket and ±inf out of the sum
                v = v[~np.isnan(v)]
                total = float(v[np.isfinite(v)].sum(dtype=np.float64))
            add = self._bucket_counts(v)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = np.zeros(len(self.edges) + 1, np.int64)
                self._sums[key] = 0.0
            counts += add
            self._sums[key] += total

    def _exponent_table(self, dtype: np.dtype[Any]) -> np.ndarray:
        """Bucket index of every value of ``(bits(x) − 1) >> mantissa bits`` (power-of-two
        buckets only). Read as unsigned, zero wraps round to all ones and negatives have the
        sign bit set: they land above every exponent of a positive number and, with −0.0
        (all ones below the sign bit) and the subnormals (exponent 0), in the first bucket;
        +inf gives the largest exponent of a positive number, in the last one."""
        table = self._tables.get(dtype.char)
        if table is None:
            n_exp = 256 if dtype == np.float32 else 2048
            nb = len(self.edges) + 1
            assert self._pow2 is not None
            first = n_exp // 2 - 1 + self._pow2
            j = np.arange(2 * n_exp)
            table = np.where(j < first, 0, np.where(j < first + nb - 2, j - first + 1, nb - 1))
            table[n_exp - 1:] = 0  # −0.0 and the negatives: the first bucket
            table = self._tables[dtype.char] = table.astype(np.int64)
        return table

    def _bucket_counts(self, v: np.ndarray) -> np.ndarray:
        """Per-bucket counts of ``v`` (no NaN); bucket i holds edges[i-1] < x <= edges[i]
        (Prometheus's ``le``: the upper bound included), the last one +Inf."""
        nb = len(self.edges) + 1
        if self._pow2 is None:
            return np.bincount(np.searchsorted(self.edges, v, side="left"), minlength=nb)
        # x in (2^(e-1), 2^e] ⇔ the float just below x has exponent e-1: for x > 0 normal,
        # (bits(x) - 1) >> mantissa bits = e - 1 + bias. One histogram of all the exponents,
        # folded onto the buckets by the exponent table: three passes over the values.
        utype, mant = (np.uint32, 23) if v.dtype == np.float32 else (np.uint64, 52)
        b = np.subtract(v.view(utype), 1, dtype=utype)
        np.right_shift(b, mant, out=b)
        table = self._exponent_table(v.dtype)
        every = np.bincount(b.view(np.int64) if b.dtype == np.uint64 else b, minlength=len(table))
        # summed as float64 by bincount: exact while a batch has under 2^53 values
        return np.bincount(table, weights=every, minlength=nb).astype(np.int64)

    def observe_weighted(self, key: str, value: float, weight: int) -> None:
        """One value that counts ``weight`` times (a batch's latency, per event)."""
        i = int(np.searchsorted(self.edges, value, side="left"))
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = np.zeros(len(self.edges) + 1, np.int64)
                self._sums[key] = 0.0
            counts[i] += weight
            self._sums[key] += value * weight

    def snapshot(self, key: str) -> tuple[np.ndarray, float]:
        """(per-bucket counts, not cumulative, the last one +Inf; the sum) of one series."""
        with self._lock:
            return self._counts[key].copy(), self._sums[key]

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.doc, labels=[self.label] if self.label else None)]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            items = [(k, c.copy(), self._sums[k]) for k, c in self._counts.items()]
        fam = HistogramMetricFamily(self.name, self.doc, labels=[self.label] if self.label else None)
        for key, counts, total in items:
            cum = np.cumsum(counts).tolist()
            fam.add_metric([key] if self.label else [], list(zip(self._le, cum, strict=True)), total)
        yield fam


class _SeedCounters(Collector):
    """Per-seed counters as arrays (one row per family): one batch's counts added at once."""

    def __init__(self, seeds: Sequence[str], families: Sequence[tuple[str, str]], dtype: type) -> None:
        self.seeds = tuple(seeds)
        self.families = tuple(families)
        self.values: np.ndarray = np.zeros((len(self.families), len(self.seeds)), dtype)
        self._lock = threading.Lock()

    def check(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """The arrays, if there is one per family, each with one value per seed."""
        k = len(self.seeds)
        got = [np.asarray(a) for a in arrays]
        if len(got) != len(self.families) or any(a.shape != (k,) for a in got):
            raise MonitoringError(f"seed counts: expected {len(self.families)} arrays of {k} (one per seed "
                                  f"{list(self.seeds)}), got shapes {[a.shape for a in got]}")
        return got

    def add(self, *arrays: np.ndarray) -> None:
        got = self.check(*arrays)
        with self._lock:
            for row, a in zip(self.values, got, strict=True):
                row += a

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(n, d, labels=["seed"]) for n, d in self.families]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            values = self.values.tolist()
        for (name, doc), row in zip(self.families, values, strict=True):
            fam = CounterMetricFamily(name, doc, labels=["seed"])
            for seed, v in zip(self.seeds, row, strict=True):
                fam.add_metric([seed], v)
            yield fam


#: The recorder's per-seed event counts (int64): before prescale, after, alone.
SEED_COUNTS = (("darktrigger_seed_events", "Events the seed fired, before its prescale."),
               ("darktrigger_seed_accepts", "Events the seed kept, after its prescale."),
               ("darktrigger_seed_pure_accepts", "Events this seed alone kept (after prescale)."))
#: The same as sums of event weights (float64), and the sums of squared weights that a rate's
#: uncertainty needs (var(p) = Σ w²(x − p)² / (Σ w)²). Rates come from these.
SEED_WEIGHTS = (
    ("darktrigger_seed_weighted_events", "Σ weights of the events the seed fired, before its prescale: "
     "its rate before prescale (unit weights: the events)."),
    ("darktrigger_seed_weighted_accepts", "Σ weights of the events the seed kept, after its prescale: "
     "its rate (unit weights: the events)."),
    ("darktrigger_seed_weighted_pure_accepts", "Σ weights of the events this seed alone kept (after "
     "prescale): its pure rate."),
    ("darktrigger_seed_weighted_events_squared", "Σ squared weights of the events the seed fired, before "
     "its prescale: the uncertainty of its rate before prescale."),
    ("darktrigger_seed_weighted_accepts_squared", "Σ squared weights of the events the seed kept: the "
     "uncertainty of its rate."),
    ("darktrigger_seed_weighted_pure_accepts_squared", "Σ squared weights of the events this seed alone "
     "kept: the uncertainty of its pure rate."),
)


@dataclass(frozen=True)
class WeightSums:
    """One batch's sums of event weights, for the recorder's weighted counters.

    ``events``/``events_sq``: Σw and Σw² of every event recorded; ``accepted``/``accepted_sq``:
    of the events some seed kept; per seed ``float64 [k]``: ``raw``/``raw_sq`` of the events it
    fired before prescale, ``counts``/``counts_sq`` of those it kept, ``pure``/``pure_sq`` of
    those it alone kept. :meth:`unit` gives the sums of unit weights (each event counted once),
    :meth:`of` reads them off a batch's menu counts.

        >>> w = WeightSums.unit(10, np.array([3, 1]), np.array([3, 0]), np.array([2, 0]), 3)
        >>> w.events, w.counts_sq.tolist()
        (10.0, [3.0, 0.0])
    """

    events: float
    events_sq: float
    accepted: float
    accepted_sq: float
    raw: np.ndarray
    raw_sq: np.ndarray
    counts: np.ndarray
    counts_sq: np.ndarray
    pure: np.ndarray
    pure_sq: np.ndarray

    @classmethod
    def unit(cls, events: int, raw: np.ndarray, counts: np.ndarray, pure: np.ndarray,
             accepted: int) -> WeightSums:
        """The sums of unit weights: every figure is its event count."""
        r, c, p = (np.asarray(a, np.float64) for a in (raw, counts, pure))
        return cls(float(events), float(events), float(accepted), float(accepted), r, r, c, c, p, p)

    @classmethod
    def of(cls, counts: Any) -> WeightSums:
        """The sums a batch's :class:`~darktrigger.daq.trigger.rates.MenuCounts` holds (read by
        their names: ``sum_w``, ``sum_w2``, ``w_accepted``, ``w2_accepted``, ``w_raw``,
        ``w2_raw``, ``w_counts``, ``w2_counts``, ``w_pure``, ``w2_pure``)."""
        return cls(float(counts.sum_w), float(counts.sum_w2), float(counts.w_accepted), float(counts.w2_accepted),
                   *(np.asarray(getattr(counts, f"{sq}_{q}"), np.float64)
                     for q in ("raw", "counts", "pure") for sq in ("w", "w2")))


class _Families:
    """The metric objects of one registry, made once: several stages may share a registry
    (stages in threads), each adding its own ``stage`` label values."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events = Counter("darktrigger_events", "Events processed.", ["stage"], registry=r)
        self.batches = Counter("darktrigger_batches", "Batches processed.", ["stage"], registry=r)
        self.processing = Histogram("darktrigger_batch_processing_seconds",
                                    "Time to process one batch, per stage.", ["stage"],
                                    buckets=LATENCY_BUCKETS_S, registry=r)
        self.malformed = Counter("darktrigger_malformed_messages", "Messages that did not parse, dropped.",
                                 ["stage"], registry=r)
        self.dropped = Counter("darktrigger_dropped_events", "Events dropped, by reason.",
                               ["stage", "reason"], registry=r)
        self.build = Gauge("darktrigger_build_info", "The darktrigger version and Python: always 1.",
                           ["version", "python"], registry=r)
        self.latency_budget = Gauge("darktrigger_software_latency_budget_seconds",
                                    "The software pipeline's end-to-end (source to recorder) latency p99 "
                                    "budget of the alerts (metrics.latency_budget_s; not the hardware "
                                    "trigger's microsecond latency).", registry=r)
        self.registry = r
        self._lazy: dict[str, Any] = {}
        self._lock = threading.Lock()

    def lazy(self, key: str, make: Any) -> Any:
        """A metric registered only by the stage that uses it (the source's in-flight gauge...)."""
        with self._lock:
            if key not in self._lazy:
                self._lazy[key] = make(self.registry)
            return self._lazy[key]


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_FAMILIES_LOCK = threading.Lock()


def _families(registry: CollectorRegistry) -> _Families:
    with _FAMILIES_LOCK:
        fam = _FAMILIES.get(registry)
        if fam is None:
            fam = _FAMILIES[registry] = _Families(registry)
        return fam


class StageMetrics:
    """One stage process's metrics, registered in the registry given (never the global one).

    ``stage`` names the stage in the ``stage`` label (``source``, ``scorer-0``, ``trigger``,
    ``recorder``, ``supervisor``). ``seeds`` and ``models`` (the recorder's and scorers')
    bound the ``seed`` and ``model`` labels. ``bx_rate_hz``: the menu's colliding-bunch
    crossing rate (28.6 MHz for 2544 bunches), exported by the stages that read the menu
    (a stage without it, the supervisor, exports none, so it never competes with the menu's
    figure). Optional figures for the alerts and charts:
    ``budget_hz`` (the total accept-rate budget), ``latency_budget_s`` (end-to-end p99),
    ``seed_bands_hz`` ({seed: (low, high)} a seed's rate should stay within) and
    ``anomaly_targets_hz`` ({seed: the rate an anomaly seed was calibrated to, before
    prescale}). Several stages may share one registry.

        >>> reg = CollectorRegistry()
        >>> m = StageMetrics(reg, "scorer-0", models=["vae"])
        >>> m.batch(4096, 0.0021)
        >>> m.scores("vae", np.array([0.5, 2.0, 300.0], np.float32))
        >>> reg.get_sample_value("darktrigger_anomaly_score_count", {"model": "vae"}) == 3
        True
    """

    def __init__(self, registry: CollectorRegistry, stage: str, *, seeds: Sequence[str] = (),
                 models: Sequence[str] = (), bx_rate_hz: float | None = None, budget_hz: float | None = None,
                 version: str = "?", latency_budget_s: float = 2.0,
                 seed_bands_hz: Mapping[str, tuple[float, float]] | None = None,
                 anomaly_targets_hz: Mapping[str, float] | None = None) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise MonitoringError(f"stage {stage!r}: pass a prometheus_client CollectorRegistry (a fresh "
                                  f"one, not the global REGISTRY), got {type(registry).__name__}")
        if not stage or not isinstance(stage, str):
            raise MonitoringError(f"a stage name is needed for the 'stage' label, got {stage!r}")
        if len(set(seeds)) != len(seeds):
            raise MonitoringError(f"stage {stage!r}: seed names repeat: {list(seeds)}")
        if bx_rate_hz is not None and not (isinstance(bx_rate_hz, (int, float)) and math.isfinite(bx_rate_hz)
                                           and bx_rate_hz > 0):
            raise MonitoringError(f"stage {stage!r}: bx_rate_hz (the menu's colliding-bunch crossing rate) "
                                  f"must be a finite rate > 0 in Hz, got {bx_rate_hz!r}")
        self.registry = registry
        self.stage = stage
        self.seeds = tuple(seeds)
        self.models = tuple(models)
        fam = self._fam = _families(registry)
        self._events = fam.events.labels(stage=stage)
        self._batches = fam.batches.labels(stage=stage)
        self._processing = fam.processing.labels(stage=stage)
        self._malformed = fam.malformed.labels(stage=stage)
        self._dropped = {r: fam.dropped.labels(stage=stage, reason=r) for r in DROP_REASONS}
        fam.build.labels(version=str(version), python=platform.python_version()).set(1)
        if bx_rate_hz is not None:  # the stages that know the menu; not the supervisor
            fam.lazy("bx_rate", lambda r: Gauge(
                "darktrigger_bx_rate_hz", "The menu's colliding-bunch crossing rate: a trigger rate in Hz is "
                "its weighted fraction of events times this.", registry=r)).set(bx_rate_hz)
        fam.latency_budget.set(latency_budget_s)
        if budget_hz is not None:
            fam.lazy("budget", lambda r: Gauge("darktrigger_rate_budget_hz",
                                               "The menu's total accept-rate budget.", registry=r)).set(budget_hz)
        self._scores: _Histograms | None = None
        if self.models:
            self._scores = fam.lazy("scores", lambda r: _register(r, _Histograms(
                "darktrigger_anomaly_score", "Anomaly scores per model (higher = more anomalous).",
                SCORE_BUCKETS, "model")))
            for model in self.models:
                self._scores.declare(model)
        # declared at start (zero) where they belong, so every figure has a series from the
        # first scrape on: rates and dashboards then need no "absent" special cases
        if stage == "source":
            self.resent(0)
            self.inflight(0)
            self.workers(0)
            self._counter("darktrigger_workers_lost", "Workers declared dead by the source.")
        if stage == "supervisor":
            self._counter("darktrigger_worker_restarts", "Worker processes restarted.")
        self._seed_counts: _SeedCounters | None = None
        if self.seeds:
            self._seed_counts = _register(registry, _SeedCounters(self.seeds, SEED_COUNTS, np.int64))
            self._seed_weights = _register(registry, _SeedCounters(self.seeds, SEED_WEIGHTS, np.float64))
            self._recorded = Counter("darktrigger_recorded_input_events",
                                     "Events the recorder saw (after de-duplication): the input's count.",
                                     registry=registry)
            self._accepted = Counter("darktrigger_accepted_events", "Events any seed kept.", registry=registry)
            self._recorded_w = Counter("darktrigger_recorded_input_weight",
                                       "Σ weights of the events the recorder saw (after de-duplication): the "
                                       "denominator of every trigger rate (unit weights: the events).",
                                       registry=registry)
            self._recorded_w2 = Counter("darktrigger_recorded_input_weight_squared",
                                        "Σ squared weights of the events the recorder saw: the effective "
                                        "number of events (Σw)²/Σw², and rate uncertainties.", registry=registry)
            self._accepted_w = Counter("darktrigger_accepted_weight", "Σ weights of the events any seed kept: "
                                       "the total accept rate.", registry=registry)
            self._accepted_w2 = Counter("darktrigger_accepted_weight_squared", "Σ squared weights of the "
                                        "events any seed kept: the total rate's uncertainty.", registry=registry)
            self._latency = _register(registry, _Histograms(
                "darktrigger_software_end_to_end_latency_seconds", "The software pipeline's latency, per event: "
                "time from the source's emission of its batch to the recorder's write.", LATENCY_BUCKETS_S, None))
            self._latency.declare("")
            self._lost = Counter("darktrigger_lost_events", "Events the source sent that the recorder "
                                 "never saw (0 in a good run).", registry=registry)
            self._band_and_targets(registry, seed_bands_hz or {}, anomaly_targets_hz or {})

    def _band_and_targets(self, registry: CollectorRegistry, bands: Mapping[str, tuple[float, float]],
                          targets: Mapping[str, float]) -> None:
        unknown = sorted((set(bands) | set(targets)) - set(self.seeds))
        if unknown:
            raise MonitoringError(f"stage {self.stage!r}: bands or targets for unknown seed(s) {unknown}; "
                                  f"the seeds are {list(self.seeds)}")
        if bands:
            low = Gauge("darktrigger_seed_rate_low_hz", "The lowest rate a seed should have.", ["seed"],
                        registry=registry)
            high = Gauge("darktrigger_seed_rate_high_hz", "The highest rate a seed should have.", ["seed"],
                         registry=registry)
            for seed, (lo, hi) in bands.items():
                if not 0 <= lo <= hi:
                    raise MonitoringError(f"seed {seed!r}: a rate band needs 0 <= low <= high, got {(lo, hi)}")
                low.labels(seed=seed).set(lo)
                high.labels(seed=seed).set(hi)
        if targets:
            g = Gauge("darktrigger_anomaly_seed_target_rate_hz",
                      "The rate (before prescale) an anomaly seed's threshold was calibrated to: "
                      "its rate_khz in the menu.", ["seed"],
                      registry=registry)
            for seed, hz in targets.items():
                g.labels(seed=seed).set(hz)

    # -- every stage ---------------------------------------------------------------------
    def batch(self, events: int, seconds: float) -> None:
        """A batch of ``events`` processed by this stage in ``seconds``."""
        self._events.inc(events)
        self._batches.inc()
        self._processing.observe(seconds)

    def malformed(self, n: int = 1) -> None:
        """``n`` bad messages dropped."""
        self._malformed.inc(n)

    def dropped_events(self, n: int, reason: str) -> None:
        """``n`` events dropped; ``reason`` one of :data:`DROP_REASONS`."""
        counter = self._dropped.get(reason)
        if counter is None:
            raise MonitoringError(f"stage {self.stage!r}: drop reason {reason!r} is not one of "
                                  f"{list(DROP_REASONS)} (a fixed set keeps the label bounded)")
        counter.inc(n)

    # -- source and supervisor -------------------------------------------------------------
    def _gauge(self, name: str, doc: str) -> Gauge:
        return self._fam.lazy(name, lambda r: Gauge(name, doc, registry=r))

    def _counter(self, name: str, doc: str) -> Counter:
        return self._fam.lazy(name, lambda r: Counter(name, doc, registry=r))

    def resent(self, n: int = 1) -> None:
        """Source: ``n`` batches sent again (a worker died, an acknowledgement timed out)."""
        self._counter("darktrigger_resent_batches", "Batches sent again.").inc(n)

    def inflight(self, n: int) -> None:
        """Source: batches sent and not yet acknowledged."""
        self._gauge("darktrigger_inflight_batches", "Batches sent, not yet acknowledged.").set(n)

    def source_rate(self, requested_hz: float, achieved_hz: float) -> None:
        """Source: the rate the topology asks for and the rate achieved so far (a paced run)."""
        self._gauge("darktrigger_source_requested_rate_hz", "The source's rate as asked (Hz).").set(requested_hz)
        self._gauge("darktrigger_source_achieved_rate_hz",
                    "The source's rate achieved since its first batch (Hz).").set(achieved_hz)

    def stalled(self, seconds: float) -> None:
        """Source: seconds without an acknowledgement while batches are in flight (0: flowing)."""
        self._gauge("darktrigger_stalled_seconds", "Seconds the source has waited for an acknowledgement "
                    "with batches in flight (0 while they flow).").set(seconds)

    def workers(self, alive: int) -> None:
        """Source: workers heard from lately."""
        self._gauge("darktrigger_workers_alive", "Scoring workers the source hears from.").set(alive)

    def worker_lost(self) -> None:
        """Source: a worker declared dead (its batches go to others)."""
        self._counter("darktrigger_workers_lost", "Workers declared dead by the source.").inc()

    def worker_restart(self) -> None:
        """Supervisor: a worker process started again."""
        self._counter("darktrigger_worker_restarts", "Worker processes restarted.").inc()

    # -- scorer ----------------------------------------------------------------------------
    def scores(self, model: str, values: np.ndarray) -> None:
        """Scorer: one batch's scores ``float32 [N]`` into the model's histogram (vectorised)."""
        if self._scores is None or model not in self.models:
            raise MonitoringError(f"stage {self.stage!r}: model {model!r} was not declared; "
                                  f"declared: {list(self.models)} (pass models=[...])")
        self._scores.observe_many(model, values)

    # -- recorder --------------------------------------------------------------------------
    def decisions(self, events: int, raw: np.ndarray, counts: np.ndarray, pure: np.ndarray,
                  accepted: int, *, weights: WeightSums | None = None) -> None:
        """Recorder, after de-duplication: a batch of ``events`` events; per-seed ``int64 [k]``
        counts before prescale (``raw``), after (``counts``) and alone (``pure``); events kept.
        ``weights``: the same batch's sums of event weights (None: unit weights, each event
        counted once, as for an unweighted file)."""
        if self._seed_counts is None:
            raise MonitoringError(f"stage {self.stage!r}: decisions() needs the menu's seeds "
                                  f"(StageMetrics(..., seeds=menu.names))")
        w = WeightSums.unit(events, raw, counts, pure, accepted) if weights is None else weights
        totals = (w.events, w.events_sq, w.accepted, w.accepted_sq)
        self._seed_counts.check(raw, counts, pure)  # every check before any counter moves
        arrays = self._seed_weights.check(*(np.asarray(a, np.float64)
                                            for a in (w.raw, w.counts, w.pure, w.raw_sq, w.counts_sq, w.pure_sq)))
        if not all(math.isfinite(x) and x >= 0 for x in totals) or not all(
                np.isfinite(a).all() and (a >= 0).all() for a in arrays):
            raise MonitoringError(f"stage {self.stage!r}: sums of event weights must be finite and >= 0 "
                                  f"(the source rejects negative or NaN weights), got {w}")
        self._seed_weights.add(*arrays)
        self._seed_counts.add(raw, counts, pure)
        self._recorded.inc(events)
        self._accepted.inc(accepted)
        self._recorded_w.inc(w.events)
        self._recorded_w2.inc(w.events_sq)
        self._accepted_w.inc(w.accepted)
        self._accepted_w2.inc(w.accepted_sq)

    def end_to_end(self, seconds: float, events: int) -> None:
        """Recorder: a batch of ``events`` took ``seconds`` from the source's emission."""
        if self._seed_counts is None:
            raise MonitoringError(f"stage {self.stage!r}: end_to_end() is the recorder's (pass seeds=...)")
        self._latency.observe_weighted("", seconds, events)

    def lost(self, events: int) -> None:
        """Recorder, at the end of a run: events the source sent that never arrived."""
        if self._seed_counts is None:
            raise MonitoringError(f"stage {self.stage!r}: lost() is the recorder's (pass seeds=...)")
        self._lost.inc(events)


def _register(registry: CollectorRegistry, collector: Any) -> Any:
    registry.register(collector)
    return collector


__all__ = ["DROP_REASONS", "LATENCY_BUCKETS_S", "SCORE_BUCKETS", "SEED_COUNTS", "SEED_WEIGHTS", "StageMetrics",
           "WeightSums", "metrics_ports"]
