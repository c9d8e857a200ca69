"""``make demo``: the main job at this stage, end to end in about a minute.

Generates events with both generators (the fast toy and Pythia 8 with the detector
model), inspects them, replays a background with a signal injected, paced and
unpaced, and ends with a short summary. Everything goes to ``demo-output/``.

    $ python -m daq.demo [--out demo-output] [--pythia-events 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from daq.cli import run_shown


def step(title: str, *args: str) -> None:
    print(f"\n== {title}", flush=True)
    run_shown(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--toy-events", type=int, default=500_000)
    parser.add_argument("--pythia-events", type=int, default=300)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    files = {
        "toy sm_mix": out / "toy_sm_mix.h5",
        "toy ato4l": out / "toy_ato4l.h5",
        "pythia qcd": out / "pythia_qcd.h5",
        "pythia ato4l": out / "pythia_ato4l.h5",
    }
    step("toy background: the ADC2021-like Standard-Model mixture",
         "generate", "--generator", "toy", "--process", "sm_mix", "--events", str(args.toy_events),
         "--seed", "1", "--out", str(files["toy sm_mix"]))
    step("toy signal: A(50 GeV) -> 4 leptons",
         "generate", "--generator", "toy", "--process", "ato4l", "--events", str(args.toy_events // 10),
         "--seed", "2", "--out", str(files["toy ato4l"]))
    step("Pythia 8 + detector model: QCD at 13.6 TeV",
         "generate", "--generator", "pythia", "--process", "qcd", "--events", str(args.pythia_events),
         "--seed", "3", "--out", str(files["pythia qcd"]))
    step("Pythia 8 + detector model: A(50 GeV) -> 4 leptons",
         "generate", "--generator", "pythia", "--process", "ato4l", "--events", str(args.pythia_events),
         "--seed", "4", "--out", str(files["pythia ato4l"]))
    step("inspect the toy background", "inspect", str(files["toy sm_mix"]))
    step("inspect the Pythia signal", "inspect", str(files["pythia ato4l"]))
    step("replay as fast as possible: background with the signal injected at 1e-3",
         "replay", "--mix", f"{files['toy sm_mix']}=0.999", "--mix", f"{files['toy ato4l']}=0.001",
         "--loop", "--events", "2000000")
    step("replay paced at 100 kHz for 2 s, written to a stream file",
         "replay", "--mix", f"{files['toy sm_mix']}=0.999", "--mix", f"{files['toy ato4l']}=0.001",
         "--loop", "--rate-hz", "100000", "--events", "200000", "--out", str(out / "stream.h5"))

    from replay.readers import open_events
    from replay.summary import summarize

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
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; files in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
