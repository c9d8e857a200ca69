"""``darktrigger demo`` (what ``make demo`` runs): the main job on zero bias, in a few minutes.

1. Generates (or reuses, from an earlier demo) the toy ``zero_bias`` stream — one colliding
   bunch crossing per event with pile-up μ ≈ 56 at 2.0e34 — a separate zero-bias sample to
   train on, a toy signal (A → 4ℓ) and a little Pythia 8 with the detector model.
2. Trains the AXOL1TL-like VAE on zero bias (the anomaly scorer learns what the trigger sees).
3. Calibrates the example menu's AXO-like seeds to their 2024 working points on another,
   separate zero-bias sample (:mod:`darktrigger.daq.trigger.menus`: the Run-3-like CMS menu).
4. Runs the whole ZeroMQ pipeline (source, scorer workers, trigger, recorder, each a
   process) on the zero-bias stream with the signal injected at a stated physical rate
   (σ × L; drawn at a fraction for statistics, weighted to its rate:
   :mod:`darktrigger.replay.stream`), and prints the menu table: per seed the rate ± its
   error, the pure rate, the background/signal split, the total against the budget, the
   signal's efficiency and unique efficiency, and the software pipeline's latency.
5. Checks the AXO seeds' zero-bias rates in the run against their targets.

Everything goes to ``demo-output/``; ``run/run_summary.json`` holds the run's summary.

    $ darktrigger demo [--out demo-output] [--zero-bias-events 8M] [--signal-sigma-pb 1000]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from darktrigger.daq.cli import run_shown
from darktrigger.daq.cli.common import event_count


def step(title: str, *args: str) -> None:
    print(f"\n== {title}", flush=True)
    t0 = time.monotonic()
    run_shown(args)
    print(f"({time.monotonic() - t0:.0f} s)", flush=True)


def reusable(path: Path, generator: str, process: str, events: int, seed: int) -> bool:
    """An earlier demo's complete file of at least ``events`` events, made by this generator
    as it is now (its provenance: process, seed, settings or model parameters)."""
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.storage import NativeFile

    want = GENERATORS.get(generator)().provenance(process, seed)
    want = json.loads(json.dumps(want))  # as the file holds it (lists, not tuples)
    try:
        with NativeFile(path) as f:
            have = f.provenance
            return len(f) >= events and all(have.get(k) == v for k, v in want.items() if v not in ({}, [], None))
    except Exception:  # missing, or killed half-written: make it again
        return False


def generate(title: str, generator: str, process: str, events: int, seed: int, path: Path) -> None:
    if reusable(path, generator, process, events, seed):
        print(f"\n== {title}\nreusing {path} ({generator} {process}, made by an earlier demo)")
        return
    step(title, "generate", "--generator", generator, "--process", process, "--events", str(events),
         "--seed", str(seed), "--out", str(path))


def cmd_demo(args: argparse.Namespace) -> int:
    from darktrigger.replay.lhc import LHCConditions

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    lhc = LHCConditions()
    print(f"LHC conditions: L = {lhc.luminosity:.1e} cm⁻²s⁻¹, {lhc.colliding_bunches} colliding bunches: "
          f"crossings at {lhc.crossing_rate_hz / 1e6:.2f} MHz, pile-up μ = {lhc.pileup:.1f}")
    files = {
        "toy zero bias": out / "toy_zero_bias.h5",
        "toy zb train": out / "toy_zero_bias_train.h5",
        "toy zb calib": out / "toy_zero_bias_calibration.h5",
        "toy ato4l": out / "toy_ato4l.h5",
        "pythia ato4l": out / "pythia_ato4l.h5",
        "pythia qcd": out / "pythia_qcd.h5",
    }
    n_zb = args.zero_bias_events
    generate(f"toy zero bias: {n_zb:,} colliding crossings with pile-up (the stream the pipeline sees)",
             "toy", "zero_bias", n_zb, 1, files["toy zero bias"])
    generate("toy zero bias, another seed: what the VAE trains on", "toy", "zero_bias", args.train_events, 2,
             files["toy zb train"])
    generate("toy zero bias, a third seed: what the anomaly thresholds are calibrated on", "toy", "zero_bias",
             args.calibration_events, 3, files["toy zb calib"])
    generate("toy signal: A(50 GeV) -> 4 leptons", "toy", "ato4l", 100_000, 4, files["toy ato4l"])
    generate("Pythia 8 + detector model: A(50 GeV) -> 4 leptons", "pythia", "ato4l", args.pythia_events, 5,
             files["pythia ato4l"])
    generate("Pythia 8 + detector model: QCD at 13.6 TeV", "pythia", "qcd", args.pythia_events, 6,
             files["pythia qcd"])
    step("inspect the toy zero bias", "inspect", str(files["toy zero bias"]))
    step("inspect the Pythia signal", "inspect", str(files["pythia ato4l"]))
    step("replay paced at 100 kHz for 2 s: zero bias with the signal mixed in at 1e-3, written to a stream file",
         "replay", "--mix", f"{files['toy zero bias']}=0.999", "--mix", f"{files['toy ato4l']}=0.001",
         "--loop", "--rate-hz", "100000", "--events", "200000", "--out", str(out / "stream.h5"))
    samples(out, files)
    pipeline(args, out, files)
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; files in {out}/")
    return 0


def samples(out: Path, files: dict[str, Path]) -> None:
    """Objects per event and the median MET of each sample."""
    from darktrigger.replay.readers import open_events
    from darktrigger.replay.summary import summarize

    print("\n== the samples")
    print(f"{'sample':<16}{'events':>11}{'e/γ per evt':>13}{'μ per evt':>11}{'jets per evt':>14}{'median MET':>12}")
    rows = {}
    shown = ("toy zero bias", "toy ato4l", "pythia ato4l", "pythia qcd")  # the other zero bias: other seeds
    for label, path in [*((k, files[k]) for k in shown), ("replayed", out / "stream.h5")]:
        info = summarize(open_events(path))
        pt = info["pt"]
        rows[label] = info["events"]
        print(f"{label:<16}{info['events']:>11,}{pt['egamma']['objects_per_event']:>13.2f}"
              f"{pt['muon']['objects_per_event']:>11.2f}{pt['jet']['objects_per_event']:>14.2f}"
              f"{(pt['met']['leading_pt_median_gev'] or 0):>10.1f} GeV")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))


def pipeline(args: argparse.Namespace, out: Path, files: dict[str, Path]) -> None:
    """Train the VAE on zero bias, calibrate the example menu, run the pipeline, check the AXO seeds."""
    from darktrigger.daq.summary import RunSummary
    from darktrigger.daq.testing import free_metrics_base, free_ports
    from darktrigger.daq.topology import ENDPOINT_NAMES
    from darktrigger.daq.trigger.menus import example_menu
    from darktrigger.replay.lhc import LHCConditions

    models = out / "models"
    step(f"train the AXOL1TL-like VAE (score Σμ²) on zero bias ({args.epochs} epoch(s), "
         f"{args.train_events:,} crossings)",
         "train", "--model", "vae", "--background", str(files["toy zb train"]), "--max-events", str(args.train_events),
         "--epochs", str(args.epochs), "--seed", "1", "--threads", "2", "--out", str(models / "vae"),
         "--no-progress")
    menu = out / "menu.yaml"
    shutil.copy(example_menu(), menu)
    calibrated = out / "menu_calibrated.yaml"
    step(f"calibrate the AXO-like seeds to the 2024 working points on {args.calibration_events:,} other "
         "zero-bias crossings", "menu", "calibrate", "--menu", str(menu),
         "--zero-bias", str(files["toy zb calib"]), "--out", str(calibrated))
    lhc = LHCConditions()
    rate_hz = lhc.rate_hz(args.signal_sigma_pb)
    fraction = args.signal_fraction
    # the background is replayed once (no loop): the run is as long as the zero-bias file
    topology = {
        "run": 1,
        "output": "run",
        "menu": calibrated.name,
        "batch_size": 16384,
        "source": {"mix": {files["toy zero bias"].name: "background",
                           files["toy ato4l"].name: {"rate_hz": rate_hz, "fraction": fraction}},
                   "loop": False, "seed": 7},
        "workers": {"count": args.workers},
        # ports free now (another run may hold the defaults); `run` prints the live page's address
        "endpoints": {name: f"tcp://127.0.0.1:{port}"
                      for name, port in zip(ENDPOINT_NAMES, free_ports(len(ENDPOINT_NAMES)), strict=True)},
        "metrics": {"base_port": free_metrics_base(args.workers)},
    }
    config = out / "topology.yaml"
    config.write_text("# the demo's pipeline: see daq/topology.py for every key\n" + yaml.safe_dump(topology))
    shutil.rmtree(out / "run", ignore_errors=True)
    print(f"\nthe signal: A(50 GeV) -> 4 leptons with σ = {args.signal_sigma_pb:g} pb at L = {lhc.luminosity:.1e} "
          f"cm⁻²s⁻¹: σ × L = {rate_hz:g} Hz, injected at that rate (drawn as {fraction:g} of the events, "
          f"weighted to its rate)", flush=True)
    step(f"the pipeline on zero bias: source -> {args.workers} scorer workers (VAE) -> trigger menu -> recorder",
         "run", "--config", str(config), "--timeout", "900")
    summary = RunSummary.from_json(out / "run" / "run_summary.json")
    print()
    print(check_anomaly_rates(summary, calibrated))


def check_anomaly_rates(summary: Any, calibrated: Path) -> str:
    """Each AXO seed's zero-bias rate in the run against its target: consistent when within two
    standard deviations of the comparison (the run's and the calibration sample's statistical
    errors in quadrature; a one-σ window would flag a third of correct calibrations) or 15 %."""
    from darktrigger.daq.trigger.menu import Menu

    menu = Menu.from_yaml(calibrated)
    bg = summary.background
    lines = ["AXO-like seeds on zero bias: the run's background rate against the target (2024 AXOL1TL "
             "working points)",
             f"{'seed':<14}{'target kHz':>11}{'run kHz':>10}{'± stat':>9}{'± calib.':>10}{'deviation':>11}  verdict"]
    for seed in menu.anomaly_seeds:
        i = menu.names.index(seed.name)
        target = seed.params["rate_khz"]
        rate, stat = bg.rates_hz[i] / 1e3, bg.rate_uncertainties_hz[i] / 1e3
        cal = seed.params.get("calibration") or {}
        n_above = cal.get("n_above") or 0
        calib = target / math.sqrt(n_above) if n_above else float("nan")
        sigma = math.hypot(stat, calib if n_above else 0.0)
        dev = rate - target
        ok = abs(dev) <= max(2.0 * sigma, 0.15 * target)
        lines.append(f"{seed.name:<14}{target:>11.3f}{rate:>10.3f}{stat:>9.3f}{calib:>10.3f}"
                     f"{dev / sigma if sigma else 0.0:>+10.1f}σ  {'ok' if ok else 'OFF TARGET'}")
    lines.append("(± calib.: the target / √(zero-bias events above the threshold in the calibration sample); "
                 "ok: within 2σ of the two in quadrature, or 15 %)")
    return "\n".join(lines)


def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``demo`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    p = sub.add_parser("demo", formatter_class=formatter,
                       help="the main job end to end on zero bias: generate, train, calibrate, inject, run",
                       description=__doc__.split("\n\n    $")[0],
                       epilog="example:\n  darktrigger demo --out demo-output\n"
                              "Files of an earlier demo in the same folder are reused.")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    p.add_argument("--zero-bias-events", type=event_count, default=8_000_000,
                   help="toy zero-bias crossings the pipeline replays (default 8M: ~125 background "
                        "events above AXO_VTight's threshold, a 9 %% statistical error)")
    p.add_argument("--train-events", type=event_count, default=200_000,
                   help="toy zero-bias crossings the VAE trains on (default 200k)")
    p.add_argument("--calibration-events", type=event_count, default=10_000_000,
                   help="toy zero-bias crossings the anomaly thresholds are calibrated on (default 10M: "
                        "VTight's 0.45 kHz then has ~160 events above its threshold)")
    p.add_argument("--signal-sigma-pb", type=float, default=1000.0,
                   help="the injected signal's cross section in pb; its rate is σ × L (default 1000 pb: "
                        "20 Hz at 2.0e34)")
    p.add_argument("--signal-fraction", type=float, default=1e-3,
                   help="the fraction of the replayed events drawn from the signal (default 0.001)")
    p.add_argument("--pythia-events", type=event_count, default=300, help="Pythia events per process (default 300)")
    p.add_argument("--workers", type=int, default=2, help="scorer worker processes (default 2)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the VAE (default 3)")
    p.set_defaults(func=cmd_demo)
