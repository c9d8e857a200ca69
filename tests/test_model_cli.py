"""train → evaluate → calibrate through the command line, on small seeded toy samples."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ
from darktrigger.models.card import ModelCard


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    for name, proc, n, seed in [("bkg", "sm_mix", 20000, 1), ("test", "sm_mix", 20000, 2),
                                ("ato4l", "ato4l", 3000, 3)]:
        assert main(["generate", "--generator", "toy", "--process", proc, "--events", str(n),
                     "--seed", str(seed), "--out", str(d / f"{name}.h5"), "--no-progress"]) == 0
    return d


def test_train_evaluate_calibrate(samples, capsys):
    d = samples
    assert main(["train", "--model", "ae", "--background", str(d / "bkg.h5"), "--out", str(d / "ae"),
                 "--epochs", "3", "--seed", "1", "--no-progress"]) == 0
    assert "trained ae" in capsys.readouterr().out
    from darktrigger.models.base import copy_artifact

    copy_artifact(d / "ae", d / "ae_copy")  # a second --model must add to the first, not replace it
    assert main(["evaluate", "--model", str(d / "ae"), "--model", str(d / "ae_copy"),
                 "--background", str(d / "test.h5"),
                 "--signal", f"ato4l={d / 'ato4l.h5'}", "--json", str(d / "eval.json"),
                 "--plots", str(d / "plots")]) == 0
    out = capsys.readouterr().out
    assert "ato4l" in out
    assert "st" in out
    assert "AUC" in out
    report = json.loads((d / "eval.json").read_text())
    auc = {m: r["signals"]["ato4l"]["auc"] for m, r in report["models"].items()}
    assert set(auc) == {"ae", "ae@ae_copy", "ht", "st", "pca"}
    assert auc["ae@ae_copy"] == auc["ae"]
    assert auc["ae"] >= 0.9
    assert auc["ae"] > auc["st"]
    assert auc["pca"] >= 0.9  # the linear baseline flags extra leptons too
    unresolved = report["models"]["ae"]["signals"]["ato4l"]["tpr_at_fpr"][-1]
    assert unresolved["resolved"] is False
    assert "too small" in unresolved["note"]
    assert (d / "plots" / "roc_ato4l.png").stat().st_size > 5000
    assert ModelCard.load(d / "ae").metrics["ae"]["signals"]["ato4l"]["auc"] == auc["ae"]
    assert main(["calibrate", "--model", str(d / "ae"), "--zero-bias", str(d / "test.h5"),
                 "--rate-khz", "20,100"]) == 0
    card = ModelCard.load(d / "ae")
    thresholds = {t["rate_khz"]: t for t in card.thresholds}
    assert set(thresholds) == {20.0, 100.0}
    assert thresholds[20.0]["threshold"] > thresholds[100.0]["threshold"]
    assert thresholds[20.0]["fpr"] == pytest.approx(20 / (DEFAULT_BX_RATE_MHZ * 1e3))  # 28.61 MHz


def test_the_pca_baseline_scores_every_event_out_of_sample(samples):
    """Cross-fitted: the even events are scored by the fit on the odd ones and back, exactly
    as two separately fitted pca scorers give; --pca-fit fits on a given file instead."""
    from darktrigger.daq.cli.models import CrossFitted, _pca_baseline
    from darktrigger.models import get_scorer
    from darktrigger.replay.readers import open_events

    test = open_events(samples / "test.h5").read_all()
    crossed = CrossFitted(lambda: get_scorer("pca"), test)
    scores = crossed.score(test)
    for half, other in ((0, 1), (1, 0)):
        alone = get_scorer("pca")
        alone.fit(test[other::2], seed=other)
        assert np.array_equal(scores[half::2], alone.score(test[half::2]))
    fitted = _pca_baseline(test, samples / "bkg.h5", None, "fail")
    direct = get_scorer("pca")
    direct.fit(open_events(samples / "bkg.h5").read_all())
    assert np.array_equal(fitted.score(test), direct.score(test))


def _rates(d):
    return sorted(t["rate_khz"] for t in ModelCard.load(d / "ae_cal").thresholds)


def test_calibrate_merges_by_rate_and_refuses_unresolved(samples, capsys, caplog):
    d = samples
    assert main(["train", "--model", "ae", "--background", str(d / "bkg.h5"), "--out", str(d / "ae_cal"),
                 "--epochs", "1", "--seed", "1", "--no-progress"]) == 0
    zb = ["--model", str(d / "ae_cal"), "--zero-bias", str(d / "test.h5")]
    assert main(["calibrate", *zb, "--rate-khz", "20,100"]) == 0
    first = {t["rate_khz"]: t["threshold"] for t in ModelCard.load(d / "ae_cal").thresholds}
    assert main(["calibrate", *zb, "--rate-khz", "50", "--max-events", "10k"]) == 0
    assert _rates(d) == [20.0, 50.0, 100.0]  # calibrating twice keeps both sets
    kept = {t["rate_khz"]: t["threshold"] for t in ModelCard.load(d / "ae_cal").thresholds}
    assert kept[20.0] == first[20.0]
    assert kept[100.0] == first[100.0]
    capsys.readouterr()
    caplog.clear()
    # 20,000 events resolve FPR 10 / 20,000, 14.3 kHz at 28.61 MHz: 1 and 5 kHz are refused,
    # 200 kHz is stored
    with caplog.at_level("WARNING"):
        assert main(["calibrate", *zb, "--rate-khz", "1,5,200"]) == 1
    err = capsys.readouterr().err
    assert "2 threshold(s) not stored (ae at 1 kHz; ae at 5 kHz)" in err
    assert f"down to {10 / 20_000 * DEFAULT_BX_RATE_MHZ * 1e3:.3g} kHz" in err
    assert "down to 14.3 kHz" in err
    assert err.count("not stored") == 1  # one message for every model and rate
    assert not [r for r in caplog.records if "not resolved" in r.getMessage()]
    assert _rates(d) == [20.0, 50.0, 100.0, 200.0]
    assert all(t["resolved"] for t in ModelCard.load(d / "ae_cal").thresholds)


def test_evaluate_plots_name_axes_mark_thresholds_and_give_auc(samples, capsys, monkeypatch):
    """Every figure evaluate writes: axis labels, log scales, legend entries."""
    from darktrigger.models import plots

    d = samples
    assert main(["train", "--model", "vae", "--background", str(d / "bkg.h5"), "--out", str(d / "vae"),
                 "--epochs", "1", "--seed", "1", "--no-progress", "--max-events", "1e4"]) == 0
    assert main(["calibrate", "--model", str(d / "vae"), "--variant", "mu2", "--zero-bias",
                 str(d / "test.h5"), "--rate-khz", "20,100"]) == 0
    written: dict[str, Any] = {}
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: written.setdefault(path.name, fig) and save(fig, path))
    assert main(["evaluate", "--model", str(d / "vae"), "--background", str(d / "test.h5"),
                 "--signal", f"ato4l={d / 'ato4l.h5'}", "--plots", str(d / "vplots")]) == 0
    capsys.readouterr()
    assert sorted(written) == ["roc_ato4l.png", "scores_ht.png", "scores_pca.png", "scores_st.png", "scores_vae_kl.png",
                               "scores_vae_mu2.png", "scores_vae_reco.png"]
    assert sorted(p.name for p in (d / "vplots").iterdir()) == sorted(written)
    roc = written["roc_ato4l.png"].axes[0]
    assert roc.get_xscale() == "log"
    assert roc.get_xlabel() == "background efficiency (FPR)"
    assert roc.get_ylabel() == "signal efficiency (TPR)"
    legend = [t.get_text() for t in roc.get_legend().get_texts()]
    assert all("(AUC 0." in t for t in legend if t != "random guess"), legend
    assert {t.split(" (")[0] for t in legend} == {"vae:mu2", "vae:kl", "vae:reco", "ht", "st", "pca",
                                                     "random guess"}
    # the FPR axis starts at the decade of the smallest FPR the curves reach (20,000 events: 1e-5)
    assert roc.get_xlim()[0] == pytest.approx(1e-5)
    labels = {name: fig.axes[0].get_xlabel() for name, fig in written.items() if name.startswith("scores_")}
    assert labels == {"scores_ht.png": "$H_T$ [GeV]", "scores_st.png": "$S_T$ [GeV]",
                      "scores_pca.png": "PCA residual$^2$ (standardised features)",
                      "scores_vae_kl.png": "score", "scores_vae_mu2.png": "score", "scores_vae_reco.png": "score"}
    mu2 = written["scores_vae_mu2.png"].axes[0]
    assert mu2.get_yscale() == "log"
    assert mu2.get_xscale() == "log"  # mu2 spans decades
    assert mu2.get_ylabel() == "fraction of events / bin (log bins)"
    assert written["scores_ht.png"].axes[0].get_xscale() == "linear"
    assert written["scores_ht.png"].axes[0].get_ylabel() == "fraction of events / GeV"
    entries = [t.get_text() for t in mu2.get_legend().get_texts()]
    assert "threshold 20 kHz" in entries
    assert "threshold 100 kHz" in entries
    assert not any("threshold" in t.get_text() for t in written["scores_vae_kl.png"].axes[0].get_legend().get_texts())


def test_bad_arguments_are_clear(samples, capsys):
    d = samples
    assert main(["evaluate", "--model", str(d / "nope"), "--background", str(d / "test.h5"),
                 "--signal", f"a={d / 'ato4l.h5'}"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["calibrate", "--model", str(d / "nope"), "--zero-bias", str(d / "test.h5"),
                 "--rate-khz", "ten"]) == 2
    assert "--rate-khz" in capsys.readouterr().err
    assert main(["train", "--model", "cwola", "--background", str(d / "bkg.h5"),
                 "--out", str(d / "cw")]) == 2
    assert "--signal-region" in capsys.readouterr().err


def test_evaluate_writes_the_dark_machines_csv(samples, capsys):
    """issue 15: `evaluate --dm-csv` writes the challenge's columns, read back with pandas."""
    import math

    import pandas as pd

    d = samples
    assert main(["train", "--model", "pca", "--background", str(d / "bkg.h5"), "--out", str(d / "pca"),
                 "--no-progress"]) == 0
    assert main(["evaluate", "--model", str(d / "pca"), "--background", str(d / "test.h5"),
                 "--signal", f"ato4l={d / 'ato4l.h5'}", "--json", str(d / "ev.json"),
                 "--dm-csv", str(d / "dm.csv"), "--dm-channel", "chan2a"]) == 0
    assert "Dark Machines challenge CSV (3 rows" in capsys.readouterr().out
    table = pd.read_csv(d / "dm.csv")
    assert list(table.columns) == ["Signal", "Model", "Chan", "AUC", "1e-2", "1e-3", "1e-4"]
    assert list(table["Model"]) == ["pca", "ht", "st"]
    assert set(table["Signal"]) == {"ato4l"}
    assert set(table["Chan"]) == {"chan2a"}
    results = json.loads((d / "ev.json").read_text())["models"]
    for _, row in table.iterrows():
        entry = results[row["Model"]]["signals"]["ato4l"]
        assert row["AUC"] == pytest.approx(entry["auc"], rel=1e-12)
        tpr = entry["tpr_at_fpr"][0]
        assert tpr["fpr_target"] == 1e-2
        assert row["1e-2"] == pytest.approx(tpr["tpr"], rel=1e-12) if tpr["resolved"] else math.isnan(row["1e-2"])


