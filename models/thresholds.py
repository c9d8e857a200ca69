"""Trigger thresholds for target rates, calibrated on a background ("zero bias") sample.

A threshold for a target rate R at input rate R_in (the colliding-bunch crossing rate,
28.61 MHz by default) is the background quantile at FPR = R / R_in (REFERENCES.md). An
event is accepted when ``score > threshold``; the threshold is the lowest background
score with at most ``floor(FPR · n)`` background events — or that fraction of the
background weight, for weighted events (the ``weight`` column, relative) — strictly above
it, so ties never push the achieved rate above the target. A sample expanded by integer
weights (each event repeated w times) gives exactly the thresholds of the weighted one.
Scorers, ``darktrigger calibrate`` and the trigger menu all use these functions; they
need numpy only, and use ``np.partition`` (no full sort) for unweighted samples.

    >>> import numpy as np
    >>> from darktrigger.models.thresholds import threshold_for_rate
    >>> t = threshold_for_rate(np.arange(1000.0), rate_khz=400, input_rate_mhz=40)
    >>> t.fpr, t.threshold, t.n_above, t.resolved
    (0.01, 989.0, 10, True)
    >>> w = np.where(np.arange(1000) % 2 == 0, 2.0, 1.0)   # weighted: 2 % of the weight above it
    >>> threshold_for_rate(np.arange(1000.0), rate_khz=800, input_rate_mhz=40, weights=w).threshold
    979.0
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.lhc import COLLIDING_BX_RATE_MHZ

log = logging.getLogger(__name__)

#: the input (crossing) rate thresholds are for by default, MHz: the colliding bunches
DEFAULT_INPUT_RATE_MHZ = COLLIDING_BX_RATE_MHZ
#: A threshold (and the FPR it stands for) is ``resolved`` when at least this many
#: effective background events lie above it: the tail's n_eff = (Σw)²/Σw² over the events
#: above the threshold (their count, unweighted) ≥ 10, a ≈ 30 % statistical error on the
#: FPR. For a weighted zero-bias sample the tail's n_eff, not the whole sample's, is what
#: counts: a high threshold's tail is made of many low-weight hard-scatter events.
#: ``evaluate`` (models/metrics.py) and ``calibrate`` use this one rule through
#: :func:`resolves`, :func:`tail_size` and :func:`smallest_resolved_fpr`.
MIN_EXPECTED_BKG = 10.0
# FPR · Σw is rounded down (to a count, unweighted); this relative slack keeps float error
# (0.29 * 100 = 28.999999999999996) from dropping a whole event.
_RELATIVE_SLACK = 1e-12


def as_scores(values: Any, name: str) -> np.ndarray:
    """A 1-D array of finite scores, or a ConfigError naming ``name``; floats keep their dtype.

    >>> as_scores([0.5, 2], "bkg_scores")
    array([0.5, 2. ])
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D array of scores, got shape {arr.shape}")
    if arr.size == 0:
        raise ConfigError(f"{name}: expected at least one score, got an empty array")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise ConfigError(f"{name}: expected numbers, got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ConfigError(
            f"{name}: expected finite scores, got {bad.size} NaN/inf value(s) "
            f"(first at index {bad[0]}: {arr[bad[0]]})"
        )
    return arr


def checked_weights(events: Any, path: Any, first_row: int = 0, *, whole_file: bool = False) -> np.ndarray:
    """The ``weight`` column of a batch read from ``path`` (or an array of weights) as
    float64, checked: a NaN, infinite or negative weight is an
    :class:`~darktrigger.replay.errors.InputFormatError` naming the file and the first bad
    row (``first_row`` + its index). With ``whole_file``, ``events`` holds every weight of
    the file and a sum that is not positive is an error too.

    >>> checked_weights(np.array([1.0, 2.0]), "zb.h5")
    array([1., 2.])
    >>> checked_weights(np.array([1.0, -2.0]), "zb.h5", first_row=4096)
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.InputFormatError: zb.h5, row 4097: expected a finite event weight >= 0 (column 'weight'), got -2.0
    """
    values = events.columns["weight"] if hasattr(events, "columns") else events
    w = np.asarray(values, dtype=np.float64)
    good = np.isfinite(w) & (w >= 0)
    if not good.all():
        bad = int(np.flatnonzero(~good)[0])
        raise InputFormatError(str(path), f"row {first_row + bad}",
                               "a finite event weight >= 0 (column 'weight')", repr(float(w[bad])))
    if whole_file:
        check_weight_sum(float(w.sum()), len(w), path)
    return w


