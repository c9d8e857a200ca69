"""Recipe search for the float anomaly scorers on ADC2021-recipe Pythia events, against ``st``.

    $ python -m bench.adc2021_recipes --data data/adc2021 [--seeds 1,2,3] [--threads 2]

Issue 15 asks that each of ``ae``, ``vae:kl`` and ``axo`` beat the ``st`` baseline (the
scalar sum of the L1 objects' pT) in AUC on all four ADC2021 signals. On our samples the
signal where that is hard is ``lq_btau``: it differs from the SM cocktail mostly in energy,
which ``st`` measures directly. This bench trains a fixed list of recipes (:data:`VARIANTS`:
the defaults, and the widths, latent sizes, reconstruction weights, β and feature sizes that
moved the AUCs in the first look) on the samples of :mod:`bench.adc2021_models` (which must
have made them: ``bkg_train.h5``, ``bkg_test_paper.h5`` and the four ``sig_*.h5``), each with
every seed of ``--seeds``, and reports per signal the mean AUC over the seeds, its spread
(min–max) and whether the recipe beats ``st`` in every seed on every signal.

With ``--quantised`` (default ``qaxo,qvae``) it also trains each quantised model with every
seed, and its float twin (:mod:`bench.quantisation_cost`), and reports the AUC quantisation
costs (twin minus quantised) over the seeds: the issue's "qaxo loses ≤ 0.01 against its float
twin" rests on differences of the size of one seed's AUC uncertainty.

Training is as ``darktrigger train`` does it (the scorer's ``fit``, 20 % validation drawn
with the seed, 20 epochs, batch 512, patience 5); scores and AUCs (weighted: the test
background weighted to the paper's composition) as ``darktrigger evaluate`` gives them.
Selecting a recipe by these AUCs selects it on the test sample: a recipe that wins here by
less than the seed spread has not been shown to be better.

What it showed (2026-12-05, 128k test events, BENCHMARKS.md): no recipe beats ``st`` on ``lq_btau`` with every
seed. The best, ``ae`` with hidden (64, 32) and latent 6 or 8, reaches 0.847–0.849 on the
mean against st's 0.8455, with seed spreads of ±0.004, and loses with one seed in three;
``axo`` reaches 0.827, ``vae:kl`` 0.807. Against each process alone, ``st`` is above every
default scorer on ``lq_btau`` against QCD (0.780 against 0.744–0.763) and against Z. The
hpm_taunu AUCs below 0.5 come from QCD: against W every scorer is at 0.45–0.59, against QCD every
one is at 0.21–0.49, since QCD passes the filter only through hard jets faking an electron,
which look more unusual than a 60 GeV h± → τν. Tried outside this list, with no gain on
``lq_btau`` (one seed each, on the earlier 118k-event test file): 200 epochs instead of 20 (ae 0.837, axo 0.761, vae:kl 0.680);
training on the cocktail resampled to the paper's composition, with 6,000 more QCD events
(ae 0.830, axo 0.810, vae:kl 0.722 on a test file without those events, st 0.8485 there);
pT^½ or log(1 + pT) instead of pT^¼ in the preprocessing (ae 0.833, 0.830; axo 0.817, 0.819).
Quantisation: ``qaxo``'s cost, averaged over seeds 1–3, is ≤ 0.01 on every signal (+0.007,
+0.002, −0.002, +0.005), while one seed's ranges from −0.020 to +0.030: the seed moves these
AUCs more than the rounding does. ``qvae``'s costs 0.013–0.021 on three signals.

Writes ``bench/results/adc2021_recipes.md`` (copied into BENCHMARKS.md by ``make bench``) and, in
the data folder, every AUC as ``recipes.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.adc2021_models import SIGNALS, load_samples
from bench.machine import describe

#: name → (scorer spec, hyper-parameters); ``ae``, ``vae:kl`` and ``axo`` first with the CLI's defaults
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ae (default)": ("ae", {}),
    "ae latent 6": ("ae", {"latent": 6}),
    "ae hidden 64,32 latent 4": ("ae", {"hidden": [64, 32], "latent": 4}),
    "ae hidden 64,32 latent 6": ("ae", {"hidden": [64, 32], "latent": 6}),
    "ae hidden 64,32 latent 8": ("ae", {"hidden": [64, 32], "latent": 8}),
    "vae:kl (default)": ("vae:kl", {}),
    "vae:kl latent 8": ("vae:kl", {"latent": 8}),
    "vae:kl latent 8, e/μ weight 4, β 0.3": (
        "vae:kl", {"latent": 8, "beta": 0.3,
                   "reco_object_weights": {"met": 1, "egamma": 4, "muon": 4, "jet": 1}}),
    "vae:kl latent 8, pT weight 16, e/μ weight 4, β 0.3": (
        "vae:kl", {"latent": 8, "beta": 0.3, "reco_weights": {"pt": 16, "eta": 1, "phi": 0},
                   "reco_object_weights": {"met": 1, "egamma": 4, "muon": 4, "jet": 1}}),
    "vae:kl latent 8, pT weight 64, e/μ weight 1, β 0.3": (
        "vae:kl", {"latent": 8, "beta": 0.3, "reco_weights": {"pt": 64, "eta": 1, "phi": 0},
                   "reco_object_weights": {"met": 1, "egamma": 1, "muon": 1, "jet": 1}}),
    "axo (default)": ("axo", {}),
    "axo extractor 64, features 10": ("axo", {"extractor": [64]}),
    "axo extractor 64, features 16": ("axo", {"extractor": [64], "features": 16}),
    "axo extractor 64, features 16, latent 6": ("axo", {"extractor": [64], "features": 16, "latent": 6}),
    "axo features 16, variance weight 0.3": ("axo", {"features": 16, "variance_weight": 0.3}),
}
BASELINES = ("st", "ht", "pca")
#: the SM processes of the cocktail the per-process table splits the test background into
PROCESSES = ("qcd", "wjets", "zjets")

log = logging.getLogger("bench.adc2021_recipes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/adc2021"),
                        help="the folder python -m bench.adc2021_models made its samples in")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "adc2021_recipes.md")
    parser.add_argument("--seeds", default="1,2,3", help="training seeds, comma-separated (default 1,2,3)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantised", default="qaxo,qvae",
                        help="quantised models whose cost against their float twins is measured with every seed "
                             "(comma-separated; '' for none; default qaxo,qvae)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from darktrigger.models import load_model
    from darktrigger.models.base import get_scorer
    from darktrigger.models.metrics import evaluate_scores

    d: Path = args.data
    needed = [d / "bkg_train.h5", d / "bkg_test_paper.h5", *(d / f"sig_{s}.h5" for s in SIGNALS)]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"bench.adc2021_recipes: missing {', '.join(missing)}; run python -m bench.adc2021_models "
              f"--data {d} first", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.monotonic()
    train, bkg, sig, bkg_w, sig_w = load_samples(d)

    def aucs(score: Any) -> Aucs:
        report = evaluate_scores(score(bkg), {s: score(b) for s, b in sig.items()}, (1e-2,),
                                 bkg_weights=bkg_w, signal_weights=sig_w)
        return {s: (float(report["signals"][s]["auc"]), float(report["signals"][s]["auc_err"]))
                for s in SIGNALS}

    from darktrigger.models.metrics import roc_auc
    from darktrigger.replay.events import PROCESS_LABELS

    truth = np.asarray(bkg["truth"])

    def by_process(score: Any) -> dict[str, dict[str, float]]:
        """AUC of each signal against each SM process of the test background alone."""
        b = score(bkg)
        return {s: {p: float(roc_auc(b[truth == PROCESS_LABELS[p]], score(sb))) for p in PROCESSES}
                for s, sb in sig.items()}

    base: dict[str, dict[str, tuple[float, float]]] = {}
    split: dict[str, dict[str, dict[str, float]]] = {}
    for name in BASELINES:
        scorer = get_scorer(name)
        scorer.fit(train, seed=seeds[0], progress=False)
        base[name] = aucs(scorer.score)
        split[name] = by_process(scorer.score)
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (spec, hp) in VARIANTS.items():
            scorer_name, _, variant = spec.partition(":")
            runs[name] = []
            for seed in seeds:
                perm = np.random.default_rng(seed).permutation(len(train))
                n_val = len(train) // 5
                scorer = get_scorer(scorer_name, **hp)
                scorer.fit(train[np.sort(perm[n_val:])], validation=train[np.sort(perm[:n_val])],
                           epochs=args.epochs, seed=seed, threads=args.threads, progress=False)
                out = Path(tmp) / f"{len(runs)}-{seed}"
                scorer.save(out)
                model = load_model(out, variant=variant or None)
                runs[name].append(aucs(model.score))
                if name.endswith("(default)") and seed == seeds[0]:
                    split[name.removesuffix(" (default)")] = by_process(model.score)
                log.info("%s seed %d: %s", name, seed,
                         ", ".join(f"{s} {runs[name][-1][s][0]:.4f}" for s in SIGNALS))
    quantised = quantisation_cost(d, train, aucs, seeds, args) if args.quantised else {}
    seconds = time.monotonic() - t0
    lines = section(args, seeds, base, runs, split, seconds)
    lines += quantised_section(seeds, quantised)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    (d / "recipes.json").write_text(json.dumps({"baselines": base, "runs": runs, "split": split, "quantised": quantised, "seeds": seeds}, indent=1),
                                    encoding="utf-8")
    print("\n".join(lines))
    return 0


Aucs = dict[str, tuple[float, float]]


def quantisation_cost(d: Path, train: Any, aucs: Any, seeds: list[int],
                      args: argparse.Namespace) -> dict[str, list[dict[str, Aucs]]]:
    """Each quantised model of ``--quantised``, trained as ``darktrigger train`` does with each
    seed, and its float twin (the same network and training without rounding,
    :func:`bench.quantisation_cost.train_twin`): their AUCs, ``{name: [{"quantised", "twin"}]}``."""
    from bench.quantisation_cost import train_twin
    from darktrigger.models import load_model
    from darktrigger.models.base import SCORERS
    from darktrigger.models.neural.training import train_model

    out: dict[str, list[dict[str, Aucs]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [n for n in args.quantised.split(",") if n]:
            if name not in SCORERS:
                log.warning("%s is not registered here; skipped", name)
                continue
            out[name] = []
            for seed in seeds:
                model_dir = train_model(name, [d / "bkg_train.h5"], Path(tmp) / f"{name}-{seed}",
                                        epochs=args.epochs, seed=seed, threads=args.threads, progress=False)
                twin, _ = train_twin(name, model_dir, train, epochs=args.epochs, threads=args.threads)
                out[name].append({"quantised": aucs(load_model(model_dir).score), "twin": aucs(twin)})
                log.info("%s seed %d: twin - quantised %s", name, seed, ", ".join(
                    f"{s} {out[name][-1]['twin'][s][0] - out[name][-1]['quantised'][s][0]:+.4f}" for s in SIGNALS))
    return out


def quantised_section(seeds: list[int], quantised: dict[str, list[dict[str, Aucs]]]) -> list[str]:
    if not quantised:
        return []
    lines = [
        f"Quantisation cost with seeds {', '.join(map(str, seeds))}: each quantised model trained as `darktrigger "
        "train` does, and its float twin (the same network and training, no rounding); a cell is the twin's AUC "
        "minus the quantised model's, mean over the seeds and (lowest, highest). Positive: quantisation lost AUC.",
        "",
        "| model | " + " | ".join(SIGNALS) + " | mean cost ≤ 0.01 on every signal |",
        "|---|" + "---|" * len(SIGNALS) + "---|",
    ]
    for name, per_seed in quantised.items():
        cells, worst = [], -1.0
        for s in SIGNALS:
            c = np.array([r["twin"][s][0] - r["quantised"][s][0] for r in per_seed])
            worst = max(worst, float(c.mean()))
            cells.append(f"{c.mean():+.4f} ({c.min():+.4f}, {c.max():+.4f})")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if worst <= 0.01 else 'no'} |")
    for name, per_seed in quantised.items():
        lines.append("")
        lines.append(f"{name}'s AUCs per seed (quantised / twin): " + "; ".join(
            f"seed {seed}: " + ", ".join(f"{s} {r['quantised'][s][0]:.4f} / {r['twin'][s][0]:.4f}" for s in SIGNALS)
            for seed, r in zip(seeds, per_seed, strict=True)))
    lines.append("")
    return lines


def section(args: argparse.Namespace, seeds: list[int], base: dict[str, dict[str, tuple[float, float]]],
            runs: dict[str, list[dict[str, tuple[float, float]]]], split: dict[str, dict[str, dict[str, float]]],
            seconds: float) -> list[str]:
    st = base["st"]
    lines = [
        "## Recipe search on ADC2021-recipe Pythia events: the float scorers against st",
        "",
        *describe(("numpy", "torch")),
        f"- command: `python -m bench.adc2021_recipes --data {args.data} --seeds {args.seeds} "
        f"--epochs {args.epochs} --threads {args.threads} --quantised '{args.quantised}'` ({seconds:.0f} s here)",
        "",
        f"The samples of the section above (training: `bkg_train.h5`; test background: `bkg_test_paper.h5`, "
        f"weighted to the paper's composition). Each recipe trained with seeds {', '.join(map(str, seeds))}; "
        "a cell is the mean AUC over the seeds and, in brackets, the lowest and highest. The AUC's own "
        f"uncertainty (Hanley–McNeil) is ±{max(e for r in runs.values() for x in r for _, e in x.values()):.4f} "
        "at most. Baselines (no training seed): "
        + ", ".join(f"{b} " + " / ".join(f"{base[b][s][0]:.4f}" for s in SIGNALS) for b in BASELINES)
        + f" ({' / '.join(SIGNALS)}). \"beats st\": above st's AUC on every signal with every seed. "
        "The recipes were chosen after a first look at these same test samples, so a recipe that wins by "
        "less than its seed spread has not been shown to be better.",
        "",
        "| recipe | " + " | ".join(SIGNALS) + " | beats st |",
        "|---|" + "---|" * len(SIGNALS) + "---|",
    ]
    lines.append("| st (baseline) | " + " | ".join(f"{st[s][0]:.4f}" for s in SIGNALS) + " | — |")
    for name, per_seed in runs.items():
        cells = []
        for s in SIGNALS:
            a = np.array([r[s][0] for r in per_seed])
            cells.append(f"{a.mean():.4f} ({a.min():.4f}–{a.max():.4f})")
        wins = all(r[s][0] > st[s][0] for r in per_seed for s in SIGNALS)
        lost = sorted({s for r in per_seed for s in SIGNALS if r[s][0] <= st[s][0]})
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if wins else 'no: ' + ', '.join(lost)} |")
    lines += [
        "",
        f"Where the defaults win and lose: the AUC of each signal against each SM process of the test background "
        f"alone (the defaults with seed {seeds[0]}, the baselines; unweighted within a process). The weighted AUCs "
        "above mix these columns by the paper's shares (W 59.2 %, QCD 33.8 %, Z 6.7 %, tt̄ 0.3 %).",
        "",
        "| signal | scorer | " + " | ".join(f"vs {p}" for p in PROCESSES) + " |",
        "|---|---|" + "---|" * len(PROCESSES),
    ]
    for s in SIGNALS:
        for name, per_signal in split.items():
            lines.append(f"| {s} | {name} | " + " | ".join(f"{per_signal[s][p]:.3f}" for p in PROCESSES) + " |")
    lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main())
