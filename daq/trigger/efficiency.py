"""A signal's efficiency per seed of a menu, what each seed keeps alone, and what the
anomaly seeds add to the rest of the menu.

For one signal sample (each event with its weight, the ``weight`` column: relative),
per seed after its prescale:

- **efficiency** ε = Σw(events the seed kept) / Σw(all signal events);
- **unique efficiency**: the events the seed kept and no *other non-anomaly* seed kept.
  For an object seed that is what it alone of the conventional seeds keeps; for an
  anomaly seed, what it adds to the conventional menu;
- for the **anomaly seeds together**: their efficiency (kept by any of them) and what
  they add to the rest of the menu: the signal that only anomaly seeds keep (kept by an
  anomaly seed and by no non-anomaly seed).

Each ε comes with its standard deviation, var(ε) = Σ wᵢ²(xᵢ − ε)² / (Σw)² — the binomial
ε(1 − ε)/n for unit weights; where no event was kept, 1/n_eff (one effective event).

    >>> import numpy as np
    >>> from darktrigger.daq.trigger.decision import Decision
    >>> bits = np.array([0b01, 0b11, 0b10, 0b00], np.uint64)  # SingleMu22 = bit 0, AXO = bit 1
    >>> d = Decision(raw=bits, bits=bits, names=("SingleMu22", "AXO"))
    >>> eff = SignalEfficiency(["SingleMu22", "AXO"], anomaly=[False, True]).add(d)
    >>> eff.efficiencies()[0].tolist(), eff.unique_efficiencies()[0].tolist()
    ([0.5, 0.5], [0.5, 0.25])
    >>> round(float(eff.efficiencies()[1][0]), 3)          # sqrt(0.5 · 0.5 / 4)
    0.25
    >>> eff.anomaly_efficiency()["adds"]                    # kept by AXO and no other seed
    0.25

:func:`signal_efficiency` runs a menu over signal files (scoring them with the menu's
models); ``darktrigger menu efficiency`` prints :func:`format_efficiency`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from darktrigger.daq.trigger.decision import Decision
from darktrigger.models.thresholds import fraction_uncertainty
from darktrigger.replay.errors import ConfigError

if TYPE_CHECKING:
    from darktrigger.daq.trigger.menu import Menu
    from darktrigger.models.base import Scorer

log = logging.getLogger(__name__)

#: the sums kept per seed: Σw and Σw² of the events a seed kept, and of those it kept uniquely
_PER_SEED = ("kept", "kept_sq", "unique", "unique_sq")
#: the sums kept for the anomaly seeds together
_ANOMALY = ("any_anomaly_weight", "any_anomaly_weight_sq", "adds_weight", "adds_weight_sq")


class SignalEfficiency:
    """A signal's weighted counts over a menu's decisions and the efficiencies they give.

    ``names``: the seeds in menu order; ``anomaly[i]``: whether seed i is an anomaly seed
    (those do not count against another seed's unique efficiency). Sums from several
    batches or files add up with :meth:`merge`.
    """

    def __init__(self, names: Sequence[str], anomaly: Sequence[bool], signal: str = "signal") -> None:
        self.names = tuple(names)
        self.anomaly = np.asarray(anomaly, dtype=bool)
        if self.anomaly.shape != (len(self.names),):
            raise ConfigError(f"signal efficiency: {len(self.names)} seeds but {self.anomaly.shape[0]} "
                              f"anomaly flags")
        self.signal = signal
        k = len(self.names)
        self.events = 0
        self.sum_w = 0.0
        self.sum_w2 = 0.0
        self.kept = np.zeros(k)
        self.kept_sq = np.zeros(k)
        self.unique = np.zeros(k)
        self.unique_sq = np.zeros(k)
        self.any_anomaly_weight = 0.0
        self.any_anomaly_weight_sq = 0.0
        self.adds_weight = 0.0
        self.adds_weight_sq = 0.0

    @classmethod
    def for_menu(cls, menu: Menu, signal: str = "signal") -> SignalEfficiency:
        from darktrigger.daq.trigger.seeds import AnomalySeed

        return cls(menu.names, [isinstance(s, AnomalySeed) for s in menu.seeds], signal)

    def add(self, decision: Decision, weights: np.ndarray | None = None) -> SignalEfficiency:
        """Count one batch of signal events: their decision and weights (float ``[N]``,
        finite and >= 0; None: 1 each); returns self."""
        if decision.names != self.names:
            raise ConfigError(f"a decision for seeds {list(decision.names)} cannot be counted with "
                              f"seeds {list(self.names)}")
        n = len(decision)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (n,):
            raise ConfigError(f"signal efficiency: {n} decisions but weights of shape {w.shape}")
        if not (np.isfinite(w) & (w >= 0)).all():
            bad = int(np.flatnonzero(~(np.isfinite(w) & (w >= 0)))[0])
            raise ConfigError(f"signal efficiency: event weights must be finite and >= 0; event {bad} "
                              f"of the batch has weight {w[bad]!r}")
        shifts = np.arange(len(self.names), dtype=np.uint64)
        kept = ((decision.bits[:, None] >> shifts) & np.uint64(1)).astype(bool)  # [N, k]
        conventional = kept & ~self.anomaly
        n_conv = conventional.sum(axis=1)
        # kept by no *other* non-anomaly seed: a seed's own bit does not count against it
        alone = kept & ((n_conv[:, None] - conventional) == 0)
        w2 = w * w
        self.events += n
        self.sum_w += float(w.sum())
        self.sum_w2 += float(w2.sum())
        self.kept += w @ kept
        self.kept_sq += w2 @ kept
        self.unique += w @ alone
        self.unique_sq += w2 @ alone
        any_ad = kept[:, self.anomaly].any(axis=1)
        adds = any_ad & (n_conv == 0)
        self.any_anomaly_weight += float(w[any_ad].sum())
        self.any_anomaly_weight_sq += float(w2[any_ad].sum())
        self.adds_weight += float(w[adds].sum())
        self.adds_weight_sq += float(w2[adds].sum())
        return self

    def merge(self, other: SignalEfficiency) -> SignalEfficiency:
        """Add another counter's sums (same seeds); returns self."""
        if other.names != self.names or not np.array_equal(other.anomaly, self.anomaly):
            raise ConfigError(f"cannot merge the efficiencies of seeds {list(other.names)} into "
                              f"{list(self.names)}")
        self.events += other.events
        self.sum_w += other.sum_w
        self.sum_w2 += other.sum_w2
        for name in _PER_SEED:
            getattr(self, name)[:] += getattr(other, name)
        for name in _ANOMALY:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    # -- efficiencies ---------------------------------------------------------------
    @property
    def n_eff(self) -> float:
        """Effective number of signal events (Σw)²/Σw²."""
        return self.sum_w ** 2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    def _efficiency(self, s1: np.ndarray | float, s2: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        s1 = np.asarray(s1, dtype=np.float64)
        if self.sum_w <= 0:
            return np.zeros_like(s1), np.zeros_like(s1)
        return s1 / self.sum_w, fraction_uncertainty(s1, s2, self.sum_w, self.sum_w2)

    def efficiencies(self) -> tuple[np.ndarray, np.ndarray]:
        """Per seed, after prescale: (efficiency, its standard deviation), float ``[k]``."""
        return self._efficiency(self.kept, self.kept_sq)

    def unique_efficiencies(self) -> tuple[np.ndarray, np.ndarray]:
        """Per seed: (unique efficiency, ±): kept by it and by no other non-anomaly seed."""
        return self._efficiency(self.unique, self.unique_sq)

    def anomaly_efficiency(self) -> dict[str, float]:
        """The anomaly seeds together: ``efficiency`` (kept by any) and ``adds`` (kept by an
        anomaly seed and by no non-anomaly seed: what they add to the rest of the menu),
        each with its standard deviation ``efficiency_err``, ``adds_err``."""
        e, u = self._efficiency(np.array([self.any_anomaly_weight, self.adds_weight]),
                                np.array([self.any_anomaly_weight_sq, self.adds_weight_sq]))
        return {"efficiency": float(e[0]), "efficiency_err": float(u[0]),
                "adds": float(e[1]), "adds_err": float(u[1])}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready sums and the efficiencies they give."""
        eff, err = self.efficiencies()
        ueff, uerr = self.unique_efficiencies()
        seeds = [{"name": name, "anomaly": bool(self.anomaly[i]),
                  "efficiency": float(eff[i]), "efficiency_err": float(err[i]),
                  "unique_efficiency": float(ueff[i]), "unique_efficiency_err": float(uerr[i]),
                  **{key: float(getattr(self, key)[i]) for key in _PER_SEED}}
                 for i, name in enumerate(self.names)]
        return {"signal": self.signal, "events": self.events, "sum_weights": self.sum_w,
                "sum_weights_sq": self.sum_w2, "n_eff": self.n_eff, "seeds": seeds,
                "anomaly_seeds": {**self.anomaly_efficiency(),
                                  **{key: float(getattr(self, key)) for key in _ANOMALY}}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalEfficiency:
        """Rebuild from :meth:`to_dict`."""
        try:
            seeds = data["seeds"]
            out = cls([s["name"] for s in seeds], [s["anomaly"] for s in seeds], data["signal"])
            out.events = int(data["events"])
            out.sum_w, out.sum_w2 = float(data["sum_weights"]), float(data["sum_weights_sq"])
            for key in _PER_SEED:
                getattr(out, key)[:] = [s[key] for s in seeds]
            for key in _ANOMALY:
                setattr(out, key, float(data["anomaly_seeds"][key]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"signal efficiency: expected the fields SignalEfficiency.to_dict writes, "
                              f"got {type(exc).__name__}: {exc}") from None
        return out


def signal_efficiency(menu: Menu, paths: Path | str | Iterable[Path | str], *, signal: str | None = None,
                      scorers: Mapping[str, Scorer] | None = None, max_events: int | None = None,
                      chunk_size: int = 65536, threads: int = 1, on_error: str = "fail") -> SignalEfficiency:
    """A signal's efficiencies over ``menu``: every event of the file(s) scored by the
    menu's models (or ``scorers``), decided, and counted with its weight (validated: a NaN,
    negative or zero-sum weight is an :class:`~darktrigger.replay.errors.InputFormatError`
    naming the file and row). ``signal`` names it (default: the first file's stem)."""
    from darktrigger.daq.trigger.menu import add_scores, load_scorers
    from darktrigger.models.thresholds import checked_weights
    from darktrigger.replay.readers import open_events

    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not files:
        raise ConfigError("signal efficiency: no signal file given")
    if menu.uncalibrated:
        raise ConfigError(f"{menu.where}: seed(s) {', '.join(menu.uncalibrated)} have rate_khz but "
                          f"no threshold; run `darktrigger menu calibrate` first")
    run = dict(scorers) if scorers is not None else load_scorers(menu, threads=threads)
    out = SignalEfficiency.for_menu(menu, signal or files[0].stem)
    for path in files:
        here = SignalEfficiency.for_menu(menu, out.signal)
        row = 0
        for batch in open_events(path, chunk_size=chunk_size, on_error=on_error):
            if max_events is not None and out.events + here.events + len(batch) > max_events:
                batch = batch[: max_events - out.events - here.events]
            w = checked_weights(batch, path, first_row=row)
            row += len(batch)
            here.add(menu.decide(add_scores(batch, run)), weights=w)
            if max_events is not None and out.events + here.events >= max_events:
                break
        if here.events and not here.sum_w > 0:
            checked_weights(np.zeros(here.events), path, whole_file=True)
        out.merge(here)
        if max_events is not None and out.events >= max_events:
            break
    log.info("%s: %d signal events (n_eff %.1f) over %d seeds", out.signal, out.events, out.n_eff, len(menu))
    return out


def format_efficiency(results: Mapping[str, SignalEfficiency]) -> str:
    """A terminal table per signal: seed, efficiency ± err, unique efficiency ± err (in %),
    and a last line for the anomaly seeds together: their efficiency and what they add."""
    blocks = []
    for name, res in results.items():
        width = max([len("seed"), *map(len, res.names)]) + 2
        head = f"{'seed':<{width}}{'efficiency %':>14}{'± %':>9}{'unique %':>11}{'± %':>9}"
        eff, err = res.efficiencies()
        ueff, uerr = res.unique_efficiencies()
        weighted = "" if res.sum_w2 == res.sum_w == res.events else f", n_eff {res.n_eff:,.1f}"
        lines = [f"signal {name}: {res.events:,} events{weighted}", head, "-" * len(head)]
        for i, seed in enumerate(res.names):
            mark = " (anomaly)" if res.anomaly[i] else ""
            lines.append(f"{seed:<{width}}{100 * eff[i]:>14.3f}{100 * err[i]:>9.3f}"
                         f"{100 * ueff[i]:>11.3f}{100 * uerr[i]:>9.3f}{mark}")
        lines.append("-" * len(head))
        if res.anomaly.any():
            a = res.anomaly_efficiency()
            lines.append(f"anomaly seeds together: efficiency {100 * a['efficiency']:.3f} ± "
                         f"{100 * a['efficiency_err']:.3f} %; they add {100 * a['adds']:.3f} ± "
                         f"{100 * a['adds_err']:.3f} % to the rest of the menu (kept by no "
                         f"non-anomaly seed)")
        else:
            lines.append("no anomaly seeds in the menu")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


__all__ = ["SignalEfficiency", "format_efficiency", "signal_efficiency"]
