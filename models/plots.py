"""PNG plots for ``darktrigger evaluate`` (ROC curves and score distributions) and
``darktrigger menu scan`` (trigger rates against threshold).

matplotlib is imported inside the functions, and figures are drawn on an Agg canvas
without pyplot, so importing this module costs nothing and never touches a GUI
backend or pyplot's global state.

    >>> import numpy as np, tempfile, pathlib
    >>> from darktrigger.models.metrics import roc_curve
    >>> rng = np.random.default_rng(0)
    >>> bkg, sig = rng.normal(0, 1, 10_000), rng.normal(2, 1, 1_000)
    >>> fpr, tpr, _ = roc_curve(bkg, sig)
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> plot_roc({"toy": (fpr, tpr)}, out / "roc.png", input_rate_mhz=40).name
    'roc.png'
    >>> plot_score_distributions(bkg, {"toy": sig}, out / "scores.png").name
    'scores.png'
    >>> cuts = np.arange(10.0, 50.0)
    >>> fig = rate_scan_figure({"toy": (cuts, 1e7 * np.exp(-cuts / 5), 1e5 * np.exp(-cuts / 10))},
    ...                        "leading muon $p_T$ [GeV]", bx_rate_mhz=28.61)
    >>> fig.axes[0].get_yscale(), fig.axes[0].get_ylabel()
    ('log', 'rate [Hz]')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from darktrigger.models.thresholds import as_scores, as_weights
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.lhc import COLLIDING_BX_RATE_MHZ

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

FPR_MIN = 1e-6


def _figure() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    logger.info("wrote %s", path)
    return path


def curve_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under one (fpr, tpr) curve, closed at (0, 0) and (1, 1).

    >>> curve_auc(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0]))
    0.5
    """
    order = np.argsort(fpr, kind="stable")
    x = np.concatenate([[0.0], fpr[order], [1.0]])
    y = np.concatenate([[0.0], tpr[order], [1.0]])
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def plot_roc(
    curves: Mapping[str, Sequence[Any]],
    path: str | Path,
    input_rate_mhz: float | None = None,
    title: str | None = None,
) -> Path:
    """ROC curves (see :func:`roc_figure`) written as a PNG; returns its path."""
    return _save(roc_figure(curves, input_rate_mhz, title), path)


