"""Rates against threshold: what a single-object or energy-sum seed would fire at each cut.

For each quantity of :data:`SCAN_QUANTITIES` — the leading muon pT (|η| ≤ 2.4, as
SingleMu), the leading e/γ pT (|η| ≤ 2.5, SingleEG…er2p5), the leading jet pT (SingleJet),
HT of jets with pT > 30 GeV and |η| < 2.4 (HTT…er) and the MET (ETMHF) — a
:class:`RateScan` sums the weights of the events at or above each threshold (the seeds fire
at ``value >= threshold``), so the rate at a threshold is the rate the seed with that cut
would have:

    rate(t) = Σw(value ≥ t) / Σw × crossing rate,

with the weighted binomial error. The curves cannot rise with the threshold: each is a
sum over a shrinking set of events.

    >>> import numpy as np
    >>> from darktrigger.replay.events import EventBatch
    >>> objects = np.zeros((4, 19, 3), np.float32)
    >>> objects[:, 0, 0] = (10, 50, 95, 120)                       # MET, GeV
    >>> scan = RateScan(thresholds={"ETMHF": [40, 90, 100]}, bx_rate_mhz=28.0)
    >>> scan.add(EventBatch.from_objects(objects)).rates_hz("ETMHF").tolist()   # 3, 2, 1 of 4
    [21000000.0, 14000000.0, 7000000.0]
    >>> weighted = RateScan(thresholds={"ETMHF": [40, 90, 100]}, bx_rate_mhz=28.0)
    >>> weighted.add(EventBatch.from_objects(objects), weights=np.array([5.0, 1, 1, 1])).rates_hz("ETMHF").tolist()
    [10500000.0, 7000000.0, 3500000.0]

``darktrigger menu scan`` plots the curves (:func:`darktrigger.models.plots.rate_scan_figure`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ
from darktrigger.daq.trigger.seeds import scalar_ht
from darktrigger.models.thresholds import fraction_uncertainty
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import SLOTS, EventBatch

log = logging.getLogger(__name__)


def leading_pt(objects: np.ndarray, kind: str, eta_max: float | None = None) -> np.ndarray:
    """float64 ``[N]``: the highest pT of the objects of one kind (``muon``, ``egamma``,
    ``jet``) within |η| ≤ ``eta_max`` (0 when there is none), GeV.

        >>> o = np.zeros((2, 19, 3), np.float32); o[0, 1] = (40, 2.6, 0); o[0, 2] = (30, 1.0, 0)
        >>> leading_pt(o, "egamma", eta_max=2.5).tolist()
        [30.0, 0.0]
    """
    best = np.zeros(len(objects), dtype=np.float64)
    for slot in range(SLOTS[kind].start, SLOTS[kind].stop):
        pt = objects[:, slot, 0].astype(np.float64)
        if eta_max is not None:
            pt = np.where(np.abs(objects[:, slot, 1]) <= np.float32(eta_max), pt, 0.0)
        np.maximum(best, pt, out=best)
    return best


@dataclass(frozen=True)
class ScanQuantity:
    """One quantity to scan: what it is, the seed it stands for, how to compute it from the
    objects ``[N, 19, 3]`` and the default thresholds (GeV)."""

    name: str
    label: str
    seed: str
    compute: Callable[[np.ndarray], np.ndarray]
    thresholds: tuple[float, ...]


SCAN_QUANTITIES: dict[str, ScanQuantity] = {q.name: q for q in (
    ScanQuantity("SingleMu", r"leading muon $p_T$ [GeV], $|\eta| \leq 2.4$", "single_mu (eta_max 2.4)",
                 lambda o: leading_pt(o, "muon", 2.4), tuple(float(x) for x in range(3, 41))),
    ScanQuantity("SingleEG", r"leading e/$\gamma$ $p_T$ [GeV], $|\eta| \leq 2.5$", "single_eg (eta_max 2.5)",
                 lambda o: leading_pt(o, "egamma", 2.5), tuple(float(x) for x in range(3, 61))),
    ScanQuantity("SingleJet", r"leading jet $p_T$ [GeV]", "single_jet",
                 lambda o: leading_pt(o, "jet"), tuple(float(x) for x in range(20, 301, 5))),
    ScanQuantity("HTT", r"$H_T$ [GeV], jets $p_T > 30$ GeV, $|\eta| < 2.4$", "ht (jet_pt_min 30, jet_eta_max 2.4)",
                 lambda o: scalar_ht(o, 30.0, 2.4), tuple(float(x) for x in range(50, 601, 10))),
    ScanQuantity("ETMHF", r"$E_T^{miss}$ [GeV] (the MET slot)", "met",
                 lambda o: o[:, 0, 0].astype(np.float64), tuple(float(x) for x in range(10, 201, 5))),
)}


class RateScan:
    """Per quantity and threshold, Σw and Σw² of the events at or above it, over batches.

    ``thresholds`` maps a quantity name to its thresholds (default: each quantity's own);
    the rates are at ``bx_rate_mhz`` (the colliding-bunch rate by default).
    """

    def __init__(self, thresholds: Mapping[str, Sequence[float]] | None = None, *,
                 bx_rate_mhz: float = DEFAULT_BX_RATE_MHZ) -> None:
        chosen = thresholds if thresholds is not None else {k: q.thresholds for k, q in SCAN_QUANTITIES.items()}
        unknown = [k for k in chosen if k not in SCAN_QUANTITIES]
        if unknown:
            raise ConfigError(f"rate scan: unknown quantity {unknown[0]!r}; known: {', '.join(SCAN_QUANTITIES)}")
        self.thresholds = {k: np.asarray(sorted(v), dtype=np.float64) for k, v in chosen.items()}
        if any(t.size == 0 for t in self.thresholds.values()):
            raise ConfigError("rate scan: every quantity needs at least one threshold")
        self.bx_rate_mhz = float(bx_rate_mhz)
        self.events = 0
        self.sum_w = 0.0
        self.sum_w2 = 0.0
        self.above = {k: np.zeros(t.size) for k, t in self.thresholds.items()}
        self.above_sq = {k: np.zeros(t.size) for k, t in self.thresholds.items()}

    def add(self, batch: EventBatch, weights: np.ndarray | None = None) -> RateScan:
        """Count one batch, each event with its weight (None: 1 each); returns self."""
        objects = batch.objects
        w = np.ones(len(objects)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(objects),):
            raise ConfigError(f"rate scan: {len(objects)} events but weights of shape {w.shape}")
        self.events += len(w)
        self.sum_w += float(w.sum())
        self.sum_w2 += float(w @ w)
        for name, cuts in self.thresholds.items():
            values = SCAN_QUANTITIES[name].compute(objects)
            # bin i holds the events with cuts[i-1] <= value < cuts[i]: those at or above
            # threshold j are the bins j + 1 onwards
            idx = np.searchsorted(cuts, values, side="right")
            s1 = np.bincount(idx, weights=w, minlength=cuts.size + 1)
            s2 = np.bincount(idx, weights=w * w, minlength=cuts.size + 1)
            self.above[name] += np.cumsum(s1[::-1])[::-1][1:]
            self.above_sq[name] += np.cumsum(s2[::-1])[::-1][1:]
        return self

    def rates_hz(self, name: str) -> np.ndarray:
        """The rate at each threshold of ``name``, Hz."""
        if self.sum_w <= 0:
            return np.zeros_like(self.above[name])
        return self.above[name] / self.sum_w * self.bx_rate_mhz * 1e6

    def uncertainties_hz(self, name: str) -> np.ndarray:
        """The rates' standard deviations, Hz (one effective event's rate where none is above)."""
        return fraction_uncertainty(self.above[name], self.above_sq[name], self.sum_w,
                                    self.sum_w2) * self.bx_rate_mhz * 1e6

    @property
    def n_eff(self) -> float:
        return self.sum_w ** 2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per quantity the thresholds, rates and their errors."""
        return {"bx_rate_mhz": self.bx_rate_mhz, "events": self.events, "n_eff": self.n_eff,
                "quantities": {name: {"label": SCAN_QUANTITIES[name].label,
                                      "thresholds_gev": cuts.tolist(),
                                      "rate_hz": self.rates_hz(name).tolist(),
                                      "rate_uncertainty_hz": self.uncertainties_hz(name).tolist()}
                               for name, cuts in self.thresholds.items()}}


