"""``darktrigger train``, ``evaluate`` and ``calibrate``: the models layer on the command line.

    $ darktrigger train --model ae --background bkg.h5 --out models/ae
    $ darktrigger evaluate --model models/ae --background bkg_test.h5 --signal ato4l=ato4l.h5
    $ darktrigger calibrate --model models/ae --zero-bias zb.h5 --rate-khz 1,5,10
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.daq.cli.common import (
    add_backend,
    add_dask,
    add_on_error,
    event_count,
    parse_signals,
)
from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.progress import Steps

log = logging.getLogger(__name__)

BASELINES = ("ht", "st")  #: fixed functions of the event, scored as they are
PCA_BASELINE = "pca"  #: the linear baseline, fitted here (cross-fitted on the background's halves)


class CrossFitted:
    """A scorer fitted twice on the background's two halves (even and odd events), each
    event scored by the fit that did not see it: ``pca`` as a baseline without a training
    file, out of sample for every event. A signal event takes the half its index falls in
    (no fit saw a signal).

        >>> from darktrigger.models import get_scorer
        >>> from darktrigger.replay.generators import GENERATORS
        >>> bkg = next(GENERATORS.get("toy")().generate("sm_mix", 2000, seed=1))
        >>> pca = CrossFitted(lambda: get_scorer("pca"), bkg)
        >>> pca.score(bkg).shape
        (2000,)
    """

    def __init__(self, make: Callable[[], Any], background: EventBatch) -> None:
        self.fits = []
        for half in (0, 1):
            scorer = make()
            scorer.fit(background[half::2], seed=half, progress=False)
            self.fits.append(scorer)
        self.n_fit = (len(background) + 1) // 2, len(background) // 2

    def score(self, batch: EventBatch) -> np.ndarray:
        out = np.empty(len(batch), np.float64)
        for half, other in ((0, 1), (1, 0)):  # even events by the odd half's fit and back
            out[half::2] = self.fits[other].score(batch[half::2])
        return out


def _read(path: Path, max_events: int | None, on_error: str) -> EventBatch:
    from darktrigger.models.neural.training import read_events

    return read_events([path], max_events, "evaluation", on_error=on_error, hashes=False)[0]


def origin(path: Path) -> str:
    """Where a file's events come from, as evaluate compares them: the generator (and its
    recipe and pile-up) for a native file, else its format (``adc2021 file``)."""
    from darktrigger.replay.readers import open_events

    reader = open_events(path)
    if reader.name != "native":
        return f"{reader.name} file"
    prov = reader.metadata().get("provenance", {})
    text = str(prov.get("generator", "an unnamed generator"))
    recipe = prov.get("recipe")
    if isinstance(recipe, dict) and recipe.get("recipe"):
        text += f" (recipe {recipe['recipe']})"
    return text


def warn_on_mixed_origins(background: Path, signals: dict[str, Path]) -> list[str]:
    """A warning for each signal file made otherwise than the background (another generator,
    recipe or format): a model then separates the generators (detector model, pile-up, filter)
    as well as the physics, and the AUC says so too. Returns the warnings logged."""
    bkg = origin(background)
    out = []
    for name, path in signals.items():
        sig = origin(path)
        if sig != bkg:
            out.append(f"signal {name} ({path}) comes from {sig}, the background ({background}) from {bkg}: "
                       "the scores separate the generators (detector model, pile-up, filter) as well as "
                       "the physics; compare samples made alike")
            log.warning(out[-1])
    return out


def _weights(batch: EventBatch, path: Path) -> np.ndarray | None:
    """The events' weights, checked (a NaN, negative or zero-sum weight names the file and
    row); None when every weight is 1 (the unweighted computation, exactly)."""
    from darktrigger.models.thresholds import checked_weights

    w = checked_weights(batch, path, whole_file=True)
    return None if (w == 1).all() else w


def _parse_rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--rate-khz takes numbers separated by commas (e.g. 1,5,10), got {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise ConfigError(f"--rate-khz needs positive rates, got {text!r}")
    return rates


def _scorers_of(model_dir: Path, backend: str, threads: int) -> list[tuple[str, str | None, Any]]:
    """(label, variant, scorer) for every variant of a saved model."""
    from darktrigger.models import load_model, read_card

    card = read_card(model_dir)
    variants: list[str | None] = list(card.variants) or [card.variant]
    return [(f"{card.scorer}:{v}" if v else card.scorer, v,
             load_model(model_dir, backend, variant=v, threads=threads)) for v in variants]


def _executor_scores(dask: str | None, chunk_events: int | None, paths: dict[str, Path],
                     models: list[tuple[str, Path, str | None]], backend: str, threads: int,
                     max_events: int | None, on_error: str, expected: dict[str, int]) -> dict[str, dict[str, np.ndarray]] | None:
    """With ``--dask``: every model's scores of every file, computed by the executor in chunks
    (:mod:`darktrigger.daq.offline`) — ``{file key: {label: scores}}``; None without ``--dask``
    (the models then score in this process). ``models``: (label, directory, variant)."""
    if not dask:
        return None
    from darktrigger.daq.offline import (
        DEFAULT_CHUNK_EVENTS,
        ModelRef,
        ScoreTask,
        close_quietly,
        make_executor,
        plan_chunks,
    )

    refs = tuple(ModelRef(label, str(d), backend, v, threads) for label, d, v in models)
    executor = make_executor(dask)
    out: dict[str, dict[str, np.ndarray]] = {}
    try:
        for key, path in paths.items():
            chunks = plan_chunks([path], chunk_events or DEFAULT_CHUNK_EVENTS, max_events=max_events)
            parts = list(executor.map(_run_task, [ScoreTask(c, refs, on_error=on_error) for c in chunks],
                                      desc=f"score {path.name} ({executor.name})",
                                      events=[c.stop - c.start for c in chunks]))
            out[key] = {r.name: np.concatenate([p[r.name] for p in parts]) if parts else np.empty(0, np.float32)
                        for r in refs}
            got = len(next(iter(out[key].values()))) if refs else expected[key]
            if got != expected[key]:
                raise ConfigError(f"{path}: the Dask tasks scored {got:,} events, {expected[key]:,} were read "
                                  f"here (with --on-error skip and --max-events the two can differ: drop one)")
    finally:
        close_quietly(executor)
    return out


def _run_task(task: Any) -> Any:
    return task()


# -- train ----------------------------------------------------------------------------
def _parse_settings(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` hyper-parameters; VALUE is read as JSON (numbers, lists, objects),
    else taken as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ConfigError(f"--set takes KEY=VALUE (e.g. sparsity=0.8 or hidden=[32,16]), got {item!r}")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from darktrigger.models import train_model

    if args.model == "cwola" and not args.signal_region:
        raise ConfigError("--model cwola is trained on two samples: give --signal-region FILE... "
                          "(label 1) as well as --background FILE... (label 0)")
    out = train_model(args.model, args.background, args.out,
                      validation_fraction=args.validation_fraction, max_events=args.max_events,
                      signal_paths=args.signal_region or None,
                      hyperparameters=_parse_settings(args.set),
                      epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      threads=args.threads, progress=not args.no_progress, patience=args.patience)
    from darktrigger.models import read_card

    card = read_card(out)
    history = card.history
    # the kept epoch's loss: with pruning, the lowest loss can be a dense epoch's, not the model's
    best = (f", best validation loss {history['best_loss']:.5g}"
            if history.get("monitor") == "validation_loss" else "")
    print(f"trained {card.spec} on {sum(f['events'] for f in card.training_files):,} events"
          f"{best}; model in {out}")
    return 0


def add_train_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    from darktrigger.models.base import FitOptions

    p = sub.add_parser(
        "train", formatter_class=formatter,
        help="train an anomaly scorer (ae, vae, axo, pca, cwola, qae, qvae) and save it as a model directory",
        description="Train a scorer on background events and save the model directory: weights,\n"
                    "preprocessing, card.json (hyper-parameters, training files with sha256, seed)\n"
                    "and model.onnx. A seeded random validation fraction drives early stopping.\n\n"
                    "scorers: ae, vae, axo, cwola (torch); pca (the linear baseline, fitted in closed\n"
                    "form); qae, qvae (QKeras, quantised, for firmware); ht and st are baselines:\n"
                    "nothing to train (`darktrigger formats` lists every\n"
                    "registered scorer). --set overrides a default hyper-parameter; card.json\n"
                    "records them all, and an unknown name is an error that lists the known ones.",
        epilog="examples:\n"
               "  darktrigger train --model ae --background sm_mix.h5 --out models/ae --epochs 30\n"
               "  darktrigger train --model vae --background sm_mix.h5 --out models/vae --seed 2 --threads 2\n"
               "  darktrigger train --model cwola --signal-region sr.h5 --background sb.h5 --out models/cwola\n"
               "  darktrigger train --model qvae --background sm_mix.h5 --out models/qvae --set sparsity=0.9")
    p.add_argument("--model", required=True, help="scorer to train: ae, vae, axo, pca, cwola, qae, qvae")
    p.add_argument("--background", nargs="+", type=Path, required=True, help="training events (label 0 for cwola)")
    p.add_argument("--signal-region", nargs="+", type=Path, default=[],
                   help="cwola only: label-1 events (default none)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    fit = FitOptions()
    p.add_argument("--epochs", type=int, default=fit.epochs, help=f"training epochs (default {fit.epochs})")
    p.add_argument("--batch-size", type=int, default=fit.batch_size,
                   help=f"events per optimiser step (default {fit.batch_size})")
    p.add_argument("--seed", type=int, default=fit.seed, help=f"random seed (default {fit.seed})")
    p.add_argument("--threads", type=int, default=fit.threads, help=f"torch/TensorFlow threads (default {fit.threads})")
    p.add_argument("--patience", type=int, default=fit.patience,
                   help=f"early stopping: epochs without improvement (default {fit.patience})")
    p.add_argument("--validation-fraction", type=float, default=0.2,
                   help="seeded random fraction of the events held out for the validation loss "
                        "(default 0.2)")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="use at most this many events per sample (default all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyper-parameter (repeatable; VALUE as JSON), e.g. --set sparsity=0.8 "
                        "--set hidden=[32,16] (default: the scorer's own)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    p.set_defaults(func=cmd_train)


# -- evaluate -------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from darktrigger.models import get_scorer
    from darktrigger.models.card import ModelCard
    from darktrigger.models.metrics import evaluate_scores, format_table, roc_curve
    from darktrigger.models.thresholds import as_scores

    signals = parse_signals(args.signal)
    if not signals:
        raise ConfigError("give at least one --signal NAME=FILE")
    fprs = tuple(float(x) for x in args.fprs.split(","))
    scorers: list[tuple[str, Any, Path | None]] = []  # the models first: a bad one fails before any reading
    variants: dict[str, str | None] = {}
    for model_dir in args.model:
        for label, variant, s in _scorers_of(model_dir, args.backend, args.threads):
            if any(label == seen for seen, _, _ in scorers):  # two models of one kind
                label = f"{label}@{model_dir.name}"
            scorers.append((label, s, model_dir))
            variants[label] = variant
    if not args.no_baselines:
        scorers += [(name, get_scorer(name), None) for name in BASELINES]
    fit_pca = not args.no_baselines and not any(label.split("@")[0] == PCA_BASELINE for label, _, _ in scorers)
    steps = Steps("evaluate", 1 + len(signals) + 2 * fit_pca + len(scorers) + bool(args.plots),
                  enabled=not args.no_progress)
    steps(f"reading {args.background}")
    bkg = _read(args.background, args.max_events, args.on_error)
    sig = {}
    for name, path in signals.items():
        steps(f"reading {path}")
        sig[name] = _read(path, args.max_events, args.on_error)
    bkg_w = _weights(bkg, args.background)
    sig_w = {name: _weights(batch, signals[name]) for name, batch in sig.items()}
    warn_on_mixed_origins(args.background, signals)
    if fit_pca:
        steps("fitting the pca baseline" + (f" on {args.pca_fit}" if args.pca_fit else
                                            " (cross-fitted on the background's halves)"))
        scorers.append((PCA_BASELINE, _pca_baseline(bkg, args.pca_fit, args.max_events, args.on_error), None))
    files = {"": args.background, **{f"signal:{n}": p for n, p in signals.items()}}
    precomputed = _executor_scores(
        args.dask, args.chunk_events, files,
        [(label, d, variants[label]) for label, _, d in scorers if d is not None],
        args.backend, args.threads, args.max_events, args.on_error,
        {"": len(bkg), **{f"signal:{n}": len(b) for n, b in sig.items()}})
    results: dict[str, Any] = {}
    curves: dict[str, dict[str, Any]] = {name: {} for name in signals}
    dists: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for label, scorer, model_dir in scorers:
        steps(f"scoring with {label} ({len(bkg) + sum(map(len, sig.values())):,} events)")
        if precomputed is not None and model_dir is not None:
            b = precomputed[""][label]
            s = {name: precomputed[f"signal:{name}"][label] for name in sig}
        else:
            b = scorer.score(bkg)
            s = {name: scorer.score(batch) for name, batch in sig.items()}
        which = f"model {label}" + (f" ({model_dir})" if model_dir is not None else "")
        b = as_scores(b, f"{which}, scores of the background {args.background}")
        s = {name: as_scores(v, f"{which}, scores of signal {name} ({signals[name]})") for name, v in s.items()}
        results[label] = evaluate_scores(b, s, fprs, bkg_weights=bkg_w, signal_weights=sig_w)
        for name in signals:
            curves[name][label] = roc_curve(b, s[name], bkg_w, sig_w[name])[:2]
        dists[label] = (b, s)
        if model_dir is not None:  # the card keeps the latest evaluation of each variant
            card = ModelCard.load(model_dir)
            card.metrics[label] = {"background": str(args.background), **results[label]}
            card.save(model_dir)
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"background": str(args.background),
                                         "signals": {k: str(v) for k, v in signals.items()},
                                         "models": results}, indent=2, allow_nan=False))
        print(f"JSON written to {args.json}")
    if args.dm_csv:
        from darktrigger.models.metrics import write_dm_csv

        args.dm_csv.parent.mkdir(parents=True, exist_ok=True)
        rows = write_dm_csv(args.dm_csv, results, channel=args.dm_channel)
        print(f"Dark Machines challenge CSV ({rows} rows: Signal,Model,Chan,AUC,1e-2,1e-3,1e-4) "
              f"written to {args.dm_csv}")
    if args.plots:
        from darktrigger.models.plots import evaluation_figures, save_figure

        steps(f"drawing the plots into {args.plots}/")

        marks = {label: {f"{t['rate_khz']:g} kHz": float(t["threshold"])
                         for t in ModelCard.load(d).thresholds if t.get("model") == label}
                 for label, _, d in scorers if d is not None}
        figures = evaluation_figures(curves, dists, input_rate_mhz=args.input_rate_mhz,
                                     background=args.background.name, thresholds=marks,
                                     bkg_weights=bkg_w, signal_weights=sig_w)
        for filename, fig in figures.items():
            save_figure(fig, args.plots / filename)
        print(f"plots written to {args.plots}/")
    return 0


def _pca_baseline(bkg: EventBatch, fit_file: Path | None, max_events: int | None,
                  on_error: str) -> Any:
    """The ``pca`` baseline: fitted on ``fit_file`` (a training background), or cross-fitted
    on the evaluation background's halves (:class:`CrossFitted`) when none is given."""
    from darktrigger.models import get_scorer

    if fit_file is not None:
        pca = get_scorer(PCA_BASELINE)
        pca.fit(_read(fit_file, max_events, on_error), progress=False)
        log.info("baseline pca fitted on %s", fit_file)
        return pca
    log.info("baseline pca cross-fitted on the background's even and odd events (%d + %d); "
             "each event scored by the half that did not see it", (len(bkg) + 1) // 2, len(bkg) // 2)
    return CrossFitted(lambda: get_scorer(PCA_BASELINE), bkg)


def add_evaluate_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=formatter,
        help="ROC AUC, TPR at FPR 1e-2…1e-5, significance improvement, per signal, baselines beside",
        description="Score a background and signal samples with saved models (every variant: a VAE\n"
                    "gives vae:mu2, vae:kl, vae:reco) and the baselines (ht, st, and pca: the linear\n"
                    "reconstruction error, cross-fitted on the background's two halves or fitted on\n"
                    "--pca-fit), and print per signal the\n"
                    "ROC AUC, the TPR at each FPR with its binomial uncertainty, and the significance\n"
                    "improvement eps_S/sqrt(eps_B). Weighted files (the weight column) count each event\n"
                    "by its weight: the ROC from weighted counts, the background's FPR by the background's\n"
                    "weights, the signal's efficiency by the signal's own. An FPR the background sample\n"
                    "cannot resolve (fewer than 10 effective events above its threshold) says so.\n"
                    "The results also go into each model's card.json (metrics).",
        epilog="examples:\n"
               "  darktrigger evaluate --model models/ae --model models/vae --background bkg_test.h5 \\\n"
               "      --signal ato4l=ato4l.h5 --signal h_tautau=htt.h5 --json eval.json --plots plots/")
    p.add_argument("--model", nargs="+", action="extend", type=Path, required=True,
                   help="model directories (repeat --model or list several)")
    p.add_argument("--background", type=Path, required=True, help="background events (not used in training)")
    p.add_argument("--signal", action="append", default=[], metavar="NAME=FILE",
                   help="a signal sample; repeat for each signal (at least one)")
    p.add_argument("--fprs", default="1e-2,1e-3,1e-4,1e-5",
                   help="FPRs for the TPR/SI columns (default 1e-2,1e-3,1e-4,1e-5)")
    add_backend(p)
    p.add_argument("--threads", type=int, default=1, help="scoring threads (default 1)")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="at most this many events per file (default all)")
    p.add_argument("--input-rate-mhz", type=float, default=DEFAULT_BX_RATE_MHZ,
                   help=f"for the rate axis of the ROC plots (default the colliding-bunch rate, "
                        f"{DEFAULT_BX_RATE_MHZ:.4g})")
    p.add_argument("--no-baselines", action="store_true",
                   help="leave out ht, st and pca (default: evaluated beside the models)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines (default: a numbered line as each step starts)")
    p.add_argument("--pca-fit", type=Path, default=None, metavar="FILE",
                   help="fit the pca baseline on this background file (default: cross-fitted on the "
                        "evaluation background's even and odd events, each scored out of sample)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON (default: not written)")
    p.add_argument("--dm-csv", type=Path, default=None,
                   help="also write the Dark Machines challenge's CSV (Signal,Model,Chan,AUC,1e-2,1e-3,1e-4; "
                        "nan where the background does not resolve the FPR)")
    p.add_argument("--dm-channel", default="chan1", help="the Chan column of --dm-csv (default chan1)")
    p.add_argument("--plots", type=Path, default=None,
                   help="folder for ROC and score-distribution PNGs (default: no plots)")
    add_on_error(p)
    add_dask(p)
    p.set_defaults(func=cmd_evaluate)


