"""A whole pipeline in one process, its stages in threads: for tests and quick looks.

The same runners and sockets as ``darktrigger run`` (which puts each stage in its own
process); only the processes differ. With ``trigger: {placement: in_workers}`` there is no
trigger thread: the workers run the menu.

    >>> from pathlib import Path
    >>> from darktrigger.daq.testing import make_setup, write_topology
    >>> root = make_setup(Path("pipeline"), n_bkg=5_000, model=False)  # toy events, object seeds
    >>> summary = run_threads(Topology.from_yaml(write_topology(root)), events=20_000)
    >>> summary.events_in, summary.events_lost, summary.events_duplicated
    (20000, 0, 0)
"""

from __future__ import annotations

import threading
from typing import Any

import zmq

from darktrigger.daq.launch import stage_metrics
from darktrigger.daq.runner import RecorderRunner, ScorerRunner, SourceRunner, Stop, TriggerRunner
from darktrigger.daq.stages import RecorderStage, ScorerStage, SourceStage, TriggerStage
from darktrigger.daq.summary import RunSummary
from darktrigger.daq.topology import Topology
from darktrigger.daq.trigger.menu import Menu
from darktrigger.replay.errors import DarkTriggerError


def run_threads(topo: Topology, *, events: int | None = None, duration_s: float | None = None,
                timeout_s: float = 120.0) -> RunSummary:
    """Run every stage of ``topo`` in threads until the recorder has the run summary."""
    ctx = zmq.Context()
    menu = Menu.from_yaml(topo.menu)
    stop = Stop()
    in_workers = topo.trigger_in_workers
    names = ["recorder", *([] if in_workers else ["trigger"]), *(f"scorer-{i}" for i in range(topo.workers.count)),
             "source"]
    served = {name: stage_metrics(topo, menu, name) for name in names}  # (None, None) with metrics off
    recorder = RecorderRunner(topo, RecorderStage(topo.output, menu, topo.run), ctx,
                              metrics=served["recorder"][0])
    runners: list[Any] = [recorder]
    if not in_workers:
        runners.append(TriggerRunner(topo, TriggerStage(menu), ctx, metrics=served["trigger"][0]))
    for i in range(topo.workers.count):
        runners.append(ScorerRunner(topo, ScorerStage.from_menu(menu, topo.workers.backend), ctx,
                                    name=f"scorer-{i}", metrics=served[f"scorer-{i}"][0],
                                    trigger=TriggerStage(menu) if in_workers else None))
    runners.append(SourceRunner(topo, SourceStage(topo, max_events=events), ctx, duration_s=duration_s,
                                metrics=served["source"][0]))
    errors: list[BaseException] = []

    def target(runner: Any) -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            stop.set_because(f"stage {runner.stage} failed: {exc}")

    threads = [threading.Thread(target=target, args=(r,), name=r.stage, daemon=True) for r in runners]
    for t in threads:
        t.start()
    try:
        threads[0].join(timeout_s)
        if threads[0].is_alive():
            stop.set_because("timeout")
            raise DarkTriggerError(f"the recorder did not finish within {timeout_s:g} s")
    finally:
        stop.set_because("end of the in-process run")
        for t in threads:
            t.join(10)
        for _, server in served.values():
            if server is not None:
                server.close()
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:  # terminating the context would wait for them forever
            errors.append(DarkTriggerError(f"stage(s) {', '.join(stuck)} did not stop within 10 s"))
        else:
            ctx.term()
    if errors:
        raise errors[0]
    if recorder.summary is None:
        raise DarkTriggerError("the recorder stopped without a run summary")
    return recorder.summary