def check_weight_sum(total: float, n: int, path: Any) -> None:
    """A file's weights must sum to more than 0 (else no rate or fraction can be formed)."""
    if n and not total > 0:
        raise InputFormatError(str(path), "", f"event weights with a positive sum (column 'weight', "
                               f"{n:,} events)", f"a sum of {total!r}")


def not_zero_bias(path: Any) -> str | None:
    """Why the events in ``path`` are not a zero-bias sample (None when its provenance says
    process ``zero_bias``), for the one-line warning of the calibrate commands: anomaly
    thresholds for trigger rates must come from what the trigger sees, every colliding
    crossing. Read from the file's provenance (native files) or its format (ADC2021 files
    are lepton-filtered).

    >>> from darktrigger.replay.generators import GENERATORS
    >>> from darktrigger.replay.storage import write_events
    >>> gen = GENERATORS.get("toy")()
    >>> _ = write_events("qcd.h5", gen.generate("qcd", 10, seed=1), provenance=gen.provenance("qcd", 1))
    >>> not_zero_bias("qcd.h5")
    "its provenance says a single process, 'qcd' (toy generator), not zero_bias"
    """
    from darktrigger.replay.readers import open_events

    reader = open_events(path)
    if reader.name == "adc2021":
        return ("an ADC2021 file: lepton-filtered (an electron or muon with pT > 23 GeV in every "
                "event), not zero bias")
    provenance = reader.metadata().get("provenance") or {}
    process = provenance.get("process")
    if process == "zero_bias":
        return None
    source = f" ({provenance['generator']} generator)" if provenance.get("generator") else ""
    filtered = "lepton-filtered " if provenance.get("lepton_filter") else ""
    if process == "sm_mix":
        mix = ("in ADC2021's lepton-filtered proportions" if provenance.get("sm_mix_fractions")
               or provenance.get("lepton_filter") else "by cross section")
        return (f"its provenance says process 'sm_mix'{source}: {filtered}hard processes (W, QCD, Z, "
                f"ttbar {mix}; no minimum bias), not zero_bias")
    if process:
        return f"its provenance says a single {filtered}process, {process!r}{source}, not zero_bias"
    return f"a {reader.name} file whose provenance names no process, so nothing says it is zero bias"


def warn_if_not_zero_bias(path: Any) -> str | None:
    """Log one warning line when ``path`` is not a zero-bias sample (:func:`not_zero_bias`),
    as the calibrate commands do before calibrating on it; returns the reason."""
    reason = not_zero_bias(path)
    if reason:
        log.warning("%s is not a zero-bias sample: %s; thresholds calibrated on it do not give the "
                    "trigger rates asked for", path, reason)
    return reason


def as_weights(weights: Any, n: int, name: str) -> np.ndarray | None:
    """None, or a float64 array of ``n`` finite, non-negative weights with a positive sum."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ConfigError(f"{name}: expected shape ({n},) like its scores, got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError(f"{name}: expected finite, non-negative weights")
    if w.sum() <= 0:
        raise ConfigError(f"{name}: expected weights with a positive sum, got {w.sum()}")
    return w


def effective_size(n: int, weights: np.ndarray | None) -> float:
    """Kish's effective sample size (Σw)²/Σw²; ``n`` when unweighted."""
    if weights is None:
        return float(n)
    return float(weights.sum() ** 2 / np.square(weights).sum())


def fraction_uncertainty(fired_w: Any, fired_w2: Any, total_w: float, total_w2: float) -> np.ndarray:
    """The standard deviation of a weighted fraction p̂ = Σw(selected)/Σw:
    sqrt(Σ wᵢ²(xᵢ − p̂)²)/Σw, from the four sums, as
    Σ wᵢ²(xᵢ − p̂)² = Σw²(selected)(1 − 2p̂) + p̂²Σw²(all). For unit weights it is the
    binomial sqrt(p̂(1 − p̂)/n). Where nothing was selected it is 1/n_eff = Σw²/(Σw)², the
    fraction one effective event would give, rather than zero.

        >>> fraction_uncertainty(1.0, 1.0, 4.0, 4.0).round(4).tolist()    # sqrt(.25 · .75 / 4)
        0.2165
        >>> fraction_uncertainty(0.0, 0.0, 4.0, 4.0).tolist()
        0.25
    """
    s1 = np.asarray(fired_w, dtype=np.float64)
    s2 = np.asarray(fired_w2, dtype=np.float64)
    if not (total_w > 0 and total_w2 > 0):
        return np.zeros_like(s1)
    p = s1 / total_w
    var = (s2 * (1 - 2 * p) + p * p * total_w2) / (total_w * total_w)
    return np.where(s1 > 0, np.sqrt(np.clip(var, 0.0, None)), total_w2 / (total_w * total_w))