# -- calibrate ------------------------------------------------------------------------
def cmd_calibrate(args: argparse.Namespace) -> int:
    from darktrigger.models.card import ModelCard
    from darktrigger.models.thresholds import (
        MIN_EXPECTED_BKG,
        smallest_resolved_fpr,
        thresholds_for_rates,
        warn_if_not_zero_bias,
    )

    rates = _parse_rates(args.rate_khz)
    warn_if_not_zero_bias(args.zero_bias)
    card = ModelCard.load(args.model)  # the model first: a bad one fails before any reading
    labelled = _scorers_of(args.model, args.backend, args.threads)
    if args.variant:
        labelled = [(label, v, s) for label, v, s in labelled if v == args.variant]
        if not labelled:
            from darktrigger.replay.registry import unknown_name

            raise ConfigError(f"{args.model}: " + unknown_name("variant", args.variant, card.variants, keep_order=True))
    steps = Steps("calibrate", 1 + len(labelled), enabled=not args.no_progress)
    steps(f"reading {args.zero_bias}")
    zb = _read(args.zero_bias, args.max_events, args.on_error)
    zb_w = _weights(zb, args.zero_bias)
    labels = {label for label, _, _ in labelled}
    # merge by (model, rate): replace only the rates asked for now, keep every other threshold
    asked = {(label, float(r)) for label in labels for r in rates}
    kept = [t for t in card.thresholds
            if (t.get("model"), float(t.get("rate_khz", -1))) not in asked]
    unresolved: list[str] = []
    print(f"{'model':<10}{'rate kHz':>10}{'FPR':>11}{'threshold':>14}{'± unc.':>11}{'n above':>10}"
          f"{'n_eff above':>13}  note")
    lowest = 0.0
    precomputed = _executor_scores(args.dask, args.chunk_events, {"": args.zero_bias},
                                   [(label, args.model, v) for label, v, _ in labelled],
                                   args.backend, args.threads, args.max_events, args.on_error, {"": len(zb)})
    for label, _, scorer in labelled:
        steps(f"scoring {len(zb):,} events with {label}")
        scores = precomputed[""][label] if precomputed is not None else scorer.score(zb)
        for t in thresholds_for_rates(scores, rates, input_rate_mhz=args.input_rate_mhz, weights=zb_w,
                                      warn=False):
            if t.resolved:
                kept.append({"model": label, "zero_bias": str(args.zero_bias), **t.to_dict()})
            else:  # never stored: the trigger menu would use it as if it were calibrated
                unresolved.append(f"{label} at {t.rate_khz:g} kHz")
                lowest = max(lowest, smallest_resolved_fpr(np.asarray(scores), zb_w) * args.input_rate_mhz * 1e3)
            note = "" if t.resolved else "NOT STORED: unresolved"
            print(f"{label:<10}{t.rate_khz:>10g}{t.fpr:>11.2e}{t.threshold:>14.6g}{t.uncertainty:>11.3g}"
                  f"{t.n_above:>10,}{t.n_eff_above:>13,.1f}  {note}")
    kept.sort(key=lambda t: (str(t.get("model")), float(t.get("rate_khz", 0))))
    card.thresholds = kept
    card.save(args.model)
    n_eff = "" if zb_w is None else f", n_eff {float(zb_w.sum()) ** 2 / float(zb_w @ zb_w):,.0f}"
    print(f"thresholds written to {Path(args.model) / 'card.json'} ({len(zb):,} zero-bias events{n_eff}, "
          f"input rate {args.input_rate_mhz:.4g} MHz; {len(kept)} threshold(s) in the card)")
    if unresolved:
        print(f"error: {len(unresolved)} threshold(s) not stored ({'; '.join(unresolved)}): "
              f"{args.zero_bias} has {len(zb):,} events{n_eff}, which resolve rates down to {lowest:.3g} kHz "
              f"at {args.input_rate_mhz:.4g} MHz (>= {MIN_EXPECTED_BKG:g} effective background events "
              f"above a threshold); give a larger --zero-bias sample or a higher --rate-khz",
              file=sys.stderr)
        return 1
    return 0


