"""Thresholds for target rates: exact quantiles, ties, weights, resolution, errors, speed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import pytest

from darktrigger.models.thresholds import (
    Threshold,
    background_quantiles,
    rate_of,
    threshold_for_rate,
    thresholds_for_rates,
)
from darktrigger.replay.errors import ConfigError, DarkTriggerError


@pytest.fixture
def shuffled() -> np.ndarray:
    return np.random.default_rng(3).permutation(1000).astype(np.float64)


def test_threshold_on_known_array_is_the_exact_quantile(shuffled: np.ndarray) -> None:
    t = threshold_for_rate(shuffled, rate_khz=400, input_rate_mhz=40)  # FPR 1e-2: 10 of 1000
    assert t.fpr == 0.01
    assert t.threshold == 989.0
    assert t.n_above == 10
    assert t.achieved_fpr == 0.01
    assert t.n_bkg == 1000
    assert t.resolved
    assert t.message == ""
    assert rate_of(t, shuffled) == (400_000.0, pytest.approx(40e6 * np.sqrt(0.01 * 0.99 / 1000)))


def test_float_rounding_of_fpr_times_n_keeps_the_count() -> None:
    # 0.29 * 100 == 28.999999999999996 in floats; the allowed count must still be 29
    t = threshold_for_rate(np.arange(100.0), rate_khz=0.29 * 40_000, input_rate_mhz=40)
    assert t.n_above == 29
    assert t.threshold == 70.0


def test_ties_never_push_the_rate_above_target() -> None:
    scores = np.repeat(np.arange(10.0), 100)  # 100 events at each of 0..9
    t = threshold_for_rate(scores, rate_khz=0.15 * 40_000, input_rate_mhz=40)  # allows 150 above
    assert t.threshold == 8.0  # 7 would let 200 through
    assert t.n_above == 100
    assert t.achieved_fpr == 0.1
    assert background_quantiles(np.array([1.0, 2, 2, 3]), [0.25, 0.5]).tolist() == [2.0, 2.0]


def test_many_rates_at_once_equal_one_at_a_time(shuffled: np.ndarray) -> None:
    rates = [4000.0, 40.0, 400.0, 1.0]
    together = thresholds_for_rates(shuffled, rates, input_rate_mhz=40)
    assert together == [threshold_for_rate(shuffled, r, input_rate_mhz=40) for r in rates]
    assert [t.threshold for t in together] == [899.0, 998.0, 989.0, 999.0]


def test_unit_weights_give_exactly_the_unweighted_threshold() -> None:
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(0, 1, 5000), 2)  # many ties
    rates = [40_000 * f for f in (0.5, 0.1, 0.0123, 1e-3, 2e-4)]
    plain = thresholds_for_rates(scores, rates)
    weighted = thresholds_for_rates(scores, rates, weights=np.ones(scores.size))
    assert [t.threshold for t in plain] == [t.threshold for t in weighted]
    assert [t.threshold_low for t in plain] == [t.threshold_low for t in weighted]


def test_weighted_threshold_counts_weight_not_events() -> None:
    scores, weights = np.array([1.0, 2, 3, 4]), np.array([1.0, 1, 1, 5])
    t = threshold_for_rate(scores, rate_khz=0.7 * 40_000, input_rate_mhz=40, weights=weights)  # weight 5.6
    assert t.threshold == 3.0
    assert t.n_above == 1
    assert t.achieved_fpr == 5 / 8
    assert t.n_eff == pytest.approx(64 / 28)
    assert threshold_for_rate(scores, 0.5 * 40_000, 40, weights=weights).threshold == 4.0


def test_unresolved_rate_says_so_and_gives_the_sample_maximum(shuffled: np.ndarray) -> None:
    t = threshold_for_rate(shuffled, rate_khz=1, input_rate_mhz=40)  # FPR 2.5e-5: 0.025 events
    assert not t.resolved
    assert "background sample too small: 1,000 events" in t.message
    assert "resolve FPR down to 1.0e-02" in t.message  # 10 events above (one rule with evaluate)
    assert t.threshold == 999.0
    assert t.n_above == 0
    assert not threshold_for_rate(shuffled, rate_khz=40, input_rate_mhz=40).resolved  # one event: < 10
    assert threshold_for_rate(shuffled, rate_khz=400, input_rate_mhz=40).resolved  # exactly ten above


def test_uncertainty_brackets_the_true_quantile_and_shrinks_with_sample_size() -> None:
    rng = np.random.default_rng(11)
    true_q = 3.090232306167813  # standard normal, upper tail 1e-3
    widths = []
    for n in (10_000, 1_000_000):
        t = threshold_for_rate(rng.normal(0, 1, n), rate_khz=40, input_rate_mhz=40)
        assert t.threshold_low <= t.threshold <= t.threshold_high
        assert t.threshold_low - t.uncertainty <= true_q <= t.threshold_high + t.uncertainty
        widths.append(t.uncertainty)
    assert 0 < widths[1] < widths[0] / 5


def test_threshold_round_trips_through_json(shuffled: np.ndarray) -> None:
    t = threshold_for_rate(shuffled, rate_khz=400)
    data = json.loads(json.dumps(t.to_dict(), allow_nan=False))
    assert data["uncertainty"] == t.uncertainty
    assert Threshold.from_dict(data) == t
    del data["threshold"]
    with pytest.raises(ConfigError, match="missing key.*threshold"):
        Threshold.from_dict(data)
    with pytest.raises(ConfigError, match="unknown key.*colour"):
        Threshold.from_dict(t.to_dict() | {"colour": "red"})


def test_rate_of_with_nothing_above_is_one_event_wide(shuffled: np.ndarray) -> None:
    rate, err = rate_of(1e9, shuffled, input_rate_mhz=40)
    assert rate == 0.0
    assert err == 40e6 / 1000
    # a Threshold brings its own input rate: 40 kHz at 20 MHz is 2 of the 1000 events
    assert rate_of(threshold_for_rate(shuffled, 40, input_rate_mhz=20), shuffled)[0] == 40_000.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: threshold_for_rate([], 10), "bkg_scores: expected at least one score, got an empty"),
        (lambda: threshold_for_rate([1.0, np.nan, 2.0], 10), r"bkg_scores: .*NaN.*index 1"),
        (lambda: threshold_for_rate(np.ones((3, 2)), 10), r"bkg_scores: expected a 1-D .*\(3, 2\)"),
        (lambda: threshold_for_rate(["a", "b"], 10), "bkg_scores: expected numbers"),
        (lambda: threshold_for_rate([1.0, 2.0], 0), "rate_khz: expected a rate above 0"),
        (lambda: threshold_for_rate([1.0, 2.0], 40_000), "rate_khz: .*below the input rate"),
        (lambda: threshold_for_rate([1.0, 2.0], 10, input_rate_mhz=-1), "input_rate_mhz"),
        (lambda: thresholds_for_rates([1.0, 2.0], []), "rates_khz: expected a non-empty"),
        (lambda: threshold_for_rate([1.0, 2.0], 10, weights=[1.0]), r"weights: expected shape \(2,\)"),
        (lambda: threshold_for_rate([1.0, 2.0], 10, weights=[1.0, -1]), "weights: .*non-negative"),
        (lambda: threshold_for_rate([1.0, 2.0], 10, weights=[0.0, 0]), "weights: .*positive sum"),
        (lambda: rate_of(np.nan, [1.0, 2.0]), "threshold: expected a finite score"),
    ],
)
def test_bad_arguments_raise_config_errors_naming_them(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DarkTriggerError)


def test_ten_million_scores_are_fast_and_exact() -> None:
    n = 10**7
    scores = ((np.arange(n) * 7919) % n).astype(np.float32)  # a permutation of 0..n-1, exact in float32
    start = time.perf_counter()
    ts = thresholds_for_rates(scores, [1, 10, 100], input_rate_mhz=40)
    elapsed = time.perf_counter() - start
    assert [t.threshold for t in ts] == [10**7 - 251.0, 10**7 - 2501.0, 10**7 - 25001.0]
    assert [t.n_above for t in ts] == [250, 2500, 25000]
    assert elapsed < 3.0, f"three thresholds on 10^7 scores took {elapsed:.2f} s"


def test_evaluate_and_calibrate_resolve_the_same_fprs_on_300k_events(caplog: pytest.LogCaptureFixture) -> None:
    """One rule (thresholds.resolves): a 300k sample resolves FPR down to 3.3e-5 in both."""
    from darktrigger.models.metrics import tpr_at_fpr
    from darktrigger.models.thresholds import thresholds_for_rates

    rng = np.random.default_rng(3)
    bkg, sig = rng.normal(0, 1, 300_000), rng.normal(2, 1, 1000)
    fprs = [1e-4, 4e-5, 3e-5, 1e-5, 3.3e-6]
    evaluated = [e["resolved"] for e in tpr_at_fpr(bkg, sig, fprs)]
    with caplog.at_level("WARNING", logger="darktrigger.models.thresholds"):
        calibrated = [t.resolved for t in thresholds_for_rates(bkg, [f * 40e3 for f in fprs], 40.0)]
    assert evaluated == calibrated == [True, True, False, False, False]
    notes = [e["note"] for e in tpr_at_fpr(bkg, sig, [1e-5])]
    assert "resolve FPR down to 3.3e-05" in notes[0]
    # three unresolved rates, one warning
    assert len([r for r in caplog.records if "not resolved" in r.getMessage()]) == 1