def tail_size(scores: np.ndarray, weights: np.ndarray | None, threshold: float) -> float:
    """The effective number of events strictly above ``threshold``: (Σw)²/Σw² over them
    (their count when unweighted).

    >>> tail_size(np.arange(10.0), None, 6.5), tail_size(np.arange(4.0), np.array([1, 1, 2, 2.0]), 1.0)
    (3.0, 2.0)
    """
    above = scores > threshold
    if weights is None:
        return float(np.count_nonzero(above))
    w = weights[above]
    w2 = float(w @ w)
    return float(w.sum()) ** 2 / w2 if w2 > 0 else 0.0


def resolves(tail_n_eff: float, min_expected: float = MIN_EXPECTED_BKG) -> bool:
    """Whether a threshold with ``tail_n_eff`` effective background events above it is
    resolved (:data:`MIN_EXPECTED_BKG`).

    >>> resolves(10.0), resolves(9.99)
    (True, False)
    """
    return tail_n_eff >= min_expected * (1 - 1e-9)


def smallest_resolved_fpr(scores: np.ndarray, weights: np.ndarray | None = None,
                          min_expected: float = MIN_EXPECTED_BKG) -> float:
    """The smallest FPR this background sample resolves: the weight fraction of the
    smallest top tail (all events at or above one score) with ``min_expected`` effective
    events; 1 if even the whole sample has fewer.

    >>> f"{smallest_resolved_fpr(np.arange(300_000.0)):.1e}"
    '3.3e-05'
    """
    n = scores.size
    if weights is None:
        k = math.ceil(min_expected * (1 - 1e-9))
        if k > n:
            return 1.0
        kth = np.partition(scores, n - k)[n - k]  # the k-th highest score; ties join the tail
        return float(np.count_nonzero(scores >= kth)) / n
    uniq, inv = np.unique(scores, return_inverse=True)
    w1 = np.bincount(inv, weights=weights, minlength=uniq.size)[::-1].cumsum()
    w2 = np.bincount(inv, weights=weights * weights, minlength=uniq.size)[::-1].cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        neff = np.where(w2 > 0, w1 * w1 / w2, 0.0)
    ok = np.flatnonzero(neff >= min_expected * (1 - 1e-9))
    return float(w1[ok[0]] / w1[-1]) if ok.size else 1.0


def _allowed_count(fpr: float, n: int) -> int:
    return min(n - 1, math.floor(fpr * n * (1 + _RELATIVE_SLACK)))


def background_quantiles(
    scores: np.ndarray, fprs: Sequence[float], weights: np.ndarray | None = None
) -> np.ndarray:
    """For each FPR, the lowest score with at most that fraction of background above it.

    ``scores`` (and ``weights``) must already be checked (:func:`as_scores`). Unweighted:
    the ``(n - k)``-th smallest score, ``k = floor(fpr · n)``, by one ``np.partition``.

    >>> background_quantiles(np.array([1.0, 2, 2, 3]), [0.25, 0.5])
    array([2., 2.])
    """
    if weights is None:
        n = scores.size
        idx = np.array([n - 1 - _allowed_count(f, n) for f in fprs], dtype=np.intp)
        part = np.partition(scores, np.unique(idx))
        return np.asarray(part[idx], dtype=np.float64)
    uniq, inv = np.unique(scores, return_inverse=True)
    w_uniq = np.bincount(inv, weights=weights, minlength=uniq.size)
    # above[j] = weight strictly above uniq[j], summed from the top so above[-1] == 0 exactly
    above = np.append(np.cumsum(w_uniq[::-1])[::-1][1:], 0.0)
    total = above[0] + w_uniq[0]
    limits = -np.asarray(fprs, dtype=np.float64) * total * (1 + _RELATIVE_SLACK)
    return np.asarray(uniq[np.searchsorted(-above, limits, side="left")], dtype=np.float64)


def fraction_above(threshold: float, scores: np.ndarray, weights: np.ndarray | None) -> tuple[float, int]:
    """(weighted fraction, count) of ``scores`` strictly above ``threshold``."""
    above = scores > threshold
    count = int(np.count_nonzero(above))
    if weights is None:
        return count / scores.size, count
    return float(weights[above].sum() / weights.sum()), count


