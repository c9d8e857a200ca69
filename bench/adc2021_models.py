"""The anomaly scorers on ADC2021-recipe Pythia events, set beside the ADC2021 challenge.

    $ python -m bench.adc2021_models --data data/adc2021 [--epochs 20] [--threads 2]

Samples (``darktrigger generate --generator pythia --recipe adc2021``: the ADC2021 data
paper's SM cocktail and four signals through the single-lepton filter on the L1 objects,
pile-up μ = 20; :mod:`darktrigger.replay.generators.adc2021`) are made only when missing,
with fixed seeds, and reused. QCD is 95 % of the cocktail's cost (0.6 kept events per
core-second: it passes the filter only through fake electrons), so the cocktail is made
with a smaller QCD share of the events (``--mix-fractions``: 1,000 QCD events a sample,
the events the filter efficiency is measured on) and the test background is then weighted
back to the paper's composition by event count (W 59.2 %, QCD 33.8 %, Z 6.7 %, tt̄ 0.3 %):
each event of process p weighs f_p / n_p. Training is unweighted, on the cocktail as made.

Models: the CLI's defaults of ``ae``, ``vae`` (its ``mu2``, ``kl`` and ``reco`` scores),
``axo``, ``qvae`` and ``qaxo`` (when registered), evaluated by ``darktrigger evaluate``
with its ``ht``/``st``/``pca`` baselines; the float twins of ``qvae`` and ``qaxo`` (the
quantised network trained without rounding, :mod:`bench.quantisation_cost`) beside them.
Writes ``bench/results/adc2021_models.md`` (which ``make bench`` copies into BENCHMARKS.md)
and, in the data folder, ``evaluation.json``, ``dm_challenge.csv`` and ``plots/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import describe
from darktrigger.daq.cli import run_shown

SIGNALS = ("ato4l", "lq_btau", "h_tautau", "hpm_taunu")
#: file stem -> (process, events, seed, --mix-fractions or None)
SAMPLES: dict[str, tuple[str, int, int, str | None]] = {
    "bkg_train": ("sm_mix", 30_000, 102, "qcd=0.0334,wjets=0.8620,zjets=0.0976,ttbar=0.0044"),
    "bkg_test": ("sm_mix", 50_000, 101, "qcd=0.02,wjets=0.8764,zjets=0.0992,ttbar=0.0044"),
    # more QCD for the test cocktail: its 33.8 % of the weight rests on QCD's events alone
    "bkg_test_qcd": ("qcd", 2_000, 103, None),
    # more test background in parts (a stopped run keeps its finished parts), QCD and the
    # rest about as n_p ∝ f_p / √(cost_p) (0.54 and 0.02 core-s an event), which maximises
    # the weighted sample's effective events for the CPU time
    "bkg_test_qcd2": ("qcd", 6_000, 104, None),
    "bkg_test_ewk2": ("sm_mix", 60_000, 105, "wjets=0.8943,zjets=0.1012,ttbar=0.0045"),
    # QCD again: its events still limit the weighted sample's effective size
    "bkg_test_qcd3": ("qcd", 12_000, 106, None),
    "sig_ato4l": ("ato4l", 4_000, 201, None),
    "sig_lq_btau": ("lq_btau", 4_000, 201, None),
    "sig_h_tautau": ("h_tautau", 3_000, 201, None),
    "sig_hpm_taunu": ("hpm_taunu", 1_500, 201, None),
}
FLOAT_MODELS = ("ae", "vae", "axo")
QUANTISED = ("qvae", "qaxo")

log = logging.getLogger("bench.adc2021_models")


#: events per part where a sample is made in parts (``generate --part-events``); else one part
PART_EVENTS = {"bkg_test_qcd2": 1_000, "bkg_test_ewk2": 10_000, "bkg_test_qcd3": 1_000}
#: the test background's files, weighted together to the paper's composition
TEST_BACKGROUND = ("bkg_test", "bkg_test_qcd", "bkg_test_qcd2", "bkg_test_ewk2", "bkg_test_qcd3")


def generate_command(stem: str, d: Path) -> list[str]:
    process, n, seed, mix = SAMPLES[stem]
    cmd = ["generate", "--generator", "pythia", "--recipe", "adc2021", "--process", process,
           "--events", str(n), "--part-events", str(PART_EVENTS.get(stem, n)), "--seed", str(seed),
           "--no-progress", "--out", str(d / f"{stem}.h5")]
    return cmd + (["--mix-fractions", mix] if mix else [])


def _events_in(path: Path) -> int:
    from darktrigger.replay.readers import open_events

    n = open_events(path).count()
    assert n is not None, path  # our own native files know their size
    return n


def paper_weighted(sources: list[Path], out: Path) -> dict[str, tuple[int, float]]:
    """Write the events of ``sources`` to ``out`` with every event of process p weighted
    f_p / n_p (the paper's composition by event count, mean weight 1); returns {process:
    (events, share of weight)}."""
    from darktrigger.replay.events import PROCESS_LABELS, EventBatch
    from darktrigger.replay.generators.adc2021 import ADC2021_FRACTIONS
    from darktrigger.replay.readers import open_events
    from darktrigger.replay.storage import write_events

    readers = [open_events(src) for src in sources]
    provenance = dict(readers[0].metadata().get("provenance", {}))
    batch = EventBatch.concat([r.read_all() for r in readers])
    src = ", ".join(map(str, sources))
    truth = np.asarray(batch["truth"])
    weight = np.zeros(len(batch), np.float64)
    shares = {}
    for process, fraction in ADC2021_FRACTIONS.items():
        sel = truth == PROCESS_LABELS[process]
        n = int(sel.sum())
        if n == 0:
            raise SystemExit(f"{src}: no {process} events; the cocktail needs every process")
        weight[sel] = fraction / n * len(batch)
        shares[process] = (n, fraction)
    if (weight == 0).any():
        raise SystemExit(f"{src}: {int((weight == 0).sum())} events of no cocktail process")
    provenance["weights"] = "the ADC2021 paper's composition by event count (bench.adc2021_models)"
    provenance["sources"] = [str(p) for p in sources]
    write_events(out, batch.with_columns(weight=weight.astype(np.float32)), provenance=provenance)
    return shares


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/adc2021"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/adc2021_models.md"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--retrain", action="store_true", help="train the models again even where saved")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from darktrigger.models.base import SCORERS

    d: Path = args.data
    d.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    t0 = time.monotonic()
    for stem in SAMPLES:
        cmd = generate_command(stem, d)
        if (d / f"{stem}.h5").exists():
            n_made, n_asked = _events_in(d / f"{stem}.h5"), SAMPLES[stem][1]
            stopped = f"; stopped after {n_made:,} of its {n_asked:,} events" if n_made < n_asked else ""
            commands.append("darktrigger " + " ".join(cmd) + f"   # (made earlier, reused{stopped})")
        else:
            commands.append(run_shown(cmd))
    sources = [d / f"{stem}.h5" for stem in TEST_BACKGROUND]
    shares = paper_weighted(sources, d / "bkg_test_paper.h5")
    commands.append(f"# {d / 'bkg_test_paper.h5'}: {', '.join(p.name for p in sources)} weighted to the "
                    "paper's composition (bench.adc2021_models.paper_weighted)")
    models = [m for m in (*FLOAT_MODELS, *QUANTISED) if m in SCORERS]
    missing = [m for m in QUANTISED if m not in SCORERS]
    for model in models:
        out = d / "models" / model
        if out.exists() and not args.retrain:
            commands.append(f"darktrigger train --model {model} --background {d / 'bkg_train.h5'} --out {out} "
                            f"--epochs {args.epochs} --seed 1   # (trained earlier, reused)")
            continue
        if out.exists():
            log.info("--retrain: removing %s", out)
            shutil.rmtree(out)
        commands.append(run_shown(["train", "--model", model, "--background", str(d / "bkg_train.h5"),
                                   "--out", str(out), "--epochs", str(args.epochs), "--seed", "1",
                                   "--threads", str(args.threads), "--no-progress"]))
    t_eval = time.monotonic()
    evaluate = ["evaluate", *[x for m in models for x in ("--model", str(d / "models" / m))],
                "--background", str(d / "bkg_test_paper.h5"),
                *[x for s in SIGNALS for x in ("--signal", f"{s}={d / f'sig_{s}.h5'}")],
                "--fprs", "1e-2,1e-3,1e-4,1e-5", "--json", str(d / "evaluation.json"),
                "--dm-csv", str(d / "dm_challenge.csv"), "--plots", str(d / "plots"), "--no-progress"]
    commands.append(run_shown(evaluate))
    report = json.loads((d / "evaluation.json").read_text())
    results: dict[str, Any] = report["models"]
    twins = twin_results(d, [m for m in QUANTISED if m in models], args.epochs, args.threads)
    results.update(twins)
    seconds = time.monotonic() - t0
    lines = table_section(d, args, results, shares, commands, seconds, time.monotonic() - t_eval, missing)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


def load_samples(d: Path) -> tuple[Any, Any, dict[str, Any], Any, dict[str, Any]]:
    """The bench's events in ``d``: training background, paper-weighted test background, the
    signals, and the test background's and signals' weights (checked)."""
    from darktrigger.models.thresholds import checked_weights
    from darktrigger.replay.readers import open_events

    train = open_events(d / "bkg_train.h5").read_all()
    bkg = open_events(d / "bkg_test_paper.h5").read_all()
    sig = {s: open_events(d / f"sig_{s}.h5").read_all() for s in SIGNALS}
    bkg_w = checked_weights(bkg, d / "bkg_test_paper.h5", whole_file=True)
    sig_w = {s: checked_weights(b, d / f"sig_{s}.h5", whole_file=True) for s, b in sig.items()}
    return train, bkg, sig, bkg_w, sig_w


def twin_results(d: Path, names: list[str], epochs: int, threads: int) -> dict[str, Any]:
    """The float twins of the quantised models, evaluated like ``darktrigger evaluate`` does."""
    from bench.quantisation_cost import train_twin, twin_label
    from darktrigger.models.metrics import evaluate_scores

    if not names:
        return {}
    train, bkg, sig, bkg_w, sig_w = load_samples(d)
    out = {}
    for name in names:
        log.info("training the float twin of %s", name)
        score, _ = train_twin(name, d / "models" / name, train, epochs=epochs, threads=threads)
        out[twin_label(name)] = evaluate_scores(score(bkg), {s: score(b) for s, b in sig.items()},
                                                (1e-2, 1e-3, 1e-4, 1e-5), bkg_weights=bkg_w, signal_weights=sig_w)
    return out


def table_section(d: Path, args: argparse.Namespace, results: dict[str, Any], shares: dict[str, tuple[int, float]],
                  commands: list[str], seconds: float, eval_seconds: float, missing: list[str]) -> list[str]:
    from bench.quantisation_cost import twin_label
    from darktrigger.models.metrics import format_table

    def auc(m: str, s: str) -> tuple[float, float]:
        r = results[m]["signals"][s]
        return float(r["auc"]), float(r.get("auc_err") or 0.0)

    checks = []
    for m in ("ae", "vae:kl", "axo"):
        if m not in results:
            checks.append(f"- {m}: not evaluated")
            continue
        beats = [s for s in SIGNALS if auc(m, s)[0] > auc("st", s)[0]]
        worse = [s for s in SIGNALS if s not in beats]
        checks.append(f"- {m} beats st in AUC on {len(beats)} of 4 signals"
                      + (f" (not on {', '.join(worse)})" if worse else "") + (": holds" if not worse else ": fails"))
    if "vae:mu2" in results and twin_label("qvae") in results:
        a, ea = auc("vae:mu2", "ato4l")
        t, et = auc(twin_label("qvae"), "ato4l")
        checks.append(f"- vae:mu2 on ato4l {a:.3f} ± {ea:.3f} vs qvae's float twin {t:.3f} ± {et:.3f}: "
                      f"{'within 0.02 or better: holds' if a >= t - 0.02 else 'more than 0.02 below: fails'}")
    if "qaxo" in results and twin_label("qaxo") in results:
        loss = {s: auc(twin_label("qaxo"), s)[0] - auc("qaxo", s)[0] for s in SIGNALS}
        worst = max(loss.values())
        checks.append("- qaxo's AUC loss against its float twin (training seed 1; with seeds 1-3 in the "
                      "recipe-search section, `python -m bench.adc2021_recipes`): "
                      + ", ".join(f"{s} {v:+.3f}" for s, v in loss.items())
                      + (": ≤ 0.01 on every signal, holds" if worst <= 0.01 else ": above 0.01, fails"))
    for m in ("ae", "vae:kl", "axo"):
        if m in results:
            below = [s for s in SIGNALS if auc(m, s)[0] < auc("pca", s)[0] - np.hypot(auc(m, s)[1], auc("pca", s)[1])]
            checks.append(f"- {m} below pca by more than the AUCs' errors on: {', '.join(below) or 'none'}")
    n_bkg = sum(n for n, _ in shares.values())
    first = next(iter(results.values()))
    sizes = ", ".join(f"{s} {first['signals'][s]['n_sig']:,}" for s in SIGNALS)
    composition = ", ".join(f"{p} {n:,} events → {f:.1%} of the weight" for p, (n, f) in shares.items())
    lines = [
        "## Models on ADC2021-recipe Pythia events",
        "",
        *describe(("numpy", "torch", "onnxruntime", "tensorflow", "pythia8mc")),
        f"- command: `python -m bench.adc2021_models --data {d} --epochs {args.epochs} --threads {args.threads}"
        f"{' --retrain' if args.retrain else ''}` "
        f"({seconds:.0f} s here, of it {eval_seconds:.0f} s evaluation; the samples' generation not counted "
        "where they were reused), which ran:",
        "",
        "```",
        *commands,
        "```",
        "",
        f"Test background: {n_bkg:,} ADC2021-recipe `sm_mix` events ({composition}; effective events "
        f"{first['n_bkg_eff']:,.0f}); signals {sizes}; "
        f"training: {SAMPLES['bkg_train'][1]:,} `sm_mix` events (QCD {SAMPLES['bkg_train'][3]}), "
        "20 % of them validation. Uncertainties: AUC Hanley–McNeil, TPR binomial from the weighted counts. "
        "`—`: the background sample cannot resolve that FPR (fewer than the expected background events "
        "the table requires). The issue's ≥ 500k test events were out of reach: QCD passes the filter "
        "through fake electrons only (ε ≈ 1.5 %), ≈ 0.54 core-seconds per kept event here (2,000 in 18 min), "
        "so the paper's 33.8 % of 500k events is ≈ 25 core-hours; the W, Z and tt̄ part, ≈ 0.02 "
        "core-seconds an event, would take ≈ 2 core-hours. What resolves an FPR is the weighted sample's "
        "effective events; made in the cheapest shares (n_p ∝ f_p/√cost_p: ≈ 9 % QCD), an effective "
        "event costs (Σ_p f_p √cost_p)² ≈ 0.12 core-seconds, so 500k effective events are ≈ 16 core-hours, "
        "≈ 8 hours of this machine's two cores.",
        "",
        format_table(results, markdown=True),
        "",
        *checks,
        *([f"- not registered, so not in the table: {', '.join(missing)}"] if missing else []),
        "",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
