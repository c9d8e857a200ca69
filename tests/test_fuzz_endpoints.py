"""Every endpoint of a running pipeline fuzzed (issue 17, point 1): random bytes,
structured-absurd messages (an overflow-shaped column, huge counts, object dtypes, deep
nesting), well-formed messages that are wrong (the wrong kind, a forged ``end`` or
``decided`` without the run's identity, a worker of another run, a frame over the size
limit) and, from a peer that knows the run's identity, messages whose contents are wrong
(NaN or float truth labels, another column set, NaN weights, absurd credit). Each run
completes with every event in, nothing lost or duplicated, the accepted events those of
the same replay decided offline, and every delivered injection counted as malformed or
refused. Seeded; each run is ~2 s of paced replay, in threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from darktrigger.daq.local import run_threads
from darktrigger.daq.testing import make_setup, offline, recorded_ids, write_topology
from darktrigger.daq.topology import Topology
from darktrigger.daq.wire import max_frame_bytes

EVENTS = 100_000
RATE_HZ = 50_000


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_setup(tmp_path_factory.mktemp("fuzz"), n_bkg=5_000, model=False)


def _header(**fields: Any) -> bytes:
    head = {"v": 1, "kind": "batch", "run": 3, "seq": 0, "count": 1, "columns": [], "meta": {}}
    head.update(fields)
    return msgpack.packb(head, use_bin_type=True)


def _raw(kind: str, columns: dict[str, np.ndarray], **fields: Any) -> list[bytes]:
    """A message of ``kind`` with these columns, built by hand (as a foreign peer would)."""
    specs = [[name, arr.dtype.str, list(arr.shape)] for name, arr in columns.items()]
    count = fields.pop("count", len(next(iter(columns.values()))) if columns else 0)
    return [_header(kind=kind, columns=specs, count=count, **fields),
            *(np.ascontiguousarray(a).tobytes() for a in columns.values())]


def _random(rng: np.random.Generator) -> list[bytes]:
    return [rng.bytes(int(rng.integers(0, 200))) for _ in range(int(rng.integers(1, 4)))]


def _absurd(rng: np.random.Generator) -> list[bytes]:
    """Headers that parse but promise the impossible."""
    choices: list[list[bytes]] = [
        [_header(columns=[["x", "<f4", [2**32, 2**32]]]), b""],  # wraps to 0 in int64 arithmetic
        [_header(columns=[["x", "<f8", [2**62, 4]]]), b""],
        [_header(columns=[["x", "<u8", [2**63 - 1]]]), b"\0" * 8],
        [_header(count=2**64 - 1, columns=[["x", "<f4", [1]]]), b"\0" * 4],
        [_header(columns=[["x", "|O", [1]]]), b"\0" * 8],
        [_header(columns=[["x", ">f4", [1]]]), b"\0" * 4],
        [_header(columns=[["x", "<f4", [-1]]]), b""],
        [_header(columns=[["x", "<f4", [1, 1, 1, 1, 1, 1]]]), b"\0" * 4],
        [_header(columns=[[1, "<f4", [1]]]), b"\0" * 4],
        [_header(columns=[["x", "<f4", [1]]] * 300), *[b"\0" * 4] * 300],
        [_header(meta=[1, 2])],
        [_header(v=2)],
        [_header(run=-5)],
        [_header(seq=True)],
        [msgpack.packb([[[[[[[[[[[]]]]]]]]]]])],
        [msgpack.packb({"v": 1, "kind": "batch", 1: 2})],
    ]
    return choices[int(rng.integers(0, len(choices)))]


def _decided(n: int, run_id: str | None, seq: int, **override: np.ndarray) -> list[bytes]:
    cols: dict[str, np.ndarray] = {
        "all/raw": np.ones(n, np.uint64), "all/bits": np.ones(n, np.uint64),
        "all/truth": np.zeros(n, np.int16), "all/weight": np.ones(n, np.float32),
        "event": np.arange(10**9, 10**9 + n, dtype=np.uint64), "trigger_bits": np.ones(n, np.uint64)}
    cols.update(override)
    meta = {} if run_id is None else {"run_id": run_id}
    return _raw("decided", cols, seq=seq, meta=meta)


def _wrong(rng: np.random.Generator, endpoint: str, run_id: str) -> list[bytes]:
    """Well-formed messages that are wrong here: another kind, another run, forged control,
    and (with the run's identity) contents that must be refused."""
    n = 8
    no_id: list[list[bytes]] = [
        _raw("end", {}, meta={"events_in": 16, "batches_in": 16, "stopped_by": "end of run"}),
        _raw("end", {}, meta={"run_id": "another run"}),
        _decided(n, None, seq=int(rng.integers(0, 20))),  # a forged decided reusing a (run, seq)
        _raw("ack", {}, meta={"seqs": list(range(20))}),
        _raw("ready", {}, meta={"credit": 2, "run_id": "another run"}),  # a worker of another run
        _raw("stats", {}),
    ]
    insider: list[list[bytes]] = [
        _raw("ready", {}, meta={"credit": 10**6, "run_id": run_id}),
        _raw("ready", {}, meta={"credit": True, "run_id": run_id}),
        _decided(n, run_id, 10**6, **{"all/truth": np.full(n, np.nan, np.float32)}),
        _decided(n, run_id, 10**6, **{"all/weight": np.full(n, np.nan, np.float32)}),
        _decided(n, run_id, 10**6, **{"all/bits": np.zeros(n + 1, np.uint64)}),
        _decided(n, run_id, 10**6, **{"trigger_bits": np.ones(n - 1, np.uint64)}),
        _raw("batch", {"event": np.arange(n, dtype=np.uint64)}, seq=10**6, meta={"run_id": run_id}),
        _raw("batch", {"x": np.full(n, np.nan)}, seq=10**6, count=n + 3, meta={"run_id": run_id}),
        _raw("end", {}, meta={"run_id": run_id}, run=4),  # the right identity, the wrong run number
    ]
    pool = no_id + insider
    return pool[int(rng.integers(0, len(pool)))]


ENDPOINTS = {"dispatch": zmq.DEALER, "acks": zmq.PUSH, "trigger": zmq.PUSH, "recorder": zmq.PUSH}
#: the stage whose summary counts what arrives at each endpoint
COUNTED_BY = {"dispatch": "source", "acks": "source", "trigger": "trigger", "recorder": "recorder"}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_an_endpoint_fuzzed_mid_run_changes_nothing_recorded(setup: Path, endpoint: str) -> None:
    path = write_topology(setup, f"fuzz-{endpoint}.yaml", run=3, source={
        "rate_hz": RATE_HZ, "events": EVENTS, "seed": 7})
    topo = Topology.from_yaml(path)
    rng = np.random.default_rng(sorted(ENDPOINTS).index(endpoint))
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = run_threads(topo, timeout_s=120)
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    ctx = zmq.Context()
    sent = 0
    try:
        sock = ctx.socket(ENDPOINTS[endpoint])
        sock.linger = 2000
        sock.connect(topo.endpoints[endpoint])
        time.sleep(0.5)  # inside the run: its first batches are recorded
        for i in range(300):
            make = (_random, _absurd, lambda r: _wrong(r, endpoint, topo.run_id))[i % 3]
            sock.send_multipart(make(rng))
            sent += 1
        # a frame over the size limit: ZeroMQ drops that peer, the stage never sees it
        big = ctx.socket(ENDPOINTS[endpoint])
        big.linger = 0
        big.connect(topo.endpoints[endpoint])
        big.send_multipart([_header(), b"\0" * (max_frame_bytes(topo.batch_size) + 1)])
        t.join(150)
        big.close()
        sock.close()
    finally:
        ctx.term()
    assert not t.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary.status == "complete", summary.stopped_by
    assert (summary.events_in, summary.events_lost, summary.events_duplicated) == (EVENTS, 0, 0)
    stage = COUNTED_BY[endpoint]
    counted = summary.malformed_messages[stage] + summary.refused_messages[stage]
    # every injection delivered is counted once: all of them, as they went before the end
    assert counted == sent, (summary.malformed_messages, summary.refused_messages)
    expected_ids, expected = offline(topo, EVENTS)
    np.testing.assert_array_equal(recorded_ids(topo), expected_ids)
    assert summary.menu.counts.tolist() == expected.counts.tolist()


def test_a_peer_without_the_runs_keys_is_refused_at_every_endpoint(setup: Path) -> None:
    """``darktrigger run`` authenticates a default topology's loopback links with keys made
    for the run: garbage, an overflow-shaped message, a forged end and a forged decided
    from a local peer without them never reach a stage (refused in the handshake), and the
    run records exactly what an undisturbed run records."""
    from zmq.utils.monitor import recv_monitor_message

    from darktrigger.daq.supervisor import Supervisor

    path = write_topology(setup, "fuzz-auth.yaml", run=3, source={"rate_hz": RATE_HZ, "events": EVENTS, "seed": 8})
    sup = Supervisor(path)
    assert sup.topo.keys is None  # nothing asked for: authenticated by default
    assert sup.topo.auth
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = sup.run(timeout_s=120, install_signals=False)
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    ctx = zmq.Context()
    events: dict[str, int] = {}
    rng = np.random.default_rng(9)
    forged = [_header(columns=[["x", "<f4", [2**32, 2**32]]]), b""]
    try:
        for endpoint, kind in ENDPOINTS.items():
            sock = ctx.socket(kind)
            sock.linger = 0
            monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                              | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                              | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            sock.connect(sup.topo.endpoints[endpoint])
            for msg in ([b"garbage"], forged, _raw("end", {}, meta={"run_id": sup.run_id}),
                        _decided(8, sup.run_id, seq=3), _random(rng)):
                try:
                    sock.send_multipart(msg, flags=zmq.NOBLOCK)
                except zmq.Again:  # no peer admitted us: nothing to queue to
                    pass
            assert monitor.poll(60_000), f"{endpoint}: no handshake"
            events[endpoint] = int(recv_monitor_message(monitor)["event"])
            sock.disable_monitor()
            monitor.close()
            sock.close()
        t.join(150)
    finally:
        ctx.term()
    assert not t.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    assert all(e != zmq.EVENT_HANDSHAKE_SUCCEEDED for e in events.values()), events
    summary = result["summary"]
    assert summary.status == "complete", summary.stopped_by
    assert (summary.events_in, summary.events_lost, summary.events_duplicated) == (EVENTS, 0, 0)
    assert sum(summary.malformed_messages.values()) + sum(summary.refused_messages.values()) == 0
    expected_ids, _ = offline(sup.topo, EVENTS)
    np.testing.assert_array_equal(recorded_ids(sup.topo), expected_ids)
    assert sup.run_keys is None  # the run's keys are gone with it