def scan_files(paths: Path | str | Iterable[Path | str], *, thresholds: Mapping[str, Sequence[float]] | None = None,
               bx_rate_mhz: float = DEFAULT_BX_RATE_MHZ, max_events: int | None = None,
               chunk_size: int = 65536, on_error: str = "fail") -> RateScan:
    """A :class:`RateScan` over event files, each event with its checked ``weight``."""
    from darktrigger.models.thresholds import check_weight_sum, checked_weights
    from darktrigger.replay.readers import open_events

    scan = RateScan(thresholds, bx_rate_mhz=bx_rate_mhz)
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    for path in files:
        row, total, n = 0, 0.0, 0
        for batch in open_events(path, chunk_size=chunk_size, on_error=on_error):
            if max_events is not None and scan.events + len(batch) > max_events:
                batch = batch[: max_events - scan.events]
            w = checked_weights(batch, path, first_row=row)
            row, total, n = row + len(batch), total + float(w.sum()), n + len(batch)
            scan.add(batch, w)
            if max_events is not None and scan.events >= max_events:
                break
        check_weight_sum(total, n, path)
        if max_events is not None and scan.events >= max_events:
            break
    if scan.events == 0:
        raise ConfigError(f"rate scan: no events in {', '.join(map(str, files))}")
    log.info("rate scan: %d events (n_eff %.1f) from %s", scan.events, scan.n_eff, ", ".join(map(str, files)))
    return scan


__all__ = ["SCAN_QUANTITIES", "RateScan", "ScanQuantity", "leading_pt", "scan_files"]
