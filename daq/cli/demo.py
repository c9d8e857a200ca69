"""``darktrigger demo`` (what ``make demo`` runs): the main job, end to end in a few minutes.

Generates events with both generators (the fast toy and Pythia 8 with the detector
model) or reuses those of an earlier demo, replays a background with a signal
injected, trains small AE and VAE scorers, calibrates the example CMS-style menu's
anomaly seeds on a zero-bias sample, and runs the whole ZeroMQ pipeline (source,
scorer workers, trigger, recorder, each a process) on the stream, ending with the run
summary: per-seed rates and pure rates, the total rate against the budget, the
efficiency for the injected signal, and latency. Everything goes to ``demo-output/``.

    $ darktrigger demo [--out demo-output] [--pythia-events 300] [--run-events 2000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from darktrigger.daq.cli import run_shown


def step(title: str, *args: str) -> None:
    print(f"\n== {title}", flush=True)
    run_shown(args)


def reusable(path: Path, events: int) -> bool:
    """An earlier demo's complete file of at least ``events`` events."""
    from darktrigger.replay.storage import NativeFile

    try:
        with NativeFile(path) as f:
            return len(f) >= events
    except Exception:  # missing, or killed half-written: make it again
        return False


def generate(title: str, generator: str, process: str, events: int, seed: int, path: Path) -> None:
    if reusable(path, events):
        print(f"\n== {title}\nreusing {path} ({generator} {process}, made by an earlier demo)")
        return
    step(title, "generate", "--generator", generator, "--process", process, "--events", str(events),
         "--seed", str(seed), "--out", str(path))


def cmd_demo(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    files = {
        "toy sm_mix": out / "toy_sm_mix.h5",
        "toy ato4l": out / "toy_ato4l.h5",
        "pythia qcd": out / "pythia_qcd.h5",
        "pythia ato4l": out / "pythia_ato4l.h5",
    }
    generate("toy background: the ADC2021-like Standard-Model mixture", "toy", "sm_mix",
             args.toy_events, 1, files["toy sm_mix"])
    generate("toy signal: A(50 GeV) -> 4 leptons", "toy", "ato4l", args.toy_events // 10, 2,
             files["toy ato4l"])
    generate("Pythia 8 + detector model: QCD at 13.6 TeV", "pythia", "qcd", args.pythia_events, 3,
             files["pythia qcd"])
    generate("Pythia 8 + detector model: A(50 GeV) -> 4 leptons", "pythia", "ato4l", args.pythia_events, 4,
             files["pythia ato4l"])
    zero_bias = out / "toy_zero_bias.h5"
    generate("zero-bias sample for the menu's thresholds (toy sm_mix, another seed)", "toy", "sm_mix",
             args.toy_events // 2, 5, zero_bias)
    step("inspect the toy background", "inspect", str(files["toy sm_mix"]))
    step("inspect the Pythia signal", "inspect", str(files["pythia ato4l"]))
    step("replay as fast as possible: background with the signal injected at 1e-3",
         "replay", "--mix", f"{files['toy sm_mix']}=0.999", "--mix", f"{files['toy ato4l']}=0.001",
         "--loop", "--events", "2000000")
    step("replay paced at 100 kHz for 2 s, written to a stream file",
         "replay", "--mix", f"{files['toy sm_mix']}=0.999", "--mix", f"{files['toy ato4l']}=0.001",
         "--loop", "--rate-hz", "100000", "--events", "200000", "--out", str(out / "stream.h5"))

    from darktrigger.replay.readers import open_events
    from darktrigger.replay.summary import summarize

    print("\n== summary")
    print(f"{'sample':<14}{'events':>10}{'e/γ per evt':>13}{'μ per evt':>11}{'jets per evt':>14}{'median MET':>12}")
    rows = {}
    for label, path in [*files.items(), ("replayed", out / "stream.h5")]:
        info = summarize(open_events(path))
        pt = info["pt"]
        rows[label] = info["events"]
        print(f"{label:<14}{info['events']:>10,}{pt['egamma']['objects_per_event']:>13.2f}"
              f"{pt['muon']['objects_per_event']:>11.2f}{pt['jet']['objects_per_event']:>14.2f}"
              f"{(pt['met']['leading_pt_median_gev'] or 0):>10.1f} GeV")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    pipeline(args, out, files)
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; files in {out}/")
    return 0


def pipeline(args: argparse.Namespace, out: Path, files: dict[str, Path]) -> None:
    """Train small models, calibrate the example menu, run the pipeline on the stream."""
    from darktrigger.daq.trigger.menus import example_menu

    models = out / "models"
    for name in ("ae", "vae"):
        step(f"train a small {name.upper()} on the toy background ({args.epochs} epochs, 200k events)",
             "train", "--model", name, "--background", str(files["toy sm_mix"]), "--max-events", "200000",
             "--epochs", str(args.epochs), "--seed", "1", "--threads", "2", "--out", str(models / name),
             "--no-progress")
    menu = out / "menu.yaml"
    shutil.copy(example_menu(), menu)
    step("calibrate the menu's anomaly seeds (AXO-like VAE Σμ², AE) on zero bias: thresholds for their kHz",
         "menu", "calibrate", "--menu", str(menu), "--zero-bias", str(out / "toy_zero_bias.h5"),
         "--out", str(out / "menu_calibrated.yaml"))
    topology = {
        "run": 1,
        "output": "run",
        "menu": "menu_calibrated.yaml",
        "batch_size": 16384,
        "source": {"mix": {files["toy sm_mix"].name: 0.999, files["toy ato4l"].name: 0.001},
                   "loop": True, "events": args.run_events, "seed": 7},
        "workers": {"count": args.workers},
    }
    config = out / "topology.yaml"
    config.write_text("# the demo's pipeline: see daq/topology.py for every key\n" + yaml.safe_dump(topology))
    shutil.rmtree(out / "run", ignore_errors=True)
    print("\nnote: the toy background is ADC2021-like, i.e. already selected by a single-lepton "
          "filter, not zero bias:\nthe menu's lepton seeds fire on much of it, so its total rate is far "
          "over a real L1 budget.", flush=True)
    step(f"the pipeline: source -> {args.workers} scorer workers (AE, VAE) -> trigger menu -> recorder",
         "run", "--config", str(config), "--timeout", "600")



def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``demo`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    p = sub.add_parser("demo", formatter_class=formatter,
                       help="the main job end to end: generate, replay, train, calibrate, run the pipeline",
                       description=__doc__.split("\n\n    $")[0],
                       epilog="example:\n  darktrigger demo --out demo-output\n"
                              "Files of an earlier demo in the same folder are reused.")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    p.add_argument("--toy-events", type=int, default=500_000, help="toy background events (default 500,000)")
    p.add_argument("--pythia-events", type=int, default=300, help="Pythia events per process (default 300)")
    p.add_argument("--run-events", type=int, default=2_000_000,
                   help="events through the pipeline (default 2,000,000)")
    p.add_argument("--workers", type=int, default=2, help="scorer worker processes (default 2)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the small models (default 3)")
    p.set_defaults(func=cmd_demo)