@dataclass(frozen=True)
class Threshold:
    """One calibrated anomaly threshold: accept when ``score > threshold``.

    ``threshold_low``/``threshold_high`` are the background quantiles at FPR ± σ,
    σ = sqrt(FPR(1 − FPR)/n) (weighted: :func:`fraction_uncertainty` with the weights
    above the threshold): the spread of thresholds that another background sample of the
    same size would give (the order-statistic interval), so ``uncertainty`` = half that
    width is the threshold's error from the sample size. ``n_eff`` is the sample's
    effective size, ``n_eff_above`` the tail's (which decides ``resolved``).

    >>> t = Threshold.from_dict(threshold_for_rate(np.arange(100.0), 4000).to_dict())
    >>> t.threshold, t.rate_hz, t.n_above       # 4 MHz / 28.61 MHz = 14.0 %: 13 of 100 above
    (86.0, 4000000.0, 13)
    """

    rate_khz: float
    input_rate_mhz: float
    fpr: float
    threshold: float
    threshold_low: float
    threshold_high: float
    n_bkg: int
    n_above: int
    achieved_fpr: float
    n_eff: float
    n_eff_above: float
    resolved: bool
    message: str = ""

    @property
    def uncertainty(self) -> float:
        """Half the width of the ±1σ threshold interval, in score units."""
        return 0.5 * (self.threshold_high - self.threshold_low)

    @property
    def rate_hz(self) -> float:
        """The target rate in Hz."""
        return self.rate_khz * 1e3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (plus the derived ``uncertainty``), for a model card."""
        return dataclasses.asdict(self) | {"uncertainty": self.uncertainty}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Threshold:
        """Rebuild from :meth:`to_dict`'s output; a ConfigError names missing or unknown keys."""
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.name != "message"]
        missing = [k for k in required if k not in data]
        unknown = sorted(set(data) - set(names) - {"uncertainty"})
        if missing or unknown:
            raise ConfigError(
                f"threshold record: missing key(s) {missing or 'none'}, "
                f"unknown key(s) {unknown or 'none'}; expected {names}"
            )
        return cls(**{k: data[k] for k in names if k in data})


def _check_rate(rate_khz: float, input_rate_mhz: float) -> float:
    if not math.isfinite(input_rate_mhz) or input_rate_mhz <= 0:
        raise ConfigError(f"input_rate_mhz: expected a positive rate in MHz, got {input_rate_mhz}")
    fpr = float(rate_khz) * 1e3 / (float(input_rate_mhz) * 1e6)
    if not math.isfinite(fpr) or not 0 < fpr < 1:
        raise ConfigError(
            f"rate_khz: expected a rate above 0 and below the input rate "
            f"({input_rate_mhz * 1e3:g} kHz), got {rate_khz}"
        )
    return fpr


def thresholds_for_rates(
    bkg_scores: Any,
    rates_khz: Sequence[float],
    input_rate_mhz: float = DEFAULT_INPUT_RATE_MHZ,
    weights: Any = None,
    min_expected: float = MIN_EXPECTED_BKG,
    warn: bool = True,
) -> list[Threshold]:
    """Thresholds for several target rates (kHz) at once: one partition for all of them.

    ``weights`` (one per score, relative): the threshold is the weighted quantile. With
    ``warn``, one warning names every unresolved rate (a caller that reports them itself,
    as ``darktrigger calibrate`` does once for all its models, passes False).

    >>> [t.threshold for t in thresholds_for_rates(np.arange(1000.0), [40, 400], 40.0)]
    [998.0, 989.0]
    """
    if isinstance(rates_khz, str | bytes) or len(rates_khz) == 0:
        raise ConfigError(f"rates_khz: expected a non-empty list of rates in kHz, got {rates_khz!r}")
    fprs = [_check_rate(r, input_rate_mhz) for r in rates_khz]
    scores = as_scores(bkg_scores, "bkg_scores")
    w = as_weights(weights, scores.size, "weights")
    n_eff = effective_size(scores.size, w)
    central = background_quantiles(scores, fprs, w)
    if w is None:
        sigmas = [math.sqrt(f * (1 - f) / n_eff) for f in fprs]
    else:
        total, total2 = float(w.sum()), float(w @ w)
        sigmas = [float(fraction_uncertainty(f * total, float(np.square(w[scores > q]).sum()), total, total2))
                  for f, q in zip(fprs, central, strict=True)]
    spread = background_quantiles(
        scores, [*(min(f + s, 1 - 1e-12) for f, s in zip(fprs, sigmas, strict=True)),
                 *(max(f - s, 0.0) for f, s in zip(fprs, sigmas, strict=True))], w)
    k = len(fprs)
    out = []
    unresolved = []
    lowest: float | None = None
    for i, (rate, fpr) in enumerate(zip(rates_khz, fprs, strict=True)):
        thr = float(central[i])
        achieved, n_above = fraction_above(thr, scores, w)
        tail = tail_size(scores, w, thr)
        resolved = resolves(tail, min_expected)
        message = ""
        if not resolved:
            if lowest is None:
                lowest = smallest_resolved_fpr(scores, w, min_expected)
            message = (
                f"background sample too small: {scores.size:,} events"
                + ("" if w is None else f" (effective {n_eff:,.0f})")
                + f" resolve FPR down to {lowest:.1e}, i.e. "
                f"{lowest * input_rate_mhz * 1e3:.3g} kHz at {input_rate_mhz:.4g} MHz; "
                f"{rate:g} kHz needs FPR {fpr:.1e}, and {tail:.3g} "
                + ("" if w is None else "effective ")
                + f"background events lie above the threshold (>= {min_expected:g} needed), "
                f"so it is not reliable"
                + (" (it is the highest background score)" if n_above == 0 else "")
            )
            unresolved.append(f"{rate:g}")
        out.append(Threshold(
            rate_khz=float(rate), input_rate_mhz=float(input_rate_mhz), fpr=fpr, threshold=thr,
            threshold_low=float(spread[i]), threshold_high=float(spread[k + i]),
            n_bkg=int(scores.size), n_above=n_above, achieved_fpr=achieved, n_eff=n_eff,
            n_eff_above=tail, resolved=bool(resolved), message=message,
        ))
    if unresolved and warn:  # one warning for all the rates, not one per rate
        log.warning("%d of %d threshold(s) not resolved by %s background events (rates %s kHz); "
                    "the smallest rate resolved at %.4g MHz is %.3g kHz", len(unresolved), len(out),
                    f"{scores.size:,}", ", ".join(unresolved), input_rate_mhz,
                    (lowest or 1.0) * input_rate_mhz * 1e3)
    return out


