"""``darktrigger run``, ``darktrigger stage`` and ``darktrigger keys``: the pipeline's commands.

    $ darktrigger run --config topology.yaml --events 2000000
    $ darktrigger stage scorer --config topology.yaml --index 0      # on another host
    $ darktrigger keys generate --out keys
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from darktrigger.replay.errors import ConfigError

log = logging.getLogger(__name__)


def format_summary(summary: dict[str, Any]) -> str:
    """The run summary for the terminal: conservation, seeds, efficiencies, latency."""
    from darktrigger.daq.rates import MenuCounts

    lines = []
    ev_in = summary.get("events_in")
    lines.append(f"events in {ev_in:,}  accepted {summary['events_accepted']:,}  rejected "
                 f"{summary['events_rejected']:,}  invalid {summary['events_invalid']:,}  "
                 f"lost {summary['events_lost']}  duplicated {summary['events_duplicated']}"
                 if ev_in is not None else
                 f"events accepted {summary['events_accepted']:,}, rejected {summary['events_rejected']:,} "
                 "(the source's count did not arrive)")
    lines.append(f"batches resent {summary.get('batches_resent', 0)}, duplicate batches dropped "
                 f"{summary.get('duplicate_batches_dropped', 0)}, workers lost {summary.get('workers_lost', 0)}, "
                 f"worker restarts {summary.get('worker_restarts', 0)}, malformed messages "
                 f"{sum(summary.get('malformed_messages', {}).values())}")
    lines.append("")
    lines.append(MenuCounts.from_dict(summary["menu"]).format_table())
    lines.append("")
    lines.append("per process (truth label): events in, accepted, efficiency")
    for name, row in summary.get("per_process", {}).items():
        lines.append(f"  {name:<12}{row['events']:>12,}{row['accepted']:>10,}{row['efficiency']:>10.4f}")
    lines.append("")
    lines.append(f"latency source → recorder: p50 {summary['latency_p50_s'] * 1e3:.1f} ms, "
                 f"p99 {summary['latency_p99_s'] * 1e3:.1f} ms")
    if summary.get("wall_s"):
        lines.append(f"{ev_in:,} events in {summary['wall_s']:.2f} s: {ev_in / summary['wall_s']:,.0f} events/s "
                     "end to end (start-up excluded)")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from darktrigger.daq.supervisor import Supervisor

    sup = Supervisor(args.config, events=args.events, duration_s=args.duration, verbose=args.verbose)
    print(f"starting {sup.topo.workers.count} worker(s); output in {sup.topo.output}", flush=True)
    if sup.topo.metrics.enabled and sup.topo.metrics.live_page:
        cfg = sup.topo.metrics
        print(f"live page: http://{cfg.host}:{cfg.ports(sup.topo.workers.count)['supervisor']}/ "
              f"(open it while the run goes; each stage's /metrics from port {cfg.base_port})", flush=True)
    summary = sup.run(timeout_s=args.timeout)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    print(f"run summary: {sup.topo.output / 'run_summary.json'}")
    lost, dup = summary.get("events_lost"), summary.get("events_duplicated")
    if lost or dup:
        print(f"darktrigger run: error: {lost} event(s) lost, {dup} duplicated")
        return 1
    return 0


def run_stage(stage: str, config: str | Path, *, index: int = 0, events: int | None = None,
              duration_s: float | None = None, stop: threading.Event | None = None) -> Any:
    """Run one stage of a topology in this process until it is done (or ``stop`` is set)."""
    from darktrigger.daq.menu import Menu
    from darktrigger.daq.runner import RecorderRunner, ScorerRunner, SourceRunner, TriggerRunner
    from darktrigger.daq.stages import RecorderStage, ScorerStage, SourceStage, TriggerStage
    from darktrigger.daq.topology import Topology

    topo = Topology.from_yaml(config)
    stop = stop or threading.Event()
    if stage not in ("source", "scorer", "trigger", "recorder"):
        raise ConfigError(f"unknown stage {stage!r}; expected source, scorer, trigger or recorder")
    menu = Menu.from_yaml(topo.menu)
    name = f"scorer-{index}" if stage == "scorer" else stage
    metrics, server = stage_metrics(topo, menu, name)
    try:
        if stage == "source":
            return SourceRunner(topo, SourceStage(topo, max_events=events), duration_s=duration_s,
                                metrics=metrics).run(stop)
        if stage == "scorer":
            scorer = ScorerStage.from_menu(menu, topo.workers.backend, topo.workers.threads)
            return ScorerRunner(topo, scorer, name=name, metrics=metrics).run(stop)
        if stage == "trigger":
            return TriggerRunner(topo, TriggerStage(menu), metrics=metrics).run(stop)
        return RecorderRunner(topo, RecorderStage(topo.output, menu, topo.run), metrics=metrics).run(stop)
    finally:
        if server is not None:
            if stage == "recorder" and not stop.is_set():
                # the run's last counts (and events lost) reach the scrapers before the port closes
                time.sleep(METRICS_LINGER_S)
            server.close()


#: How long the recorder keeps serving /metrics after the run ends: two 1 s scrapes.
METRICS_LINGER_S = 2.0


def stage_metrics(topo: Any, menu: Any, name: str, serve: bool = True) -> tuple[Any, Any]:
    """(StageMetrics, its /metrics server) for one stage, or (None, None) with metrics off."""
    if not topo.metrics.enabled:
        return None, None
    from prometheus_client import CollectorRegistry

    from darktrigger.monitoring.exposition import serve as serve_metrics
    from darktrigger.monitoring.metrics import StageMetrics
    from darktrigger import __version__

    seeds = menu.names if name == "recorder" else ()
    targets = {s.name: s.params["rate_khz"] * 1e3 for s in menu.anomaly_seeds
               if s.params.get("rate_khz")} if name == "recorder" else {}
    registry = CollectorRegistry()
    metrics = StageMetrics(registry, name, seeds=seeds,
                           models=list(menu.used_models) if name.startswith("scorer") else (),
                           bx_rate_hz=menu.bx_rate_mhz * 1e6,
                           budget_hz=menu.budget_khz * 1e3 if menu.budget_khz else None,
                           version=__version__, anomaly_targets_hz=targets,
                           latency_budget_s=topo.metrics.latency_budget_s,
                           seed_bands_hz=topo.metrics.seed_bands_hz if name == "recorder" else None)
    port = topo.metrics.ports(topo.workers.count)[name]
    server = serve_metrics(registry, topo.metrics.host, port) if serve else None
    return metrics, server


def cmd_stage(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _: Any) -> None:
        log.info("stage %s: %s; stopping", args.name, signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    result = run_stage(args.name, args.config, index=args.index, events=args.events,
                       duration_s=args.duration, stop=stop)
    log.info("stage %s finished: %s", args.name, result)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from darktrigger.daq.security import generate_keys

    out = generate_keys(args.out, overwrite=args.force)
    print(f"wrote CURVE keys to {out}: server.key(_secret) for the binding stages, client.key(_secret) for "
          f"the connecting ones, authorized/ with the admitted client keys. Copy the folder to every host "
          f"and set `security: {{keys: {out}}}` in the topology.")
    return 0


def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``run``, ``stage`` and ``keys`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    p = sub.add_parser(
        "run", formatter_class=formatter,
        help="run the whole pipeline locally (source, scorer workers, trigger, recorder) and print the summary",
        description="Start every stage of a topology as a child process: the source replays events, the "
                    "scorer workers score them with the menu's models, the trigger runs the menu, the "
                    "recorder writes accepted events to <output>/events.h5 and <output>/run_summary.json. "
                    "A worker that dies is restarted and its batches sent again; Ctrl-C drains the run.",
        epilog="examples:\n"
               "  darktrigger run --config topology.yaml --events 2000000\n"
               "  darktrigger run --config topology.yaml --duration 30 --json summary.json")
    p.add_argument("--config", required=True, type=Path, help="topology YAML (see daq/topology.py)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--events", type=int, help="stop after this many events (default: the topology's)")
    stop.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--timeout", type=float, default=None, help="give up (error) if the run takes longer")
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "stage", formatter_class=formatter,
        help="run one stage of a topology in this process (any host)",
        description="Run one stage; it binds or connects the endpoints the topology names. Start the binding "
                    "stages (source, trigger, recorder) and the workers in any order, on any hosts.",
        epilog="examples:\n"
               "  darktrigger stage recorder --config topology.yaml\n"
               "  darktrigger stage scorer --config topology.yaml --index 1\n"
               "  darktrigger stage source --config topology.yaml --events 1000000")
    p.add_argument("name", choices=("source", "scorer", "trigger", "recorder"))
    p.add_argument("--config", required=True, type=Path, help="topology YAML")
    p.add_argument("--index", type=int, default=0, help="worker number (scorer), shown in logs")
    p.add_argument("--events", type=int, help="source: stop after this many events")
    p.add_argument("--duration", type=float, help="source: stop after this many seconds")
    p.set_defaults(func=cmd_stage)

    p = sub.add_parser(
        "keys", formatter_class=formatter, help="CURVE keys for links that leave loopback",
        description="Make the key pairs that encrypt and authenticate tcp links between hosts.",
        epilog="example:\n  darktrigger keys generate --out keys")
    keys_sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = keys_sub.add_parser("generate", formatter_class=formatter, help="make server and client key pairs",
                            epilog="example:\n  darktrigger keys generate --out keys")
    g.add_argument("--out", type=Path, required=True, help="folder for the keys")
    g.add_argument("--force", action="store_true", help="replace keys already there")
    g.set_defaults(func=cmd_keys)