def roc_figure(
    curves: Mapping[str, Sequence[Any]],
    input_rate_mhz: float | None = None,
    title: str | None = None,
) -> Figure:
    """ROC curves, TPR against a log FPR axis, with the random-guess line; each legend entry
    gives the curve's AUC. The FPR axis starts at the decade of the smallest FPR any curve
    reaches (not at a fixed 1e-6).

    ``curves`` maps a label to ``(fpr, tpr)`` (or :func:`darktrigger.models.metrics.roc_curve`'s
    triple). With ``input_rate_mhz``, a top axis gives the trigger rate in kHz that
    each FPR means at that input rate.
    """
    if not curves:
        raise ConfigError("curves: expected at least one labelled (fpr, tpr) curve, got none")
    fig = _figure()
    ax = fig.add_subplot()
    smallest = 1.0
    for label, curve in curves.items():
        if len(curve) < 2:
            raise ConfigError(f"curves[{label!r}]: expected (fpr, tpr), got {len(curve)} item(s)")
        fpr, tpr = np.asarray(curve[0], dtype=float), np.asarray(curve[1], dtype=float)
        if fpr.shape != tpr.shape or fpr.ndim != 1:
            raise ConfigError(
                f"curves[{label!r}]: expected fpr and tpr of one equal length, "
                f"got shapes {fpr.shape} and {tpr.shape}"
            )
        keep = fpr > 0  # log axis
        if keep.any():
            smallest = min(smallest, float(fpr[keep].min()))
        ax.plot(fpr[keep], tpr[keep], label=f"{label} (AUC {curve_auc(fpr, tpr):.3f})")
    lo = max(FPR_MIN, 10 ** math.floor(math.log10(smallest) + 1e-9)) if smallest < 1 else 1e-2
    guess = np.logspace(np.log10(lo), 0, 200)
    ax.plot(guess, guess, color="grey", linestyle="--", label="random guess")
    ax.set_xscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("background efficiency (FPR)")
    ax.set_ylabel("signal efficiency (TPR)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    if input_rate_mhz is not None:
        if not input_rate_mhz > 0:
            raise ConfigError(f"input_rate_mhz: expected a positive rate in MHz, got {input_rate_mhz}")
        khz_per_fpr = input_rate_mhz * 1e3

        def to_khz(fpr: Any) -> Any:
            return np.asarray(fpr) * khz_per_fpr

        def to_fpr(khz: Any) -> Any:
            return np.asarray(khz) / khz_per_fpr

        top = ax.secondary_xaxis("top", functions=(to_khz, to_fpr))
        top.set_xlabel(f"L1 rate at {input_rate_mhz:.4g} MHz input [kHz]")
    if title:
        ax.set_title(title)
    return fig


def plot_score_distributions(
    bkg: Any,
    signals: Mapping[str, Any],
    path: str | Path,
    log: bool = True,
    bins: int = 100,
    xlabel: str = "score",
    title: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    bkg_weights: Any = None,
    signal_weights: Mapping[str, Any] | None = None,
) -> Path:
    """Score distributions (see :func:`score_figure`) written as a PNG; returns its path."""
    return _save(score_figure(bkg, signals, log, bins, xlabel, title, thresholds, bkg_weights,
                              signal_weights), path)


#: The x-axis label of each baseline's score; a model's score is just "score".
BASELINE_LABELS = {"ht": "$H_T$ [GeV]", "st": "$S_T$ [GeV]",
                   "pca": "PCA residual$^2$ (standardised features)"}
#: A score range spanning more than this ratio (positive scores) gets a log x axis.
LOG_X_RATIO = 100.0


def score_figure(
    bkg: Any,
    signals: Mapping[str, Any],
    log: bool = True,
    bins: int = 100,
    xlabel: str = "score",
    title: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    bkg_weights: Any = None,
    signal_weights: Mapping[str, Any] | None = None,
) -> Figure:
    """Normalised histograms of background and signal scores on shared bins (log y by default).

    The x axis (and the bins) are logarithmic when every score is positive and they span
    more than two decades (a VAE's mu2), so the background is not squeezed into a few bins.
    ``thresholds`` maps a label ("1 kHz") to a score, drawn as a vertical line. Weighted
    samples (``bkg_weights``, ``signal_weights[name]``) are histogrammed by weight.
    """
    b = as_scores(bkg, "bkg")
    sigs = {name: as_scores(s, f"signals[{name!r}]") for name, s in signals.items()}
    wb = as_weights(bkg_weights, b.size, "bkg_weights")
    ws = {name: as_weights((signal_weights or {}).get(name), s.size, f"signal_weights[{name!r}]")
          for name, s in sigs.items()}
    if not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins: expected a positive number of bins, got {bins!r}")
    lo = min(float(a.min()) for a in (b, *sigs.values()))
    hi = max(float(a.max()) for a in (b, *sigs.values()))
    log_x = lo > 0 and hi / lo > LOG_X_RATIO
    if log_x:
        edges = np.geomspace(lo, hi, bins + 1).tolist()
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1).tolist()
    fig = _figure()
    ax = fig.add_subplot()
    # log bins have unequal widths: show the fraction per bin, not a density per unit score
    # (which would tilt the shape by a factor of the score)
    def norm(a: np.ndarray, w: np.ndarray | None) -> dict[str, Any]:
        if not log_x:
            return {"density": True, "weights": w}
        return {"weights": np.full(a.size, 1.0 / a.size) if w is None else w / w.sum()}

    ax.hist(b, bins=edges, histtype="stepfilled", color="lightgrey",
            edgecolor="grey", label=f"background ({b.size:,}{'' if wb is None else ', weighted'})", **norm(b, wb))
    for name, s in sigs.items():
        ax.hist(s, bins=edges, histtype="step", linewidth=1.5,
                label=f"{name} ({s.size:,}{'' if ws[name] is None else ', weighted'})", **norm(s, ws[name]))
    for i, (name, value) in enumerate(sorted((thresholds or {}).items(), key=lambda kv: kv[1])):
        ax.axvline(value, color=f"C{(i + len(sigs)) % 10}", linestyle=":", linewidth=1.2,
                   label=f"threshold {name}")
    if log:
        ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    unit = "GeV" if "[GeV]" in xlabel else "unit score"
    ax.set_ylabel("fraction of events / bin (log bins)" if log_x else f"fraction of events / {unit}")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def rate_scan_figure(
    curves: Mapping[str, Sequence[Any]],
    xlabel: str,
    bx_rate_mhz: float,
    title: str | None = None,
    budget_hz: float | None = None,
) -> Figure:
    """Trigger rates against threshold on a log rate axis, one curve per sample with its
    ±1σ band; the crossing rate the rates are at is in the title.

    ``curves`` maps a label (the sample, its luminosity and pile-up) to ``(thresholds,
    rates_hz, uncertainties_hz)``. Points with no rate (nothing above the threshold) are
    left out of the line (a log axis has no zero); ``budget_hz`` draws a horizontal line.
    """
    if not curves:
        raise ConfigError("curves: expected at least one labelled (thresholds, rates, errors) curve, got none")
    fig = _figure()
    ax = fig.add_subplot()
    lowest = math.inf
    for i, (label, curve) in enumerate(curves.items()):
        if len(curve) != 3:
            raise ConfigError(f"curves[{label!r}]: expected (thresholds, rates, errors), got {len(curve)} item(s)")
        x, y, e = (np.asarray(c, dtype=float) for c in curve)
        if not x.shape == y.shape == e.shape or x.ndim != 1:
            raise ConfigError(f"curves[{label!r}]: expected three arrays of one length, got shapes "
                              f"{x.shape}, {y.shape}, {e.shape}")
        keep = y > 0
        if keep.any():
            lowest = min(lowest, float(y[keep].min()))
        colour = f"C{i % 10}"
        ax.plot(x[keep], y[keep], color=colour, label=label, linewidth=1.5)
        lo = np.clip(y - e, y * 1e-3, None)  # a band reaching zero would fall off the log axis
        ax.fill_between(x[keep], lo[keep], (y + e)[keep], color=colour, alpha=0.25, linewidth=0)
    if budget_hz is not None:
        ax.axhline(budget_hz, color="red", linestyle="--", linewidth=1, label=f"budget {budget_hz / 1e3:g} kHz")
    ax.set_yscale("log")
    if math.isfinite(lowest):
        ax.set_ylim(bottom=10 ** math.floor(math.log10(lowest)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rate [Hz]")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    head = f"rates at the crossing rate {bx_rate_mhz:.4g} MHz (weighted events)"
    ax.set_title(f"{title}\n{head}" if title else head, fontsize="medium")
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (folders made as needed); returns the path."""
    return _save(fig, path)


def evaluation_figures(
    curves: Mapping[str, Mapping[str, Sequence[Any]]],
    distributions: Mapping[str, tuple[Any, Mapping[str, Any]]],
    input_rate_mhz: float | None = COLLIDING_BX_RATE_MHZ,
    background: str = "background",
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    bkg_weights: Any = None,
    signal_weights: Mapping[str, Any] | None = None,
) -> dict[str, Figure]:
    """Every figure ``darktrigger evaluate --plots`` writes, by file name.

    ``curves``: signal → {scorer label → (fpr, tpr)}, one ``roc_<signal>.png`` each;
    ``distributions``: scorer label → (background scores, {signal: scores}), one
    ``scores_<label>.png`` each, its x axis named by what the score is (``$H_T$ [GeV]`` for
    ht, ``$S_T$ [GeV]`` for st, "score" for a model) and ``thresholds[label]`` (rate label →
    score, from the model card) marked; ``bkg_weights``/``signal_weights`` weight every
    histogram.

        >>> rng = np.random.default_rng(0)
        >>> b, s = rng.exponential(1, 5000), rng.exponential(5, 500)
        >>> from darktrigger.models.metrics import roc_curve
        >>> figs = evaluation_figures({"x": {"ht": roc_curve(b, s)[:2]}}, {"ht": (b, {"x": s})})
        >>> sorted(figs), figs["scores_ht.png"].axes[0].get_xlabel()
        (['roc_x.png', 'scores_ht.png'], '$H_T$ [GeV]')
    """
    out: dict[str, Figure] = {}
    for name, c in curves.items():
        out[f"roc_{name}.png"] = roc_figure(c, input_rate_mhz, title=f"{name} vs {background}")
    for label, (b, s) in distributions.items():
        out[f"scores_{label.replace(':', '_')}.png"] = score_figure(
            b, s, title=label, xlabel=BASELINE_LABELS.get(label, "score"),
            thresholds=(thresholds or {}).get(label), bkg_weights=bkg_weights, signal_weights=signal_weights)
    return out
