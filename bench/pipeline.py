"""The whole pipeline end to end: events/s and latency against batch size and workers.

Every stage in its own process (``darktrigger run``'s supervisor), toy events (ADC-like
``sm_mix`` with ``ato4l`` injected at 1e-3, replayed from a file in a loop), the full
example menu (``daq/trigger/menus/cms_like.yaml``: object seeds, five AXO-like ``vae:mu2`` seeds
and an ``ae`` seed, so both models are scored), recorder on. Side by side: the same
pipeline carrying pickled batches (each message one pickle of the header and the
columns) instead of the msgpack header + raw buffers; and the same pipeline with its
loopback links unauthenticated (``security: {auth: off}``) against the default (CURVE
with keys made for the run: authentication and encryption of every message).

    $ python -m bench.pipeline [--events 2000000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from darktrigger.daq.summary import RunSummary

EVENTS = 2_000_000
CONFIGS = [(4096, 2), (16384, 1), (16384, 2), (65536, 2)]
PICKLE_CONFIGS = [(16384, 2), (65536, 2)]
#: the configurations also run with authentication off, for its cost
AUTH_OFF_CONFIGS = [(4096, 2), (16384, 2), (65536, 2)]
GOAL_EVENTS_S = 1e6
GOAL_P99_S = 0.050


def setup(work: Path, quick: bool = False) -> Path:
    """Toy events, small AE and VAE, the example menu calibrated on toy zero bias."""
    from darktrigger.daq.trigger.menu import Menu, calibrate_menu
    from darktrigger.daq.trigger.menus import example_menu
    from darktrigger.models import get_scorer
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.storage import write_events

    toy = GENERATORS.get("toy")()
    n = 100_000 if quick else 400_000
    bkg = next(toy.generate("sm_mix", n, seed=1, batch_size=n))
    write_events(work / "bkg.h5", bkg)
    write_events(work / "sig.h5", next(toy.generate("ato4l", 20_000, seed=2, batch_size=20_000)))
    for name in ("ae", "vae"):
        scorer = get_scorer(name)
        scorer.fit(bkg[:20_000], epochs=1, batch_size=512, seed=0)
        scorer.save(work / "models" / name)
    shutil.copy(example_menu(), work / "menu_raw.yaml")
    menu = Menu.from_yaml(work / "menu_raw.yaml")
    calibrate_menu(menu, bkg[n // 2:]).to_yaml(work / "menu.yaml")
    return work


def topology(work: Path, batch_size: int, workers: int, events: int, name: str, auth: bool = True) -> Path:
    from darktrigger.daq.testing import free_ports

    ports = free_ports(4)
    topo = {"run": 1, "output": f"out-{name}", "menu": "menu.yaml", "batch_size": batch_size,
            "source": {"mix": {"bkg.h5": 0.999, "sig.h5": 0.001}, "loop": True, "events": events},
            "workers": {"count": workers},
            "endpoints": {k: f"tcp://127.0.0.1:{p}" for k, p in
                          zip(("dispatch", "acks", "trigger", "recorder"), ports, strict=True)}}
    if not auth:
        topo["security"] = {"auth": False}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(topo))
    return path


def run_one(config: Path, codec: str) -> RunSummary:
    from darktrigger.daq.supervisor import Supervisor

    if codec == "pickle":  # the stages run this module (not installed: found from the repository)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        sup = Supervisor(config, module="bench.pipeline", env=env)
    else:
        sup = Supervisor(config)
    return sup.run(timeout_s=600, install_signals=False)


def throughput(summary: RunSummary) -> tuple[int, float]:
    """(events in, events/s end to end) of a run; an error when the source's count is missing."""
    if summary.events_in is None or not summary.wall_s:
        raise RuntimeError(f"run {summary.run}: no source count or duration in the summary "
                           f"(stopped by {summary.stopped_by})")
    return summary.events_in, summary.events_in / summary.wall_s


