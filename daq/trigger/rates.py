"""Rates from trigger decisions: per-seed counts, pure rates, overlaps, and the budget.

:class:`MenuCounts` accumulates a menu's :class:`~darktrigger.daq.trigger.decision.Decision`
batch by batch (in any order and split: counts add up, across stages and files too) and
turns them into rates at the colliding-bunch crossing rate. Each event may carry a weight
(the ``weight`` column; relative: only ratios matter): a rate is

    rate = Σw(events the seed fired) / Σw(all events) × crossing rate,

with var(p̂) = Σ wᵢ²(xᵢ − p̂)² / (Σw)² (the binomial p(1 − p)/n for unit weights;
:func:`darktrigger.models.thresholds.fraction_uncertainty`) and
n_eff = (Σw)²/Σw² effective events. Unweighted events count one crossing each.

    >>> import numpy as np
    >>> d = Decision(raw=np.array([1, 0, 1, 0], np.uint64), bits=np.array([1, 0, 1, 0], np.uint64),
    ...              names=("MET90",))
    >>> unit = MenuCounts(["MET90"], bx_rate_mhz=28.0).add(d)
    >>> unit.rates_hz.tolist(), unit.rate_uncertainties_hz.round(1).tolist()
    ([14000000.0], [7000000.0])
    >>> weighted = MenuCounts(["MET90"], bx_rate_mhz=28.0).add(d, weights=np.array([1.0, 3.0, 0.5, 0.5]))
    >>> weighted.rates_hz.tolist(), round(weighted.n_eff, 2)     # 1.5 / 5 of 28 MHz
    ([8400000.0], 2.38)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ, Decision
from darktrigger.models.thresholds import fraction_uncertainty
from darktrigger.replay.errors import ConfigError


class MenuShape(Protocol):
    """What :meth:`MenuCounts.for_menu` reads of a menu (a :class:`~darktrigger.daq.trigger.menu.Menu`)."""

    @property
    def names(self) -> Sequence[str]: ...
    @property
    def prescales(self) -> Sequence[float]: ...
    @property
    def bx_rate_mhz(self) -> float: ...
    @property
    def budget_khz(self) -> float | None: ...


def _binomial_hz(count: np.ndarray | int, n: int, bx_hz: float) -> np.ndarray:
    """Binomial rate uncertainty bx·sqrt(p(1−p)/n); one event's rate bx/n when count is 0."""
    c = np.asarray(count, dtype=np.float64)
    if n == 0:
        return np.zeros_like(c)
    p = c / n
    return np.where(c > 0, np.sqrt(p * (1 - p) / n), 1.0 / n) * bx_hz


#: the standard deviation of a weighted fraction (one formula for rates, thresholds and efficiencies)
weighted_fraction_uncertainty = fraction_uncertainty


