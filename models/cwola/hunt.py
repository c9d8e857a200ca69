"""The CWoLa hunt: a weakly supervised bump hunt in m_jj (arXiv 1805.02664, 1902.02634).

For each signal-region window in m_jj (label 1) with a sideband on each side (label
0), a classifier of features not correlated with m_jj (``cwola_columns``: jet masses,
τ21) is trained by k-fold so that every event is scored by a model that never saw it;
for each efficiency ε the most signal-like fraction ε is kept, the m_jj spectrum of the
kept events is fitted outside the window with the dijet function
(:mod:`darktrigger.models.cwola.dijet_fit`), and the background predicted inside gives the local
significance. ε = 1 (no cut) is always there too: the plain bump hunt. Beside each local
significance stands the global one, the look-elsewhere effect over all windows and
efficiencies measured with null toys (:mod:`darktrigger.models.cwola.global_significance`).

    >>> import numpy as np
    >>> from darktrigger.replay.events import EventBatch
    >>> from darktrigger.replay.generators import GENERATORS
    >>> toy = GENERATORS.get("toy")()
    >>> bkg = next(toy.generate("qcd_dijet", 20_000, seed=1, batch_size=20_000))
    >>> sig = next(toy.generate("wprime_xy", 100, seed=2))
    >>> cfg = HuntConfig(windows=[(3216.0, 3737.0)], efficiencies=(0.1,), folds=3,
    ...                  inner_folds=1, epochs=2, min_sideband_events=100, null_toys=20)
    >>> result = run_hunt(EventBatch.concat([bkg, sig]), cfg)
    >>> [(c.efficiency, c.significance is not None) for c in result.windows[0].cuts]
    [(1.0, True), (0.1, True)]
    >>> cut = result.windows[0].cuts[1]
    >>> cut.significance_global is not None, result.look_elsewhere["method"], result.look_elsewhere["toys"]
    (True, 'null toys', 20)

Folds (``folds`` = k): the events of the fit range are split into k folds, seeded
and stratified by region (signal region, sidebands, the rest). For test fold f, the
labelled (signal-region and sideband) events of the other k − 1 folds train
``inner_folds`` models, each validated on a different one of those folds (early
stopping picks its epoch), of which the ``keep`` with the lowest validation loss are
averaged (nested folds for model selection). That average scores fold f — its window
events and the rest of the fit range — and the threshold for ε is the (1 − ε)
quantile of those scores, so each fold keeps the fraction ε with its own model.

Windows (``windows="auto"``): m_jj is binned in equal steps of ln m_jj, of width
``resolution``/2 (``resolution`` is the relative m_jj resolution, 5 % by default);
a signal region is ``sr_bins`` bins (±1.5 σ), each sideband ``sideband_bins`` bins,
and the window slides by ``step_bins``. Windows whose sidebands would leave the fit
range, or hold fewer than ``min_sideband_events``, are not made. Explicit windows are
``(low, high)`` signal regions in GeV, binned in the same way around their edges.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from darktrigger.models.cwola.columns import ColumnCWoLaScorer, read_columns
from darktrigger.models.cwola.config import HuntConfig, HuntError
from darktrigger.models.cwola.dijet_fit import (
    DijetFit,
    FitError,
    poisson_significance,
    significance_spread,
)
from darktrigger.models.cwola.global_significance import (
    SIDAK_METHOD,
    NullToys,
    local_significance,
    p_local,
    run_null_toys,
    sidak_z_global,
)
from darktrigger.replay.errors import ConfigError, SchemaError
from darktrigger.replay.events import LABEL_NAMES, EventBatch

log = logging.getLogger(__name__)

NO_CUT = 1.0
TURN_ON_BINS = 4  #: bins between the spectrum's peak and the auto fit range


# -- windows ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """A signal region with its sidebands, and the m_jj bins of its fit (GeV).

    ``edges`` ``[B+1]`` cover the fit range; the signal region is bins
    ``sr[0]:sr[1]``, the sidebands ``sb_low[0]:sr[0]`` and ``sr[1]:sb_high[1]``.
    """

    index: int
    edges: tuple[float, ...]
    sr: tuple[int, int]
    sb_low: int
    sb_high: int

    @property
    def signal_region(self) -> tuple[float, float]:
        return self.edges[self.sr[0]], self.edges[self.sr[1]]

    @property
    def low_sideband(self) -> tuple[float, float]:
        return self.edges[self.sb_low], self.edges[self.sr[0]]

    @property
    def high_sideband(self) -> tuple[float, float]:
        return self.edges[self.sr[1]], self.edges[self.sb_high]

    @property
    def label(self) -> str:
        lo, hi = self.signal_region
        return f"window {self.index} (signal region {lo:.0f}–{hi:.0f} GeV)"

    def regions(self, mjj: np.ndarray) -> np.ndarray:
        """int8 ``[N]``: 1 in the signal region, 0 in a sideband, −1 elsewhere."""
        lo, hi = self.signal_region
        out = np.full(len(mjj), -1, np.int8)
        out[(mjj >= self.low_sideband[0]) & (mjj < self.high_sideband[1])] = 0
        out[(mjj >= lo) & (mjj < hi)] = 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "signal_region": list(self.signal_region),
                "low_sideband": list(self.low_sideband), "high_sideband": list(self.high_sideband),
                "fit_range": [self.edges[0], self.edges[-1]], "bins": len(self.edges) - 1}


def auto_fit_range(mjj: np.ndarray, cfg: HuntConfig) -> tuple[float, float]:
    """(low, high) GeV: from four bins (≈ 2 resolutions) above the spectrum's turn-on
    (its most populated ln-m_jj bin) to where about 20 events are left above.

    Near the turn-on of a trigger or p̂T threshold the jets' make-up changes with m_jj
    (only central, high-pT pairs pass just above it), which a classifier of jet masses
    can learn and the selected spectrum then shows as a bump: keep windows away from it.
    """
    if len(mjj) < 100:
        raise HuntError(f"cwola hunt: {len(mjj)} events with {cfg.mass_column} > 0; need at least "
                        "100 to find the fit range (or give fit_range)")
    m = np.sort(mjj[mjj > 0])
    step = cfg.bin_width
    lo_grid = np.exp(np.arange(math.log(m[0]), math.log(m[-1]) + step, step))
    counts, _ = np.histogram(m, lo_grid)
    low = float(lo_grid[min(int(np.argmax(counts)) + 1 + TURN_ON_BINS, len(lo_grid) - 1)])
    high = float(m[max(len(m) - 20, 0)])
    return low, min(high, 0.95 * cfg.sqrt_s)


def auto_windows(mjj: np.ndarray, fit_range: tuple[float, float], cfg: HuntConfig) -> list[Window]:
    """Sliding windows on one ln-m_jj grid over the fit range (module docs)."""
    lo, hi = fit_range
    n_bins = int(math.floor(math.log(hi / lo) / cfg.bin_width))
    edges = tuple(float(lo * math.exp(i * cfg.bin_width)) for i in range(n_bins + 1))
    need = cfg.sr_bins + 2 * cfg.sideband_bins
    if n_bins < need:
        raise HuntError(f"cwola hunt: the fit range {lo:.0f}–{hi:.0f} GeV holds {n_bins} bins of "
                        f"{100 * cfg.bin_width:.1f} %, fewer than one window needs ({need}); "
                        "widen the fit range or lower resolution")
    counts, _ = np.histogram(mjj, np.asarray(edges))
    out: list[Window] = []
    for start in range(cfg.sideband_bins, n_bins - cfg.sr_bins - cfg.sideband_bins + 1, cfg.step_bins):
        w = Window(len(out) + 1, edges, (start, start + cfg.sr_bins), start - cfg.sideband_bins,
                   start + cfg.sr_bins + cfg.sideband_bins)
        low_n = int(counts[w.sb_low:w.sr[0]].sum())
        high_n = int(counts[w.sr[1]:w.sb_high].sum())
        if min(low_n, high_n) < cfg.min_sideband_events:
            log.info("auto windows: no window at %.0f–%.0f GeV: sidebands hold %d and %d events "
                     "(minimum %d)", *w.signal_region, low_n, high_n, cfg.min_sideband_events)
            continue
        out.append(w)
    if not out:
        raise HuntError(f"cwola hunt: no window in {lo:.0f}–{hi:.0f} GeV has at least "
                        f"{cfg.min_sideband_events} events in each sideband; give more events or "
                        "lower min_sideband_events")
    return out


def explicit_window(index: int, sr: tuple[float, float], fit_range: tuple[float, float],
                    cfg: HuntConfig) -> Window:
    """A window around a given signal region (GeV): its own bins, same widths as auto."""
    lo, hi = float(sr[0]), float(sr[1])
    where = f"window {index} (signal region {lo:.0f}–{hi:.0f} GeV)"
    if not 0 < lo < hi:
        raise HuntError(f"{where}: the signal region must be low < high, in GeV")
    n_sr = max(1, round(math.log(hi / lo) / cfg.bin_width))
    step = math.log(hi / lo) / n_sr
    n_sb = max(1, round(cfg.sideband_bins * cfg.bin_width / step))
    below = int(math.floor(math.log(lo / fit_range[0]) / step + 1e-9))
    above = int(math.floor(math.log(fit_range[1] / hi) / step + 1e-9))
    if below < n_sb or above < n_sb:
        raise HuntError(f"{where}: its sidebands ({lo * math.exp(-n_sb * step):.0f}–{lo:.0f} and "
                        f"{hi:.0f}–{hi * math.exp(n_sb * step):.0f} GeV) must lie inside the fit "
                        f"range {fit_range[0]:.0f}–{fit_range[1]:.0f} GeV; move the window or "
                        "widen the fit range")
    edges = tuple(float(lo * math.exp(i * step)) for i in range(-below, n_sr + above + 1))
    return Window(index, edges, (below, below + n_sr), below - n_sb, below + n_sr + n_sb)


def parse_windows(text: str) -> str | list[tuple[float, float]]:
    """``auto`` or ``LOW-HIGH,LOW-HIGH`` (GeV) → what :class:`HuntConfig` takes.

        >>> parse_windows("3300-3700, 3700-4100")
        [(3300.0, 3700.0), (3700.0, 4100.0)]
    """
    if text.strip() == "auto":
        return "auto"
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        lo, sep, hi = item.partition("-")
        try:
            if not sep:
                raise ValueError
            out.append((float(lo), float(hi)))
        except ValueError:
            raise ConfigError(f"--windows takes 'auto' or signal regions LOW-HIGH in GeV "
                              f"separated by commas (e.g. 3300-3700,3700-4100), got {item!r}") from None
    if not out:
        raise ConfigError("--windows: no window given")
    return out


# -- results ----------------------------------------------------------------------------
@dataclass
class CutResult:
    """One efficiency in one window: the selected spectrum, its fit, the significance."""

    efficiency: float
    selected: int
    counts: np.ndarray
    observed: int | None = None
    predicted: float | None = None
    predicted_uncertainty: float | None = None
    significance: float | None = None
    significance_uncertainty: float | None = None
    significance_poisson: float | None = None
    #: the look-elsewhere effect over the hunt's windows × efficiencies (HuntResult.look_elsewhere)
    significance_global: float | None = None
    significance_global_is_bound: bool = False
    fit: DijetFit | None = None
    truth_in_window: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"efficiency": self.efficiency, "selected": self.selected, "observed": self.observed,
                "predicted": self.predicted, "predicted_uncertainty": self.predicted_uncertainty,
                "significance": self.significance,
                "significance_uncertainty": self.significance_uncertainty,
                "significance_poisson": self.significance_poisson,
                "p_value_local": None if self.significance is None else p_local(self.significance),
                "significance_global": self.significance_global,
                "significance_global_is_lower_bound": self.significance_global_is_bound,
                "fit": None if self.fit is None else self.fit.to_dict(),
                "truth_in_window": self.truth_in_window, "error": self.error}


@dataclass
class WindowResult:
    window: Window
    events: dict[str, int]
    cuts: list[CutResult] = field(default_factory=list)
    sr_vs_sb_auc: float | None = None
    validation_loss: list[float] = field(default_factory=list)
    model: ColumnCWoLaScorer | None = None
    error: str | None = None

    def best(self) -> CutResult | None:
        """The cut (ε < 1) with the highest significance."""
        done = [c for c in self.cuts if c.efficiency < NO_CUT and c.significance is not None]
        return max(done, key=lambda c: c.significance or 0.0, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {**self.window.to_dict(), "events": self.events, "sr_vs_sb_auc": self.sr_vs_sb_auc,
                "validation_loss": self.validation_loss, "error": self.error,
                "cuts": [c.to_dict() for c in self.cuts]}


@dataclass
class HuntResult:
    config: HuntConfig
    fit_range: tuple[float, float]
    n_events: int
    windows: list[WindowResult]
    #: how the global significances were made (method, toys, trials, ...)
    look_elsewhere: dict[str, Any] = field(default_factory=dict)

    def best(self) -> tuple[WindowResult, CutResult] | None:
        """(window, cut) with the highest significance at some ε < 1."""
        pairs = [(w, c) for w in self.windows if (c := w.best()) is not None]
        return max(pairs, key=lambda p: p[1].significance or 0.0, default=None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best()
        return {"config": self.config.to_dict(), "fit_range": list(self.fit_range),
                "events": self.n_events,
                "max_significance": None if best is None else {
                    "window": best[0].window.index, "signal_region": list(best[0].window.signal_region),
                    "efficiency": best[1].efficiency, "significance": best[1].significance,
                    "significance_uncertainty": best[1].significance_uncertainty,
                    "significance_global": best[1].significance_global,
                    "significance_global_is_lower_bound": best[1].significance_global_is_bound},
                "look_elsewhere": self.look_elsewhere,
                "windows": [w.to_dict() for w in self.windows]}


# -- the hunt ---------------------------------------------------------------------------
def _folds(regions: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index ``[N]``, balanced within each region (stratified)."""
    fold = np.empty(len(regions), np.int64)
    for r in (1, 0, -1):
        idx = np.flatnonzero(regions == r)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % k
    return fold


