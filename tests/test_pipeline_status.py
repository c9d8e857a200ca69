"""What a run says about itself (issue 17, points 2 and 3), without running one: the status
and exit code from the counts and the reason, summaries written before the new fields
existed, the topology's security and run identity, and a worker's credit bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from darktrigger.daq.runner import SourceRunner
from darktrigger.daq.stages import SourceStage
from darktrigger.daq.summary import EXIT_CODES, LATER_FIELDS, RunSummary, run_status
from darktrigger.daq.testing import make_setup, write_topology
from darktrigger.daq.topology import Topology
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.daq.wire import encode
from darktrigger.replay.errors import ConfigError, InputFormatError


@pytest.mark.parametrize(("stopped_by", "lost", "duplicated", "status"), [
    ("end of run", 0, 0, "complete"),
    ("end of run", 5, 0, "failed"),          # counts that do not close are never complete
    ("end of run", None, 0, "failed"),       # the source's count never arrived
    ("end of run", 0, 1, "failed"),
    ("interrupted (SIGINT)", 0, 0, "stopped"),
    ("terminated", 0, 0, "stopped"),
    ("hung up (SIGHUP)", 0, 0, "stopped"),
    ("the supervisor (pid 12) exited", 0, 0, "stopped"),
    ("terminated", 3, 0, "failed"),
    ("stage trigger exited with code -9", 0, 0, "failed"),
    ("timeout", 0, 0, "failed"),
])
def test_the_status_follows_the_reason_and_the_counts(stopped_by: str, lost: int | None, duplicated: int,
                                                      status: str) -> None:
    assert run_status(stopped_by, lost, duplicated) == status


def test_only_a_complete_run_exits_0() -> None:
    assert EXIT_CODES == {"complete": 0, "failed": 1, "stopped": 3}


def test_a_summary_from_before_the_new_fields_reads_with_their_defaults() -> None:
    data = RunSummary(run=1, events_in=4, events_lost=0, menu=MenuCounts(["MET90"])).to_dict()
    for name in LATER_FIELDS:
        del data[name]
    back = RunSummary.from_dict(data)
    assert (back.status, back.refused_messages, back.rows_skipped, back.stage_restarts) == ("complete", {}, {}, {})
    del data["events_lost"]  # an original field is still required
    with pytest.raises(InputFormatError, match="events_lost missing"):
        RunSummary.from_dict(data)


def _topo(**extra: object) -> Topology:
    return Topology.from_dict({"menu": "m.yaml", "source": {"files": ["a.h5"]}, **extra}, base=Path("/runs"))


def test_security_is_on_unless_turned_off_and_keys_exclude_off() -> None:
    assert _topo().auth
    assert not _topo(security={"auth": False}).auth
    with pytest.raises(ConfigError, match="security.auth must be on or off"):
        _topo(security={"auth": "maybe"})
    with pytest.raises(ConfigError, match="keys given with auth: off"):
        _topo(security={"auth": False, "keys": "keys"})


def test_the_run_identity_is_the_topologys() -> None:
    assert _topo().run_id == _topo().run_id
    assert _topo().run_id != _topo(run=2).run_id
    assert _topo().run_id != _topo(batch_size=4096).run_id


def test_a_workers_credit_is_bounded_by_the_topology(tmp_path: Path) -> None:
    root = make_setup(tmp_path, n_bkg=2_000, model=False)
    topo = Topology.from_yaml(write_topology(root, workers={"count": 2, "prefetch": 3}))
    src = SourceRunner(topo, SourceStage(topo, max_events=100))
    me = zmq.Frame(b"worker-1")
    for _ in range(3):
        src._on_worker([me, *encode("ready", run=topo.run, meta={"credit": 2, "run_id": topo.run_id})])
    assert src.workers[b"worker-1"].credit == 3  # 6 asked, prefetch allowed
    src._on_worker([me, *encode("ready", run=topo.run, meta={"credit": 10**6, "run_id": topo.run_id})])
    assert src.stats["malformed"] == 1
    src._on_worker([zmq.Frame(b"stray"), *encode("ready", run=topo.run, meta={"credit": 1})])
    assert b"stray" not in src.workers  # no run identity: never a worker of this run
    assert src.stats["refused"] == 1
    src.close()


def test_a_source_resumed_after_everything_was_acknowledged_sends_only_the_end(tmp_path: Path) -> None:
    """A source started again after it had finished (its end died with the trigger or the
    recorder) replays, finds every batch acknowledged in its checkpoint and, with no worker
    at all, sends the end with the run's full counts once more."""
    import json

    from darktrigger.daq.wire import decode

    root = make_setup(tmp_path, n_bkg=2_000, model=False)
    topo = Topology.from_yaml(write_topology(root, "resumed.yaml", source={"events": 10_000}))
    batches = sum(1 for _ in SourceStage(topo, max_events=10_000))
    topo.output.mkdir(parents=True)
    (topo.output / ".source-state.json").write_text(json.dumps({"run_id": topo.run_id, "acked": [[0, batches]]}))
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(topo.endpoints["trigger"])
    try:
        result = SourceRunner(topo, SourceStage(topo, max_events=10_000), ctx, resume=True).run()
        assert pull.poll(10_000), "no end"
        end = decode(pull.recv_multipart())
    finally:
        pull.close(linger=0)
        ctx.term()
    assert (result.events_in, result.batches_in) == (10_000, batches)
    assert result.stats.get("batches_resent", 0) == 0
    assert (end.kind, end.meta["events_in"], end.meta["batches_in"], end.meta["run_id"]) == (
        "end", 10_000, batches, topo.run_id)
