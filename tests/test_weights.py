"""Event weights: a weighted sample and the same events expanded by integer weights give the
same thresholds, rates and ROC; unit weights give today's numbers; weighted uncertainties
follow var(p̂) = Σ wᵢ²(xᵢ − p̂)²/(Σw)²; bad weights and samples that are not zero bias are
named."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.daq.trigger.menu import Menu, calibrate_menu
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.models.metrics import evaluate_scores, roc_auc, roc_curve, tpr_at_fpr
from darktrigger.models.thresholds import fraction_uncertainty, rate_of, thresholds_for_rates
from darktrigger.replay.errors import InputFormatError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.generators import GENERATORS
from darktrigger.replay.readers import open_events
from darktrigger.replay.storage import write_events

#: object seeds of every kind, one prescaled (its decision is a hash of the event identity,
#: which the expanded copies of an event share)
SEEDS = [
    {"name": "SingleMu7", "type": "single_mu", "pt_min": 7},
    {"name": "SingleEG20", "type": "single_eg", "pt_min": 20, "eta_max": 2.5},
    {"name": "DoubleJet40", "type": "double_jet", "pt_min": [40, 40]},
    {"name": "HTT150er", "type": "ht", "ht_min": 150},
    {"name": "ETM40", "type": "met", "met_min": 40, "prescale": 3},
    {"name": "ZeroBias", "type": "zero_bias", "prescale": 50},
]
RATES_KHZ = [2000.0, 500.0, 100.0]


def _toy(process: str, n: int, seed: int) -> EventBatch:
    return next(GENERATORS.get("toy")().generate(process, n, seed=seed, batch_size=n))


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A weighted sample (integer weights 1..6, scores with ties) and the same events, each
    repeated as many times as its weight, both as files."""
    d = tmp_path_factory.mktemp("weights")
    rng = np.random.default_rng(14)
    batch = _toy("sm_mix", 4000, seed=3)
    weights = rng.integers(1, 7, len(batch)).astype(np.float32)
    # a score with many ties: S_T rounded to 5 GeV
    score = np.round(batch.objects[:, :, 0].sum(axis=1) / 5).astype(np.float32) * 5
    weighted = batch.with_columns(weight=weights, **{"score/st": score})
    expanded = weighted[np.repeat(np.arange(len(weighted)), weights.astype(np.int64))]
    assert np.all(expanded.columns["weight"] == weighted.columns["weight"].repeat(weights.astype(int)))
    expanded = expanded.with_columns(weight=np.ones(len(expanded), np.float32))
    write_events(d / "weighted.h5", weighted, provenance={"generator": "test", "process": "zero_bias"})
    write_events(d / "expanded.h5", expanded, provenance={"generator": "test", "process": "zero_bias"})
    signal = _toy("ato4l", 1500, seed=4)
    sig_w = rng.integers(1, 4, len(signal)).astype(np.float64)
    sig_score = np.round(signal.objects[:, :, 0].sum(axis=1) / 5) * 5
    return {"dir": d, "weighted": weighted, "expanded": expanded, "w": weights.astype(np.float64),
            "sig_score": sig_score, "sig_w": sig_w}


# -- the acceptance test: weighted == expanded, exactly -------------------------------------
def test_weighted_and_expanded_give_the_same_thresholds(samples: dict) -> None:
    w, weighted, expanded = samples["w"], samples["weighted"], samples["expanded"]
    score, score_x = weighted.columns["score/st"], expanded.columns["score/st"]
    assert len(expanded) == int(w.sum()) > 2 * len(weighted)
    a = thresholds_for_rates(score, RATES_KHZ, weights=w, warn=False)
    b = thresholds_for_rates(score_x, RATES_KHZ, warn=False)
    assert [t.threshold for t in a] == [t.threshold for t in b]
    assert [t.achieved_fpr for t in a] == [t.achieved_fpr for t in b]
    assert len({t.threshold for t in a}) == 3  # three different thresholds, not one tie
    for t in a:  # the same rate from either sample, for every threshold
        assert rate_of(t, score, weights=w)[0] == rate_of(t, score_x)[0]
    # through the menu: calibrate_menu reads the weight column of each batch
    menu = Menu.from_dict({"models": {"st": {"path": "unused"}}, "seeds": [
        {"name": f"AD{r:g}", "type": "anomaly", "model": "st", "rate_khz": r} for r in RATES_KHZ]})
    cal_w = calibrate_menu(menu, weighted, source="weighted.h5")
    cal_x = calibrate_menu(menu, expanded, source="expanded.h5")
    assert [s.params["threshold"] for s in cal_w.anomaly_seeds] == [t.threshold for t in a]
    assert [s.params["threshold"] for s in cal_x.anomaly_seeds] == [t.threshold for t in a]
    record = cal_w.anomaly_seeds[0].params["calibration"]
    assert record["weighted"] is True
    assert record["n_eff"] == pytest.approx(w.sum() ** 2 / (w @ w))
    assert cal_x.anomaly_seeds[0].params["calibration"]["weighted"] is False


