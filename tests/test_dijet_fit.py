"""The dijet function fit: integrals, unbiased predictions, significances, clear failures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darktrigger.models.cwola.dijet_fit import (
    SQRT_S_GEV,
    FitError,
    dijet_function,
    expected_counts,
    fit_dijet,
    poisson_significance,
    significance,
    significance_spread,
)

PARAMS = (400.0, 10.0, 5.0, 0.1)  # ~21k events in 2–6 TeV
EDGES = np.geomspace(2000.0, 6000.0, 41)
WINDOW = (float(EDGES[15]), float(EDGES[21]))


def test_the_function_and_its_bin_integrals() -> None:
    x = np.array([0.2, 0.3])
    p0, p1, p2, p3 = PARAMS
    direct = p0 * (1 - x) ** p1 / x ** (p2 + p3 * np.log(x))
    np.testing.assert_allclose(dijet_function(x, *PARAMS), direct, rtol=1e-12)
    fine = np.linspace(EDGES[0], EDGES[1], 20001) / SQRT_S_GEV
    y = dijet_function(fine, *PARAMS)
    trapezoid = float(((y[1:] + y[:-1]) * np.diff(fine)).sum() / 2)
    assert expected_counts(EDGES[:2], PARAMS)[0] == pytest.approx(trapezoid, rel=1e-6)
    with pytest.raises(FitError, match="rise strictly"):
        expected_counts([3000.0, 2000.0], PARAMS)


def test_fit_recovers_the_spectrum_and_predicts_the_window_without_bias() -> None:
    mu = expected_counts(EDGES, PARAMS)
    truth = float(mu[15:21].sum())
    pulls = []
    for seed in range(12):
        counts = np.random.default_rng(seed).poisson(mu)
        fit = fit_dijet(counts, EDGES, exclude=WINDOW, where="test")
        assert fit.fitted.sum() == 34
        assert not fit.fitted[15:21].any()
        b, db = fit.predict(WINDOW)
        assert 0 < db < 0.1 * b
        pulls.append((b - truth) / db)
        assert fit.deviance / fit.ndf < 2.5
        # the fitted shape equals the true one where it was fitted, within a few per cent
        np.testing.assert_allclose(fit.expected()[:10], mu[:10], rtol=0.06)
    assert abs(float(np.mean(pulls))) < 0.7
    assert 0.4 < float(np.std(pulls)) < 1.8


def test_a_bump_in_the_window_does_not_pull_the_fit() -> None:
    mu = expected_counts(EDGES, PARAMS)
    counts = np.random.default_rng(3).poisson(mu)
    bump = counts.copy()
    bump[16:20] += 120
    clean = fit_dijet(counts, EDGES, exclude=WINDOW).predict(WINDOW)
    with_bump = fit_dijet(bump, EDGES, exclude=WINDOW)
    b, db = with_bump.predict(WINDOW)
    assert b == pytest.approx(clean[0], rel=1e-9)
    z = significance(int(bump[15:21].sum()), b, db)
    assert z > 4
    # without leaving the window out, the same bump is partly absorbed
    absorbed, _ = fit_dijet(bump, EDGES).predict(WINDOW)
    assert absorbed > b


def test_parameters_come_back_and_the_report_is_plain_json() -> None:
    mu = expected_counts(EDGES, PARAMS) * 50  # a million events: the parameters are pinned
    fit = fit_dijet(np.random.default_rng(4).poisson(mu), EDGES)
    got = fit.params
    assert got["p1"] == pytest.approx(PARAMS[1], abs=4 * fit.errors["p1"] + 0.5)
    assert got["p2"] == pytest.approx(PARAMS[2], abs=4 * fit.errors["p2"] + 0.5)
    d = fit.to_dict()
    assert set(d) >= {"params", "errors", "deviance", "ndf"}
    assert d["ndf"] == 36
    assert all(math.isfinite(v) for v in d["params"].values())


def test_significances() -> None:
    assert poisson_significance(100, 100.0) == 0.0
    assert poisson_significance(0, 3.0) == pytest.approx(-math.sqrt(6.0))
    assert poisson_significance(130, 100.0) > 0 > poisson_significance(70, 100.0)
    # large counts: close to (n - b) / sqrt(b)
    assert poisson_significance(10_300, 10_000.0) == pytest.approx(3.0, abs=0.03)
    assert significance(150, 100.0, 0.0) == poisson_significance(150, 100.0)
    zs = [significance(150, 100.0, s) for s in (1.0, 5.0, 10.0, 30.0)]
    assert all(a > b for a, b in zip(zs, zs[1:], strict=False))
    assert zs[-1] > 0
    # with a known background uncertainty, close to (n - b) / sqrt(b + σ²) for large counts
    assert significance(10_400, 10_000.0, 50.0) == pytest.approx(400 / math.sqrt(12_500), rel=0.05)
    assert significance(0, 2.0, 0.5) < 0
    assert significance_spread(150, 100.0, 10.0) > 0 == significance_spread(150, 100.0, 0.0)
    with pytest.raises(FitError, match="positive"):
        significance(3, 0.0, 1.0)


def test_too_few_filled_bins_is_a_clear_error() -> None:
    counts = np.zeros(40, int)
    counts[[1, 5, 30]] = 2
    with pytest.raises(FitError, match=r"window 3, efficiency 0.002: only 3 bin\(s\) with events "
                                       r"outside the window \(6 events\)"):
        fit_dijet(counts, EDGES, exclude=WINDOW, where="window 3, efficiency 0.002")
    with pytest.raises(FitError, match=r"counts \[B\] and edges \[B\+1\]"):
        fit_dijet(counts[:-1], EDGES)


def test_a_fit_that_does_not_converge_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from iminuit import Minuit

    monkeypatch.setattr(Minuit, "valid", property(lambda self: False))
    counts = np.random.default_rng(5).poisson(expected_counts(EDGES, PARAMS))
    with pytest.raises(FitError, match="window 7: the dijet fit did not converge"):
        fit_dijet(counts, EDGES, exclude=WINDOW, where="window 7")