def stage_costs(work: Path, events: int) -> tuple[list[str], float]:
    """Each stage's own work in this process, one thread, on the same stream (no sockets):
    rows of events/s per stage, and the rate their summed CPU time allows on this
    machine's cores (every stage is a process; the cores are shared)."""
    import time

    from darktrigger.daq.stages import RecorderStage, ScorerStage, SourceStage, TriggerStage
    from darktrigger.daq.topology import Topology
    from darktrigger.daq.trigger.menu import Menu
    from darktrigger.daq.wire import decode, encode_batch

    topo = Topology.from_yaml(topology(work, 16384, 1, events, "costs"))
    menu = Menu.from_yaml(topo.menu)
    t = time.perf_counter()
    batches = [b for _, b in SourceStage(topo, max_events=events)]
    cost = {"source (replay of the mixture, stamping)": time.perf_counter() - t}
    scorer, trigger = ScorerStage.from_menu(menu), TriggerStage(menu)
    t = time.perf_counter()
    scored = [scorer.process(b)[0] for b in batches]
    cost["scorer (AE and VAE Σμ², onnxruntime)"] = time.perf_counter() - t
    t = time.perf_counter()
    decided = [trigger.process(b) for b in scored]
    cost["trigger (16-seed menu)"] = time.perf_counter() - t
    recorder = RecorderStage(work / "costs-recorder", menu)
    t = time.perf_counter()
    for seq, ((accepted, decision), b) in enumerate(zip(decided, scored, strict=True)):
        recorder.record(1, seq, accepted, decision, b.columns["truth"])
    recorder.close()
    cost["recorder (LZ4 HDF5 of the accepted, counts)"] = time.perf_counter() - t
    t = time.perf_counter()
    for seq, b in enumerate(scored):  # what each hop does to a batch: encode, copy through, decode
        decode([bytes(memoryview(f)) if not isinstance(f, bytes) else f for f in encode_batch("batch", 1, seq, b)])
    cost["wire: encode + a copy + decode, one hop"] = time.perf_counter() - t
    n = sum(len(b) for b in batches)
    cores = os.cpu_count() or 1
    bound = cores / sum(c / n for c in cost.values())
    rows = [f"| {name} | {n / c / 1e6:.2f} M | {c / n * 1e6:.2f} µs |" for name, c in cost.items()]
    return rows, bound


