"""Cost of quantisation, like for like: ``qvae``/``qae`` beside their float twins.

    $ python -m bench.quantisation_cost --data /work/data --epochs 20 --threads 2

A float twin is the quantised scorer's own Keras network, inputs, loss, seed, epochs,
validation split and training loop (:func:`darktrigger.models.quantised.training.train` with
``quantise=False``), with plain ``Dense`` + ``ReLU`` layers and no rounding anywhere
after the inputs: float μ and Σμ² for ``qvae``, float Σ d² over the 57 inputs for
``qae``. Both see the same :class:`darktrigger.models.quantised.preprocess.QPreprocessor` inputs (already on
the ``ap_fixed<12,6>`` grid: input quantisation is shared, so it is not part of the
difference). The quantised models are the saved ``<data>/models/qvae`` and
``<data>/models/qae`` (not retrained); the recipe of the twins (seed, batch size,
patience, validation fraction, hyper-parameters) is read from their cards.

Writes ``bench/results/firmware_twin.md``: AUC and TPR at FPR 1e-2 and 1e-3 on the
Pythia test background (40k ``sm_mix``) and the four 10k signal samples, with the
uncertainties of :func:`darktrigger.models.metrics.evaluate_scores`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import describe
from bench.physics import SIGNALS

log = logging.getLogger(__name__)

MODELS = ("qvae", "qae")  #: qvae first: its comparison with the float vae is the one in question
FPRS = (1e-2, 1e-3)
SCORE_CHUNK = 65536
HEADING = "### Cost of quantisation, like for like (float twins)"


def twin_label(name: str) -> str:
    return f"{name}-twin (float)"


def train_twin(name: str, model_dir: Path, data: Any, *, epochs: int, threads: int) -> tuple[Any, dict[str, Any]]:
    """Train the float twin of the quantised model in ``model_dir`` on ``data`` (an EventBatch)
    exactly as ``darktrigger train`` trained it; (score function raw batch → ``[N]``, record)."""
    from darktrigger.models import read_card
    from darktrigger.models.base import SCORERS, FitOptions, as_flat
    from darktrigger.models.quantised.preprocess import QPreprocessor
    from darktrigger.models.quantised.scorers import QuantisedScorer
    from darktrigger.models.quantised.training import firmware_model, train

    card = read_card(model_dir)
    if card.scorer != name:
        raise SystemExit(f"{model_dir}: expected a {name!r} model, the card says {card.scorer!r}")
    t = card.training
    scorer = SCORERS.get(name).from_card(card)
    assert isinstance(scorer, QuantisedScorer)
    seed = int(card.seed or 0)
    # the split of models.training.train_model
    perm = np.random.default_rng(seed).permutation(len(data))
    n_val = int(round(float(t["validation_fraction"]) * len(data)))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    # the inputs of QuantisedScorer.fit
    flat = as_flat(data[train_idx], f"{name} twin, training batch")
    fmt = scorer.input_fmt
    qpre = QPreprocessor.fit(flat, fmt.width, fmt.integer)
    x = qpre.transform(flat)
    xv = qpre.transform(as_flat(data[val_idx], f"{name} twin, validation batch")) if n_val else None
    t0 = time.monotonic()
    options = FitOptions(epochs=epochs, batch_size=int(t["batch_size"]), seed=seed, threads=threads,
                         patience=t["patience"])
    params, history = train(scorer, x, xv, options, quantise=False)
    seconds = time.monotonic() - t0
    net = firmware_model(scorer, scorer.firmware_params(params), quantise=False)

    def score(batch: Any) -> np.ndarray:
        xs = qpre.transform(as_flat(batch, f"{name} twin"))
        return np.concatenate([np.asarray(net(xs[i:i + SCORE_CHUNK], training=False)).reshape(-1)
                               for i in range(0, len(xs), SCORE_CHUNK)])

    from darktrigger.models import load_model

    quantised = load_model(model_dir)
    same_inputs = np.array_equal(qpre.scale_factors(), quantised.qpre.scale_factors())  # type: ignore[attr-defined]
    record = {"seed": seed, "events": len(train_idx), "validation_events": n_val, "epochs": epochs,
              "card_epochs": t.get("epochs"), "batch_size": t["batch_size"], "patience": t["patience"],
              "best_epoch": history["best_epoch"], "epochs_run": history["epochs_run"],
              "best_loss": history["best_loss"], "seconds": seconds, "same_inputs": same_inputs,
              "quantised_best_epoch": t.get("history", {}).get("best_epoch"),
              "quantised_best_loss": t.get("history", {}).get("best_loss")}
    return score, record


def _pm(value: float, err: float, digits: int) -> str:
    return f"{value:.{digits}f} ± {err:.{digits}f}"


def _tpr_cell(entry: dict[str, Any]) -> str:
    if not entry["resolved"]:
        return "—"
    if entry["n_sig_above"] == 0:
        return f"< {entry['tpr_hi']:.2g}"
    return _pm(entry["tpr"], entry["tpr_err"], 3)


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: signal | model | AUC | TPR@1e-2 | TPR@1e-3, models in ``results``' order."""
    lines = ["| signal | model | AUC | " + " | ".join(f"TPR@{f:.0e}" for f in FPRS) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in FPRS) + " |"]
    for sig in SIGNALS:
        for label, res in results.items():
            m = res["signals"][sig]
            by_fpr = {e["fpr_target"]: e for e in m["tpr_at_fpr"]}
            cells = [_tpr_cell(by_fpr[f]) for f in FPRS]
            lines.append(f"| {sig} | {label} | {_pm(m['auc'], m['auc_err'], 4)} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/data"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/firmware_twin.md"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS), help="which of qvae,qae (in this order)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    header = describe(("numpy", "tensorflow", "qkeras", "torch"))  # the load average before we add to it
    t_start = time.monotonic()
    import torch

    from darktrigger.models import load_model
    from darktrigger.models.metrics import evaluate_scores
    from darktrigger.models.neural.training import read_events
    from darktrigger.models.quantised.training import import_tf

    torch.set_num_threads(args.threads)
    import_tf(args.threads)
    d: Path = args.data
    names = [m for m in args.models.split(",") if m]
    if unknown := set(names) - set(MODELS):
        raise SystemExit(f"--models takes some of {','.join(MODELS)}, got {sorted(unknown)}")
    train_data = read_events([d / "pythia_sm_mix_200k.h5"], None, "background", hashes=False)[0]
    bkg = read_events([d / "pythia_sm_mix_test_40k.h5"], None, "test", hashes=False)[0]
    sig = {s: read_events([d / f"pythia_{s}_10k.h5"], None, s, hashes=False)[0] for s in SIGNALS}
    results: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        model_dir = d / "models" / name
        log.info("training the float twin of %s", model_dir)
        twin, records[name] = train_twin(name, model_dir, train_data, epochs=args.epochs, threads=args.threads)
        log.info("%s twin: %s", name, records[name])
        quantised = load_model(model_dir, threads=args.threads)
        for label, score in ((twin_label(name), twin), (name, quantised.score)):
            results[label] = evaluate_scores(score(bkg), {s: score(b) for s, b in sig.items()}, FPRS)
    cmd = (f"python -m bench.quantisation_cost --data {d} --epochs {args.epochs} --threads {args.threads}"
           + ("" if names == list(MODELS) else f" --models {','.join(names)}"))
    lines = [HEADING, "", *header,
             f"- command: `{cmd}` ({time.monotonic() - t_start:.0f} s)", "",
             "Float twin: the quantised model's own Keras network, QPreprocessor inputs (57 L1 integers, "
             "shift-normalised onto `ap_fixed<12,6>`), loss, seed, epochs, validation split and training loop "
             "(`darktrigger.models.quantised.training`, `quantise=False`), with `Dense` + `ReLU` and no rounding after the "
             "inputs: float μ and Σμ² (qvae), float Σ d² over the 57 inputs (qae). Input quantisation is "
             "shared, so it is not part of the difference. Quantised: the saved models (not retrained), "
             "scored exactly. Pythia test background 40k `sm_mix`, 10k per signal; `—`: too few background "
             "events to resolve the FPR.", ""]
    for name, r in records.items():
        lines.append(f"- {name}: twin trained on {r['events']:,} events ({r['validation_events']:,} validation), "
                     f"seed {r['seed']}, batch {r['batch_size']}, patience {r['patience']}, {r['epochs']} epochs "
                     f"(card: {r['card_epochs']}); best epoch {r['best_epoch']} of {r['epochs_run']}, validation "
                     f"loss {r['best_loss']:.5g} (quantised: epoch {r['quantised_best_epoch']}, "
                     f"{r['quantised_best_loss']:.5g}); {r['seconds']:.0f} s; inputs identical to the "
                     f"quantised model's: {'yes' if r['same_inputs'] else 'NO'}")
    lines += ["", *table(results), ""]
    diffs = {}
    for name in records:
        q, f = results[name]["signals"]["ato4l"], results[twin_label(name)]["signals"]["ato4l"]
        diffs[name] = q["auc"] - f["auc"]
        # the two AUCs share their events, so the quadrature sum overstates the error of the difference
        err = math.hypot(q["auc_err"], f["auc_err"])
        lines.append(f"- {name}: ato4l AUC quantised − float twin = {diffs[name]:+.4f} "
                     f"({q['auc']:.4f} − {f['auc']:.4f}; ± {err:.4f} if the two were independent)")
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0 if all(math.isfinite(v) for v in diffs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
