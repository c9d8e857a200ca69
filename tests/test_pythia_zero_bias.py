"""Pythia zero bias: weights in Hz summing to the crossing rate, the pile-up μ, reproducibility,
rates that fall with threshold, and the L1 detector's muon fakes; ``generate --jobs``.

One sample of 1,200 crossings on a 6,000-event minimum-bias library (module-scoped, in a
temporary folder) serves the statistical checks; they are floors on seeded data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from darktrigger.daq.cli import main  # noqa: E402
from darktrigger.replay.detector import DECAY_IN_FLIGHT, DetectorConfig, L1Detector, ParticleBatch  # noqa: E402
from darktrigger.replay.events import PROCESS_LABELS, EventBatch  # noqa: E402
from darktrigger.replay.generators.pythia import PythiaGenerator  # noqa: E402
from darktrigger.replay.generators.pythia_zero_bias import CATEGORIES, DEFAULT_ALLOCATION, allocate  # noqa: E402
from darktrigger.replay.lhc import LHCConditions  # noqa: E402
from darktrigger.replay.readers import open_events  # noqa: E402

N_CROSSINGS = 1200
SEED = 77
LIBRARY_EVENTS = 6_000


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("minbias") / "lib.npz"


@pytest.fixture(scope="module")
def sample(library: Path) -> tuple[PythiaGenerator, EventBatch]:
    gen = PythiaGenerator(library=library, library_events=LIBRARY_EVENTS)
    return gen, EventBatch.concat(list(gen.generate("zero_bias", N_CROSSINGS, seed=SEED, batch_size=250)))


def _rate(batch: EventBatch, fired: np.ndarray) -> float:
    w = batch["weight"].astype(np.float64)
    return float(w[fired].sum() / w.sum()) * LHCConditions().crossing_rate_hz


@pytest.mark.slow
def test_weights_sum_to_the_crossing_rate(sample: tuple[PythiaGenerator, EventBatch]) -> None:
    gen, batch = sample
    info = gen.last_zero_bias
    lhc = LHCConditions()
    w = batch["weight"].astype(np.float64)
    truth = batch["truth"]
    x = info["pileup"] * info["f_hard"]
    # minimum-bias crossings: exactly R·exp(−μ·f_hard) (float32 weights)
    minbias = truth == PROCESS_LABELS["minbias"]
    assert w[minbias].sum() == pytest.approx(lhc.crossing_rate_hz * math.exp(-x), rel=1e-5)
    # every category's events as allocated, its weights L·σ/N/(1+K): expectation L·σ·(1 − e^−x)/x
    counts = allocate(N_CROSSINGS, DEFAULT_ALLOCATION)
    assert info["allocation"] == counts
    hard_sum = sum(lhc.rate_hz(s) for s in info["sigma_pb"].values()) * (1 - math.exp(-x)) / x
    assert w[~minbias].sum() == pytest.approx(hard_sum, rel=0.05)
    # and the whole stream: the colliding-crossing rate, to a few %
    assert w.sum() == pytest.approx(lhc.crossing_rate_hz, rel=0.05)
    assert set(np.unique(truth).tolist()) == {c.truth for c in CATEGORIES}


@pytest.mark.slow
def test_pileup_is_the_requested_mu(sample: tuple[PythiaGenerator, EventBatch]) -> None:
    gen, batch = sample
    mu, f = gen.last_zero_bias["pileup"], gen.last_zero_bias["f_hard"]
    assert mu == pytest.approx(LHCConditions().pileup)
    n_int = batch["n_interactions"].astype(np.float64)
    w = batch["weight"].astype(np.float64)
    minbias = batch["truth"] == PROCESS_LABELS["minbias"]
    # minimum-bias crossings: Poisson(μ(1 − f)) library interactions (σ of the mean ≈ 0.6 here)
    assert n_int[minbias].mean() == pytest.approx(mu * (1 - f), abs=4 * math.sqrt(mu / minbias.sum()))
    assert n_int[~minbias].min() >= 1
    # over the weighted stream, the mean number of interactions per crossing is μ
    assert float((w * n_int).sum() / w.sum()) == pytest.approx(mu, rel=0.03)


@pytest.mark.slow
def test_pileup_option_overrides_mu(library: Path) -> None:
    gen = PythiaGenerator(library=library, library_events=LIBRARY_EVENTS, pileup=20.0,
                          allocation={"minbias": 1.0})
    batch = EventBatch.concat(list(gen.generate("zero_bias", 200, seed=3)))
    assert gen.last_zero_bias["pileup"] == 20.0
    assert batch["n_interactions"].mean() == pytest.approx(20.0 * (1 - gen.last_zero_bias["f_hard"]), abs=1.5)


@pytest.mark.slow
def test_same_seed_same_crossings_whatever_the_batch_size(library: Path,
                                                         sample: tuple[PythiaGenerator, EventBatch]) -> None:
    again = EventBatch.concat(list(PythiaGenerator(library=library, library_events=LIBRARY_EVENTS).generate(
        "zero_bias", N_CROSSINGS, seed=SEED, batch_size=77)))
    for name in sample[1].names:
        np.testing.assert_array_equal(again[name], sample[1][name], err_msg=name)


@pytest.mark.slow
def test_rates_fall_with_threshold(sample: tuple[PythiaGenerator, EventBatch]) -> None:
    _, batch = sample
    obj = batch.objects
    lead = {"muon": obj[:, 5, 0], "egamma": obj[:, 1, 0], "jet": obj[:, 9, 0], "met": obj[:, 0, 0]}
    for kind, (low, high) in {"muon": (5, 22), "egamma": (10, 36), "jet": (60, 180), "met": (40, 90)}.items():
        rates = [_rate(batch, lead[kind] >= t) for t in np.linspace(low, high, 4)]
        assert all(b < a for a, b in zip(rates, rates[1:], strict=False)), (kind, rates)
        assert rates[-1] < 0.3 * rates[0], (kind, rates)
    # the single-jet rate at 180 GeV is a few kHz, not MHz (sanity, a factor 10 either way)
    assert 300 < _rate(batch, lead["jet"] >= 180) < 30_000


def test_charged_pions_decay_in_flight_into_l1_muons() -> None:
    """10 GeV π± at η = 0: P(decay before the calorimeter) = m·R/(pT·cτ) ≈ 2.3e-3, plus punch-through."""
    n = 20_000
    parts = ParticleBatch.from_kinematics(pt=np.full(n, 10.0), eta=np.zeros(n), phi=np.zeros(n),
                                          pid=np.full(n, 211), counts=np.ones(n))
    cfg = DetectorConfig()
    block = L1Detector(cfg, seed=5).simulate(parts, np.arange(n))
    mass, ctau, _ = DECAY_IN_FLIGHT[211]
    p_dif = mass * cfg.dif_radius_m / (10.0 * ctau)
    p_punch = cfg.punch_prob_max * (1 - math.exp(-(10.0 - cfg.punch_p_min) / cfg.punch_p_scale))
    # the decay muon (5.7-10 GeV) is found with ε ≈ 0.95; 3 Poisson σ either side
    expected = n * (p_dif + p_punch) * 0.95
    found = int((block[:, 5, 0] > 0).sum())
    assert abs(found - expected) < 3 * math.sqrt(expected) + 1, (found, expected)


@pytest.mark.slow
def test_generate_jobs_gives_the_same_file(tmp_path: Path) -> None:
    common = ["generate", "--generator", "pythia", "--process", "qcd", "--events", "120", "--seed", "4",
              "--part-events", "50", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "one.h5"), "--jobs", "1"]) == 0
    assert main([*common, "--out", str(tmp_path / "two.h5"), "--jobs", "2"]) == 0
    one = EventBatch.concat(list(open_events(tmp_path / "one.h5")))
    two = EventBatch.concat(list(open_events(tmp_path / "two.h5")))
    assert len(one) == 120
    assert np.unique(one["event"]).size == 120  # numbered over the file, not per part
    for name in one.names:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    # three parts, each scaled to its share: the weights sum to one σ estimate, not three
    sigma = PythiaGenerator()._sigma("qcd", 4)
    assert one["weight"].astype(np.float64).sum() == pytest.approx(sigma, rel=0.1)


def test_generate_jobs_with_the_toy_runs_in_one_process(tmp_path: Path) -> None:
    out = tmp_path / "toy.h5"
    assert main(["generate", "--generator", "toy", "--process", "qcd", "--events", "3000", "--jobs", "2",
                 "--no-progress", "--out", str(out)]) == 0
    assert sum(len(b) for b in open_events(out)) == 3000
