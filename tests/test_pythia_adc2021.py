"""The ``adc2021`` recipe of the Pythia generator: every kept event passes the L1 single-lepton
filter, the cocktail's counts are the paper's fractions, μ = 20 pile-up is overlaid, and the
same seed gives the same events whatever the batch size or the number of worker processes.

Cheap by construction: a 300-event minimum-bias library in a temporary folder, σ pre-runs of
100 events, ε measured on 5 accepted events, Pythia asked 20 events at a time, and for the
cocktail QCD above p̂T = 150 GeV (``qcd_pthat_min``)
so that QCD passes the filter often (≈ 6 % instead of ≈ 1 % at the recipe's p̂T > 30 GeV);
the checks hold whatever p̂T threshold is used.
"""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from darktrigger.daq.cli.replay import _generate_part, part_plan  # noqa: E402
from darktrigger.replay.errors import ConfigError  # noqa: E402
from darktrigger.replay.events import PROCESS_LABELS, EventBatch  # noqa: E402
from darktrigger.replay.generators.adc2021 import (  # noqa: E402
    ADC2021_FRACTIONS,
    SingleLeptonFilter,
    exact_counts,
)
from darktrigger.replay.generators.pythia import PythiaGenerator  # noqa: E402

N_COCKTAIL = 100
SEED = 21


@pytest.fixture(scope="module")
def options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lib = tmp_path_factory.mktemp("minbias") / "lib.npz"
    return {"recipe": "adc2021", "library": str(lib), "library_events": 300, "filter_events": 5,
            "sigma_events": 100, "chunk": 20}


@pytest.fixture(scope="module")
def cocktail(options: dict[str, Any]) -> tuple[PythiaGenerator, EventBatch]:
    gen = PythiaGenerator(**options, qcd_pthat_min=150)
    return gen, EventBatch.concat(list(gen.generate("sm_mix", N_COCKTAIL, seed=SEED, batch_size=40)))


def test_every_kept_event_passes_the_l1_single_lepton_filter(cocktail: tuple[PythiaGenerator, EventBatch]) -> None:
    gen, events = cocktail
    assert SingleLeptonFilter().passes(events["objects"]).all()
    for process, (tried, passed) in gen.last_filter_counts.items():
        assert passed >= gen.last_recipe["counts"][process]
        assert tried > passed


def test_cocktail_counts_are_the_papers_fractions(cocktail: tuple[PythiaGenerator, EventBatch]) -> None:
    gen, events = cocktail
    want = exact_counts(N_COCKTAIL, ADC2021_FRACTIONS)
    got = {p: int((events["truth"] == PROCESS_LABELS[p]).sum()) for p in want}
    assert got == want == {"qcd": 34, "wjets": 59, "zjets": 7, "ttbar": 0}
    for p, n in want.items():  # within binomial errors of the fractions (exactly round(f·n) here)
        f = ADC2021_FRACTIONS[p]
        assert abs(n - f * N_COCKTAIL) <= max(1.0, 2 * math.sqrt(N_COCKTAIL * f * (1 - f)))
    # each process's weights sum to its filtered cross section σ·ε (pb)
    for p in ("qcd", "wjets", "zjets"):
        total = float(events["weight"][events["truth"] == PROCESS_LABELS[p]].astype(np.float64).sum())
        sigma = gen.last_sigma_unfiltered_pb[p] * gen.last_filter_efficiency[p]
        assert total == pytest.approx(sigma, rel=1e-5)
        assert 0 < gen.last_filter_efficiency[p] < 1
    # qcd_pthat_min reached Pythia (σ(p̂T > 150 GeV) ≈ 2.4e5 pb against 1.8e8 at the default 30)
    assert gen.provenance("sm_mix", SEED)["settings"]["qcd"][-1] == "PhaseSpace:pTHatMin = 150"
    assert gen.last_sigma_unfiltered_pb["qcd"] < 1e6


def test_pileup_mu_20_is_overlaid(cocktail: tuple[PythiaGenerator, EventBatch]) -> None:
    _, events = cocktail
    n_pu = events["n_interactions"].astype(np.float64) - 1
    assert n_pu.min() >= 0
    assert abs(n_pu.mean() - 20.0) < 4 * math.sqrt(20.0 / N_COCKTAIL)
    assert n_pu.std() == pytest.approx(math.sqrt(20.0), rel=0.3)  # Poisson


@pytest.fixture(scope="module")
def parts(options: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any], str, int, int, int]], list[Any]]:
    """The tasks of a 40-event ato4l run in 2 parts (as ``generate --part-events 20``), made in this process."""
    tasks = [("pythia", options, "ato4l", n, s, 16) for _, n, s in part_plan(40, SEED, 20)]
    PythiaGenerator(**options).prepare("ato4l")  # the library, once, before any worker (as generate does)
    return tasks, [_generate_part(t) for t in tasks]


