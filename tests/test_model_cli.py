"""train → evaluate → calibrate through the command line, on small seeded toy samples."""

from __future__ import annotations

import json

import pytest

from darktrigger.daq.cli import main
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
    assert set(auc) == {"ae", "ae@ae_copy", "ht", "st"}
    assert auc["ae@ae_copy"] == auc["ae"]
    assert auc["ae"] >= 0.9
    assert auc["ae"] > auc["st"]
    unresolved = report["models"]["ae"]["signals"]["ato4l"]["tpr_at_fpr"][-1]
    assert unresolved["resolved"] is False
    assert "too small" in unresolved["note"]
    assert (d / "plots" / "roc_ato4l.png").stat().st_size > 5000
    assert ModelCard.load(d / "ae").metrics["ae"]["signals"]["ato4l"]["auc"] == auc["ae"]
    assert main(["calibrate", "--model", str(d / "ae"), "--zero-bias", str(d / "test.h5"),
                 "--rate-khz", "10,100"]) == 0
    card = ModelCard.load(d / "ae")
    thresholds = {t["rate_khz"]: t for t in card.thresholds}
    assert set(thresholds) == {10.0, 100.0}
    assert thresholds[10.0]["threshold"] > thresholds[100.0]["threshold"]
    assert thresholds[10.0]["fpr"] == pytest.approx(10 / 40_000)


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