def run(quick: bool = False, events: int | None = None) -> list[str]:
    """The markdown section: one row per (codec, batch size, workers)."""
    events = events or (400_000 if quick else EVENTS)
    work = Path(tempfile.mkdtemp(prefix="darktrigger-pipeline-bench-"))
    rows = []
    rates: dict[tuple[str, int, int, bool], float] = {}
    try:
        setup(work, quick)
        cost_rows, bound = stage_costs(work, 200_000 if quick else 800_000)
        cases = ([("raw", b, w, True) for b, w in CONFIGS] + [("raw", b, w, False) for b, w in AUTH_OFF_CONFIGS]
                 + [("pickle", b, w, True) for b, w in PICKLE_CONFIGS])
        for codec, batch, workers, auth in cases:
            name = f"{codec}-{batch}-{workers}-{'curve' if auth else 'open'}"
            s = run_one(topology(work, batch, workers, events, name, auth), codec)
            events_in, rate = throughput(s)
            rates[(codec, batch, workers, auth)] = rate
            accepted = s.events_accepted / events_in
            rows.append(f"| {'msgpack + raw buffers' if codec == 'raw' else 'pickle'} "
                        f"| {'CURVE (per-run keys)' if auth else 'off'} | {batch:,} | {workers} "
                        f"| {events_in:,} | {rate / 1e3:,.0f} k | {s.latency_p50_s * 1e3:,.0f} "
                        f"| {s.latency_p99_s * 1e3:,.0f} | {accepted:.1%} | {s.events_lost} "
                        f"| {s.events_duplicated} |")
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cost = [f"{1 - rates[('raw', b, w, True)] / rates[('raw', b, w, False)]:+.0%} at batch {b:,}"
            for b, w in AUTH_OFF_CONFIGS if ("raw", b, w, True) in rates]
    return [
        "## Pipeline end to end (every stage a process)",
        "",
        f"Toy `sm_mix` + `ato4l` (1e-3), the example menu (17 seeds: 11 objects, five `vae:mu2`, ZeroBias; thresholds calibrated on this lepton-filtered `sm_mix`, not zero bias, so a quarter of the events are accepted), "
        f"recorder on (LZ4). events/s = events in / (first emission → last acknowledgement); latency = "
        f"source emit → recorder write, per event. Goal: ≥ {GOAL_EVENTS_S / 1e6:.0f} M events/s with "
        f"p99 ≤ {GOAL_P99_S * 1e3:.0f} ms.",
        "",
        "| wire | authentication | batch | workers | events | events/s | p50 ms | p99 ms | accepted | lost "
        "| duplicated |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "What limits it: every stage's own work, timed alone in one process on the same stream:",
        "",
        "| stage | events/s on one core | CPU per event |",
        "| --- | ---: | ---: |",
        *cost_rows,
        "",
        f"Their CPU per event, summed, allows at most {bound / 1e3:,.0f} k events/s on this machine's "
        f"{os.cpu_count()} cores when every stage is a process sharing them, before any waiting: the "
        "pipeline is CPU-bound on this machine, and the wire is not the limit (pickled batches run "
        "about as fast). The recorder writes about a quarter of the events because the toy "
        "background is lepton-filtered like ADC2021's, not zero bias, so the menu's lepton seeds "
        "fire on much of it. Latency is the in-flight window (workers × prefetch + 4 batches) over "
        "the throughput: smaller batches give lower latency and lower throughput. Authentication "
        "(CURVE, the default of `darktrigger run`: keys made per run) encrypts every message; its cost, "
        f"the throughput lost against the same configuration with `security: {{auth: off}}` (two "
        f"workers): {', '.join(cost)} (one run each on a shared machine: ±15 %).",
        "",
    ]


# -- the pickle codec, for the comparison only (never used by the product) ------------
def _pickle_codec() -> None:
    import darktrigger.daq.runner as runner
    from darktrigger.daq.wire import Message, WireError

    def encode(kind: str, *, run: int = 0, seq: int = 0, columns: Any = None, meta: Any = None,
               count: int | None = None) -> list[bytes]:
        cols = {k: np.ascontiguousarray(v) for k, v in (columns or {}).items()}
        if count is None:
            count = len(next(iter(cols.values()))) if cols else 0
        return [pickle.dumps({"kind": kind, "run": run, "seq": seq, "count": count, "columns": cols,
                              "meta": dict(meta or {})}, protocol=pickle.HIGHEST_PROTOCOL)]

    def encode_batch(kind: str, run: int, seq: int, batch: Any, meta: Any = None) -> list[bytes]:
        return encode(kind, run=run, seq=seq, columns=batch.columns, meta=meta, count=len(batch))

    def decode(frames: Any) -> Message:
        try:
            d = pickle.loads(frames[0].buffer if hasattr(frames[0], "buffer") else frames[0])  # noqa: S301
        except Exception as exc:
            raise WireError(f"not a pickle: {exc}") from None
        return Message(d["kind"], d["run"], d["seq"], d["count"], d["columns"], d["meta"])

    runner.encode, runner.encode_batch, runner.decode = encode, encode_batch, decode


def stage_main() -> int:
    """``python -m bench.pipeline stage ...``: a stage with the pickle codec."""
    _pickle_codec()
    from darktrigger.daq.cli import main

    return main(sys.argv[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print("\n".join(run(args.quick, args.events)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("stage", "-v"):
        sys.exit(stage_main())
    sys.exit(main())