def test_same_seed_same_events_whatever_the_batch_size(options: dict[str, Any], parts: Any) -> None:
    tasks, done = parts
    again = EventBatch.concat(list(PythiaGenerator(**options).generate("ato4l", 20, seed=tasks[0][4], batch_size=7)))
    first = EventBatch.concat(done[0][1])
    for col in ("objects", "weight", "truth", "n_interactions"):
        np.testing.assert_array_equal(again[col], first[col])
    assert SingleLeptonFilter().passes(first["objects"]).all()
    assert (first["truth"] == PROCESS_LABELS["ato4l"]).all()


def test_same_seed_same_events_whatever_jobs(parts: Any) -> None:
    tasks, in_process = parts
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        in_workers = pool.map(_generate_part, tasks)
    for (prov_a, a), (prov_b, b) in zip(in_process, in_workers, strict=True):
        assert prov_a["recipe"]["filter_efficiency"] == prov_b["recipe"]["filter_efficiency"]
        np.testing.assert_array_equal(EventBatch.concat(a)["objects"], EventBatch.concat(b)["objects"])
    objects = [EventBatch.concat(b)["objects"] for _, b in in_process]
    assert not np.array_equal(objects[0], objects[1])  # parts have their own seeds


def test_no_pileup_when_asked(options: dict[str, Any], parts: Any) -> None:
    quiet = EventBatch.concat(list(PythiaGenerator(**(options | {"pileup": 0.0})).generate("ato4l", 20, seed=SEED)))
    assert (quiet["n_interactions"] == 1).all()
    assert SingleLeptonFilter().passes(quiet["objects"]).all()
    busy = EventBatch.concat([b for _, batches in parts[1] for b in batches])
    # pile-up adds soft jets: more filled jet slots on average than without it
    assert (busy["objects"][:, 9:, 0] > 0).sum(1).mean() > (quiet["objects"][:, 9:, 0] > 0).sum(1).mean()


def test_single_lepton_filter_edges() -> None:
    block = np.zeros((5, 19, 3), dtype=np.float32)
    block[0, 1] = (23.0, 0.0, 0.0)     # e at threshold: not > 23
    block[1, 1] = (23.5, -2.9, 0.0)    # e inside |η| < 3
    block[2, 5] = (40.0, 2.1, 0.0)     # μ at |η| = 2.1: out
    block[3, 5] = (23.5, -2.0, 0.0)    # μ in
    block[4, 9] = (300.0, 0.0, 0.0)    # a jet only
    assert SingleLeptonFilter().passes(block).tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match=r"\[N, 19, 3\]"):
        SingleLeptonFilter().passes(np.zeros((2, 57)))


def test_bad_recipe_options_are_named(options: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'adc2022'"):
        PythiaGenerator(recipe="adc2022")
    with pytest.raises(ConfigError, match="option 'luminosity' does not apply"):
        PythiaGenerator(recipe="adc2021", luminosity=2e34)
    with pytest.raises(ConfigError, match="mix_fractions"):
        PythiaGenerator(recipe="adc2021", mix_fractions={"minbias": 1.0})
    with pytest.raises(ConfigError, match="recipe adc2021 makes .*not 'qcd_dijet'"):
        next(PythiaGenerator(**options).generate("qcd_dijet", 10, seed=1))


def test_the_cli_sets_the_cocktails_shares_and_refuses_them_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    """``--mix-fractions`` reaches the recipe's ``mix_fractions``; it is refused without the
    recipe's ``sm_mix`` and when malformed, naming what was expected."""
    from darktrigger.daq.cli import build_parser
    from darktrigger.daq.cli.replay import _generator_options

    parser = build_parser()
    common = ["generate", "--generator", "pythia", "--events", "10", "--out", "x.h5"]
    args = parser.parse_args([*common, "--recipe", "adc2021", "--process", "sm_mix",
                              "--mix-fractions", "qcd=0.02, wjets=0.98"])
    assert _generator_options(args)["mix_fractions"] == {"qcd": 0.02, "wjets": 0.98}
    PythiaGenerator(**_generator_options(args))  # the recipe takes them
    args = parser.parse_args([*common, "--recipe", "adc2021", "--process", "ato4l", "--mix-fractions", "qcd=1"])
    with pytest.raises(ConfigError, match="sm_mix cocktail; it means nothing for --process ato4l"):
        _generator_options(args)
    with pytest.raises(SystemExit):
        parser.parse_args([*common, "--process", "sm_mix", "--mix-fractions", "qcd"])
    assert "expected process=fraction pairs" in capsys.readouterr().err
