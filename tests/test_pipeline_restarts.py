"""kill -9 of the source, the trigger or the recorder mid-run (issue 17, point 4): the
supervisor starts it again, the recorder resumes from its checkpoint and its events file,
the source from the batches acknowledged, unacknowledged batches are sent again, and the
run ends complete: 0 lost, 0 duplicated, the accepted (run, event, trigger bits) those of
the same replay decided offline, the restart counted. Five seeds per stage, each a ~2 s
paced run; the kill is timed on the source's own count of events sent, well inside it.
(The workers' kill -9 is tests/test_pipeline_processes.py's.)"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from darktrigger.daq.stages import ScorerStage, SourceStage, TriggerStage
from darktrigger.daq.supervisor import Supervisor
from darktrigger.daq.testing import free_metrics_base, make_setup, write_topology
from darktrigger.daq.topology import Topology
from darktrigger.daq.trigger.menu import Menu
from darktrigger.replay.storage import NativeFile

pytestmark = pytest.mark.slow

EVENTS = 200_000


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_setup(tmp_path_factory.mktemp("restarts"), n_bkg=20_000, model=False)


def _offline(topo: Topology) -> np.ndarray:
    """(run, event, trigger bits) of every accepted event, sorted: what the run must record."""
    menu = Menu.from_yaml(topo.menu)
    scorer, trigger = ScorerStage.from_menu(menu), TriggerStage(menu)
    rows = []
    for _, batch in SourceStage(topo, max_events=EVENTS):
        accepted, _ = trigger.process(scorer.process(batch)[0])
        rows.append(np.stack([accepted.columns["run"].astype(np.uint64), accepted.columns["event"],
                              accepted.columns["trigger_bits"]], axis=1))
    out = np.concatenate(rows)
    return out[np.lexsort(out.T[::-1])]


def _recorded(topo: Topology) -> np.ndarray:
    with NativeFile(topo.output / "events.h5") as f:
        b = f.read(0, len(f))
    out = np.stack([b.columns["run"].astype(np.uint64), b.columns["event"], b.columns["trigger_bits"]], axis=1)
    return out[np.lexsort(out.T[::-1])]


def _source_events(sup: Supervisor) -> int:
    return sup.progress(0.0).events_in or 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("stage", ["source", "trigger", "recorder"])
def test_kill_9_of_a_stage_mid_run_is_survived(root: Path, stage: str, seed: int) -> None:
    rng = np.random.default_rng([seed, ["source", "trigger", "recorder"].index(stage)])
    path = write_topology(root, f"restart-{stage}-{seed}.yaml", run=200 + seed, batch_size=4096,
                          source={"seed": seed, "rate_hz": 100_000, "events": EVENTS},
                          metrics={"enabled": True, "host": "127.0.0.1", "base_port": free_metrics_base(2),
                                   "live_page": False})
    sup = Supervisor(path)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = sup.run(timeout_s=120, install_signals=False)
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    at = int(rng.integers(40_000, 100_000))
    deadline = time.monotonic() + 60
    while _source_events(sup) < at and t.is_alive():
        assert time.monotonic() < deadline, "the source never got going"
        time.sleep(0.02)
    assert t.is_alive(), result
    os.kill(sup.children[stage].proc.pid, signal.SIGKILL)
    t.join(150)
    assert not t.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    what = f"{stage} killed at {at:,} events (seed {seed}): {summary.stopped_by}"
    assert summary.status == "complete", what
    assert summary.stage_restarts == {stage: 1}, what
    assert (summary.events_in, summary.events_lost, summary.events_duplicated) == (EVENTS, 0, 0), what
    np.testing.assert_array_equal(_recorded(sup.topo), _offline(sup.topo))
