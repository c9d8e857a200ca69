"""``darktrigger monitor config|serve|dashboard``: Prometheus's scrape config, the live page
and the Grafana dashboard for a topology.

    $ darktrigger monitor config --config topology.yaml --out prometheus.yml
    $ prometheus --config.file prometheus.yml --web.listen-address 127.0.0.1:9090
    $ darktrigger monitor serve --config topology.yaml        # the live page, standalone
    $ darktrigger monitor dashboard --out monitoring/grafana/dashboards/darktrigger.json
    $ darktrigger monitor metrics-doc --out docs/METRICS.md  # which stage exports what
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from darktrigger.daq.topology import Topology
from darktrigger.monitoring.config import MetricsConfig, scrape_config
from darktrigger.monitoring.errors import MonitoringError
from darktrigger.replay.errors import ConfigError

log = logging.getLogger(__name__)


def _metrics(topo: Topology) -> MetricsConfig:
    """The topology's metrics section, checked for port clashes even where it is disabled."""
    topo.check_metrics_clash()
    return topo.metrics


def cmd_config(args: argparse.Namespace) -> int:
    topo = Topology.from_yaml(args.config)
    cfg = _metrics(topo)
    if not cfg.enabled:
        log.warning("%s: metrics.enabled is false: the stages will not serve /metrics", topo.where)
    try:
        text = scrape_config(cfg.targets(topo.workers.count), job=args.job, scrape_interval=args.scrape_interval,
                             rule_dir=args.rules_dir, source=str(args.config))
    except MonitoringError as exc:
        raise ConfigError(str(exc)) from None
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}: job {args.job}, {len(cfg.ports(topo.workers.count))} targets, "
              f"scrape interval {args.scrape_interval}. Check it with `promtool check config {args.out}`; "
              f"run `prometheus --config.file {args.out}`")
    else:
        print(text, end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from darktrigger.monitoring.live import serve_live

    topo = Topology.from_yaml(args.config)
    cfg = _metrics(topo)
    targets = cfg.targets(topo.workers.count)
    port = cfg.monitor_port if args.port is None else args.port
    if port in cfg.ports(topo.workers.count).values():
        raise ConfigError(f"--port {port} is one of the stages' metrics ports "
                          f"(metrics.base_port {cfg.base_port}); choose another")
    try:
        server = serve_live(targets, args.host, port)
    except MonitoringError as exc:
        raise ConfigError(str(exc)) from None
    print(f"live page: {server.url}/  (scraping {len(targets)} stage(s) of {args.config} every second; "
          f"Ctrl-C stops)", flush=True)
    stop = threading.Event()
    code = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal code
        code = 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
        stop.set()

    # installed rather than inherited: a process started in the background of a
    # non-interactive shell inherits SIGINT ignored, and would never stop on Ctrl-C or kill -INT
    # (only the main thread may install handlers; called from another, the caller stops it)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
    try:
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        server.close()
    return code


def cmd_dashboard(args: argparse.Namespace) -> int:
    from darktrigger.monitoring.dashboard import render

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render())
        print(f"wrote {args.out}")
    else:
        print(render(), end="")
    return 0


def cmd_metrics_doc(args: argparse.Namespace) -> int:
    from darktrigger.monitoring.catalogue import markdown

    text = markdown()
    if args.out is None:
        print(text, end="")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}: the metric families per stage")
    return 0


def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``monitor config``, ``monitor serve`` and ``monitor dashboard`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    p = sub.add_parser(
        "monitor", formatter_class=formatter,
        help="Prometheus scrape config, the live page and the Grafana dashboard for a pipeline's metrics",
        description="Every stage of a run serves /metrics (the topology's metrics: section: host, "
                    "base_port; see monitoring/config.py). `config` writes a Prometheus configuration "
                    "scraping them with the shipped recording and alert rules (monitoring/prometheus/); "
                    "`serve` runs the live page against them; `dashboard` writes the Grafana dashboard "
                    "(provisioning and the shipped copy are in monitoring/grafana/).",
        epilog="examples:\n"
               "  darktrigger monitor config --config topology.yaml --out prometheus.yml\n"
               "  darktrigger monitor serve --config topology.yaml --port 9304")
    msub = p.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)
    c = msub.add_parser(
        "config", formatter_class=formatter, help="write prometheus.yml for a topology",
        description="A Prometheus configuration with one target per stage (labelled component=<stage>), "
                    "the recording rules and the alert rules.",
        epilog="examples:\n"
               "  darktrigger monitor config --config topology.yaml --out prometheus.yml\n"
               "  darktrigger monitor config --config topology.yaml --scrape-interval 5s --job darktrigger-run7")
    c.add_argument("--config", required=True, type=Path, help="topology YAML")
    c.add_argument("--out", type=Path, help="write here (default: print)")
    c.add_argument("--scrape-interval", default="1s", help="Prometheus duration (default 1s)")
    c.add_argument("--job", default="darktrigger", help="job name; must start with 'darktrigger' (default darktrigger)")
    c.add_argument("--rules-dir", type=Path, default=None,
                   help="folder with rules.yml and alerts.yml (default: the installed package's)")
    c.set_defaults(func=cmd_config)
    s = msub.add_parser(
        "serve", formatter_class=formatter, help="the live page on localhost, against a topology's stages",
        description="Scrape every stage's /metrics once a second and serve live charts of the trigger "
                    "rates, pure rates, anomaly scores, latencies and worker health. No network needed: "
                    "the page's JavaScript ships with darktrigger. `darktrigger run` serves the same page "
                    "at its supervisor's port.",
        epilog="example:\n  darktrigger monitor serve --config topology.yaml")
    s.add_argument("--config", required=True, type=Path, help="topology YAML")
    s.add_argument("--port", type=int, default=None, help="port (default: metrics.base_port + 4)")
    s.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    s.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    s.set_defaults(func=cmd_serve)
    d = msub.add_parser(
        "dashboard", formatter_class=formatter, help="write the Grafana dashboard JSON",
        description="The Grafana dashboard of the pipeline's metrics, as built by "
                    "darktrigger.monitoring.dashboard (the shipped copy is "
                    "monitoring/grafana/dashboards/darktrigger.json; its provisioning is beside it).",
        epilog="examples:\n"
               "  darktrigger monitor dashboard > darktrigger.json\n"
               "  darktrigger monitor dashboard --out monitoring/grafana/dashboards/darktrigger.json")
    d.add_argument("--out", type=Path, help="write here (default: print)")
    d.set_defaults(func=cmd_dashboard)
    m = msub.add_parser(
        "metrics-doc", formatter_class=formatter,
        help="the table of metric families per stage (name, type, labels, stage, unit, meaning)",
        description="Build each stage's metrics as `darktrigger run` does and write which stage exports "
                    "which family, as a Markdown table generated from monitoring/metrics.py.",
        epilog="example:\n  darktrigger monitor metrics-doc --out docs/METRICS.md")
    m.add_argument("--out", type=Path, help="write here (default: print)")
    m.set_defaults(func=cmd_metrics_doc)
