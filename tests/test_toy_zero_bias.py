"""The toy zero-bias stream: crossings with pile-up, L1 rates that fall with threshold, LHC conditions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darktrigger.daq.trigger.seeds import make_seed
from darktrigger.replay.events import PROCESS_LABELS, SLOTS, EventBatch
from darktrigger.replay.generators.toy import CHUNK, ToyGenerator
from darktrigger.replay.generators.toy_zero_bias import ZeroBiasModel, l1_muon_pt, make_crossings
from darktrigger.replay.lhc import LHCConditions

N = 400_000  # crossings: 14 Hz per crossing at 28.6 MHz, so a seed at a few kHz has hundreds


def crossings(n: int = N, seed: int = 1, **options: float) -> EventBatch:
    return EventBatch.concat(list(ToyGenerator(**options).generate("zero_bias", n, seed=seed, batch_size=131_072)))


@pytest.fixture(scope="module")
def zb() -> EventBatch:
    return crossings()


def rate_khz(fired: np.ndarray) -> float:
    return float(fired.mean()) * LHCConditions().crossing_rate_hz / 1e3


def test_conditions_in_provenance() -> None:
    prov = ToyGenerator().provenance("zero_bias", 3)
    run3 = LHCConditions()
    assert prov["luminosity"] == run3.luminosity
    assert prov["pileup"] == pytest.approx(run3.pileup)
    assert prov["crossing_rate_hz"] == pytest.approx(run3.crossing_rate_hz)
    assert prov["unit"] == "bunch crossing"
    assert set(prov["zero_bias_model"]) == set(ZeroBiasModel().to_dict())
    # μ given: it wins, and the luminosity follows from it
    prov = ToyGenerator(pileup=60.0, luminosity=1.0e34).provenance("zero_bias", 3)
    assert prov["pileup"] == pytest.approx(60.0)
    assert prov["luminosity"] == pytest.approx(LHCConditions.from_pileup(60.0).luminosity)
    assert ToyGenerator(luminosity=1.0e34).provenance("zero_bias", 3)["pileup"] == pytest.approx(run3.pileup / 2)
    assert "pileup" not in ToyGenerator().provenance("qcd", 3)


def test_reproducible_and_independent_of_batching() -> None:
    whole = crossings(CHUNK + 5_000, seed=9)
    again = EventBatch.concat(list(ToyGenerator().generate("zero_bias", CHUNK + 5_000, seed=9, batch_size=999)))
    prefix = crossings(2_000, seed=9)
    for name in whole.names:
        assert np.array_equal(whole[name], again[name]), name
        assert np.array_equal(whole[name][:2_000], prefix[name]), name
    assert not np.array_equal(whole.objects, crossings(CHUNK + 5_000, seed=10).objects)


#: σ(HardQCD:all, p̂T > x) in pb at 13.6 TeV, Pythia 8.317 process level (sigmaGen of 3000 events)
PYTHIA_QCD_SIGMA_PB = {15: 2.142e9, 20: 7.736e8, 30: 1.736e8, 50: 2.47e7, 80: 3.657e6, 120: 6.492e5,
                       170: 1.396e5, 250: 2.295e4, 400: 2271.0, 600: 263.0, 1000: 12.65}


def test_hard_qcd_spectrum_is_pythias() -> None:
    m = ZeroBiasModel()
    for pt_hat, sigma in PYTHIA_QCD_SIGMA_PB.items():
        assert m.sigma_qcd_pb(float(pt_hat)) == pytest.approx(sigma, rel=0.03), pt_hat


def test_one_event_is_one_crossing(zb: EventBatch) -> None:
    assert np.all(zb["weight"] == 1.0)
    truth = zb["truth"]
    # p̂T > 30 GeV in ≈ 1 − exp(−μ·σ₃₀/σ_inel) = 11.5 % of crossings at 2.0e34
    m = ZeroBiasModel()
    expected = 1 - math.exp(-LHCConditions().pileup * m.per_interaction(m.sigma_qcd_pb(30.0)))
    assert abs(np.mean(truth == PROCESS_LABELS["qcd"]) - expected) < 0.005
    # W → ℓν at σ·L ≈ 1 kHz: 3.4·10⁻⁵ of crossings
    n_w = int(np.sum(truth == PROCESS_LABELS["wjets"]))
    assert 3 <= n_w <= 30
    assert np.all(np.isin(truth, [PROCESS_LABELS[p] for p in ("minbias", "qcd", "wjets", "zjets", "ttbar")]))


SEED_SCANS = [
    ("single_mu", "pt_min", (5, 10, 22, 40), {}),
    ("single_eg", "pt_min", (10, 20, 36, 60), {"eta_max": 2.5}),
    ("single_jet", "pt_min", (30, 60, 120, 180), {}),
    ("ht", "ht_min", (100, 200, 280, 360), {}),
    ("met", "met_min", (40, 60, 80, 100), {}),
]


@pytest.mark.parametrize(("seed_type", "key", "thresholds", "extra"), SEED_SCANS, ids=[s[0] for s in SEED_SCANS])
def test_rates_fall_with_threshold(zb: EventBatch, seed_type: str, key: str, thresholds: tuple[int, ...],
                                   extra: dict[str, float]) -> None:
    counts = [int(make_seed("s", seed_type, {key: t, **extra}).fires(zb).sum()) for t in thresholds]
    assert all(a > b for a, b in zip(counts, counts[1:], strict=False)), counts
    assert counts[-1] > 0, counts


def test_menu_rates_are_l1_like(zb: EventBatch) -> None:
    """CMS ran these unprescaled at 2.0e34 at a few kHz each; the toy is a parametrisation, so
    only the order of magnitude is held here (BENCHMARKS.md compares with Pythia)."""
    seeds: dict[str, tuple[str, dict[str, float]]] = {
        "SingleMu22": ("single_mu", {"pt_min": 22}), "SingleEG36er2p5": ("single_eg", {"pt_min": 36, "eta_max": 2.5}),
             "SingleJet180": ("single_jet", {"pt_min": 180}), "HTT280er": ("ht", {"ht_min": 280}),
             "ETMHF90": ("met", {"met_min": 90})}
    for name, (kind, params) in seeds.items():
        khz = rate_khz(make_seed(name, kind, params).fires(zb))
        assert 0.5 <= khz <= 60.0, (name, khz)


def test_pileup_grows_the_soft_content() -> None:
    low, high = crossings(50_000, pileup=30.0), crossings(50_000, pileup=100.0)

    def summary(b: EventBatch) -> tuple[float, float, float]:
        jets = b.objects[:, SLOTS["jet"], 0]
        met_rms = float(np.sqrt(np.mean(b.objects[:, 0, 0] ** 2) / 2))
        return float((jets > 0).sum(1).mean()), float(jets[:, 0].mean()), met_rms

    (n_lo, lead_lo, met_lo), (n_hi, lead_hi, met_hi) = summary(low), summary(high)
    assert n_hi > 2 * n_lo  # more pile-up jets ...
    assert lead_hi > lead_lo + 5  # ... and harder ones
    # MET resolution grows as √ΣET ∝ √μ
    assert met_hi / met_lo == pytest.approx(math.sqrt(100 / 30), rel=0.1)


def test_almost_empty_crossings_at_low_pileup() -> None:
    b = crossings(50_000, pileup=0.5)
    jets = (b.objects[:, SLOTS["jet"], 0] > 0).sum(1)
    assert jets.mean() < 0.01  # pile-up jets need pile-up; hard QCD is 0.1 % of crossings here
    assert np.mean(b["truth"] == PROCESS_LABELS["qcd"]) < 0.005
    assert np.mean(b.objects[:, 0, 0] == 0) > 0.5  # no interaction at all: nothing in the calorimeter


def test_hard_interaction_of_a_given_pt_hat() -> None:
    rng = np.random.default_rng(4)
    objects, truth = make_crossings(rng, 20_000, 55.9, pt_hat=np.full(20_000, 500.0))
    assert np.all(truth == PROCESS_LABELS["qcd"])
    lead = objects[:, SLOTS["jet"].start, 0]
    assert 0.8 < np.median(lead) / 500.0 < 1.15
    # the jets balance: the MET from their mismeasurement is small next to p̂T
    assert np.median(objects[:, 0, 0]) < 100


def test_muons_have_the_l1_resolution() -> None:
    """σ(1/pT)/(1/pT) = 20 % in the core, 5 % of muons in a 60 % tail, saturating at 255 GeV."""
    m = ZeroBiasModel()
    reco = l1_muon_pt(np.random.default_rng(2), np.full(400_000, 20.0), m)
    rel = 20.0 / reco - 1.0  # the relative 1/pT error
    core = np.abs(rel) < 1.0
    q16, q84 = np.quantile(rel[core], [0.16, 0.84])
    assert (q84 - q16) / 2 == pytest.approx(0.2, rel=0.08)
    # beyond 3σ of the core only the tail: 5 % × P(|z| > 1) ≈ 1.6 %
    assert np.mean(np.abs(rel) > 0.6) == pytest.approx(0.05 * 0.3173 + 0.95 * 0.0027, rel=0.1)
    # saturated: a bend below that of 255 GeV, 1 + 0.6·z < 20/255, in the tail only
    below = 0.5 * math.erfc((1 - 20.0 / m.mu_pt_max) / m.mu_tail_resolution / math.sqrt(2))
    assert np.mean(reco == m.mu_pt_max) == pytest.approx(m.mu_tail_fraction * below, rel=0.15)
    # the rate above a threshold comes mostly from muons below it (SingleMu22 from 10 GeV muons)
    assert np.mean(l1_muon_pt(np.random.default_rng(3), np.full(400_000, 10.0), m) >= 22) > 0.01