def test_evaluate_and_calibrate_log_a_numbered_line_per_step(samples, caplog):
    """Progress of the long offline commands: a numbered darktrigger.progress line as each
    step starts (read, fit the pca baseline, score with each model, plot); none with --no-progress."""
    d = samples
    assert main(["train", "--model", "pca", "--background", str(d / "bkg.h5"), "--out", str(d / "pca_steps"),
                 "--no-progress"]) == 0
    with caplog.at_level("INFO", logger="darktrigger.progress"):
        assert main(["evaluate", "--model", str(d / "pca_steps"), "--background", str(d / "test.h5"),
                     "--signal", f"ato4l={d / 'ato4l.h5'}"]) == 0
    lines = [r.getMessage().split(" (")[0] for r in caplog.records if r.name == "darktrigger.progress"]
    assert lines == [f"evaluate [1/5] reading {d / 'test.h5'}", f"evaluate [2/5] reading {d / 'ato4l.h5'}",
                     "evaluate [3/5] scoring with pca", "evaluate [4/5] scoring with ht",
                     "evaluate [5/5] scoring with st"]
    caplog.clear()
    with caplog.at_level("INFO", logger="darktrigger.progress"):
        assert main(["calibrate", "--model", str(d / "pca_steps"), "--zero-bias", str(d / "test.h5"),
                     "--rate-khz", "100", "--no-progress"]) == 0
        assert not [r for r in caplog.records if r.name == "darktrigger.progress"]
        assert main(["calibrate", "--model", str(d / "pca_steps"), "--zero-bias", str(d / "test.h5"),
                     "--rate-khz", "100"]) == 0
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.name == "darktrigger.progress"] == [
        f"calibrate [1/2] reading {d / 'test.h5'}", "calibrate [2/2] scoring 20,000 events with pca"]
