"""A stand-in pipeline that feeds :class:`StageMetrics` as a real run would: for tests, the
live page's demo and the overhead benchmark, with no events, models or sockets.

Each stage gets its own registry and (with ``serve=True``) its own ``/metrics`` port, as
the stages of ``darktrigger run`` do. Seeds fire with fixed probabilities, scores come
from a log-normal, latencies from an exponential: steady figures whose expected values
are known. With ``weights=(low, high)`` every event carries a weight drawn log-uniformly in
that range (a weighted zero-bias stream), and the recorder's weighted counters get the sums.
The crossing rate is the colliding-bunch one, :data:`BX_RATE_HZ`, unless given.

    >>> sim = SimulatedPipeline(seeds={"SingleMu22": 1e-3, "AXO_Loose": 1e-2}, models=["vae"])
    >>> sim.step(100_000)
    >>> counts = sim.recorder_counts()
    >>> counts.events, counts.counts.shape
    (100000, (2,))
    >>> bool(counts.weights.events == counts.events)       # unit weights: the sums are the counts
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from darktrigger.monitoring.exposition import Server, serve
from darktrigger.monitoring.metrics import StageMetrics, WeightSums

#: The colliding-bunch crossing rate, Hz: 2544 colliding bunches × the LHC's 11.2455 kHz
#: revolution frequency (``darktrigger.replay.lhc``, which this leaf package does not import).
BX_RATE_HZ = 2544 * 11_245.5


@dataclass
class RecordedCounts:
    """What the stand-in recorder counted: events, events kept, and per seed ``int64 [k]``
    the counts before prescale (``raw``), after (``counts``) and alone (``pure``); ``weights``
    the same as sums of event weights."""

    events: int = 0
    accepted: int = 0
    raw: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pure: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: WeightSums = field(default_factory=lambda: _zero_sums(0))


def _zero_sums(k: int) -> WeightSums:
    z = np.zeros(k, np.float64)
    return WeightSums(0.0, 0.0, 0.0, 0.0, *(z.copy() for _ in range(6)))


def _add(a: WeightSums, b: WeightSums) -> WeightSums:
    return WeightSums(*(getattr(a, f) + getattr(b, f) for f in a.__dataclass_fields__))


class SimulatedPipeline:
    """source → ``workers`` scorers → trigger → recorder, each stage's metrics fed per batch."""

    def __init__(self, seeds: Mapping[str, float], models: Sequence[str] = ("vae",), *, workers: int = 2,
                 batch_size: int = 4096, bx_rate_hz: float = BX_RATE_HZ, budget_hz: float | None = 1e6,
                 seed: int = 0, version: str = "simulated", weights: tuple[float, float] | None = None,
                 **recorder_kwargs: Any) -> None:
        if weights is not None and not 0 < weights[0] <= weights[1]:
            raise ValueError(f"weights: a range (low, high) with 0 < low <= high, got {weights!r}")
        self.weights = weights
        self.rng = np.random.default_rng(seed)
        self.probs = np.asarray(list(seeds.values()), dtype=np.float64)
        self.seeds = list(seeds)
        self.models = list(models)
        self.batch_size = batch_size
        self.registries: dict[str, CollectorRegistry] = {}
        self.metrics: dict[str, StageMetrics] = {}
        common = {"bx_rate_hz": bx_rate_hz, "budget_hz": budget_hz, "version": version}
        for stage in ["source", *(f"scorer-{i}" for i in range(workers)), "trigger", "recorder", "supervisor"]:
            reg = self.registries[stage] = CollectorRegistry()
            kwargs: dict[str, Any] = dict(common)
            if stage.startswith("scorer"):
                kwargs["models"] = self.models
            if stage == "recorder":
                kwargs["seeds"] = self.seeds
                kwargs.update(recorder_kwargs)
            self.metrics[stage] = StageMetrics(reg, stage, **kwargs)
        self.workers = workers
        self.metrics["source"].workers(workers)
        self.servers: dict[str, Server] = {}
        k = len(self.seeds)
        self._counts = RecordedCounts(raw=np.zeros(k, np.int64), counts=np.zeros(k, np.int64),
                                      pure=np.zeros(k, np.int64), weights=_zero_sums(k))
        self._batch = 0

    def serve(self, host: str = "127.0.0.1", ports: Mapping[str, int] | None = None) -> dict[str, str]:
        """Serve each stage's registry (port 0: any free one); {stage: "host:port"}."""
        for stage, reg in self.registries.items():
            self.servers[stage] = serve(reg, host, (ports or {}).get(stage, 0))
        return {stage: f"{host}:{s.port}" for stage, s in self.servers.items()}

    def close(self) -> None:
        for s in self.servers.values():
            s.close()
        self.servers.clear()

    def step(self, events: int) -> None:
        """Push ``events`` events through, in batches."""
        while events > 0:
            n = min(self.batch_size, events)
            self._one_batch(n)
            events -= n

    def _one_batch(self, n: int) -> None:
        rng, m = self.rng, self.metrics
        self._batch += 1
        m["source"].batch(n, 2e-5 * rng.exponential())
        m["source"].inflight(int(rng.integers(1, 8)))
        worker = m[f"scorer-{self._batch % self.workers}"]
        worker.batch(n, n * 3e-7 * (1 + 0.2 * rng.random()))
        for model in self.models:
            worker.scores(model, rng.lognormal(mean=0.0, sigma=1.5, size=n).astype(np.float32))
        m["trigger"].batch(n, n * 1e-7)
        fired = rng.random((n, len(self.seeds))) < self.probs
        alone = fired.sum(axis=1) == 1
        raw = fired.sum(axis=0)
        pure = fired[alone].sum(axis=0)
        accepted = int(fired.any(axis=1).sum())
        if self.weights is None:
            sums = WeightSums.unit(n, raw, raw, pure, accepted)
        else:
            lo, hi = np.log(self.weights)
            w = np.exp(rng.uniform(lo, hi, n))
            w2 = w * w
            kept = fired.any(axis=1)
            fw, fw2 = w @ fired, w2 @ fired
            sums = WeightSums(float(w.sum()), float(w2.sum()), float(w[kept].sum()), float(w2[kept].sum()),
                              fw, fw2, fw, fw2, w[alone] @ fired[alone], w2[alone] @ fired[alone])
        m["recorder"].batch(n, n * 5e-8)
        m["recorder"].decisions(n, raw, raw, pure, accepted, weights=sums)
        m["recorder"].end_to_end(0.004 + 0.01 * rng.exponential(), n)
        c = self._counts
        c.events += n
        c.accepted += accepted
        c.raw += raw
        c.counts += raw
        c.pure += pure
        c.weights = _add(c.weights, sums)

    def recorder_counts(self) -> RecordedCounts:
        """What the recorder has counted so far (a copy)."""
        c = self._counts
        return replace(c, raw=c.raw.copy(), counts=c.counts.copy(), pure=c.pure.copy(),
                       weights=_add(c.weights, _zero_sums(len(self.seeds))))
