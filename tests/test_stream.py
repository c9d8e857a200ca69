from __future__ import annotations

import time

import numpy as np
import pytest

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.storage import write_events
from darktrigger.replay.stream import BUNCH_SLOTS, Replay
from darktrigger.replay.testing import random_batch


@pytest.fixture
def files(tmp_path):
    bkg, sig = tmp_path / "bkg.h5", tmp_path / "sig.h5"
    write_events(bkg, random_batch(20_000, seed=1, truth=0), provenance={"generator": "test"})
    write_events(sig, random_batch(2_000, seed=2, truth=10), provenance={"generator": "test"})
    return bkg, sig


def test_sequence_of_files_in_order_with_consistent_stamps(files):
    bkg, sig = files
    r = Replay([bkg, sig], batch_size=3000, run=7, first_event=1, events_per_lumi=5000)
    batches = list(r)
    assert [len(b) for b in batches[:-1]] == [3000] * (len(batches) - 1)
    allb = batches[0].concat(batches)
    assert len(allb) == 22_000
    assert r.stats.events == 22_000
    np.testing.assert_array_equal(allb.objects[:20_000], random_batch(20_000, seed=1).objects)
    assert (allb["truth"][:20_000] == 0).all()
    assert (allb["truth"][20_000:] == 10).all()
    np.testing.assert_array_equal(allb["event"], np.arange(1, 22_001))
    assert (allb["run"] == 7).all()
    assert allb["lumi"][0] == 1
    assert allb["lumi"][4999] == 1
    assert allb["lumi"][5000] == 2
    assert allb["bx"].min() == 1
    assert allb["bx"].max() == BUNCH_SLOTS
    assert allb["bx"][BUNCH_SLOTS] == 1
    # (run, lumi, event) unique
    assert len(np.unique(allb["event"])) == len(allb)


def test_mixture_injects_signal_at_its_fraction(files):
    bkg, sig = files
    r = Replay({bkg: 0.99, sig: 0.01}, batch_size=1000, loop=True, max_events=100_000, seed=3)
    n_sig = sum(int((b["truth"] == 10).sum()) for b in r)
    assert r.stats.events == 100_000
    # binomial: mean 1000, sigma ~31
    assert 850 <= n_sig <= 1150
    assert r.stats.per_input is not None
    assert r.stats.per_input[str(sig)] == n_sig


def test_mixture_is_reproducible_from_its_seed(files):
    bkg, sig = files
    def run(seed):
        return Replay({bkg: 0.9, sig: 0.1}, batch_size=500, max_events=5000, seed=seed)
    a = [b["truth"].copy() for b in run(5)]
    b = [b["truth"].copy() for b in run(5)]
    c = [b["truth"].copy() for b in run(6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_without_loop_a_mixture_ends_when_an_input_runs_out(files):
    bkg, sig = files
    r = Replay({bkg: 0.5, sig: 0.5}, batch_size=1000)
    total = sum(len(b) for b in r)
    assert total <= 4000  # the 2,000 signal events run out first
    assert r.stats.per_input is not None
    assert r.stats.per_input[str(sig)] <= 2000


def test_loop_restarts_a_file(files):
    _, sig = files
    r = Replay([sig], batch_size=700, loop=True, max_events=5000)
    events = [b for b in r]
    assert sum(len(b) for b in events) == 5000
    allb = events[0].concat(events)
    np.testing.assert_array_equal(allb.objects[2000:4000], allb.objects[:2000])


def test_pacing_reaches_the_target_rate(files):
    bkg, _ = files
    r = Replay([bkg], rate_hz=20_000, max_events=10_000)
    t0 = time.monotonic()
    n = sum(len(b) for b in r)
    elapsed = time.monotonic() - t0
    assert n == 10_000
    assert r.batch_size <= 2000  # batches cover at most 0.1 s of events
    # never faster than asked (a floor); a loaded machine may be slower
    assert elapsed >= 0.5 * 0.98
    assert r.stats.rate_hz <= 20_000 * 1.02


def test_bad_arguments(files):
    bkg, _ = files
    with pytest.raises(ConfigError, match="rate_hz"):
        Replay([bkg], rate_hz=-1)
    with pytest.raises(ConfigError, match="fractions"):
        Replay({bkg: -1.0})
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        Replay(["nope.h5"])