def _train_fold(x: np.ndarray, y: np.ndarray, fold: np.ndarray, test: int, w: Window,
                cfg: HuntConfig) -> tuple[ColumnCWoLaScorer, list[float]]:
    """The model for test fold ``test``: inner models on the other folds, the best averaged."""
    others = [f for f in range(cfg.folds) if f != test]
    candidates: list[tuple[float, ColumnCWoLaScorer]] = []
    labelled = y >= 0
    for j, val_fold in enumerate(others[: cfg.inner_folds]):
        train = labelled & (fold != test) & (fold != val_fold)
        val = labelled & (fold == val_fold)
        clf = ColumnCWoLaScorer(features=list(cfg.features), hidden=list(cfg.hidden), lr=cfg.lr)
        seed = cfg.seed * 100_003 + w.index * 1009 + test * 31 + j
        history = clf.fit(x[train], labels=y[train], validation=x[val], validation_labels=y[val],
                          epochs=cfg.epochs, batch_size=cfg.batch_size, seed=seed,
                          threads=cfg.threads, patience=cfg.patience)
        candidates.append((float(history["best_loss"]), clf))
    candidates.sort(key=lambda c: c[0])
    kept = candidates[: cfg.keep or len(candidates)]
    return ColumnCWoLaScorer.ensemble([c for _, c in kept]), [loss for loss, _ in candidates]


