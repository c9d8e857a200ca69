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


def test_rate_scan_figure_is_log_with_bands_and_says_the_crossing_rate() -> None:
    from darktrigger.models.plots import rate_scan_figure

    cuts = np.arange(5.0, 40.0)
    rates = 1e6 * np.exp(-cuts / 4)
    rates[-3:] = 0.0  # nothing above: left out of the log axis
    fig = rate_scan_figure({"toy": (cuts, rates, 0.1 * rates + 1)}, "leading muon $p_T$ [GeV]",
                           bx_rate_mhz=28.608552, title="SingleMu", budget_hz=1e4)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "rate [Hz]"
    assert "28.61 MHz" in ax.get_title()
    assert _legend(ax) == ["toy", "budget 10 kHz"]
    line = ax.get_lines()[0]
    assert np.asarray(line.get_xdata()).size == cuts.size - 3
    assert len(ax.collections) == 1  # the ±1σ band
    with pytest.raises(ConfigError, match=r"curves\['toy'\]: expected \(thresholds, rates, errors\)"):
        rate_scan_figure({"toy": (cuts, rates)}, "x", 28.6)


def test_menu_scan_writes_falling_log_rate_curves_from_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """darktrigger menu scan: one PNG per quantity, every sample's curve falling on a log axis,
    the rates from the events' weights."""
    import json

    from darktrigger.daq.cli import main
    from darktrigger.daq.trigger.scan import SCAN_QUANTITIES
    from darktrigger.models import plots
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.storage import write_events

    gen = GENERATORS.get("toy")()
    batch = next(gen.generate("zero_bias", 30_000, seed=7, batch_size=30_000))
    write_events(tmp_path / "zb.h5", batch, provenance=gen.provenance("zero_bias", 7))
    weights = np.where(np.arange(len(batch)) % 3 == 0, 4.0, 0.5).astype(np.float32)
    write_events(tmp_path / "zbw.h5", batch.with_columns(weight=weights), provenance={"process": "zero_bias"})
    figures: dict[str, Any] = {}
    save = plots.save_figure

    def keep(fig: Any, path: str | Path) -> Path:
        figures[Path(path).name] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    out = tmp_path / "scans"
    assert main(["menu", "scan", "--zero-bias", f"{tmp_path / 'zb.h5'}=toy", "--zero-bias",
                 f"{tmp_path / 'zbw.h5'}=weighted", "--out", str(out), "--chunk-size", "7000"]) == 0
    assert "rates.json" in capsys.readouterr().out
    assert sorted(figures) == sorted(f"rate_{name}.png" for name in SCAN_QUANTITIES)
    for name, fig in figures.items():
        _check_png(out / name)
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        assert "28.61 MHz" in ax.get_title()
        labels = _legend(ax)
        assert labels[0].startswith("toy, L = 2.0e34")  # the provenance's luminosity and pile-up
        assert "μ = 56" in labels[0]
        assert labels[1].startswith("weighted (n_eff")
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float)
            assert len(y) > 5
            assert (np.diff(y) <= 0).all()  # falling with the threshold
            assert y[-1] < y[0] / 10  # by more than a decade over the scan
    report = json.loads((out / "rates.json").read_text())
    met = report["samples"]["weighted"]["quantities"]["ETMHF"]
    i = met["thresholds_gev"].index(40.0)
    above = batch.objects[:, 0, 0] >= 40
    w64 = weights.astype(np.float64)
    assert met["rate_hz"][i] == pytest.approx(w64[above].sum() / w64.sum() * 28.608552e6, rel=1e-12)
    plain = report["samples"]["toy, L = 2.0e34 cm$^{-2}$s$^{-1}$, μ = 56"]["quantities"]["ETMHF"]
    assert plain["rate_hz"][i] == pytest.approx(above.mean() * 28.608552e6, rel=1e-12)


@pytest.mark.parametrize("spread", ["linear", "decades"])
def test_weighted_score_histograms_equal_the_expanded_ones(spread: str) -> None:
    from darktrigger.models.plots import score_figure

    rng = np.random.default_rng(3)
    b = rng.normal(5, 1, 3000) if spread == "linear" else rng.lognormal(-5, 1.5, 3000)
    s = b[:500] + 1
    w = rng.integers(1, 5, b.size).astype(float)
    weighted = score_figure(b, {"s": s}, bkg_weights=w).axes[0]
    expanded = score_figure(np.repeat(b, w.astype(int)), {"s": s}).axes[0]
    assert weighted.get_xscale() == expanded.get_xscale() == ("linear" if spread == "linear" else "log")
    for mine, theirs in zip(weighted.patches, expanded.patches, strict=True):  # the step outlines
        assert mine.get_path().vertices == pytest.approx(theirs.get_path().vertices, rel=1e-12)
    assert "weighted" in _legend(weighted)[0]
