"""Plots: non-empty PNGs that matplotlib can read back; clear errors for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from darktrigger.models.metrics import roc_curve
from darktrigger.models.plots import plot_roc, plot_score_distributions
from darktrigger.replay.errors import ConfigError

Scores = tuple[np.ndarray, dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def scores() -> Scores:
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, 20_000), {"ato4l": rng.normal(2, 1, 2000), "tau": rng.normal(1, 1, 2000)}


def _check_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.is_file()
    assert path.stat().st_size > 5_000
    image = imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 100
    assert image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # something was drawn


def test_plot_roc_with_rate_axis(tmp_path: Path, scores: Scores) -> None:
    bkg, signals = scores
    curves = {name: roc_curve(bkg, s) for name, s in signals.items()}  # triples are fine
    out = plot_roc(curves, tmp_path / "sub" / "roc.png", input_rate_mhz=40, title="toy")
    assert out == tmp_path / "sub" / "roc.png"
    _check_png(out)


def test_plot_roc_without_rate_axis(tmp_path: Path, scores: Scores) -> None:
    bkg, signals = scores
    fpr, tpr, _ = roc_curve(bkg, signals["ato4l"])
    _check_png(plot_roc({"ato4l": (fpr, tpr)}, str(tmp_path / "roc.png")))


@pytest.mark.parametrize("log", [True, False])
def test_plot_score_distributions(tmp_path: Path, scores: Scores, log: bool) -> None:
    bkg, signals = scores
    _check_png(plot_score_distributions(bkg, signals, tmp_path / f"scores_{log}.png", log=log))


def test_plot_errors_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="curves: expected at least one"):
        plot_roc({}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match=r"curves\['a'\]: expected fpr and tpr of one equal length"):
        plot_roc({"a": (np.zeros(3), np.zeros(4))}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match=r"signals\['s'\]: .*NaN"):
        plot_score_distributions([1.0, 2.0], {"s": [np.nan]}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="bkg: expected at least one score"):
        plot_score_distributions([], {"s": [1.0]}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _legend(ax: Any) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_roc_figure_starts_where_the_curves_have_data_and_gives_auc(scores: Scores) -> None:
    from darktrigger.models.metrics import roc_auc
    from darktrigger.models.plots import roc_figure

    bkg, signals = scores  # 20,000 background events: the smallest FPR is 5e-5
    ax = roc_figure({name: roc_curve(bkg, s) for name, s in signals.items()}).axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlim() == pytest.approx((1e-5, 1.0))
    assert _legend(ax) == [f"ato4l (AUC {roc_auc(bkg, signals['ato4l']):.3f})",
                      f"tau (AUC {roc_auc(bkg, signals['tau']):.3f})", "random guess"]


def test_score_figure_goes_log_x_only_when_scores_span_decades(scores: Scores) -> None:
    from darktrigger.models.plots import score_figure

    rng = np.random.default_rng(1)
    wide = score_figure(rng.lognormal(-5, 1.5, 5000), {"s": rng.lognormal(-2, 1, 500)},
                        thresholds={"1 kHz": 0.5}).axes[0]
    assert (wide.get_xscale(), wide.get_yscale()) == ("log", "log")
    assert "threshold 1 kHz" in _legend(wide)
    bkg, signals = scores  # normal scores: negative values, linear axis
    assert score_figure(bkg, signals).axes[0].get_xscale() == "linear"