def threshold_for_rate(
    bkg_scores: Any,
    rate_khz: float,
    input_rate_mhz: float = DEFAULT_INPUT_RATE_MHZ,
    weights: Any = None,
    min_expected: float = MIN_EXPECTED_BKG,
) -> Threshold:
    """The threshold giving ``rate_khz`` at ``input_rate_mhz`` on this background sample.

    >>> t = threshold_for_rate(np.arange(1000.0), rate_khz=1)  # FPR 1 kHz / 28.61 MHz: 0.035 events
    >>> t.resolved, t.threshold
    (False, 999.0)
    """
    return thresholds_for_rates(bkg_scores, [rate_khz], input_rate_mhz, weights, min_expected)[0]


def rate_of(
    threshold: float | Threshold,
    bkg_scores: Any,
    input_rate_mhz: float | None = None,
    weights: Any = None,
) -> tuple[float, float]:
    """(rate, uncertainty) in Hz of ``score > threshold`` on this background sample.

    The uncertainty is binomial, R_in · sqrt(p(1 − p)/n), for weighted events
    R_in · :func:`fraction_uncertainty`; with no event above the threshold it is the rate
    one effective event would give, R_in/n_eff, rather than zero. ``input_rate_mhz``
    defaults to the Threshold's own, else the colliding-bunch rate (28.61 MHz).

    >>> [round(x) for x in rate_of(989.0, np.arange(1000.0), 40.0)]
    [400000, 125857]
    """
    if isinstance(threshold, Threshold):
        input_rate_mhz = threshold.input_rate_mhz if input_rate_mhz is None else input_rate_mhz
        threshold = threshold.threshold
    input_rate_mhz = DEFAULT_INPUT_RATE_MHZ if input_rate_mhz is None else float(input_rate_mhz)
    if not math.isfinite(input_rate_mhz) or input_rate_mhz <= 0:
        raise ConfigError(f"input_rate_mhz: expected a positive rate in MHz, got {input_rate_mhz}")
    if not math.isfinite(float(threshold)):
        raise ConfigError(f"threshold: expected a finite score, got {threshold}")
    scores = as_scores(bkg_scores, "bkg_scores")
    w = as_weights(weights, scores.size, "weights")
    n_eff = effective_size(scores.size, w)
    p, count = fraction_above(float(threshold), scores, w)
    if w is None:
        sigma = math.sqrt(p * (1 - p) / n_eff) if count else 1.0 / n_eff
    else:
        above = scores > float(threshold)
        sigma = float(fraction_uncertainty(w[above].sum(), np.square(w[above]).sum(), w.sum(), w @ w))
    r_in = input_rate_mhz * 1e6
    return p * r_in, sigma * r_in