def _cut_result(eff: float, sel_mjj: np.ndarray, sel_truth: np.ndarray | None, w: Window,
                cfg: HuntConfig) -> CutResult:
    edges = np.asarray(w.edges)
    counts, _ = np.histogram(sel_mjj, edges)
    res = CutResult(efficiency=eff, selected=int(counts.sum()), counts=counts)
    res.observed = int(counts[w.sr[0]:w.sr[1]].sum())
    if sel_truth is not None:
        lo, hi = w.signal_region
        inside = sel_truth[(sel_mjj >= lo) & (sel_mjj < hi)]
        labels, n = np.unique(inside, return_counts=True)
        res.truth_in_window = {LABEL_NAMES.get(int(k), str(int(k))): int(c)
                               for k, c in zip(labels, n, strict=True)}
    where = f"{w.label}, efficiency {eff:g}"
    try:
        fit, b, db, z = local_significance(counts, w, cfg, where)
    except FitError as exc:
        if cfg.on_error == "fail":
            raise HuntError(str(exc)) from None
        log.warning("%s", exc)
        res.error = str(exc)
        return res
    res.fit, res.predicted, res.predicted_uncertainty = fit, b, db
    res.significance = z
    res.significance_uncertainty = significance_spread(res.observed, b, db)
    res.significance_poisson = poisson_significance(res.observed, b)
    return res