def add_calibrate_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "calibrate", formatter_class=formatter,
        help="anomaly thresholds for target trigger rates, written into the model card",
        description="For each target rate R (kHz) at input rate R_in (MHz), the threshold is the\n"
                    "zero-bias score quantile at FPR = R / R_in; its uncertainty comes from the\n"
                    "zero-bias sample size. The thresholds go into card.json, where the trigger\n"
                    "menu reads them: the rates asked for replace those of the same rate, every\n"
                    "other threshold in the card is kept. Weighted events (the weight column) give\n"
                    "the weighted quantile. A threshold the sample cannot resolve (fewer than 10\n"
                    "effective zero-bias events above it) is not stored, and the command exits 1\n"
                    "naming the smallest rate the sample resolves. A sample whose provenance is not\n"
                    "zero bias (lepton-filtered, one process) gets a one-line warning.",
        epilog="examples:\n"
               "  darktrigger calibrate --model models/vae --zero-bias sm_mix.h5 --rate-khz 1,5,10\n"
               "  darktrigger calibrate --model models/ae --zero-bias zb.h5 --rate-khz 0.5 --input-rate-mhz 40")
    p.add_argument("--model", type=Path, required=True, help="model directory")
    p.add_argument("--zero-bias", type=Path, required=True, help="background (zero-bias) events")
    p.add_argument("--rate-khz", required=True, help="target rates in kHz, comma separated")
    p.add_argument("--input-rate-mhz", type=float, default=DEFAULT_BX_RATE_MHZ,
                   help=f"crossing rate (default the colliding-bunch rate, {DEFAULT_BX_RATE_MHZ:.4g})")
    p.add_argument("--variant", default=None, help="only this variant, e.g. mu2 (default: every variant)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines (default: a numbered line as each step starts)")
    add_backend(p)
    p.add_argument("--threads", type=int, default=1, help="scoring threads (default 1)")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="at most this many zero-bias events (default all)")
    add_on_error(p)
    add_dask(p)
    p.set_defaults(func=cmd_calibrate)


def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``train``, ``evaluate`` and ``calibrate`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    add_train_parser(sub, formatter)
    add_evaluate_parser(sub, formatter)
    add_calibrate_parser(sub, formatter)
