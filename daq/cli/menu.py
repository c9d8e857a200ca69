"""``darktrigger menu example|check|calibrate|rates|efficiency|scan``: the trigger menu on the command line.

    $ darktrigger menu example --out menu.yaml          # the shipped Run-3-like menu, to edit
    $ darktrigger menu check --menu menu.yaml
    $ darktrigger menu calibrate --menu menu.yaml --zero-bias zb.h5 --out menu_calibrated.yaml
    $ darktrigger menu rates --menu menu_calibrated.yaml --events zb_test.h5 --json rates.json
    $ darktrigger menu efficiency --menu menu_calibrated.yaml --signal ato4l=ato4l.h5 --zero-bias zb_test.h5
    $ darktrigger menu scan --zero-bias zb_toy.h5=toy --zero-bias zb_pythia.h5=Pythia --out scans/
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from darktrigger.daq.cli.common import add_dask, add_on_error, event_count, parse_signals
from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ
from darktrigger.daq.trigger.menu import Menu, calibrate_menu, load_scorers, offline_counts
from darktrigger.daq.trigger.seeds import SEEDS
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.progress import Steps

log = logging.getLogger(__name__)


# -- check ----------------------------------------------------------------------------
def cmd_example(args: argparse.Namespace) -> int:
    from darktrigger.daq.trigger.menus import example_menu

    text = example_menu(args.name).read_text()
    if args.out is None:
        print(text, end="")
        return 0
    if args.out.exists() and not args.force:
        raise ConfigError(f"{args.out}: exists; give --force to replace it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"example menu {args.name!r} written to {args.out} "
          f"(its anomaly seeds read models/vae relative to the menu's folder)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    menu = Menu.from_yaml(args.menu)
    print(menu.describe())
    print(f"{args.menu}: valid")
    return 0


# -- calibrate ------------------------------------------------------------------------
def cmd_calibrate(args: argparse.Namespace) -> int:
    from darktrigger.models.neural.training import read_events
    from darktrigger.models.thresholds import warn_if_not_zero_bias

    menu = Menu.from_yaml(args.menu)
    todo = [s for s in menu.anomaly_seeds if s.params["rate_khz"] is not None]
    if not todo:
        raise ConfigError(f"{args.menu}: no anomaly seed has rate_khz, so there is nothing to "
                          f"calibrate (give a seed `rate_khz: 5` instead of a threshold)")
    warn_if_not_zero_bias(args.zero_bias)
    models = list(dict.fromkeys(s.model for s in todo))
    steps = Steps("menu calibrate", 3, enabled=not args.no_progress)
    steps(f"loading {len(models)} model(s): {', '.join(map(str, models))}")
    scorers = load_scorers(menu, threads=args.threads, models=models)
    steps(f"reading {args.zero_bias}")
    zb = read_events([args.zero_bias], args.max_events, "zero-bias", on_error=args.on_error,
                     hashes=False)[0]
    steps(f"scoring {len(zb):,} events and calibrating {len(todo)} seed(s)")
    out = calibrate_menu(menu, zb, scorers=scorers, source=str(args.zero_bias))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    record = out.seed(todo[0].name).params["calibration"]
    sample = f"{len(zb):,} zero-bias events" + (f" (weighted: n_eff {record['n_eff']:,.0f})"
                                                 if record["weighted"] else "")
    header = (f"Calibrated by `darktrigger menu calibrate` from {args.menu} on {stamp}:\n"
              f"anomaly thresholds (accept when score > threshold) for each seed's rate_khz, before\n"
              f"prescale, at the crossing rate {menu.crossing_rate} on {sample} from\n"
              f"{args.zero_bias}. Each seed's calibration record gives the threshold's uncertainty from\n"
              f"the sample and the effective events above it.")
    out.to_yaml(args.out, header=header)
    print(f"{'seed':<16}{'model':<10}{'rate kHz':>10}{'threshold':>14}{'± unc.':>11}"
          f"{'achieved kHz':>14}  note")
    for seed in todo:
        new = out.seed(seed.name)
        cal = new.params["calibration"]
        note = "" if cal["resolved"] else "not resolved: " + cal.get("note", "")
        print(f"{seed.name:<16}{seed.model:<10}{seed.params['rate_khz']:>10g}{new.params['threshold']:>14.6g}"
              f"{cal['uncertainty']:>11.3g}{cal['achieved_rate_khz']:>14.4g}  {note}")
    print(f"{sample} from {args.zero_bias} at the crossing rate {menu.crossing_rate}")
    print(f"calibrated menu written to {args.out}")
    return 0


# -- rates ----------------------------------------------------------------------------
def cmd_rates(args: argparse.Namespace) -> int:
    if args.max_events is not None and args.max_events <= 0:
        raise ConfigError(f"--max-events must be positive, got {args.max_events}")
    from darktrigger.daq.offline import (
        DEFAULT_CHUNK_EVENTS,
        close_quietly,
        make_executor,
        menu_counts,
    )

    for path in args.events:
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
    executor = make_executor(args.dask)
    try:
        counts = menu_counts(args.menu, args.events, executor=executor,
                             chunk_events=args.chunk_events or DEFAULT_CHUNK_EVENTS, chunk_size=args.chunk_size,
                             threads=args.threads, on_error=args.on_error, max_events=args.max_events)
    finally:
        close_quietly(executor)
    if counts.events == 0:
        raise ConfigError(f"no events in {', '.join(map(str, args.events))}")
    print(counts.format_table())
    if args.overlaps:
        print()
        print(counts.format_overlap())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {"menu": str(args.menu), "events_files": [str(p) for p in args.events],
                                  **counts.to_dict()}
        args.json.write_text(json.dumps(report, indent=2, allow_nan=False))
        print(f"JSON written to {args.json}")
    return 1 if args.fail_over_budget and counts.over_budget else 0


# -- efficiency -------------------------------------------------------------------------
def cmd_efficiency(args: argparse.Namespace) -> int:
    from darktrigger.daq.trigger.efficiency import format_efficiency, signal_efficiency

    menu = Menu.from_yaml(args.menu)
    signals = parse_signals(args.signal)
    if not signals:
        raise ConfigError("give at least one --signal NAME=FILE")
    for path in [*signals.values(), *([args.zero_bias] if args.zero_bias else [])]:
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
    steps = Steps("menu efficiency", 1 + len(signals) + bool(args.zero_bias), enabled=not args.no_progress)
    steps(f"loading the menu's models ({len(menu.models)})")
    scorers = load_scorers(menu, threads=args.threads)
    results = {}
    for name, path in signals.items():
        steps(f"the menu on signal {name} ({path})")
        results[name] = signal_efficiency(menu, path, signal=name, scorers=scorers, max_events=args.max_events,
                                          chunk_size=args.chunk_size, on_error=args.on_error)
    counts = None
    if args.zero_bias:
        steps(f"the menu on zero bias ({args.zero_bias})")
        counts = offline_counts(menu, [args.zero_bias], max_events=args.max_events,
                                chunk_size=args.chunk_size, threads=args.threads, on_error=args.on_error)
    if args.json:
        report: dict[str, Any] = {
            "menu": str(args.menu), "bx_rate_mhz": menu.bx_rate_mhz,
            "signals": {name: {"file": str(signals[name]), **res.to_dict()} for name, res in results.items()},
            "zero_bias": None if counts is None else {"file": str(args.zero_bias), **counts.to_dict()},
        }
        print(json.dumps(report, indent=2, allow_nan=False))
        return 0
    print(format_efficiency(results))
    if counts is not None:
        print()
        print(f"the menu on zero bias ({args.zero_bias}):")
        print(counts.format_table())
    return 0


# -- scan ---------------------------------------------------------------------------------
def _sample_label(path: Path, label: str | None) -> str:
    """The legend entry of a zero-bias file: its label and the luminosity and pile-up its
    provenance gives (toy: at the top; Pythia: under ``zero_bias``)."""
    from darktrigger.replay.readers import open_events

    provenance: dict[str, Any] = open_events(path).metadata().get("provenance") or {}
    nested = provenance.get("zero_bias")
    conditions: dict[str, Any] = nested if isinstance(nested, dict) and nested else provenance
    text = label or path.stem
    lumi, mu = conditions.get("luminosity"), conditions.get("pileup")
    if lumi is not None:
        text += f", L = {float(lumi) / 1e34:.1f}e34 cm$^{{-2}}$s$^{{-1}}$"
    if mu is not None:
        text += f", μ = {float(mu):.0f}"
    return text


def cmd_scan(args: argparse.Namespace) -> int:
    from darktrigger.daq.trigger.scan import SCAN_QUANTITIES, scan_files
    from darktrigger.models.plots import rate_scan_figure, save_figure

    samples: list[tuple[Path, str]] = []
    for item in args.zero_bias:
        path, sep, label = item.partition("=")
        if not path or (sep and not label):
            raise ConfigError(f"--zero-bias takes FILE or FILE=LABEL (e.g. zb.h5=toy), got {item!r}")
        if not Path(path).exists():
            raise ConfigError(f"{path}: no such file")
        samples.append((Path(path), _sample_label(Path(path), label or None)))
    scans = {label: scan_files(path, bx_rate_mhz=args.bx_rate_mhz, max_events=args.max_events,
                               chunk_size=args.chunk_size, on_error=args.on_error)
             for path, label in samples}
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"bx_rate_mhz": args.bx_rate_mhz, "samples": {}}
    for name, quantity in SCAN_QUANTITIES.items():
        curves = {f"{label} (n_eff {scan.n_eff:,.0f})":
                  (scan.thresholds[name], scan.rates_hz(name), scan.uncertainties_hz(name))
                  for label, scan in scans.items()}
        fig = rate_scan_figure(curves, quantity.label, args.bx_rate_mhz,
                               title=f"{name}: the rate of a {quantity.seed} seed against its threshold")
        save_figure(fig, args.out / f"rate_{name}.png")
    for (path, label), scan in zip(samples, scans.values(), strict=True):
        report["samples"][label] = {"file": str(path), **scan.to_dict()}
    (args.out / "rates.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    print(f"rates against threshold of {', '.join(SCAN_QUANTITIES)} at {args.bx_rate_mhz:.4g} MHz, "
          f"{len(scans)} sample(s): {', '.join(f'rate_{n}.png' for n in SCAN_QUANTITIES)} and rates.json "
          f"written to {args.out}/")
    return 0


# -- parsers --------------------------------------------------------------------------
def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``menu check``, ``calibrate``, ``rates`` and ``efficiency`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    menu = sub.add_parser(
        "menu", formatter_class=formatter,
        help="trigger menu: check it, calibrate its anomaly seeds, measure its rates and efficiencies",
        description="A trigger menu is a YAML list of seeds with prescales, the models the anomaly\n"
                    "seeds read, the crossing rate (colliding_bunches, default 2544: 28.61 MHz, or\n"
                    "bx_rate_mhz) and an accept budget. Seed types:\n"
                    f"{', '.join(SEEDS.names())} (`darktrigger formats` describes them).\n"
                    "`darktrigger menu example --out menu.yaml` writes the shipped Run-3-like one.",
        epilog="examples:\n"
               "  darktrigger menu example --out menu.yaml\n"
               "  darktrigger menu check --menu menu.yaml\n"
               "  darktrigger menu calibrate --menu menu.yaml --zero-bias zb.h5 --out menu_cal.yaml\n"
               "  darktrigger menu rates --menu menu_cal.yaml --events zb_test.h5 --json rates.json\n"
               "  darktrigger menu efficiency --menu menu_cal.yaml --signal ato4l=ato4l.h5 --zero-bias zb_test.h5\n"
               "  darktrigger menu scan --zero-bias zb_toy.h5=toy --zero-bias zb_pythia.h5=Pythia --out scans/")
    msub = menu.add_subparsers(dest="menu_command", metavar="ACTION", required=True)

    p = msub.add_parser("example", formatter_class=formatter,
                        help="write a shipped example menu (default cms_like) to edit and use",
                        description="Write a menu shipped with darktrigger: cms_like, the Run-3-like CMS menu\n"
                                    "(2024's unprescaled object seeds at 2.0e34 and AXO-like anomaly seeds\n"
                                    "at the 2024 AXOL1TL working points, read from models/vae). Without\n"
                                    "--out it goes to stdout.",
                        epilog="example:\n  darktrigger menu example --out menu.yaml")
    p.add_argument("--name", default="cms_like", help="which example (default cms_like)")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_example)

    p = msub.add_parser("check", formatter_class=formatter,
                        help="validate a menu and list its seeds, bits and models",
                        description="Validate a menu file (every error names the file, the seed and the\n"
                                    "key) and list its seeds in bit order.",
                        epilog="example:\n  darktrigger menu check --menu menu.yaml")
    p.add_argument("--menu", type=Path, required=True, help="menu YAML")
    p.set_defaults(func=cmd_check)

    p = msub.add_parser(
        "calibrate", formatter_class=formatter,
        help="thresholds for the anomaly seeds' target rates, from a zero-bias sample",
        description="For each anomaly seed with rate_khz, the threshold is the zero-bias score\n"
                    "quantile at FPR = rate / crossing rate (the same computation as `darktrigger\n"
                    "calibrate`), for the seed's rate before its prescale; weighted events (the weight\n"
                    "column) give the weighted quantile. Writes a new menu with threshold filled in;\n"
                    "rate_khz stays, and a calibration record gives the sample, the threshold's\n"
                    "uncertainty and whether the sample resolves the rate (>= 10 effective events\n"
                    "above the threshold). A sample whose provenance is not zero bias (a lepton-\n"
                    "filtered or single-process file) gets a one-line warning.",
        epilog="examples:\n"
               "  darktrigger menu calibrate --menu menu.yaml --zero-bias zb.h5 --out menu_cal.yaml\n"
               "  darktrigger menu calibrate --menu menu.yaml --zero-bias zb.h5 --max-events 2000000 --out m2.yaml\n"
               "Model paths in the new menu are rewritten relative to its folder.")
    p.add_argument("--menu", type=Path, required=True, help="menu YAML")
    p.add_argument("--zero-bias", type=Path, required=True, help="background (zero-bias) events")
    p.add_argument("--out", type=Path, required=True, help="calibrated menu YAML to write")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="use at most this many events (e.g. 2000000, 2e6, 2M; default all)")
    p.add_argument("--threads", type=int, default=1, help="threads per model")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines (default: a numbered line as each step starts)")
    add_on_error(p)
    p.set_defaults(func=cmd_calibrate)

    p = msub.add_parser(
        "rates", formatter_class=formatter,
        help="per-seed counts, rates, pure rates and overlaps of a menu on event files",
        description="Score the events with each model the menu needs, decide every seed, and print\n"
                    "per seed the count before and after prescale, the rate in Hz (the weight of the\n"
                    "events it kept / the weight of all events x the crossing rate; unweighted: count /\n"
                    "events x crossing rate) with its uncertainty (from the sums of weights squared),\n"
                    "the pure rate (this seed alone), and the total accept rate against the budget;\n"
                    "the effective number of events for weighted files. These are the same counts the\n"
                    "pipeline's trigger stage gives on the same events.",
        epilog="examples:\n"
               "  darktrigger menu rates --menu menu_cal.yaml --events zb_test.h5\n"
               "  darktrigger menu rates --menu menu_cal.yaml --events a.h5 b.h5 --overlaps --json rates.json\n"
               "  darktrigger menu rates --menu menu_cal.yaml --events zb_*.h5 --dask local:2   # same numbers\n"
               "The JSON has keys menu, events_files, bx_rate_mhz, events, accepted, total_rate_hz,\n"
               "budget_khz, over_budget, seeds (one record each) and overlap.")
    p.add_argument("--menu", type=Path, required=True, help="calibrated menu YAML")
    p.add_argument("--events", type=Path, nargs="+", required=True, help="event files (any format)")
    p.add_argument("--json", type=Path, default=None, help="also write the counts and rates as JSON")
    p.add_argument("--overlaps", action="store_true", help="also print the overlap matrix")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="stop after this many events (e.g. 1e6, 1M; default all)")
    p.add_argument("--chunk-size", type=int, default=65536, help="events per batch read")
    p.add_argument("--threads", type=int, default=1, help="threads per model")
    p.add_argument("--fail-over-budget", action="store_true",
                   help="exit with status 1 when the total rate is over the budget")
    add_dask(p)
    add_on_error(p)
    p.set_defaults(func=cmd_rates)

    p = msub.add_parser(
        "efficiency", formatter_class=formatter,
        help="a signal's efficiency per seed, its unique efficiency, and what the anomaly seeds add",
        description="Score each signal with the menu's models, decide every seed, and print per seed\n"
                    "the efficiency (weighted by the signal's own weights) with its uncertainty, the\n"
                    "unique efficiency (kept by this seed and by no other non-anomaly seed: for an\n"
                    "anomaly seed, what it adds to the conventional menu), and for the anomaly seeds\n"
                    "together what they add to the rest of the menu (signal only they keep).\n"
                    "With --zero-bias, the menu's rates on zero bias are printed below.",
        epilog="examples:\n"
               "  darktrigger menu efficiency --menu menu_cal.yaml --signal ato4l=ato4l.h5\n"
               "  darktrigger menu efficiency --menu menu_cal.yaml --signal ato4l=a.h5 --signal htt=h.h5 \\\n"
               "      --zero-bias zb_test.h5 --json > eff.json\n"
               "The JSON has keys menu, bx_rate_mhz, signals (per signal: file, events, n_eff, seeds with\n"
               "efficiency, efficiency_err, unique_efficiency, unique_efficiency_err, anomaly_seeds)\n"
               "and zero_bias (menu rates's JSON, or null).")
    p.add_argument("--menu", type=Path, required=True, help="calibrated menu YAML")
    p.add_argument("--signal", action="append", default=[], metavar="NAME=FILE",
                   help="a signal sample; repeat for each signal (at least one)")
    p.add_argument("--zero-bias", type=Path, default=None,
                   help="zero-bias events: also print the menu's rates on them")
    p.add_argument("--json", action="store_true", help="print the results as JSON only, on stdout")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="at most this many events per file (e.g. 1e5, 100k; default all)")
    p.add_argument("--chunk-size", type=int, default=65536, help="events per batch read")
    p.add_argument("--threads", type=int, default=1, help="threads per model")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines on stderr (default: a numbered line as each step starts)")
    add_on_error(p)
    p.set_defaults(func=cmd_efficiency)

    p = msub.add_parser(
        "scan", formatter_class=formatter,
        help="rates against threshold (SingleMu, SingleEG, SingleJet, HTT, ETMHF) on zero bias, as PNGs",
        description="For the leading muon pT (|eta| <= 2.4), the leading e/gamma pT (|eta| <= 2.5), the\n"
                    "leading jet pT, HT (jets pT > 30 GeV, |eta| < 2.4) and MET, the rate (Hz, log axis,\n"
                    "with its +-1 sigma band) a seed cutting at each threshold would have on each\n"
                    "zero-bias sample: the weight of the events at or above the threshold / the weight\n"
                    "of all events x the crossing rate. Several samples are overlaid (toy and Pythia);\n"
                    "each legend entry gives its luminosity and pile-up when its provenance has them.",
        epilog="examples:\n"
               "  darktrigger menu scan --zero-bias zb_toy.h5 --out scans/\n"
               "  darktrigger menu scan --zero-bias zb_toy.h5=toy --zero-bias zb_pythia.h5=Pythia --out scans/\n"
               "Writes rate_SingleMu.png, rate_SingleEG.png, rate_SingleJet.png, rate_HTT.png,\n"
               "rate_ETMHF.png and rates.json (per sample and quantity: thresholds, rates, errors).")
    p.add_argument("--zero-bias", action="append", required=True, metavar="FILE[=LABEL]",
                   help="a zero-bias sample and its legend label; repeat to overlay several")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs and rates.json")
    p.add_argument("--bx-rate-mhz", type=float, default=DEFAULT_BX_RATE_MHZ,
                   help=f"crossing rate (default the colliding-bunch rate, {DEFAULT_BX_RATE_MHZ:.4g} MHz)")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="at most this many events per file (e.g. 1e6, 1M; default all)")
    p.add_argument("--chunk-size", type=int, default=65536, help="events per batch read")
    add_on_error(p)
    p.set_defaults(func=cmd_scan)