def hunt_window(w: Window, mjj: np.ndarray, x: np.ndarray, truth: np.ndarray | None,
                cfg: HuntConfig, bar: Any = None) -> WindowResult:
    """Train, score, cut and fit in one window (events of the fit range only)."""
    regions = w.regions(mjj)
    events = {"signal_region": int((regions == 1).sum()),
              "low_sideband": int(((regions == 0) & (mjj < w.signal_region[0])).sum()),
              "high_sideband": int(((regions == 0) & (mjj >= w.signal_region[1])).sum()),
              "fit_range": len(mjj)}
    result = WindowResult(window=w, events=events)
    low = min(events["low_sideband"], events["high_sideband"], events["signal_region"])
    if low < cfg.min_sideband_events:
        side = min(("low_sideband", "high_sideband", "signal_region"), key=lambda k: events[k])
        span = {"low_sideband": w.low_sideband, "high_sideband": w.high_sideband,
                "signal_region": w.signal_region}[side]
        msg = (f"{w.label}: too few events in the {side.replace('_', ' ')} "
               f"({span[0]:.0f}–{span[1]:.0f} GeV): {events[side]}, need at least "
               f"{cfg.min_sideband_events} to train; widen the window, give more events, or "
               "lower min_sideband_events")
        if cfg.on_error == "fail":
            raise HuntError(msg)
        log.warning("%s", msg)
        result.error = msg
        if bar is not None:
            bar.update(cfg.folds)
        return result
    rng = np.random.default_rng([cfg.seed, w.index])
    fold = _folds(regions, cfg.folds, rng)
    y = regions.astype(np.float32)  # 1, 0, and -1 (not trained on)
    scores = np.empty(len(mjj), np.float32)
    thresholds = np.empty((cfg.folds, len(cfg.efficiencies)), np.float64)
    models = []
    for f in range(cfg.folds):
        if bar is not None:
            bar.describe(f"window {w.index}, fold {f + 1}/{cfg.folds}")
        model, losses = _train_fold(x, y, fold, f, w, cfg)
        models.append(model)
        result.validation_loss.extend(losses)
        test = fold == f
        scores[test] = model.score(x[test])
        thresholds[f] = np.quantile(scores[test], 1.0 - np.asarray(cfg.efficiencies, np.float64))
        if bar is not None:
            bar.update(1)
    from darktrigger.models.metrics import roc_auc

    result.sr_vs_sb_auc = float(roc_auc(scores[regions == 0], scores[regions == 1]))
    result.model = ColumnCWoLaScorer.ensemble(models, training={
        "hunt_window": w.to_dict(), "folds": cfg.folds, "inner_folds": cfg.inner_folds,
        "events": events, "sr_vs_sb_auc": result.sr_vs_sb_auc})
    result.cuts.append(_cut_result(NO_CUT, mjj, truth, w, cfg))
    for i, eff in enumerate(cfg.efficiencies):
        keep = scores >= thresholds[fold, i]
        result.cuts.append(_cut_result(float(eff), mjj[keep], None if truth is None else truth[keep],
                                       w, cfg))
    return result