class MenuCounts:
    """Per-seed counts and weight sums accumulated over decisions, and the rates they give.

    Counts (integers, events): ``raw`` (fired before prescale), ``counts`` (after),
    ``pure`` (events this seed alone kept, after prescale), ``overlap[i, j]`` (kept by both
    i and j; its diagonal is ``counts``), ``accepted`` (kept by any seed) and ``events``
    (seen). The same as sums of event weights: ``sum_w``/``sum_w2`` (Σw, Σw² of all
    events) and, per quantity ``q`` of ``raw``, ``counts``, ``pure``, ``accepted``,
    ``w_<q>`` and ``w2_<q>``, with ``w_overlap``. Rates are Σw(fired) / Σw × the crossing
    rate, in Hz, with the weighted binomial uncertainty; for unit weights (no weights
    given, or all 1) they are exactly count / events × the crossing rate with the binomial
    uncertainty. Counts from several stages or files add up with :meth:`merge`.
    """

    QUANTITIES = ("raw", "counts", "pure")

    def __init__(self, names: Sequence[str], prescales: Sequence[float] | None = None, *,
                 bx_rate_mhz: float = DEFAULT_BX_RATE_MHZ, budget_khz: float | None = None) -> None:
        self.names = tuple(names)
        k = len(self.names)
        self.prescales = list(prescales) if prescales is not None else [1] * k
        self.bx_rate_mhz = float(bx_rate_mhz)
        self.budget_khz = budget_khz
        self.events = 0
        self.accepted = 0
        self.raw = np.zeros(k, np.int64)
        self.counts = np.zeros(k, np.int64)
        self.pure = np.zeros(k, np.int64)
        self.overlap = np.zeros((k, k), np.int64)
        #: whether some event had a weight other than 1 (else rates use the plain counts)
        self.weighted = False
        self.sum_w = 0.0
        self.sum_w2 = 0.0
        self.w_accepted = 0.0
        self.w2_accepted = 0.0
        self.w_raw = np.zeros(k)
        self.w2_raw = np.zeros(k)
        self.w_counts = np.zeros(k)
        self.w2_counts = np.zeros(k)
        self.w_pure = np.zeros(k)
        self.w2_pure = np.zeros(k)
        self.w_overlap = np.zeros((k, k))

    @classmethod
    def for_menu(cls, menu: MenuShape) -> MenuCounts:
        return cls(menu.names, menu.prescales, bx_rate_mhz=menu.bx_rate_mhz, budget_khz=menu.budget_khz)

    def add(self, decision: Decision, weights: np.ndarray | None = None) -> MenuCounts:
        """Count one batch's decision, each event with its weight (``weights`` float ``[N]``,
        finite and >= 0; None: 1 each); returns self."""
        if decision.names != self.names:
            raise ConfigError(f"a decision for seeds {list(decision.names)} cannot be counted with "
                              f"seeds {list(self.names)}")
        n = len(decision)
        w: np.ndarray | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,):
                raise ConfigError(f"menu counts: {n} decisions but weights of shape {w.shape}")
            if not (np.isfinite(w).all() and (w >= 0).all()):
                bad = int(np.flatnonzero(~(np.isfinite(w) & (w >= 0)))[0])
                raise ConfigError(f"menu counts: event weights must be finite and >= 0; "
                                  f"event {bad} of the batch has weight {w[bad]!r}")
            if not (w != 1).any():
                w = None  # unit weights: the sums are the counts
        k = len(self.names)
        raw_bits = _unpack(decision.raw, k)
        kept = _unpack(decision.bits, k)
        raw = raw_bits.sum(axis=0, dtype=np.int64)
        counts = kept.sum(axis=0, dtype=np.int64)
        alone = kept.sum(axis=1) == 1
        pure = kept[alone].sum(axis=0, dtype=np.int64)
        f = kept.astype(np.float64)  # exact: counts per batch stay far below 2**53
        overlap = np.rint(f.T @ f).astype(np.int64)
        self.events += n
        self.accepted += len(kept)
        self.raw += raw
        self.counts += counts
        self.pure += pure
        self.overlap += overlap
        if w is None:
            for q, c in (("raw", raw), ("counts", counts), ("pure", pure)):
                getattr(self, f"w_{q}")[:] += c
                getattr(self, f"w2_{q}")[:] += c
            self.sum_w += n
            self.sum_w2 += n
            self.w_accepted += len(kept)
            self.w2_accepted += len(kept)
            self.w_overlap += overlap
            return self
        self.weighted = True
        w2 = w * w
        self.sum_w += float(w.sum())
        self.sum_w2 += float(w2.sum())
        fired = decision.raw != 0
        fr = raw_bits.astype(np.float64)
        self.w_raw += w[fired] @ fr
        self.w2_raw += w2[fired] @ fr
        rows = decision.bits != 0
        wk, wk2 = w[rows], w2[rows]
        self.w_accepted += float(wk.sum())
        self.w2_accepted += float(wk2.sum())
        w_overlap = (f * wk[:, None]).T @ f  # its diagonal is Σw of each seed's kept events
        self.w_overlap += w_overlap
        self.w_counts += np.diag(w_overlap)
        self.w2_counts += wk2 @ f
        self.w_pure += wk[alone] @ f[alone]
        self.w2_pure += wk2[alone] @ f[alone]
        return self

    def merge(self, other: MenuCounts) -> MenuCounts:
        """Add another counter's counts (same seeds and bunch-crossing rate); returns self."""
        if other.names != self.names or other.bx_rate_mhz != self.bx_rate_mhz:
            raise ConfigError(f"cannot merge counts of seeds {list(other.names)} at "
                              f"{other.bx_rate_mhz:g} MHz into seeds {list(self.names)} at "
                              f"{self.bx_rate_mhz:g} MHz")
        self.events += other.events
        self.accepted += other.accepted
        self.raw += other.raw
        self.counts += other.counts
        self.pure += other.pure
        self.overlap += other.overlap
        self.weighted = self.weighted or other.weighted
        self.sum_w += other.sum_w
        self.sum_w2 += other.sum_w2
        self.w_accepted += other.w_accepted
        self.w2_accepted += other.w2_accepted
        for q in self.QUANTITIES:
            getattr(self, f"w_{q}")[:] += getattr(other, f"w_{q}")
            getattr(self, f"w2_{q}")[:] += getattr(other, f"w2_{q}")
        self.w_overlap += other.w_overlap
        return self

    # -- rates ----------------------------------------------------------------------
    @property
    def bx_hz(self) -> float:
        """The crossing rate the rates are at, Hz."""
        return self.bx_rate_mhz * 1e6

    @property
    def n_eff(self) -> float:
        """Effective number of events (Σw)²/Σw²: ``events`` for unit weights."""
        if not self.weighted:
            return float(self.events)
        return self.sum_w ** 2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    def _rate(self, count: np.ndarray | int, weight: np.ndarray | float) -> np.ndarray:
        if self.weighted:
            w = np.asarray(weight, dtype=np.float64)
            return w / self.sum_w * self.bx_hz if self.sum_w > 0 else np.zeros_like(w)
        c = np.asarray(count, dtype=np.float64)
        return c / self.events * self.bx_hz if self.events else np.zeros_like(c)

    def _uncertainty(self, count: np.ndarray | int, weight: np.ndarray | float,
                     weight2: np.ndarray | float) -> np.ndarray:
        if self.weighted:
            return fraction_uncertainty(weight, weight2, self.sum_w, self.sum_w2) * self.bx_hz
        return _binomial_hz(count, self.events, self.bx_hz)

    @property
    def raw_rates_hz(self) -> np.ndarray:
        return self._rate(self.raw, self.w_raw)

    @property
    def raw_rate_uncertainties_hz(self) -> np.ndarray:
        return self._uncertainty(self.raw, self.w_raw, self.w2_raw)

    @property
    def rates_hz(self) -> np.ndarray:
        return self._rate(self.counts, self.w_counts)

    @property
    def rate_uncertainties_hz(self) -> np.ndarray:
        return self._uncertainty(self.counts, self.w_counts, self.w2_counts)

    @property
    def pure_rates_hz(self) -> np.ndarray:
        return self._rate(self.pure, self.w_pure)

    @property
    def pure_rate_uncertainties_hz(self) -> np.ndarray:
        return self._uncertainty(self.pure, self.w_pure, self.w2_pure)

    @property
    def overlap_rates_hz(self) -> np.ndarray:
        """``[k, k]``: the rate of events kept by both seeds, Hz."""
        return self._rate(self.overlap, self.w_overlap)

    @property
    def total_rate_hz(self) -> float:
        return float(self._rate(self.accepted, self.w_accepted))

    @property
    def total_rate_uncertainty_hz(self) -> float:
        return float(self._uncertainty(self.accepted, self.w_accepted, self.w2_accepted))

    @property
    def over_budget(self) -> bool | None:
        """Whether the total accept rate exceeds the budget (None when there is none)."""
        if self.budget_khz is None:
            return None
        return self.total_rate_hz > self.budget_khz * 1e3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts, weight sums and rates (``run_summary.json`` holds this)."""
        unc = self.rate_uncertainties_hz
        raw_unc = self.raw_rate_uncertainties_hz
        pure_unc = self.pure_rate_uncertainties_hz
        seeds = [{"name": name, "prescale": self.prescales[i], "raw_count": int(self.raw[i]),
                  "count": int(self.counts[i]), "pure_count": int(self.pure[i]),
                  "raw_weight": float(self.w_raw[i]), "raw_weight_sq": float(self.w2_raw[i]),
                  "weight": float(self.w_counts[i]), "weight_sq": float(self.w2_counts[i]),
                  "pure_weight": float(self.w_pure[i]), "pure_weight_sq": float(self.w2_pure[i]),
                  "raw_rate_hz": float(self.raw_rates_hz[i]), "raw_rate_uncertainty_hz": float(raw_unc[i]),
                  "rate_hz": float(self.rates_hz[i]), "rate_uncertainty_hz": float(unc[i]),
                  "pure_rate_hz": float(self.pure_rates_hz[i]),
                  "pure_rate_uncertainty_hz": float(pure_unc[i])}
                 for i, name in enumerate(self.names)]
        return {"bx_rate_mhz": self.bx_rate_mhz, "events": self.events, "accepted": self.accepted,
                "weighted": self.weighted, "sum_weights": self.sum_w, "sum_weights_sq": self.sum_w2,
                "n_eff": self.n_eff, "accepted_weight": self.w_accepted,
                "accepted_weight_sq": self.w2_accepted,
                "total_rate_hz": self.total_rate_hz,
                "total_rate_uncertainty_hz": self.total_rate_uncertainty_hz,
                "budget_khz": self.budget_khz, "over_budget": self.over_budget, "seeds": seeds,
                "overlap": {"names": list(self.names), "counts": self.overlap.tolist(),
                            "weights": self.w_overlap.tolist()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MenuCounts:
        """Rebuild counts from :meth:`to_dict` (e.g. to merge run summaries); a dict without
        the weight sums is read as unit weights."""
        try:
            seeds = data["seeds"]
            out = cls([s["name"] for s in seeds], [s["prescale"] for s in seeds],
                      bx_rate_mhz=data["bx_rate_mhz"], budget_khz=data["budget_khz"])
            out.events, out.accepted = int(data["events"]), int(data["accepted"])
            out.raw[:] = [s["raw_count"] for s in seeds]
            out.counts[:] = [s["count"] for s in seeds]
            out.pure[:] = [s["pure_count"] for s in seeds]
            out.overlap[:] = np.asarray(data["overlap"]["counts"], dtype=np.int64)
            out.weighted = bool(data.get("weighted", False))
            out.sum_w = float(data.get("sum_weights", out.events))
            out.sum_w2 = float(data.get("sum_weights_sq", out.events))
            out.w_accepted = float(data.get("accepted_weight", out.accepted))
            out.w2_accepted = float(data.get("accepted_weight_sq", out.accepted))
            for q, key in (("raw", "raw_"), ("counts", ""), ("pure", "pure_")):
                count_key = "count" if q == "counts" else f"{q}_count"
                getattr(out, f"w_{q}")[:] = [s.get(f"{key}weight", s[count_key]) for s in seeds]
                getattr(out, f"w2_{q}")[:] = [s.get(f"{key}weight_sq", s[count_key]) for s in seeds]
            out.w_overlap[:] = np.asarray(data["overlap"].get("weights", data["overlap"]["counts"]),
                                          dtype=np.float64)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"menu counts: expected the fields MenuCounts.to_dict writes, "
                              f"got {type(exc).__name__}: {exc}") from None
        return out

    def format_table(self) -> str:
        """A terminal table: seed, prescale, counts, rate ± unc. and pure rate ± unc. in Hz at
        the crossing rate, the total against the budget; n_eff when the events are weighted."""
        width = max([len("seed"), *map(len, self.names)]) + 2
        head = (f"{'seed':<{width}}{'prescale':>9}{'raw count':>11}{'count':>10}"
                f"{'rate Hz':>14}{'± Hz':>11}{'pure Hz':>13}{'± Hz':>11}")
        lines = [f"rates at the crossing rate {self.bx_rate_mhz:.4g} MHz", head, "-" * len(head)]
        unc = self.rate_uncertainties_hz
        pure_unc = self.pure_rate_uncertainties_hz
        for i, name in enumerate(self.names):
            lines.append(f"{name:<{width}}{self.prescales[i]:>9g}{self.raw[i]:>11,}{self.counts[i]:>10,}"
                         f"{self.rates_hz[i]:>14,.1f}{unc[i]:>11,.1f}{self.pure_rates_hz[i]:>13,.1f}"
                         f"{pure_unc[i]:>11,.1f}")
        lines.append("-" * len(head))
        total = (f"{'total':<{width}}{'':>9}{'':>11}{self.accepted:>10,}{self.total_rate_hz:>14,.1f}"
                 f"{self.total_rate_uncertainty_hz:>11,.1f}")
        lines.append(total)
        budget = ""
        if self.budget_khz is not None:
            verdict = "OVER BUDGET" if self.over_budget else "within budget"
            budget = f"; budget {self.budget_khz:g} kHz: {verdict}"
        sample = f"{self.events:,} events"
        if self.weighted:
            sample += f" (weighted: n_eff {self.n_eff:,.1f})"
        lines.append(f"{sample} at {self.bx_rate_mhz:.4g} MHz; total accept rate "
                     f"{self.total_rate_hz / 1e3:,.3f} ± {self.total_rate_uncertainty_hz / 1e3:,.3f} kHz"
                     f"{budget}")
        return "\n".join(lines)

    def format_overlap(self) -> str:
        """The overlap matrix (events kept by both seeds, after prescale) as a table; with
        weighted events, the overlap rates in Hz."""
        labels = [f"#{i} {name}" for i, name in enumerate(self.names)]
        width = max([len("overlap"), *map(len, labels)]) + 2
        if self.weighted:
            cells = [[f"{r:,.1f}" for r in row] for row in self.overlap_rates_hz]
            title = "overlap Hz"
        else:
            cells = [[f"{c:,}" for c in row] for row in self.overlap]
            title = "overlap"
        width = max(width, len(title) + 2)
        cell = max([6, *(len(c) + 2 for row in cells for c in row)])
        lines = [f"{title:<{width}}" + "".join(f"{'#' + str(j):>{cell}}" for j in range(len(labels)))]
        for label, row in zip(labels, cells, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{c:>{cell}}" for c in row))
        return "\n".join(lines)


def _unpack(mask: np.ndarray, k: int) -> np.ndarray:
    """bool ``[M, k]``: the bits 0..k-1 of the non-zero entries of a uint64 mask."""
    nz = np.ascontiguousarray(mask[mask != 0], dtype="<u8")
    return np.unpackbits(nz.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")[:, :k].astype(bool)
