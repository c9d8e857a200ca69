"""``darktrigger run``, ``darktrigger stage`` and ``darktrigger keys``: the pipeline's commands.

    $ darktrigger run --config topology.yaml --events 2000000
    $ darktrigger stage scorer --config topology.yaml --index 0      # on another host
    $ darktrigger keys generate --out keys
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from darktrigger.daq.launch import run_stage
from darktrigger.daq.summary import EXIT_CODES, format_summary
from darktrigger.daq.supervisor import PROGRESS_EVERY_S
from darktrigger.daq.topology import STAGES

log = logging.getLogger(__name__)


def cmd_run(args: argparse.Namespace) -> int:
    from darktrigger.daq.supervisor import StageFailed, Supervisor

    sup = Supervisor(args.config, events=args.events, duration_s=args.duration, verbose=args.verbose,
                     force=args.force)
    sup.preflight()  # every input, port and the output folder, before a word about starting
    print(f"starting {sup.topo.workers.count} worker(s); output in {sup.topo.output}", flush=True)
    if sup.topo.metrics.enabled and sup.topo.metrics.live_page:
        cfg = sup.topo.metrics
        print(f"live page: http://{cfg.host}:{cfg.ports(sup.topo.workers.count)['supervisor']}/ "
              f"(open it while the run goes; each stage's /metrics from port {cfg.base_port})", flush=True)

    def progress(p: Any) -> None:
        print(f"darktrigger run: {p}", file=sys.stderr, flush=True)

    try:
        summary = sup.run(timeout_s=args.timeout, on_progress=progress if args.progress > 0 else None,
                          progress_every_s=args.progress or PROGRESS_EVERY_S)
    except StageFailed as exc:
        print(f"darktrigger run: error: {exc}", file=sys.stderr)
        print(f"darktrigger run: the run failed ({exc.stopped_by}); its summary, if the recorder wrote one: "
              f"{sup.topo.output / 'run_summary.json'}", file=sys.stderr)
        return EXIT_CODES["failed"]
    if args.json:
        summary.write(args.json)
    print(format_summary(summary))
    print(f"run summary: {sup.topo.output / 'run_summary.json'}")
    lost, dup = summary.events_lost, summary.events_duplicated
    if lost or dup:
        print(f"darktrigger run: error: {lost} event(s) lost, {dup} duplicated")
    if summary.status != "complete":
        print(f"darktrigger run: the run is {summary.status} ({summary.stopped_by})", file=sys.stderr)
    return EXIT_CODES.get(summary.status, 1)


#: ``stopped_by`` for a stage stopped by a signal
SIGNAL_REASONS = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated",
                  signal.SIGHUP: "hung up (SIGHUP)"}


def cmd_stage(args: argparse.Namespace) -> int:
    from darktrigger.daq.runner import Stop

    stop = Stop()

    def on_signal(signum: int, _: Any) -> None:
        log.info("stage %s: %s; stopping", args.name, signal.Signals(signum).name)
        stop.set_because(SIGNAL_REASONS[signal.Signals(signum)])

    for sig in SIGNAL_REASONS:
        signal.signal(sig, on_signal)
    recover = threading.Event()
    if args.name == "source":  # the supervisor started a trigger or recorder again: send again
        signal.signal(signal.SIGUSR1, lambda *_: recover.set())
    if args.supervisor_pid is not None:
        from darktrigger.daq.topology import Topology

        # the source drains at once; the others follow its end, or stop after the drain time
        grace_s = 0.0 if args.name == "source" else Topology.from_yaml(args.config).reliability.drain_timeout_s
        threading.Thread(target=_watch_supervisor, args=(args.supervisor_pid, stop, grace_s), daemon=True,
                         name="supervisor-watch").start()
    result = run_stage(args.name, args.config, index=args.index, events=args.events,
                       duration_s=args.duration, stop=stop, run_id=args.run_id, keys=args.keys,
                       resume=args.resume, recover=recover)
    log.info("stage %s finished: %s", args.name, result)
    return 0


def _watch_supervisor(pid: int, stop: Any, grace_s: float, every_s: float = 0.5) -> None:
    """Stop this stage ``grace_s`` after the supervisor that started it is gone: its stages run
    in their own process group, away from the terminal's Ctrl-C, so nothing else would. The
    source drains at once (grace 0) and the run ends as after a SIGTERM; the other stages
    end with it, or stop by themselves after the grace."""
    while not stop.wait(every_s):
        if os.getppid() != pid:
            log.warning("the supervisor (pid %d) is gone; stopping%s", pid,
                        f" in {grace_s:g} s unless the run ends first" if grace_s else "")
            if not stop.wait(grace_s):
                stop.set_because(f"the supervisor (pid {pid}) exited")
            return


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
                    "Every input is checked before anything starts; an output folder that is not empty "
                    "is refused unless --force. Progress (events in, accepted, events/s) goes to stderr "
                    "every few seconds. A worker that dies is restarted and its batches sent again; "
                    "Ctrl-C (or SIGTERM, SIGHUP) drains the run: batches in flight are recorded, and the "
                    "summary's stopped_by says how the run ended. The stages' links are authenticated "
                    "with CURVE keys made for this run (unless the topology gives its own keys or says "
                    "security: {auth: off}). Exit status: 0 when the run is complete (the source finished "
                    "and nothing was lost or duplicated), 3 when a signal stopped it cleanly, 1 when it "
                    "failed (a stage died, a timeout, a full disk, counts that do not close).",
        epilog="examples:\n"
               "  darktrigger run --config topology.yaml --events 2000000\n"
               "  darktrigger run --config topology.yaml --duration 30 --json summary.json")
    p.add_argument("--config", required=True, type=Path, help="topology YAML (see daq/topology.py)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--events", type=int, help="stop after this many events (default: the topology's)")
    stop.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--timeout", type=float, default=None, help="give up (error) if the run takes longer")
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument("--force", action="store_true",
                   help="run into an output folder that is not empty, replacing its events.h5, "
                        "run_summary.json and logs/")
    p.add_argument("--progress", type=float, default=PROGRESS_EVERY_S, metavar="SECONDS",
                   help="report events in, accepted and events/s to stderr this often (0: never)")
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
    p.add_argument("name", choices=STAGES)
    p.add_argument("--config", required=True, type=Path, help="topology YAML")
    p.add_argument("--index", type=int, default=0, help="worker number (scorer), shown in logs")
    p.add_argument("--events", type=int, help="source: stop after this many events")
    p.add_argument("--duration", type=float, help="source: stop after this many seconds")
    p.add_argument("--supervisor-pid", type=int, default=None, help=argparse.SUPPRESS)  # set by `run`
    p.add_argument("--run-id", default=None, help=argparse.SUPPRESS)  # the run's identity, set by `run`
    p.add_argument("--resume", action="store_true",
                   help="source, recorder: continue a run this stage was part of before it died (the "
                        "recorder from its checkpoint and events file, the source from the batches "
                        "acknowledged); `darktrigger run` sets it when it starts a stage again")
    p.add_argument("--keys", type=Path, default=None, help=argparse.SUPPRESS)  # per-run CURVE keys, set by `run`
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