def make_windows(mjj: np.ndarray, fit_range: tuple[float, float], cfg: HuntConfig) -> list[Window]:
    """The windows of a hunt: ``auto`` or the configured signal regions."""
    if isinstance(cfg.windows, str):
        if cfg.windows != "auto":
            raise ConfigError(f"windows must be 'auto' or a list of (low, high), got {cfg.windows!r}")
        return auto_windows(mjj, fit_range, cfg)
    return [explicit_window(i + 1, sr, fit_range, cfg) for i, sr in enumerate(cfg.windows)]


def run_hunt(batch: EventBatch, cfg: HuntConfig, *, progress: bool = False) -> HuntResult:
    """The whole hunt over ``batch`` (module docs); a :class:`HuntResult`.

    Raises :class:`HuntError` naming the window for a missing feature column, a
    sideband with too few events or a fit that does not converge (``on_error="fail"``);
    with ``on_error="skip"`` the last two are recorded in that window's entry instead.
    """
    from darktrigger.models.quantised.training import Progress

    cfg.check()
    if cfg.mass_column not in batch:
        raise HuntError(f"cwola hunt: the events have no mass column {cfg.mass_column!r} (they "
                        f"have {', '.join(batch.extra_names) or 'no analysis columns'}); give "
                        "--mass-column")
    mjj_all = np.asarray(batch[cfg.mass_column], dtype=np.float64)
    if not np.isfinite(mjj_all).all():
        raise HuntError(f"cwola hunt: column {cfg.mass_column!r} has "
                        f"{int((~np.isfinite(mjj_all)).sum())} non-finite value(s)")
    fit_range = cfg.fit_range or auto_fit_range(mjj_all, cfg)
    in_range = (mjj_all >= fit_range[0]) & (mjj_all < fit_range[1])
    windows = make_windows(mjj_all[in_range], fit_range, cfg)
    if isinstance(cfg.windows, str):
        fit_range = (windows[0].edges[0], windows[0].edges[-1])
    try:
        x_all = read_columns(batch, list(cfg.features), "cwola hunt")
    except SchemaError as exc:
        raise HuntError(f"{windows[0].label}: cannot read the features: {exc}") from None
    truth_all = batch["truth"] if (batch["truth"] >= 0).any() else None
    results = []
    with Progress("cwola hunt", len(windows) * cfg.folds, "fold", enabled=progress) as bar:
        for w in windows:
            lo, hi = w.edges[0], w.edges[-1]
            sel = (mjj_all >= lo) & (mjj_all < hi)
            results.append(hunt_window(w, mjj_all[sel], x_all[sel],
                                       None if truth_all is None else truth_all[sel], cfg, bar))
    result = HuntResult(config=cfg, fit_range=fit_range, n_events=len(batch), windows=results)
    in_range = (mjj_all >= fit_range[0]) & (mjj_all < fit_range[1])
    add_global_significance(result, mjj_all[in_range], progress=progress)
    return result


