"""Where the menu runs (``trigger: {placement: in_workers}``) and batch sizes chosen from a
latency goal (``target_p99_ms``): parsing, and whole runs on toy zero-bias crossings that
record exactly what the offline menu decides on the same events."""

from __future__ import annotations

from pathlib import Path

import pytest

from darktrigger.daq.launch import run_stage
from darktrigger.daq.local import run_threads
from darktrigger.daq.supervisor import Supervisor
from darktrigger.daq.testing import check_against_offline, make_setup, write_topology
from darktrigger.daq.topology import LatencyPlan, Topology, plan_for_latency
from darktrigger.replay.errors import ConfigError

ZERO_BIAS_EVENTS = 200_000


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test menu with its VAE (:func:`make_setup`) and 60,000 toy zero-bias crossings."""
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.storage import write_events

    root = make_setup(tmp_path_factory.mktemp("placement"))
    toy = GENERATORS.get("toy")()
    write_events(root / "zb.h5", next(toy.generate("zero_bias", 60_000, seed=21, batch_size=60_000)))
    return root


def _in_workers(root: Path, name: str, **overrides: object) -> Path:
    return write_topology(root, name, source={"files": ["zb.h5"], "mix": None, "events": ZERO_BIAS_EVENTS},
                          trigger={"placement": "in_workers"}, **overrides)


def test_placement_parses_and_names_the_stages() -> None:
    base = {"menu": "m.yaml", "source": {"files": ["a.h5"]}}
    standalone = Topology.from_dict(base)
    assert standalone.trigger.placement == "standalone"
    assert standalone.stages == ("source", "scorer", "trigger", "recorder")
    assert standalone.decided_endpoint == "trigger"
    inside = Topology.from_dict({**base, "trigger": {"placement": "in_workers"}})
    assert inside.trigger_in_workers
    assert inside.stages == ("source", "scorer", "recorder")
    assert inside.decided_endpoint == "recorder"
    with pytest.raises(ConfigError, match="did you mean 'in_workers'"):
        Topology.from_dict({**base, "trigger": {"placement": "in_worker"}})
    with pytest.raises(ConfigError, match="unknown key"):
        Topology.from_dict({**base, "trigger": {"where": "in_workers"}})


def test_target_p99_ms_chooses_the_batch_and_keeps_a_given_window() -> None:
    base = {"menu": "m.yaml", "source": {"files": ["a.h5"]}, "workers": {"count": 2}}
    topo = Topology.from_dict({**base, "target_p99_ms": 50})
    plan = plan_for_latency(50, 2)
    assert (topo.batch_size, topo.reliability.max_inflight, topo.target_p99_ms) == (
        plan.batch_size, plan.max_inflight, 50.0)
    assert plan.p99_s() <= 0.050 < (plan.ahead + 1) * 2 * plan.batch_size / 1e6  # the largest that fits
    tighter = Topology.from_dict({**base, "target_p99_ms": 10})
    assert tighter.batch_size < topo.batch_size
    kept = Topology.from_dict({**base, "target_p99_ms": 50, "reliability": {"max_inflight": 30}})
    assert kept.reliability.max_inflight == 30
    assert plan_for_latency(1e6, 2).batch_size == 65536  # never above the largest batch
    with pytest.raises(ConfigError, match="batch_size and target_p99_ms both given; keep one"):
        Topology.from_dict({**base, "target_p99_ms": 50, "batch_size": 65536})
    with pytest.raises(ConfigError, match="target_p99_ms must be > 0"):
        Topology.from_dict({**base, "target_p99_ms": 0})
    assert isinstance(plan, LatencyPlan)


def test_trigger_in_workers_records_what_the_menu_decides_offline(setup: Path) -> None:
    """200,000 zero-bias crossings, stages in threads, the menu in the two workers."""
    topo = Topology.from_yaml(_in_workers(setup, "threads.yaml", batch_size=8192))
    summary = run_threads(topo)
    assert summary.events_in == ZERO_BIAS_EVENTS
    assert summary.events_accepted > 0
    check_against_offline(topo, summary)


def test_trigger_in_workers_as_processes_starts_no_trigger(setup: Path) -> None:
    """The same with every stage a process (``darktrigger run``): no trigger stage is started."""
    path = _in_workers(setup, "procs.yaml", target_p99_ms=50, batch_size=None)
    sup = Supervisor(path)
    summary = sup.run(timeout_s=300, install_signals=False)
    assert "trigger" not in sup.children
    assert summary.status == "complete", summary.stopped_by
    check_against_offline(sup.topo, summary)


def test_no_trigger_stage_to_start_when_the_workers_run_the_menu(setup: Path) -> None:
    with pytest.raises(ConfigError, match="no trigger stage"):
        run_stage("trigger", _in_workers(setup, "nostage.yaml"))


def test_recorded_batches_leave_the_window_until_their_flush_is_acknowledged(setup: Path) -> None:
    """The source's window counts batches in the pipeline; a batch the recorder has recorded
    (``ack`` with ``flushed: false``) leaves it but is kept, up to ``inflight_cap``, until
    the acknowledgement after the flush frees it."""
    from darktrigger.daq.runner import SourceRunner, _InFlight
    from darktrigger.daq.stages import SourceStage
    from darktrigger.daq.wire import encode

    topo = Topology.from_yaml(_in_workers(setup, "window.yaml", reliability={"max_inflight": 3}))
    src = SourceRunner(topo, SourceStage(topo, max_events=10_000))
    try:
        for seq in range(3):
            src.inflight[seq] = _InFlight([b""], 1, sends=1)
        assert src._window_full()
        src._on_ack(encode("ack", run=topo.run, meta=src.ident(seqs=[0, 1], flushed=False)))
        assert not src._window_full()
        assert set(src.inflight) == {0, 1, 2}
        assert [src.inflight[s].recorded for s in range(3)] == [True, True, False]
        src._on_ack(encode("ack", run=topo.run, meta=src.ident(seqs=[0])))
        assert set(src.inflight) == {1, 2}
        assert 0 in src.acked
        assert 1 not in src.acked
        for seq in range(3, topo.inflight_cap + 1):  # recorded ones fill up to the cap
            src.inflight[seq] = _InFlight([b""], 1, sends=1, recorded=True)
        assert len(src.inflight) >= topo.inflight_cap
        assert src._window_full()
    finally:
        src.close()
