"""The look-elsewhere effect of a CWoLa hunt: global significances from null toys.

A hunt tests every window at every efficiency (ε = 1 included), and reports the largest
local significance: with ``N = windows × efficiencies`` looks, a background-only sample
gives a large local Z somewhere by chance. The *global* p-value of a local Z is the
probability, under the background-only hypothesis, that the largest local Z of the whole
hunt is at least that large. It is measured here with **null toys**, pseudo-experiments
of the hunt under the background-only hypothesis:

1. the dijet function is fitted to the unselected m_jj spectrum of the whole fit range,
   signal regions included (the background-only fit, :func:`background_model`);
2. a toy draws Poisson(n) events from it, n the events observed in the fit range; in
   each window a random fraction ε of the window's events is kept, nested across the
   efficiencies (a classifier that knows nothing of m_jj, as under the null it cannot),
   independently from window to window;
3. every window × efficiency of the toy is fitted and tested exactly as the data are
   (:func:`local_significance`), and the toy's largest local Z is kept.

The global p-value of a local Z is ``(k + 1) / (T + 1)``, k of T toys having a largest
local Z at least as large (the Monte Carlo p-value, which never reports 0); when no toy
reaches it (k = 0), the global Z is a lower bound (shown as ``≥``): more toys resolve
it. ``Z = Φ⁻¹(1 − p)`` one-sided, and 0 for p ≥ 0.5 (no excess).

Why toys and not a trials factor: the trials factor ``p_global = 1 − (1 − p_local)^N``
treats the N looks as independent and the local p-values as exact. Overlapping windows
and nested efficiencies make the looks correlated (fewer effective trials), but the
local p-values are not exact either: at ε = 0.01–0.002 a window holds a few events per
bin, where the four-parameter fit follows the sidebands' fluctuations and its covariance
understates the prediction's error, so the local Z of background alone spreads wider
than a unit Gaussian, and the trials factor would turn such a background fluctuation
into global evidence; the toys repeat the fits, so they carry it. The toys keep two
assumptions, stated here because they are the method's limits: the classifier's
selection is independent of m_jj under the null (a feature correlated with m_jj would
sculpt the spectrum, which no m_jj-only toy reproduces), and the windows' selections
are independent of each other (which, if anything, overstates the trials). With
``null_toys=0`` the trials factor is used instead, and says so.

    >>> null = NullToys(max_z=np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]), trials=28)
    >>> null.p_global(2.2), round(null.z_global(2.2)[0], 3)        # 5 of 9 toys reach 2.2
    (0.6, 0.0)
    >>> z, bound = null.z_global(5.0)                               # no toy does: a bound
    >>> round(z, 4), bound                                          # p = 1 / 10
    (1.2816, True)
    >>> round(sidak_z_global(2.93, trials=28), 2)                    # the trials factor
    1.68
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np

from darktrigger.models.cwola.config import HuntConfig
from darktrigger.models.cwola.dijet_fit import DijetFit, FitError, fit_dijet, significance


class Window(Protocol):
    """What a test needs of a hunt's window (:class:`darktrigger.models.cwola.hunt.Window`)."""

    @property
    def edges(self) -> tuple[float, ...]: ...

    @property
    def sr(self) -> tuple[int, int]: ...

    @property
    def signal_region(self) -> tuple[float, float]: ...

    @property
    def label(self) -> str: ...

_NORMAL = NormalDist()
TOY_METHOD = "null toys"
SIDAK_METHOD = "trials factor"
_SAMPLING_POINTS = 8192  #: grid of the background model's inverse CDF (toy m_jj)


def p_local(z: float) -> float:
    """One-sided p-value of a local significance ``z`` (the chance of ≥ z from background)."""
    return _NORMAL.cdf(-z)


def z_of_p(p: float) -> float:
    """One-sided significance of a p-value: Φ⁻¹(1 − p), 0 for p ≥ 0.5 (no excess)."""
    if p >= 0.5:
        return 0.0
    return -_NORMAL.inv_cdf(max(p, 1e-300))


def sidak_z_global(z_local: float, trials: int) -> float:
    """Global Z of ``z_local`` by the trials factor: p = 1 − (1 − p_local)^trials."""
    p = -math.expm1(trials * math.log1p(-p_local(z_local)))
    return z_of_p(p)