def add_global_significance(result: HuntResult, mjj: np.ndarray, *, progress: bool = False) -> None:
    """Set every cut's global significance and ``result.look_elsewhere``: from
    ``config.null_toys`` null toys (``mjj``: the observed m_jj in the fit range), or the
    trials factor when that is 0 or the background-only fit of the toys fails."""
    from darktrigger.models.quantised.training import Progress

    cfg = result.config
    windows = [w.window for w in result.windows]
    trials = len(windows) * (1 + len(cfg.efficiencies))
    null: NullToys | None = None
    why = "null_toys = 0"
    if cfg.null_toys > 0:
        try:
            with Progress("cwola hunt: null toys", cfg.null_toys, "toy", enabled=progress) as bar:
                null = run_null_toys(windows, mjj, result.fit_range, cfg, cfg.null_toys, progress=bar)
        except FitError as exc:
            if cfg.on_error == "fail":
                raise HuntError(f"cwola hunt: no global significance: {exc}") from None
            log.warning("cwola hunt: %s; the global significance falls back to the trials factor", exc)
            why = str(exc)
    if null is not None:
        result.look_elsewhere = null.to_dict()
    else:
        result.look_elsewhere = {"method": SIDAK_METHOD, "trials": trials, "why": why}
    for w in result.windows:
        for c in w.cuts:
            if c.significance is None:
                continue
            if null is not None:
                c.significance_global, c.significance_global_is_bound = null.z_global(c.significance)
            else:
                c.significance_global = sidak_z_global(c.significance, trials)
