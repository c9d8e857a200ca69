"""Metrics: exact AUC and ROC, TPR at FPR with binomial errors, SI, the table."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import binomtest

from darktrigger.models.metrics import (
    CL_1SIGMA,
    binomial_interval,
    evaluate_scores,
    format_table,
    roc_auc,
    roc_curve,
    significance_improvement,
    tpr_at_fpr,
)
from darktrigger.replay.errors import ConfigError


def brute_force_auc(bkg: np.ndarray, sig: np.ndarray) -> float:
    """Mann–Whitney U over every (signal, background) pair, ties counted half."""
    twice_u = 0
    for s in sig.tolist():
        for b in bkg.tolist():
            twice_u += 2 if s > b else 1 if s == b else 0
    return twice_u / (2 * len(sig) * len(bkg))


@pytest.mark.parametrize("seed", range(6))
def test_auc_equals_brute_force_pair_count_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_b, n_s = rng.integers(1, 120, 2)
    bkg = rng.integers(0, 8, n_b).astype(np.float32)  # few values: many ties
    sig = (rng.integers(0, 8, n_s) + rng.integers(0, 3)).astype(np.float64)
    assert roc_auc(bkg, sig) == brute_force_auc(bkg, sig)


def test_auc_of_ties_and_extremes() -> None:
    assert roc_auc([1.0, 1.0], [1.0]) == 0.5
    assert roc_auc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert roc_auc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert roc_auc([0.1, 0.4], [0.4, 0.8]) == 0.875


def test_weighted_auc_equals_repeated_events() -> None:
    rng = np.random.default_rng(7)
    bkg, sig = rng.integers(0, 20, 300).astype(float), rng.integers(3, 25, 200).astype(float)
    wb, ws = rng.integers(1, 4, 300), rng.integers(1, 4, 200)
    expected = roc_auc(np.repeat(bkg, wb), np.repeat(sig, ws))
    assert roc_auc(bkg, sig, wb.astype(float), ws.astype(float)) == pytest.approx(expected, rel=1e-12)


def test_two_gaussians_two_sigma_apart_have_auc_above_floor() -> None:
    rng = np.random.default_rng(1)
    assert roc_auc(rng.normal(0, 1, 20_000), rng.normal(2, 1, 5_000)) >= 0.9  # 0.921 expected


def test_roc_curve_points_are_the_fractions_above_each_threshold() -> None:
    rng = np.random.default_rng(2)
    bkg, sig = rng.integers(0, 10, 200).astype(float), rng.integers(2, 12, 150).astype(float)
    fpr, tpr, thr = roc_curve(bkg, sig)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1], thr[-1]) == (0.0, 0.0, 1.0, 1.0, -np.inf)
    assert np.all(np.diff(thr) < 0)
    assert np.all(np.diff(fpr) >= 0)
    assert np.all(np.diff(tpr) >= 0)
    for f, t, cut in zip(fpr, tpr, thr, strict=True):
        assert f == np.mean(bkg > cut)
        assert t == np.mean(sig > cut)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count half
    assert area == pytest.approx(roc_auc(bkg, sig), rel=1e-12)


def test_roc_curve_with_ties_has_a_diagonal_step() -> None:
    fpr, tpr, thr = roc_curve([0.1, 0.4], [0.4, 0.8])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert thr.tolist() == [0.8, 0.4, 0.1, -np.inf]


def test_tpr_at_fpr_on_known_arrays_is_exact() -> None:
    bkg = np.random.default_rng(4).permutation(1000).astype(float)
    sig = np.arange(500.0, 1500.0)
    (e,) = tpr_at_fpr(bkg, sig, [0.01])
    assert e["resolved"]
    assert e["threshold"] == 989.0
    assert (e["fpr"], e["n_bkg_above"], e["tpr"], e["n_sig_above"]) == (0.01, 10, 0.51, 510)
    assert e["tpr_err"] == pytest.approx(math.sqrt(0.51 * 0.49 / 1000))
    ci = binomtest(510, 1000).proportion_ci(confidence_level=CL_1SIGMA, method="exact")
    assert (e["tpr_lo"], e["tpr_hi"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert e["tpr_lo"] < e["tpr"] < e["tpr_hi"]


def test_achieved_fpr_never_exceeds_target_with_ties() -> None:
    bkg = np.repeat(np.arange(10.0), 100)
    entries = tpr_at_fpr(bkg, np.arange(10.0), [0.15, 0.05, 0.01])
    assert entries[0]["fpr"] == 0.1  # 100 events at 9: 8 is the threshold, not 7 (which lets 200 through)
    assert entries[0]["fpr"] <= entries[0]["fpr_target"]
    # below 10 %, the ties leave no background event above the threshold: nothing resolved
    assert [e["resolved"] for e in entries] == [True, False, False]
    assert entries[1]["note"] == "background sample too small: 1,000 events resolve FPR down to 1.0e-01"


def test_unresolved_fpr_gives_a_note_and_no_number() -> None:
    rng = np.random.default_rng(0)
    entries = tpr_at_fpr(rng.normal(0, 1, 20_000), rng.normal(1, 1, 100), [1e-3, 1e-4])
    assert entries[0]["resolved"]
    assert entries[0]["tpr"] is not None
    assert entries[1]["resolved"] is False
    assert entries[1]["note"] == "background sample too small: 20,000 events resolve FPR down to 5.0e-04"
    assert all(entries[1][k] is None for k in ("tpr", "tpr_err", "threshold", "fpr"))
    relaxed = tpr_at_fpr(rng.normal(0, 1, 20_000), rng.normal(1, 1, 100), [1e-4], min_expected=1)
    assert relaxed[0]["resolved"]
    assert relaxed[0]["n_bkg_above"] == 2


def test_significance_improvement_and_its_propagated_error() -> None:
    si, err = significance_improvement(0.5, 1e-4, 0.01, 1e-5)
    assert si == 50.0
    # numeric partial derivatives agree with the propagation
    h = 1e-9
    d_s = (significance_improvement(0.5 + h, 1e-4)[0] - si) / h
    d_b = (significance_improvement(0.5, 1e-4 + h * 1e-4)[0] - si) / (h * 1e-4)
    assert err == pytest.approx(math.hypot(d_s * 0.01, d_b * 1e-5), rel=1e-4)
    with pytest.raises(ConfigError, match="eff_b"):
        significance_improvement(0.5, 0.0)
    with pytest.raises(ConfigError, match="eff_s: expected an efficiency"):
        significance_improvement(1.5, 0.1)


def test_random_guess_has_small_si_and_a_separated_signal_a_large_one() -> None:
    rng = np.random.default_rng(9)
    bkg = rng.normal(0, 1, 100_000)
    res = evaluate_scores(bkg, {"noise": rng.normal(0, 1, 20_000), "far": rng.normal(4, 1, 20_000)},
                          fprs=(1e-2,))
    assert res["signals"]["noise"]["si"][0]["si"] < 0.2  # ≈ √0.01 = 0.1
    assert res["signals"]["far"]["si"][0]["si"] > 5
    assert 0.45 < res["signals"]["noise"]["auc"] < 0.55


def test_evaluate_scores_is_json_ready_with_entries_at_each_fpr() -> None:
    rng = np.random.default_rng(3)
    res = evaluate_scores(rng.normal(0, 1, 30_000),
                          {"ato4l": rng.normal(2, 1, 3000), "tau": rng.normal(0.5, 1, 3000)})
    text = json.dumps(res, allow_nan=False)
    again = json.loads(text)
    assert again["n_bkg"] == 30_000
    assert again["fpr_targets"] == [1e-2, 1e-3, 1e-4, 1e-5]
    for m in again["signals"].values():
        assert any("auc" in k for k in m)
        assert 0 < m["auc_err"] < 0.02
        assert [e["fpr_target"] for e in m["tpr_at_fpr"]] == again["fpr_targets"]
        assert [e["fpr_target"] for e in m["si"]] == again["fpr_targets"]
        assert [e["resolved"] for e in m["si"]] == [True, True, False, False]
    assert again["signals"]["ato4l"]["auc"] >= 0.9


def test_weighted_evaluation_uses_effective_sizes() -> None:
    rng = np.random.default_rng(6)
    bkg, sig = rng.normal(0, 1, 5000), rng.normal(2, 1, 2000)
    plain = evaluate_scores(bkg, {"s": sig}, (1e-2,))
    unit = evaluate_scores(bkg, {"s": sig}, (1e-2,), bkg_weights=np.ones(5000),
                           signal_weights={"s": np.ones(2000)})
    assert unit["signals"]["s"]["auc"] == pytest.approx(plain["signals"]["s"]["auc"], rel=1e-12)
    for got, want in zip(unit["signals"]["s"]["tpr_at_fpr"], plain["signals"]["s"]["tpr_at_fpr"],
                         strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value)
    lumpy = evaluate_scores(bkg, {"s": sig}, (1e-2,), bkg_weights=rng.exponential(1, 5000))
    assert lumpy["n_bkg_eff"] < 0.7 * 5000


def test_format_table_puts_models_side_by_side() -> None:
    rng = np.random.default_rng(8)
    bkg = rng.normal(0, 1, 20_000)
    ae = evaluate_scores(bkg, {"ato4l": rng.normal(2, 1, 2000), "tau": rng.normal(1, 1, 2000)})
    st = evaluate_scores(bkg * 3, {"ato4l": rng.normal(1, 1, 2000)})
    text = format_table({"ae": ae, "st": st})
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["signal", "model", "AUC", "TPR@1e-02"]
    assert any(line.split()[:2] == ["ato4l", "st"] for line in lines)
    assert any(line.startswith("tau") and "n/a" in line and "st" in line for line in lines)
    assert "—" in text
    assert "— background sample too small: 20,000 events resolve FPR down to 5.0e-04 (ae, st)" in text
    md = format_table({"ae": ae, "st": st}, markdown=True).split("\n\n")[0].splitlines()
    assert len(md) == 2 + 4
    assert len({line.count("|") for line in md}) == 1
    assert md[1].startswith("|---|")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: roc_auc([], [1.0]), "bkg_scores: expected at least one score"),
        (lambda: roc_auc([1.0], [np.nan]), r"sig_scores: .*NaN"),
        (lambda: roc_curve([1.0], [2.0], bkg_weights=[1.0, 2.0]), r"bkg_weights: expected shape \(1,\)"),
        (lambda: tpr_at_fpr([1.0], [2.0], [0.0]), "fpr_targets: expected FPRs between 0 and 1"),
        (lambda: tpr_at_fpr([1.0], [2.0], [1e-2], sig_weights=[-1.0]), "sig_weights"),
        (lambda: evaluate_scores([1.0, 2.0], {}), "signals: expected at least one"),
        (lambda: evaluate_scores([1.0, 2.0], {"ato4l": [np.inf]}), r"signals\['ato4l'\]: .*inf"),
        (lambda: format_table({}), "results_by_model"),
        (lambda: binomial_interval(5, 3), "binomial_interval: expected 0 <= k <= n"),
    ],
)
def test_bad_arguments_raise_config_errors_naming_them(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)
