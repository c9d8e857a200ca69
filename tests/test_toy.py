"""The toy generator: event model, reproducibility, and physics floors on seeded samples."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import darktrigger.replay.generators.base  # noqa: F401  (the package also imports pythia)
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import (
    ALL_PROCESSES,
    DIJET_PROCESSES,
    PROCESS_LABELS,
    SLOTS,
    SM_PROCESSES,
    EventBatch,
)
from darktrigger.replay.generators.base import GENERATORS
from darktrigger.replay.generators.toy import CHUNK, DIJET_COLUMNS, SM_MIX_FRACTIONS, ToyGenerator

GEN = ToyGenerator()


def sample(process: str, n: int, seed: int = 1, **kw: Any) -> EventBatch:
    return EventBatch.concat(list(GEN.generate(process, n, seed=seed, **kw)))


def n_leptons(b: EventBatch) -> np.ndarray:
    pt = b.objects[:, :, 0]
    return (pt[:, SLOTS["egamma"]] > 0).sum(1) + (pt[:, SLOTS["muon"]] > 0).sum(1)


def test_registered_by_name() -> None:
    assert GENERATORS.get("toy") is ToyGenerator
    assert set(SM_MIX_FRACTIONS) == set(SM_PROCESSES)
    assert sum(SM_MIX_FRACTIONS.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("process", ALL_PROCESSES)
def test_every_process_follows_the_event_model(process: str) -> None:
    batches = list(GEN.generate(process, 5_000, seed=3, batch_size=2_000))
    assert [len(b) for b in batches] == [2_000, 2_000, 1_000]
    b = EventBatch.concat(batches).validate(f"toy {process}")
    obj = b.objects
    assert obj.dtype == np.float32
    assert obj.shape == (5_000, 19, 3)
    assert np.all(b["weight"] == 1.0)
    assert np.array_equal(b["event"], np.arange(5_000, dtype=np.uint64))
    pt, eta, phi = obj[..., 0], obj[..., 1], obj[..., 2]
    assert np.all(obj[pt == 0] == 0), "empty slots are all zeros"
    assert np.all(eta[:, 0] == 0), "MET eta is 0"
    assert np.all(np.abs(phi) < math.pi)
    assert np.all(pt[:, 0] > 0)
    for kind, sl in SLOTS.items():
        if kind == "met":
            continue
        block = pt[:, sl]
        assert np.all(np.diff(block, axis=1) <= 0), f"{kind} not pT-ordered"
    assert np.all(np.abs(eta[:, SLOTS["egamma"]]) < 2.5)
    assert np.all(np.abs(eta[:, SLOTS["muon"]]) < 2.4)
    assert np.all(np.abs(eta[:, SLOTS["jet"]]) < 4.7)
    jet = pt[:, SLOTS["jet"]]
    assert np.all((jet == 0) | (jet >= 15))
    if process in DIJET_PROCESSES:
        assert set(DIJET_COLUMNS) <= set(b.extra_names)
        assert all(b[c].dtype == np.float32 for c in DIJET_COLUMNS)
    else:
        assert b.extra_names == []
    if process == "zero_bias":  # the process of each crossing's hardest interaction
        hardest = {PROCESS_LABELS[p] for p in ("minbias", *SM_PROCESSES)}
        assert set(np.unique(b["truth"]).tolist()) <= hardest
    elif process != "sm_mix":
        assert np.all(b["truth"] == PROCESS_LABELS[process])


def test_same_seed_identical_different_seed_different() -> None:
    a = sample("sm_mix", 20_000, seed=5)
    b = sample("sm_mix", 20_000, seed=5)
    c = sample("sm_mix", 20_000, seed=6)
    for name in a.names:
        assert np.array_equal(a[name], b[name]), name
    assert not np.array_equal(a.objects, c.objects)


@pytest.mark.parametrize("process", ["qcd", "wprime_xy"])
def test_independent_of_batch_size_and_length(process: str) -> None:
    whole = sample(process, CHUNK + 3_000, seed=9, batch_size=100_000)
    small = sample(process, CHUNK + 3_000, seed=9, batch_size=777)
    prefix = sample(process, 1_000, seed=9, batch_size=1_000)
    for name in whole.names:
        assert np.array_equal(whole[name], small[name]), name
        assert np.array_equal(whole[name][:1_000], prefix[name]), name


def test_zero_events_and_bad_arguments() -> None:
    assert list(GEN.generate("qcd", 0, seed=1)) == []
    with pytest.raises(ConfigError, match="no process 'qcdd'"):
        list(GEN.generate("qcdd", 10, seed=1))
    with pytest.raises(ConfigError):
        list(GEN.generate("qcd", 10, seed=1, batch_size=0))
    with pytest.raises(ConfigError, match="no option"):
        ToyGenerator(pilup=3)
    with pytest.raises(ConfigError, match="pileup"):
        ToyGenerator(pileup="lots")
    with pytest.raises(ConfigError, match="pileup"):
        ToyGenerator(pileup=0)
    with pytest.raises(ConfigError, match="pileup_jets"):
        ToyGenerator(pileup_jets=-1)
    with pytest.raises(ConfigError, match="luminosity"):
        ToyGenerator(luminosity="2e34")


def test_progress_bar_does_not_change_events() -> None:
    a = sample("zjets", 3_000, progress=True)
    assert np.array_equal(a.objects, sample("zjets", 3_000).objects)


def test_sm_mix_fractions_and_labels() -> None:
    b = sample("sm_mix", 100_000, seed=2)
    truth = b["truth"]
    assert set(np.unique(truth)) <= {PROCESS_LABELS[p] for p in SM_MIX_FRACTIONS}
    for name, frac in SM_MIX_FRACTIONS.items():
        assert abs(np.mean(truth == PROCESS_LABELS[name]) - frac) < 0.01, name
    # each sub-process keeps its own signature inside the mix
    met = b.objects[:, 0, 0]
    assert met[truth == PROCESS_LABELS["wjets"]].mean() > met[truth == PROCESS_LABELS["qcd"]].mean()


def test_qcd_leading_jet_spectrum_falls() -> None:
    lead = sample("qcd", 50_000).objects[:, 9, 0]
    counts, _ = np.histogram(lead[lead > 0], bins=[20, 40, 80, 160, 320, 640])
    assert np.all(np.diff(counts) < 0), counts
    assert counts[-1] > 0


def test_signals_have_their_signatures() -> None:
    ato4l = sample("ato4l", 20_000)
    assert np.mean(n_leptons(ato4l) >= 3) >= 0.90
    lead = ato4l.objects[:, 1:9, 0].max(1)
    assert 10 < np.median(lead) < 40
    met = {p: sample(p, 20_000).objects[:, 0, 0].mean()
           for p in ("qcd", "hpm_taunu", "h_tautau", "ato4l")}
    assert met["hpm_taunu"] > 1.5 * met["qcd"]
    assert met["h_tautau"] > met["qcd"]
    assert met["ato4l"] < met["hpm_taunu"]
    lq = sample("lq_btau", 20_000).objects
    assert np.mean((lq[:, 9:, 0] > 0).sum(1) >= 1) > 0.9  # the b-jet (and a τ-jet) are there


def test_ato4l_separates_from_sm_mix_with_a_lepton_count() -> None:
    signal = n_leptons(sample("ato4l", 20_000, seed=11)) >= 3
    background = n_leptons(sample("sm_mix", 50_000, seed=11)) >= 3
    assert signal.mean() >= 0.90
    assert background.mean() <= 0.05


def test_wprime_resonance() -> None:
    b = sample("wprime_xy", 20_000)
    assert abs(np.median(b["mjj"]) / 3500 - 1) < 0.05
    assert abs(np.median(b["mj1"]) / 500 - 1) < 0.05
    assert abs(np.median(b["mj2"]) / 100 - 1) < 0.05
    assert 0.25 < np.median(b["tau21_j1"]) < 0.45
    # the object block holds two back-to-back jets consistent with mjj
    j = b.objects[:, 9:11]
    assert np.allclose(np.abs(np.abs(j[:, 0, 2] - j[:, 1, 2]) - math.pi), 0, atol=1e-3)
    deta = np.abs(j[:, 0, 1] - j[:, 1, 1])
    mjj = 2 * j[:, 0, 0] * np.cosh(deta / 2)
    assert np.allclose(mjj, b["mjj"], rtol=1e-3)


def test_qcd_dijet_substructure_is_uncorrelated_with_mjj() -> None:
    b = sample("qcd_dijet", 100_000, seed=4)
    mjj = b["mjj"].astype(np.float64)
    assert mjj.min() >= 2000
    assert np.median(mjj) < 3000
    for name in ("mj1", "mj2", "tau21_j1", "tau21_j2"):
        r = np.corrcoef(mjj, b[name])[0, 1]
        assert abs(r) < 0.05, (name, r)
    assert np.all(b["mj1"] >= b["mj2"])
    assert 0.55 < np.median(b["tau21_j1"]) < 0.75
    assert np.median(b["tau21_j1"]) > np.median(sample("wprime_xy", 5_000)["tau21_j1"]) + 0.15
    # a smoothly falling spectrum: every 250 GeV bin from 2 to 4.5 TeV holds fewer events
    counts, _ = np.histogram(mjj, bins=np.arange(2000, 4750, 250))
    assert np.all(np.diff(counts) < 0), counts