def test_weighted_and_expanded_give_the_same_rates(samples: dict) -> None:
    menu = Menu.from_dict({"budget_khz": 110, "seeds": SEEDS})
    weighted, expanded, w = samples["weighted"], samples["expanded"], samples["w"]
    a = MenuCounts.for_menu(menu).add(menu.decide(weighted), weights=w)
    b = MenuCounts.for_menu(menu).add(menu.decide(expanded))
    assert a.weighted
    assert not b.weighted
    assert a.rates_hz.tolist() == b.rates_hz.tolist()
    assert a.raw_rates_hz.tolist() == b.raw_rates_hz.tolist()
    assert a.pure_rates_hz.tolist() == b.pure_rates_hz.tolist()
    assert a.overlap_rates_hz.tolist() == b.overlap_rates_hz.tolist()
    assert a.total_rate_hz == b.total_rate_hz
    assert (a.counts > 0).all()  # every seed took part
    assert a.counts[4] < a.raw[4]  # and the prescales did


def test_the_rates_command_gives_the_same_rates_from_both_files(samples: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    d = samples["dir"]
    (tmp_path / "menu.yaml").write_text(json.dumps({"colliding_bunches": 2544, "budget_khz": 110, "seeds": SEEDS}))
    reports = {}
    for name in ("weighted", "expanded"):
        out = tmp_path / f"{name}.json"
        # small chunks: the weights of each chunk are matched to its rows
        assert main(["menu", "rates", "--menu", str(tmp_path / "menu.yaml"), "--events", str(d / f"{name}.h5"),
                     "--json", str(out), "--chunk-size", "700"]) == 0
        reports[name] = json.loads(out.read_text())
    table = capsys.readouterr().out
    assert "n_eff" in table  # the weighted file's table gives its effective events
    a, b = reports["weighted"], reports["expanded"]
    assert [s["rate_hz"] for s in a["seeds"]] == [s["rate_hz"] for s in b["seeds"]]
    assert [s["pure_rate_hz"] for s in a["seeds"]] == [s["pure_rate_hz"] for s in b["seeds"]]
    assert a["total_rate_hz"] == b["total_rate_hz"]
    assert a["weighted"]
    assert not b["weighted"]
    assert a["n_eff"] < a["events"] < b["events"]


def test_weighted_and_expanded_give_the_same_roc(samples: dict) -> None:
    bkg, w = samples["weighted"].columns["score/st"], samples["w"]
    bkg_x = samples["expanded"].columns["score/st"]
    sig, sw = samples["sig_score"], samples["sig_w"]
    sig_x = np.repeat(sig, sw.astype(np.int64))
    fpr, tpr, thr = roc_curve(bkg, sig, w, sw)
    fpr_x, tpr_x, thr_x = roc_curve(bkg_x, sig_x)
    assert fpr.tolist() == fpr_x.tolist()
    assert tpr.tolist() == tpr_x.tolist()
    assert thr.tolist() == thr_x.tolist()
    assert roc_auc(bkg, sig, w, sw) == roc_auc(bkg_x, sig_x)
    fprs = [0.1, 0.01, 0.003]
    one = tpr_at_fpr(bkg, sig, fprs, bkg_weights=w, sig_weights=sw, min_expected=1)
    other = tpr_at_fpr(bkg_x, sig_x, fprs, min_expected=1)
    for key in ("threshold", "fpr", "tpr"):
        assert [e[key] for e in one] == [e[key] for e in other]
    res = evaluate_scores(bkg, {"s": sig}, fprs, bkg_weights=w, signal_weights={"s": sw})
    assert res["signals"]["s"]["auc"] == roc_auc(bkg_x, sig_x)
    assert res["n_bkg_eff"] == pytest.approx(w.sum() ** 2 / (w @ w))


# -- unit weights and the uncertainties ---------------------------------------------------
def test_unit_weights_keep_the_unweighted_numbers_exactly(samples: dict) -> None:
    menu = Menu.from_dict({"seeds": [*SEEDS, {"name": "Never", "type": "met", "met_min": 1e6}]})
    decision = menu.decide(samples["expanded"])
    plain = MenuCounts.for_menu(menu).add(decision)
    ones = MenuCounts.for_menu(menu).add(decision, weights=np.ones(len(decision)))
    assert plain.to_dict() == ones.to_dict()
    n, bx = plain.events, plain.bx_hz
    for count, unc in zip(plain.counts, plain.rate_uncertainties_hz, strict=True):
        p = count / n
        # the binomial error, and one event's rate for a seed that never fired
        assert unc == pytest.approx(math.sqrt(p * (1 - p) / n) * bx if count else bx / n, rel=1e-14)
    assert plain.counts[-1] == 0
    assert plain.n_eff == n


def test_weighted_uncertainty_is_the_sum_over_events(samples: dict) -> None:
    """var(p̂) = Σ wᵢ²(xᵢ − p̂)²/(Σw)², computed event by event here."""
    menu = Menu.from_dict({"seeds": SEEDS})
    rng = np.random.default_rng(2)
    w = rng.exponential(1.0, len(samples["weighted"]))  # not integers
    decision = menu.decide(samples["weighted"])
    counts = MenuCounts.for_menu(menu)
    for lo in range(0, len(w), 1000):  # batch by batch: the sums add up
        part = slice(lo, lo + 1000)
        from darktrigger.daq.trigger.decision import Decision

        counts.add(Decision(decision.raw[part], decision.bits[part], decision.names), weights=w[part])
    for i in range(len(SEEDS)):
        x = decision.fired(i).astype(np.float64)
        p = (w @ x) / w.sum()
        assert counts.rates_hz[i] == pytest.approx(p * counts.bx_hz, rel=1e-12)
        sd = math.sqrt(np.sum(w**2 * (x - p) ** 2)) / w.sum()
        assert counts.rate_uncertainties_hz[i] == pytest.approx(sd * counts.bx_hz, rel=1e-9)
    assert counts.n_eff == pytest.approx(w.sum() ** 2 / (w @ w), rel=1e-12)
    assert float(fraction_uncertainty(0.0, 0.0, float(w.sum()), float(w @ w))) == pytest.approx(1 / counts.n_eff)
    again = MenuCounts.from_dict(json.loads(json.dumps(counts.to_dict())))
    assert again.to_dict() == counts.to_dict()
    merged = MenuCounts.for_menu(menu).merge(counts).merge(again)
    assert merged.rates_hz == pytest.approx(counts.rates_hz, rel=1e-12)  # the same fractions
    assert merged.n_eff == pytest.approx(2 * counts.n_eff, rel=1e-12)


def test_counts_written_without_weight_sums_read_as_unit_weights(samples: dict) -> None:
    menu = Menu.from_dict({"seeds": SEEDS})
    counts = MenuCounts.for_menu(menu).add(menu.decide(samples["expanded"]))
    old = counts.to_dict()
    for key in ("weighted", "sum_weights", "sum_weights_sq", "n_eff", "accepted_weight", "accepted_weight_sq"):
        del old[key]
    for seed in old["seeds"]:
        for key in [k for k in seed if "weight" in k or k.endswith("rate_uncertainty_hz") and k != "rate_uncertainty_hz"]:
            del seed[key]
    del old["overlap"]["weights"]
    assert MenuCounts.from_dict(old).to_dict() == counts.to_dict()


# -- bad weights and samples that are not zero bias ----------------------------------------
def _with_weights(tmp_path: Path, name: str, weights: np.ndarray, process: str = "zero_bias") -> Path:
    batch = _toy("sm_mix", len(weights), seed=9).with_columns(weight=weights.astype(np.float32))
    path = tmp_path / name
    write_events(path, batch, provenance={"generator": "test", "process": process})
    return path


@pytest.mark.parametrize(("case", "row", "got"), [("nan", 1234, "nan"), ("negative", 2500, "-2.0"),
                                                  ("zero_sum", None, "a sum of 0.0")])
def test_bad_weights_name_the_file_and_the_first_bad_row(tmp_path: Path, case: str, row: int | None,
                                                         got: str, capsys: pytest.CaptureFixture[str]) -> None:
    w = np.ones(3000)
    if case == "nan":
        w[[1234, 2000]] = np.nan
    elif case == "negative":
        w[2500] = -2.0
    else:
        w[:] = 0.0
    path = _with_weights(tmp_path, f"{case}.h5", w)
    (tmp_path / "menu.yaml").write_text(json.dumps({"seeds": SEEDS}))
    assert main(["menu", "rates", "--menu", str(tmp_path / "menu.yaml"), "--events", str(path),
                 "--chunk-size", "1000"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert (f"row {row}" in err) if row is not None else ("positive sum" in err)
    assert got in err
    batch = open_events(path).read_all().with_columns(**{"score/m": np.arange(3000, dtype=np.float32)})
    menu = Menu.from_dict({"models": {"m": {"path": "unused"}}, "seeds": [
        {"name": "AD", "type": "anomaly", "model": "m", "rate_khz": 100}]})
    with pytest.raises(InputFormatError, match=f"{path.name}.*" + ("row " + str(row) if row else "positive sum")):
        calibrate_menu(menu, batch, source=str(path))


@pytest.fixture(scope="module")
def ae_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from darktrigger.models import get_scorer

    d = tmp_path_factory.mktemp("ae")
    ae = get_scorer("ae", hidden=[8], latent=2)
    ae.fit(_toy("zero_bias", 2000, seed=5), epochs=1, batch_size=256, seed=0)
    ae.save(d / "ae")
    return d / "ae"


def test_calibrate_and_evaluate_refuse_bad_weights(tmp_path: Path, ae_model: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    w = np.ones(2000)
    w[77] = np.nan
    bad = _with_weights(tmp_path, "bad.h5", w)
    good = _with_weights(tmp_path, "good.h5", np.ones(2000))
    assert main(["calibrate", "--model", str(ae_model), "--zero-bias", str(bad), "--rate-khz", "500"]) == 2
    assert f"{bad}, row 77: expected a finite event weight" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(ae_model), "--background", str(good), "--signal", f"s={bad}",
                 "--no-baselines"]) == 2
    assert f"{bad}, row 77" in capsys.readouterr().err


def test_calibrating_on_a_sample_that_is_not_zero_bias_warns_once(tmp_path: Path, ae_model: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    zb = _with_weights(tmp_path, "zb.h5", np.ones(3000), process="zero_bias")
    mix = tmp_path / "sm_mix.h5"
    gen = GENERATORS.get("toy")()
    write_events(mix, _toy("sm_mix", 3000, seed=8), provenance=gen.provenance("sm_mix", 8))
    single = _with_weights(tmp_path, "qcd.h5", np.ones(3000), process="qcd")
    menu = tmp_path / "menu.yaml"
    menu.write_text(json.dumps({"models": {"ae": {"path": str(ae_model)}},
                                "seeds": [{"name": "AD", "type": "anomaly", "model": "ae", "rate_khz": 2000}]}))
    for path, why in ((zb, None), (mix, "process 'sm_mix'"), (single, "single process, 'qcd'")):
        for command in (["calibrate", "--model", str(ae_model), "--zero-bias", str(path), "--rate-khz", "2000"],
                        ["menu", "calibrate", "--menu", str(menu), "--zero-bias", str(path),
                         "--out", str(tmp_path / "cal.yaml")]):
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                assert main(command) == 0
            warned = [r.getMessage() for r in caplog.records if "not a zero-bias sample" in r.getMessage()]
            if why is None:
                assert warned == []
            else:
                assert len(warned) == 1
                assert str(path) in warned[0]
                assert why in warned[0]
                assert "\n" not in warned[0]

