from __future__ import annotations

import time

import numpy as np
import pytest

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.storage import write_events
from darktrigger.replay.stream import BUNCH_SLOTS, Inject, Replay
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


# -- injection by rate ----------------------------------------------------------------
CROSSING_HZ = 28.61e6


@pytest.fixture
def zb_and_signals(tmp_path):
    """A background of 10,000 events with uneven weights, two signals of 1,000 events."""
    zb, a, b = tmp_path / "zb.h5", tmp_path / "a.h5", tmp_path / "b.h5"
    write_events(zb, random_batch(10_000, seed=1, truth=5), provenance={"generator": "test"})
    sig_a = random_batch(1_000, seed=2, truth=10)
    write_events(a, sig_a.with_columns(weight=np.full(1_000, 3.5, np.float32)), provenance={"generator": "test"})
    write_events(b, random_batch(1_000, seed=3, truth=11), provenance={"generator": "test"})
    return zb, a, b


def _weights_by_truth(replay):
    batch = EventBatch.concat(list(replay))
    return batch["weight"].astype(np.float64), batch["truth"]


def test_injection_by_rate_gives_the_signal_its_weight_share_exactly(zb_and_signals):
    zb, a, b = zb_and_signals
    # 100,000 events: 2,000 from a, 8,000 from b, 90,000 background: whole passes over the
    # files of uneven weights, so the shares are exact up to the float32 weights
    r = Replay({zb: "background", a: Inject(rate_hz=20.0, fraction=0.02), b: {"rate_hz": 3000.0, "fraction": 0.08}},
               batch_size=4096, loop=True, max_events=100_000, crossing_rate_hz=CROSSING_HZ, seed=4)
    w, truth = _weights_by_truth(r)
    assert r.stats.per_input == {str(zb): 90_000, str(a): 2_000, str(b): 8_000}
    assert ((truth == 10).sum(), (truth == 11).sum()) == (2_000, 8_000)
    total = w.sum()
    assert w[truth == 10].sum() / total == pytest.approx(20.0 / CROSSING_HZ, rel=1e-6)
    assert w[truth == 11].sum() / total == pytest.approx(3000.0 / CROSSING_HZ, rel=1e-6)
    assert w[truth == 5].sum() / total == pytest.approx(1 - 3020.0 / CROSSING_HZ, rel=1e-9)
    assert total == pytest.approx(100_000, rel=1e-6)  # an event stands for one crossing on average
    # the background keeps its relative weights
    zb_w = random_batch(10_000, seed=1).columns["weight"].astype(np.float64)
    got = w[truth == 5]
    assert got.max() / got.min() == pytest.approx(zb_w.max() / zb_w.min(), rel=1e-5)
    assert r.injected == {str(a): Inject(20.0, 0.02), str(b): Inject(3000.0, 0.08)}


def test_injected_counts_are_exact_in_every_prefix(zb_and_signals):
    zb, a, _ = zb_and_signals
    r = Replay({zb: 0.5, a: {"rate_hz": 1.0}}, batch_size=777, loop=True, max_events=50_000)
    seen = 0
    n_sig = 0
    for batch in r:
        seen += len(batch)
        n_sig += int((batch["truth"] == 10).sum())
        assert n_sig == int(np.floor(1e-3 * seen + 1e-9))


def test_a_fraction_mixture_keeps_its_weights(zb_and_signals):
    zb, a, _ = zb_and_signals
    r = Replay({zb: 0.9, a: 0.1}, loop=True, max_events=5_000, seed=1)
    w, truth = _weights_by_truth(r)
    assert set(np.unique(w[truth == 10]).tolist()) == {3.5}
    assert r.injected == {}


@pytest.mark.parametrize(("mix", "message"), [
    ({"zb": "background", "a": "background"}, "2 entries are 'background'"),
    ({"zb": "background", "a": {"rate_hz": 3e7, "fraction": 0.1}}, "injected rates sum to 30,000,000 Hz"),
    ({"a": {"rate_hz": 1.0}}, "every input is injected by rate"),
    ({"zb": "background", "a": {"rate": 1.0}}, "unknown key.*'rate'.*rate_hz"),
    ({"zb": "background", "a": {"rate_hz": 1.0, "fraction": 1.5}}, r"fraction must be a number in \(0, 1\)"),
    ({"zb": "background", "a": {"rate_hz": -2}}, "rate_hz must be a positive rate"),
    ({"zb": 0.7, "a": 0.4, "b": "background"}, "leaving nothing for the 'background' input"),
    ({"zb": "backgorund"}, "expected a fraction, 'background'"),
])
def test_bad_mixtures_are_named(zb_and_signals, mix, message):
    zb, a, b = zb_and_signals
    paths = {"zb": zb, "a": a, "b": b}
    with pytest.raises(ConfigError, match=message):
        Replay({paths[k]: v for k, v in mix.items()})


def test_a_bad_weight_is_named_with_its_file_and_row(zb_and_signals, tmp_path):
    zb, a, _ = zb_and_signals
    bad = tmp_path / "bad.h5"
    batch = random_batch(100, seed=9, truth=5)
    w = batch["weight"].copy()
    w[42] = np.nan
    write_events(bad, batch.with_columns(weight=w), provenance={"generator": "test"})
    with pytest.raises(ConfigError, match=f"{bad}, row 42: expected a finite weight >= 0, got nan"):
        list(Replay({bad: "background", a: {"rate_hz": 1.0}}, max_events=10))


@pytest.mark.parametrize("loop", [False, True])
def test_rows_the_reader_skipped_are_reported_by_the_replay(tmp_path, loop: bool) -> None:
    """A NaN row read with on_error="skip": the replay's reports count it, once a pass
    (they used to be taken before the pass started, and stayed empty)."""
    from darktrigger.replay.testing import random_adc_particles, write_adc2021

    particles = random_adc_particles(300, seed=4)
    particles[123, 9, 0] = np.nan
    path = write_adc2021(tmp_path / "bad.h5", particles)
    replay = Replay([path], batch_size=100, loop=loop, max_events=598 if loop else None,
                    reader_options={"on_error": "skip"})
    n = sum(len(b) for b in replay)
    assert n == (598 if loop else 299)
    assert [r.count for r in replay.skipped] == ([1, 1] if loop else [1])
    assert "row 123" in replay.skipped[0].summary()
