"""Rates from trigger decisions: per-seed counts, pure rates, overlaps, and the budget.

:class:`MenuCounts` accumulates a menu's :class:`~darktrigger.daq.trigger.decision.Decision` batch by batch (in
any order and split: counts add up, across stages and files too) and turns the counts
into rates at the bunch-crossing rate, with binomial uncertainties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ, Decision
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


class MenuCounts:
    """Per-seed counts accumulated over decisions, and the rates they give.

    ``raw`` (before prescale), ``counts`` (after), ``pure`` (events this seed alone kept,
    after prescale), ``overlap[i, j]`` (events kept by both i and j; its diagonal is
    ``counts``), ``accepted`` (events any seed kept) and ``events`` (events seen). Rates
    are count / events × the bunch-crossing rate, in Hz, with binomial uncertainties.
    Events are counted, not weighted (zero-bias events have unit weight). Counts from
    several stages or files add up with :meth:`merge`.
    """

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

    @classmethod
    def for_menu(cls, menu: MenuShape) -> MenuCounts:
        return cls(menu.names, menu.prescales, bx_rate_mhz=menu.bx_rate_mhz, budget_khz=menu.budget_khz)

    def add(self, decision: Decision) -> MenuCounts:
        """Count one batch's decision; returns self."""
        if decision.names != self.names:
            raise ConfigError(f"a decision for seeds {list(decision.names)} cannot be counted with "
                              f"seeds {list(self.names)}")
        k = len(self.names)
        self.events += len(decision)
        raw_bits = _unpack(decision.raw, k)
        self.raw += raw_bits.sum(axis=0, dtype=np.int64)
        kept = _unpack(decision.bits, k)
        self.accepted += len(kept)
        self.counts += kept.sum(axis=0, dtype=np.int64)
        alone = kept.sum(axis=1) == 1
        self.pure += kept[alone].sum(axis=0, dtype=np.int64)
        f = kept.astype(np.float64)  # exact: counts per batch stay far below 2**53
        self.overlap += np.rint(f.T @ f).astype(np.int64)
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
        return self

    # -- rates ----------------------------------------------------------------------
    @property
    def bx_hz(self) -> float:
        return self.bx_rate_mhz * 1e6

    def _rate(self, count: np.ndarray | int) -> np.ndarray:
        c = np.asarray(count, dtype=np.float64)
        return c / self.events * self.bx_hz if self.events else np.zeros_like(c)

    @property
    def raw_rates_hz(self) -> np.ndarray:
        return self._rate(self.raw)

    @property
    def rates_hz(self) -> np.ndarray:
        return self._rate(self.counts)

    @property
    def rate_uncertainties_hz(self) -> np.ndarray:
        return _binomial_hz(self.counts, self.events, self.bx_hz)

    @property
    def pure_rates_hz(self) -> np.ndarray:
        return self._rate(self.pure)

    @property
    def total_rate_hz(self) -> float:
        return float(self._rate(self.accepted))

    @property
    def total_rate_uncertainty_hz(self) -> float:
        return float(_binomial_hz(self.accepted, self.events, self.bx_hz))

    @property
    def over_budget(self) -> bool | None:
        """Whether the total accept rate exceeds the budget (None when there is none)."""
        if self.budget_khz is None:
            return None
        return self.total_rate_hz > self.budget_khz * 1e3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and rates (``run_summary.json`` holds this)."""
        unc = self.rate_uncertainties_hz
        seeds = [{"name": name, "prescale": self.prescales[i], "raw_count": int(self.raw[i]),
                  "count": int(self.counts[i]), "pure_count": int(self.pure[i]),
                  "raw_rate_hz": float(self.raw_rates_hz[i]), "rate_hz": float(self.rates_hz[i]),
                  "rate_uncertainty_hz": float(unc[i]), "pure_rate_hz": float(self.pure_rates_hz[i])}
                 for i, name in enumerate(self.names)]
        return {"bx_rate_mhz": self.bx_rate_mhz, "events": self.events, "accepted": self.accepted,
                "total_rate_hz": self.total_rate_hz,
                "total_rate_uncertainty_hz": self.total_rate_uncertainty_hz,
                "budget_khz": self.budget_khz, "over_budget": self.over_budget, "seeds": seeds,
                "overlap": {"names": list(self.names), "counts": self.overlap.tolist()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MenuCounts:
        """Rebuild counts from :meth:`to_dict` (e.g. to merge run summaries)."""
        try:
            seeds = data["seeds"]
            out = cls([s["name"] for s in seeds], [s["prescale"] for s in seeds],
                      bx_rate_mhz=data["bx_rate_mhz"], budget_khz=data["budget_khz"])
            out.events, out.accepted = int(data["events"]), int(data["accepted"])
            out.raw[:] = [s["raw_count"] for s in seeds]
            out.counts[:] = [s["count"] for s in seeds]
            out.pure[:] = [s["pure_count"] for s in seeds]
            out.overlap[:] = np.asarray(data["overlap"]["counts"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"menu counts: expected the fields MenuCounts.to_dict writes, "
                              f"got {type(exc).__name__}: {exc}") from None
        return out

    def format_table(self) -> str:
        """A terminal table: seed, prescale, counts, rate ± unc. and pure rate in Hz, total vs budget."""
        width = max([len("seed"), *map(len, self.names)]) + 2
        head = (f"{'seed':<{width}}{'prescale':>9}{'raw count':>11}{'count':>10}"
                f"{'rate Hz':>14}{'± Hz':>11}{'pure Hz':>13}")
        lines = [head, "-" * len(head)]
        unc = self.rate_uncertainties_hz
        for i, name in enumerate(self.names):
            lines.append(f"{name:<{width}}{self.prescales[i]:>9g}{self.raw[i]:>11,}{self.counts[i]:>10,}"
                         f"{self.rates_hz[i]:>14,.1f}{unc[i]:>11,.1f}{self.pure_rates_hz[i]:>13,.1f}")
        lines.append("-" * len(head))
        total = (f"{'total':<{width}}{'':>9}{'':>11}{self.accepted:>10,}{self.total_rate_hz:>14,.1f}"
                 f"{self.total_rate_uncertainty_hz:>11,.1f}")
        lines.append(total)
        budget = ""
        if self.budget_khz is not None:
            verdict = "OVER BUDGET" if self.over_budget else "within budget"
            budget = f"; budget {self.budget_khz:g} kHz: {verdict}"
        lines.append(f"{self.events:,} events at {self.bx_rate_mhz:g} MHz; total accept rate "
                     f"{self.total_rate_hz / 1e3:,.3f} ± {self.total_rate_uncertainty_hz / 1e3:,.3f} kHz"
                     f"{budget}")
        return "\n".join(lines)

    def format_overlap(self) -> str:
        """The overlap matrix (events kept by both seeds, after prescale) as a table."""
        labels = [f"#{i} {name}" for i, name in enumerate(self.names)]
        width = max([len("overlap"), *map(len, labels)]) + 2
        cell = max([6, *(len(f"{c:,}") + 2 for c in self.overlap.ravel())])
        lines = [f"{'overlap':<{width}}" + "".join(f"{'#' + str(j):>{cell}}" for j in range(len(labels)))]
        for label, row in zip(labels, self.overlap, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{c:>{cell},}" for c in row))
        return "\n".join(lines)


def _unpack(mask: np.ndarray, k: int) -> np.ndarray:
    """bool ``[M, k]``: the bits 0..k-1 of the non-zero entries of a uint64 mask."""
    nz = np.ascontiguousarray(mask[mask != 0], dtype="<u8")
    return np.unpackbits(nz.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")[:, :k].astype(bool)
