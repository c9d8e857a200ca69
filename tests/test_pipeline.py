"""The DAQ pipeline with real ZeroMQ sockets: stages in-process, whole runs in threads,
garbage on every input, CURVE, and topology errors."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from darktrigger.daq.local import run_threads
from darktrigger.daq.runner import RecorderRunner, ScorerRunner, SourceRunner, TriggerRunner
from darktrigger.daq.security import Curve, generate_keys
from darktrigger.daq.stages import RecorderStage, ScorerStage, SourceStage, TriggerStage
from darktrigger.daq.summary import RunSummary, format_summary
from darktrigger.daq.testing import (
    free_metrics_base,
    make_setup,
    offline,
    recorded_ids,
    write_topology,
)
from darktrigger.daq.topology import Topology
from darktrigger.daq.trigger.menu import Menu
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.daq.wire import WireError, decode, encode
from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.events import PROCESS_LABELS, TRIGGER_BITS, EventBatch, label_counts


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_setup(tmp_path_factory.mktemp("pipeline"))


def test_stages_in_process_keep_each_batch_once(setup: Path) -> None:
    topo = Topology.from_yaml(write_topology(setup, "inproc.yaml"))
    menu = Menu.from_yaml(topo.menu)
    scorer, trigger = ScorerStage.from_menu(menu), TriggerStage(menu)
    recorder = RecorderStage(topo.output, menu, topo.run)
    n = 0
    for seq, batch in SourceStage(topo, max_events=20_000):
        scored, invalid = scorer.process(batch)
        assert invalid == 0
        assert "score/vae" in scored
        accepted, decision = trigger.process(scored)
        assert recorder.record(topo.run, seq, accepted, decision, batch.columns["truth"])
        assert not recorder.record(topo.run, seq, accepted, decision, batch.columns["truth"])
        n += len(batch)
    summary = recorder.summary(events_in=n)
    recorder.close(summary)
    assert summary.events_lost == 0
    assert summary.events_duplicated == 0
    assert summary.duplicate_batches_dropped == summary.batches_recorded
    assert summary.events_accepted + summary.events_rejected == n == 20_000
    assert (topo.output / "run_summary.json").exists()
    assert RunSummary.from_json(topo.output / "run_summary.json").to_dict() == summary.to_dict()


def test_scorer_drops_and_counts_invalid_events(setup: Path) -> None:
    topo = Topology.from_yaml(write_topology(setup, "invalid.yaml"))
    _, batch = next(iter(SourceStage(topo, max_events=100)))
    obj = batch.objects.copy()
    obj[3, 0, 0] = np.nan
    obj[7, 5, 0] = -4.0
    bad = batch.with_columns(objects=obj)
    out, invalid = ScorerStage.from_menu(Menu.from_yaml(topo.menu)).process(bad)
    assert invalid == 2
    assert len(out) == 98
    assert np.isfinite(out.columns["score/vae"]).all()


def test_threaded_run_records_what_the_menu_accepts_offline(setup: Path) -> None:
    """Real sockets, stages in threads: conservation, event by event, and the menu's
    counts equal the offline ones count for count."""
    topo = Topology.from_yaml(write_topology(setup, "threads.yaml", metrics={
        "enabled": True, "base_port": free_metrics_base(), "live_page": False}))
    summary = run_threads(topo, events=60_000)
    assert summary.events_in == 60_000
    assert summary.events_lost == 0
    assert summary.events_duplicated == 0
    expected_ids, expected = offline(topo, 60_000)
    np.testing.assert_array_equal(recorded_ids(topo), expected_ids)
    got = summary.menu.to_dict()
    want = expected.to_dict()
    for g, w in zip(got["seeds"], want["seeds"], strict=True):
        assert (g["name"], g["raw_count"], g["count"], g["pure_count"]) == \
            (w["name"], w["raw_count"], w["count"], w["pure_count"])
        assert g["rate_hz"] == w["rate_hz"]
    assert got["overlap"] == want["overlap"]
    assert got["accepted"] == summary.events_accepted == len(expected_ids)
    assert summary.per_process["ato4l"].events > 0


# -- garbage on every input ---------------------------------------------------------
N_GARBAGE = 10_000


def _garbage(rng: np.random.Generator) -> list[bytes]:
    frames = [rng.bytes(int(rng.integers(0, 40))) for _ in range(int(rng.integers(1, 4)))]
    if rng.random() < 0.3:  # a header that parses, with nonsense after it
        frames[0] = encode("batch", run=1, seq=int(rng.integers(0, 99)),
                           columns={"objects": np.zeros((2, 19, 3), np.float32)})[0]
    return frames


def _wait_for(cond: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _in_thread(runner: Any) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    t.start()
    return t, stop


def _push_garbage(ctx: zmq.Context, endpoint: str, kind: int = zmq.PUSH) -> None:
    rng = np.random.default_rng(1)
    sock = ctx.socket(kind)
    sock.connect(endpoint)
    for _ in range(N_GARBAGE):
        sock.send_multipart(_garbage(rng))
    sock.close(linger=5000)


def _survives(runner: Any, send: Any, expected: int, what: str) -> None:
    """Run ``runner`` in a thread, ``send()`` the garbage, see every message counted."""
    thread, stop = _in_thread(runner)
    try:
        send()
        # a message that parses but is not this run's is refused; the rest is malformed
        _wait_for(lambda: runner.stats["malformed"] + runner.stats["refused"] >= expected,
                  f"{what} to count the garbage")
        assert thread.is_alive(), f"{what} stopped"
        assert runner.stats["malformed"] + runner.stats["refused"] == expected
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive(), f"{what} did not stop"


def _bind_when_free(sock: zmq.Socket, endpoint: str, timeout_s: float = 30.0) -> None:
    """Bind where a closed socket was bound: ZeroMQ releases the address in its I/O thread,
    after ``close()`` returns, so on a loaded machine the port can still be held briefly."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock.bind(endpoint)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_garbage_into_every_stage_is_counted_and_survived(setup: Path) -> None:
    topo = Topology.from_yaml(write_topology(setup, "garbage.yaml"))
    menu = Menu.from_yaml(topo.menu)
    ctx = zmq.Context()
    try:
        trigger = TriggerRunner(topo, TriggerStage(menu), ctx)
        _survives(trigger, lambda: _push_garbage(ctx, topo.endpoints["trigger"]), N_GARBAGE, "trigger")
        recorder = RecorderRunner(topo, RecorderStage(topo.output, menu, topo.run), ctx)
        _survives(recorder, lambda: _push_garbage(ctx, topo.endpoints["recorder"]), N_GARBAGE, "recorder")
        # source: the workers' ROUTER (garbage from a DEALER) and the acks PULL
        src = SourceRunner(topo, SourceStage(topo, max_events=4096), ctx)

        def both() -> None:
            _push_garbage(ctx, topo.endpoints["acks"])
            _push_garbage(ctx, topo.endpoints["dispatch"], zmq.DEALER)

        _survives(src, both, 2 * N_GARBAGE, "source")
        # a worker: garbage from its "source" (a ROUTER bound where the worker connects)
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        _bind_when_free(router, topo.endpoints["dispatch"])
        worker = ScorerRunner(topo, ScorerStage({}), ctx, name="w")

        def to_worker() -> None:
            assert router.poll(60_000), "the worker never said ready"  # generous: a loaded machine
            identity = router.recv_multipart()[0]
            rng = np.random.default_rng(2)
            for _ in range(N_GARBAGE):
                router.send_multipart([identity, *_garbage(rng)])

        try:
            _survives(worker, to_worker, N_GARBAGE, "worker")
        finally:
            router.close()
    finally:
        ctx.destroy(linger=0)  # closes what a failed stage left open, so a failure cannot hang here