@dataclass
class NullToys:
    """The largest local Z of each null toy, ``max_z`` ``[T]`` (−inf: no fit converged in
    that toy), over ``trials`` = windows × efficiencies looks."""

    max_z: np.ndarray
    trials: int
    failed_fits: int = 0

    def p_global(self, z: float) -> float:
        """(k + 1) / (T + 1): k of the T toys have a largest local Z ≥ ``z``."""
        k = int(np.sum(self.max_z >= z))
        return (k + 1) / (len(self.max_z) + 1)

    def z_global(self, z: float) -> tuple[float, bool]:
        """(global Z, lower bound?) of a local Z; a bound when no toy reaches ``z``."""
        return z_of_p(self.p_global(z)), bool(z > 0 and not np.any(self.max_z >= z))

    def local_z_for(self, z_global: float) -> float:
        """The local Z whose global significance is ``z_global`` (a quantile of ``max_z``)."""
        return float(np.quantile(self.max_z, 1.0 - p_local(z_global)))

    def to_dict(self) -> dict[str, Any]:
        finite = self.max_z[np.isfinite(self.max_z)]
        return {"method": TOY_METHOD, "toys": len(self.max_z), "trials": self.trials,
                "failed_toy_fits": self.failed_fits,
                "max_local_z_median": float(np.median(finite)) if finite.size else None,
                "local_z_for_global_2sigma": self.local_z_for(2.0) if finite.size else None}


def local_significance(counts: np.ndarray, window: Window, cfg: HuntConfig,
                       where: str) -> tuple[DijetFit, float, float, float]:
    """The test of one window at one efficiency, as the hunt and the toys run it: the
    dijet fit of ``counts`` (the window's bins) outside the signal region; (fit, b, σ_b,
    local Z) of what the signal region holds. A :class:`FitError` naming ``where``."""
    edges = np.asarray(window.edges)
    fit = fit_dijet(counts, edges, exclude=window.signal_region, sqrt_s=cfg.sqrt_s, where=where)
    b, db = fit.predict(window.signal_region)
    if not (b > 0 and math.isfinite(b) and math.isfinite(db)):
        raise FitError(f"{where}: the fit predicts {b:g} ± {db:g} events in the signal region; "
                       "need a positive, finite background")
    observed = int(counts[window.sr[0]:window.sr[1]].sum())
    return fit, b, db, significance(observed, b, db)


def background_model(mjj: np.ndarray, fit_range: tuple[float, float], cfg: HuntConfig) -> DijetFit:
    """The background-only fit: the dijet function fitted to all of ``mjj`` in the fit
    range (bins of the hunt's width, no window left out). A FitError when it fails."""
    lo, hi = fit_range
    n_bins = max(int(math.floor(math.log(hi / lo) / cfg.bin_width)), 1)
    edges = np.geomspace(lo, hi, n_bins + 1)
    counts, _ = np.histogram(mjj, edges)
    return fit_dijet(counts, edges, sqrt_s=cfg.sqrt_s, where="the background-only fit of the null toys")


def sample_mjj(model: DijetFit, n: int, fit_range: tuple[float, float],
               rng: np.random.Generator) -> np.ndarray:
    """``n`` m_jj values (GeV) drawn from the fitted spectrum over the fit range."""
    grid = np.geomspace(*fit_range, _SAMPLING_POINTS)
    dens = model.density(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    return np.asarray(np.interp(rng.random(n), cdf / cdf[-1], grid))


def run_null_toys(windows: Sequence[Window], mjj: np.ndarray, fit_range: tuple[float, float],
                  cfg: HuntConfig, n_toys: int, *, progress: Any = None) -> NullToys:
    """``n_toys`` pseudo-experiments of the hunt's windows × efficiencies (module docs).

    ``mjj``: the observed events' m_jj in the fit range (the background model is fitted
    to them); ``progress``: something with ``update(n)``, told once a toy.
    """
    model = background_model(mjj, fit_range, cfg)
    rng = np.random.default_rng([cfg.seed, 0x6E756C6C])  # "null"
    effs = (1.0, *cfg.efficiencies)
    max_z = np.full(n_toys, -np.inf)
    failed = 0
    for t in range(n_toys):
        toy = sample_mjj(model, int(rng.poisson(len(mjj))), fit_range, rng)
        for w in windows:
            edges = np.asarray(w.edges)
            inside = toy[(toy >= edges[0]) & (toy < edges[-1])]
            order = inside[rng.permutation(len(inside))]  # kept first: nested in ε
            for eff in effs:
                counts, _ = np.histogram(order[: int(round(eff * len(order)))], edges)
                try:
                    z = local_significance(counts, w, cfg, f"null toy {t}, {w.label}")[3]
                except FitError:
                    failed += 1
                    continue
                max_z[t] = max(max_z[t], z)
        if progress is not None:
            progress.update(1)
    return NullToys(max_z=max_z, trials=len(windows) * len(effs), failed_fits=failed)
