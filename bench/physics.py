"""The models on Pythia events: train AE and VAE on ``sm_mix``, evaluate on the signals.

    $ python -m bench.physics --data data/pythia [--epochs 20] [--threads 2]

Generating the samples takes long (Pythia's rate is in BENCHMARKS.md, "Replay layer"),
so they are made only when missing, with fixed seeds, and reused. Writes ``bench/results/physics.md``, which
``make bench`` copies into BENCHMARKS.md; every figure in it comes from the
``darktrigger`` commands it lists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.machine import describe
from darktrigger.daq.cli import run_shown

SIGNALS = ("ato4l", "lq_btau", "h_tautau", "hpm_taunu")
TAU_SIGNALS = ("lq_btau", "h_tautau", "hpm_taunu")
SAMPLES = {  # file stem -> (process, events, seed)
    "pythia_sm_mix_200k": ("sm_mix", 200_000, 101),
    "pythia_sm_mix_test_40k": ("sm_mix", 40_000, 102),
    **{f"pythia_{s}_10k": (s, 10_000, 201) for s in SIGNALS},
}


def run(cmd: list[str], log: list[str]) -> None:
    log.append(run_shown(cmd))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/pythia"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/physics.md"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    d: Path = args.data
    d.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    t0 = time.monotonic()
    for stem, (proc, n, seed) in SAMPLES.items():
        if not (d / f"{stem}.h5").exists():
            run(["generate", "--generator", "pythia", "--process", proc, "--events", str(n),
                 "--seed", str(seed), "--out", str(d / f"{stem}.h5")], commands)
        else:
            commands.append(f"darktrigger generate --generator pythia --process {proc} --events {n} "
                            f"--seed {seed} --out {d / f'{stem}.h5'}   # (made earlier, reused)")
    for model in ("ae", "vae"):
        run(["train", "--model", model, "--background", str(d / "pythia_sm_mix_200k.h5"),
             "--out", str(d / "models" / model), "--epochs", str(args.epochs), "--seed", "1",
             "--threads", str(args.threads), "--no-progress"], commands)
    evaluate = ["evaluate", "--model", str(d / "models" / "ae"), "--model", str(d / "models" / "vae"),
                "--background", str(d / "pythia_sm_mix_test_40k.h5"),
                *[x for s in SIGNALS for x in ("--signal", f"{s}={d / f'pythia_{s}_10k.h5'}")],
                "--json", str(d / "evaluation.json"), "--plots", str(d / "plots")]
    run(evaluate, commands)

    from darktrigger.models.metrics import format_table

    report = json.loads((d / "evaluation.json").read_text())
    models = report["models"]
    auc = {m: {s: models[m]["signals"][s]["auc"] for s in SIGNALS} for m in models}
    checks = []
    for m in (k for k in models if k.startswith(("ae", "vae"))):
        beats = [s for s in SIGNALS if auc[m][s] > auc["st"][s]]
        ok = "ato4l" in beats and any(s in beats for s in TAU_SIGNALS)
        checks.append(f"- {m}: AUC above st's on {', '.join(beats) or 'none'} → "
                      f"{'meets' if ok else 'does not meet'} 'beats st on ato4l and a τ signal'")
    lines = [
        "## Models on Pythia events (AE and VAE trained on 200k `sm_mix`)",
        "",
        *describe(("numpy", "torch", "onnxruntime", "pythia8mc")),
        f"- command: `python -m bench.physics --data {d} --epochs {args.epochs} --threads {args.threads}` "
        f"({time.monotonic() - t0:.0f} s), which ran:",
        "",
        "```",
        *commands,
        "```",
        "",
        "Background: an independent 40k `sm_mix` sample (seed 102); Pythia's `sm_mix` is ≈ 99.97 % QCD "
        "(mixed by cross section, no lepton filter). Signals: 10k events each. "
        "`—`: the background sample is too small to resolve that FPR.",
        "",
        format_table(models, markdown=True),
        "",
        *checks,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