# -- security -----------------------------------------------------------------------
def _handshake(ctx: zmq.Context, endpoint: str, configure: Any) -> int:
    """Connect a PUSH configured by ``configure``; the first handshake event it sees."""
    sock = ctx.socket(zmq.PUSH)
    sock.linger = 0
    configure(sock)
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                      | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    sock.connect(endpoint)
    try:
        assert monitor.poll(10_000), "no handshake event"
        from zmq.utils.monitor import recv_monitor_message

        return int(recv_monitor_message(monitor)["event"])
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close()


def test_curve_admits_the_key_holder_and_refuses_others(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "keys")
    other = Curve(generate_keys(tmp_path / "other"))
    curve = Curve(keys)
    ctx = zmq.Context()
    server = ctx.socket(zmq.PULL)
    server.linger = 0
    curve.server(server, ctx)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    endpoint = f"tcp://127.0.0.1:{port}"
    try:
        assert _handshake(ctx, endpoint, curve.client) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        failed = {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                  zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
        assert _handshake(ctx, endpoint, other.client) in failed  # another server key: no session

        def wrong_server_key(sock: zmq.Socket) -> None:
            other.client(sock)
            sock.curve_serverkey = curve.server_public  # right server, unlisted client key

        assert _handshake(ctx, endpoint, wrong_server_key) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert _handshake(ctx, endpoint, lambda s: None) in failed  # no CURVE at all
    finally:
        server.close()
        curve.stop()
        ctx.term()


# -- topology -----------------------------------------------------------------------
def _topo(**kw: Any) -> dict[str, Any]:
    return {"menu": "m.yaml", "source": {"files": ["a.h5"]}, **kw}


@pytest.mark.parametrize(("data", "message"), [
    (_topo(endpoints={"dispatch": "tcp://127.0.0.1:7000", "trigger": "tcp://127.0.0.1:7000"}),
     "endpoints.trigger and endpoints.dispatch are both tcp://127.0.0.1:7000"),
    (_topo(endpoints={"dispatch": "127.0.0.1:7000"}), "expected tcp://HOST:PORT"),
    (_topo(endpoints={"recorder": "tcp://10.1.2.3:7000"}), "leave loopback; .*keys generate"),
    (_topo(workerz=2), "unknown key.*'workerz' \\(did you mean 'workers'"),
    ({"source": {"files": ["a.h5"]}}, "no 'menu'"),
    (_topo(source={"files": ["a"], "mix": {"b": 1}}), "exactly one of 'files'"),
    (_topo(workers={"count": 0}), "workers.count must be an integer >= 1"),
    (_topo(endpoints={"trigger": "tcp://127.0.0.1:9301"}), "the trigger stage's metrics port 9301 .* port clash"),
    (_topo(metrics={"base_prot": 9000}), "metrics: unknown key.*base_prot"),
    (_topo(source={"mix": {"a.h5": "background", "b.h5": {"rate": 20}}}),
     r"source.mix\[b.h5\]: unknown key\(s\) 'rate'; an injection by rate is \{rate_hz: HZ, fraction: F\}"),
    (_topo(source={"mix": {"a.h5": "backgrnd"}}), r"source.mix\[a.h5\]: .*expected a fraction, 'background'"),
    (_topo(source={"mix": ["a.h5"]}), "source.mix must map files to fractions"),
])
def test_topology_errors_are_clear(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Topology.from_dict(data, base=Path("/tmp"))


def test_a_port_in_use_is_reported_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        topo = Topology.from_dict(_topo(endpoints={"trigger": f"tcp://127.0.0.1:{port}"}), base=tmp_path)
        with pytest.raises(ConfigError, match=f"endpoints.trigger = tcp://127.0.0.1:{port} cannot be bound"):
            topo.check_bindable("trigger")


def test_label_counts_equal_numpy_unique() -> None:
    labels = np.random.default_rng(1).choice(np.array([-1, 0, 3, 7, 300], np.int16), 5000).astype(np.int16)
    values, counts = np.unique(labels, return_counts=True)
    assert label_counts(labels) == dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert label_counts(labels[:0]) == {}


def test_the_run_summary_reader_round_trips_and_names_what_is_wrong(tmp_path: Path) -> None:
    summary = RunSummary(run=1, events_in=10, events_accepted=3, events_rejected=7, events_lost=0,
                         menu=MenuCounts(["MET90"]))
    data = summary.to_dict()
    assert RunSummary.from_dict(data).to_dict() == data
    path = tmp_path / "run_summary.json"
    del data["events_lost"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputFormatError, match=f"{re.escape(str(path))}: expected every field.*events_lost missing"):
        RunSummary.from_json(path)
    path.write_text(json.dumps({**summary.to_dict(), "events_in": "ten"}))
    with pytest.raises(InputFormatError, match=re.escape("field 'events_in': expected a value of type int | None")):
        RunSummary.from_json(path)
    path.write_text("{")
    with pytest.raises(InputFormatError, match=f"{re.escape(str(path))}, line 1: expected a run summary"):
        RunSummary.from_json(path)


# -- weights, the background/signal split and the signal's efficiencies ---------------
def test_the_summary_splits_each_rate_into_background_and_signal_injected_by_rate(setup: Path) -> None:
    """A signal injected at 2 kHz: every seed's rate is background + signal exactly, the
    signal part is 2 kHz × the seed's efficiency for it, and the efficiencies are those of
    the same events decided offline."""
    topo = Topology.from_yaml(write_topology(setup, "split.yaml", source={
        "mix": {"bkg.h5": "background", "sig.h5": {"rate_hz": 2000.0, "fraction": 0.02}}}))
    summary = run_threads(topo, events=60_000)
    assert summary.events_lost == 0
    menu, bg, sig = summary.menu, summary.background, summary.signal
    assert bg is not None
    assert sig is not None
    assert (bg.counts + sig.counts).tolist() == menu.counts.tolist()
    assert (bg.pure + sig.pure).tolist() == menu.pure.tolist()
    assert bg.accepted + sig.accepted == menu.accepted
    np.testing.assert_allclose(bg.rates_hz + sig.rates_hz, menu.rates_hz, rtol=1e-12)
    assert bg.total_rate_hz + sig.total_rate_hz == pytest.approx(menu.total_rate_hz, rel=1e-12)
    assert summary.injected == {"sig.h5": {"rate_hz": 2000.0, "fraction": 0.02}}
    # 1,200 signal events of 60,000 (exactly), weighted to 2 kHz of the 40 MHz
    ato4l = summary.signals["ato4l"]
    assert ato4l.events == summary.per_process["ato4l"].events == 1_200
    eff, eff_unc = ato4l.efficiencies()
    np.testing.assert_allclose(sig.rates_hz, 2000.0 * eff, rtol=1e-5)
    assert sig.total_rate_hz == pytest.approx(2000.0 * summary.per_process["ato4l"].efficiency, rel=1e-5)
    # where no injected event fired a seed, its signal part's uncertainty is one injected event's rate
    _, sig_unc = summary.split_uncertainties()
    none = sig.counts == 0
    assert none.any(), sig.counts  # HTT360: four leptons of 50 GeV make no 360 GeV of jets
    np.testing.assert_allclose(sig_unc[none], 2000.0 / 1_200, rtol=1e-5)
    # the efficiencies, event by event, from the same replay decided here
    m = Menu.from_yaml(topo.menu)
    scorer, trigger = ScorerStage.from_menu(m), TriggerStage(m)
    anomaly = np.array([s.seed_type == "anomaly" for s in m.seeds])
    kept = []
    for _, batch in SourceStage(topo, max_events=60_000):
        _, decision = trigger.process(scorer.process(batch)[0])
        rows = batch["truth"] == PROCESS_LABELS["ato4l"]
        kept.append(((decision.bits[rows, None] >> np.arange(len(m.names), dtype=np.uint64)) & 1).astype(bool))
    fired = np.concatenate(kept)
    np.testing.assert_allclose(eff, fired.mean(axis=0), rtol=1e-6)
    binomial = np.where(eff > 0, np.sqrt(eff * (1 - eff) / 1_200), 1 / 1_200)  # one event when none kept
    np.testing.assert_allclose(eff_unc, binomial, rtol=1e-5)
    conventional = fired & ~anomaly
    others = conventional.sum(axis=1)[:, None] - conventional
    ueff, _ = ato4l.unique_efficiencies()
    np.testing.assert_allclose(ueff, (fired & (others == 0)).mean(axis=0), rtol=1e-6)
    adds = fired[:, anomaly].any(axis=1) & ~conventional.any(axis=1)
    assert ato4l.anomaly_efficiency()["adds"] == pytest.approx(adds.mean(), rel=1e-6)
    # run_summary.json holds it all
    back = RunSummary.from_json(topo.output / "run_summary.json")
    assert back.to_dict() == summary.to_dict()
    text = format_summary(back)
    for heading in ("background Hz", "signal Hz", "ato4l eff. %", "unique %", "software pipeline latency"):
        assert heading in text


def test_a_decided_message_without_weights_is_refused(setup: Path) -> None:
    """The recorder counts rates from every event's weight: a decided batch without all/weight
    is a bad message (counted and dropped), not a batch of unit weights."""
    topo = Topology.from_yaml(write_topology(setup, "noweight.yaml"))
    menu = Menu.from_yaml(topo.menu)
    recorder = RecorderRunner(topo, RecorderStage(topo.output, menu, topo.run))
    n = 4
    frames = encode("decided", run=1, seq=0, count=n, columns={
        "all/raw": np.zeros(n, np.uint64), "all/bits": np.zeros(n, np.uint64),
        "all/truth": np.zeros(n, np.int16), **EventBatch.empty(extra=[TRIGGER_BITS]).columns})
    with pytest.raises(WireError, match="expected columns all/raw, all/bits, all/truth, all/weight"):
        recorder._record(decode(frames))
    recorder.recorder.close()


def test_latency_histogram_quantiles_within_one_percent_of_exact() -> None:
    """The recorder's latency quantiles (a fixed-size histogram, so its checkpoint stays small
    in long runs) are at most 1 % above the exact per-event quantiles, never below."""
    from darktrigger.daq.stages import LatencyHistogram

    rng = np.random.default_rng(3)
    seconds = rng.lognormal(np.log(0.02), 0.8, 5000)
    events = rng.integers(1, 9000, 5000)
    hist = LatencyHistogram()
    for s, n in zip(seconds.tolist(), events.tolist(), strict=True):
        hist.add(s, n)
    order = np.argsort(seconds)
    cum = np.cumsum(events[order])
    for q, got in zip((0.5, 0.99), hist.quantiles((0.5, 0.99)), strict=True):
        exact = seconds[order][np.searchsorted(cum, q * cum[-1])]
        assert exact <= got <= exact * 1.0101, (q, exact, got)
    assert len(hist.counts) < 2200  # whatever the number of batches
