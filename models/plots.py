"""PNG plots for ``darktrigger evaluate``: ROC curves and score distributions.

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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from darktrigger.models.thresholds import as_scores
from darktrigger.replay.errors import ConfigError

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


def plot_roc(
    curves: Mapping[str, Sequence[Any]],
    path: str | Path,
    input_rate_mhz: float | None = None,
    title: str | None = None,
) -> Path:
    """ROC curves, TPR against a log FPR axis from 1e-6 to 1, with the random-guess line.

    ``curves`` maps a label to ``(fpr, tpr)`` (or :func:`darktrigger.models.metrics.roc_curve`'s
    triple). With ``input_rate_mhz``, a top axis gives the trigger rate in kHz that
    each FPR means at that input rate. Returns the PNG's path.
    """
    if not curves:
        raise ConfigError("curves: expected at least one labelled (fpr, tpr) curve, got none")
    fig = _figure()
    ax = fig.add_subplot()
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
        ax.plot(fpr[keep], tpr[keep], label=label)
    guess = np.logspace(np.log10(FPR_MIN), 0, 200)
    ax.plot(guess, guess, color="grey", linestyle="--", label="random guess")
    ax.set_xscale("log")
    ax.set_xlim(FPR_MIN, 1)
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
        top.set_xlabel(f"L1 rate at {input_rate_mhz:g} MHz input [kHz]")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_score_distributions(
    bkg: Any,
    signals: Mapping[str, Any],
    path: str | Path,
    log: bool = True,
    bins: int = 100,
    xlabel: str = "anomaly score",
    title: str | None = None,
) -> Path:
    """Normalised histograms of background and signal scores on shared bins (log y by default).

    Returns the PNG's path.
    """
    b = as_scores(bkg, "bkg")
    sigs = {name: as_scores(s, f"signals[{name!r}]") for name, s in signals.items()}
    if not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins: expected a positive number of bins, got {bins!r}")
    lo = min(float(a.min()) for a in (b, *sigs.values()))
    hi = max(float(a.max()) for a in (b, *sigs.values()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1).tolist()
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(b, bins=edges, density=True, histtype="stepfilled", color="lightgrey",
            edgecolor="grey", label=f"background ({b.size:,})")
    for name, s in sigs.items():
        ax.hist(s, bins=edges, density=True, histtype="step", linewidth=1.5,
                label=f"{name} ({s.size:,})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of events / unit score")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return _save(fig, path)
