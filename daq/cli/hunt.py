"""``darktrigger cwola hunt``: the weakly supervised bump hunt in m_jj on the command line.

    $ darktrigger cwola hunt --events data.h5 --out hunt/
    $ darktrigger cwola hunt --events qcd.h5 --inject wprime.h5=150 --windows 3240-3780 --out hunt/
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from darktrigger.daq.cli.common import event_count
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import EventBatch

log = logging.getLogger(__name__)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what} takes numbers separated by commas, got {text!r}") from None


def _parse_inject(items: list[str]) -> list[tuple[Path, int]]:
    out = []
    for item in items:
        path, sep, n = item.rpartition("=")
        try:
            if not sep or not path:
                raise ValueError
            out.append((Path(path), int(n)))
        except ValueError:
            raise ConfigError(f"--inject takes FILE=N (the first N events of FILE), got {item!r}") from None
        if out[-1][1] < 0:
            raise ConfigError(f"--inject {item!r}: N must be >= 0")
    return out


def _read(path: Path, limit: int | None, keep: list[str], on_error: str) -> EventBatch:
    """Events of ``path`` (the first ``limit``) with only the ``keep`` analysis columns."""
    from darktrigger.replay.readers import open_events

    batches, total = [], 0
    for batch in open_events(path, on_error=on_error):
        if limit is not None and total + len(batch) > limit:
            batch = batch[: limit - total]
        # a missing column is reported by the hunt, which names the window
        batches.append(batch.without(*[c for c in batch.extra_names if c not in keep]))
        total += len(batch)
        if limit is not None and total >= limit:
            break
    if not batches:
        raise ConfigError(f"{path}: no events")
    names = set.intersection(*(set(b.extra_names) for b in batches))
    return EventBatch.concat([b.without(*[c for c in b.extra_names if c not in names]) for b in batches])


def cmd_hunt(args: argparse.Namespace) -> int:
    from darktrigger.models.cwola.hunt import HuntConfig, parse_windows, run_hunt
    from darktrigger.models.cwola.report import describe_look_elsewhere, format_table, write_report

    features = [f.strip() for f in args.features.split(",") if f.strip()]
    effs = _floats(args.efficiencies, "--efficiencies")
    fit_range = None
    if args.fit_range:
        lohi = _floats(args.fit_range, "--fit-range")
        if len(lohi) != 2:
            raise ConfigError(f"--fit-range takes LOW,HIGH in GeV, got {args.fit_range!r}")
        fit_range = (lohi[0], lohi[1])
    cfg = HuntConfig(mass_column=args.mass_column, features=features,
                     windows=parse_windows(args.windows), efficiencies=effs, folds=args.folds,
                     inner_folds=args.inner_folds, keep=args.keep, resolution=args.resolution,
                     fit_range=fit_range, min_sideband_events=args.min_sideband_events,
                     epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                     seed=args.seed, threads=args.threads, on_error=args.on_error,
                     null_toys=args.null_toys)
    cfg.check()
    keep = [args.mass_column, *features]
    parts = [_read(p, args.max_events, keep, args.on_error) for p in args.events]
    parts += [_read(p, n, keep, args.on_error) for p, n in _parse_inject(args.inject) if n > 0]
    names = set.intersection(*(set(b.extra_names) for b in parts))
    batch = EventBatch.concat([b.without(*[c for c in b.extra_names if c not in names]) for b in parts])
    t0 = time.monotonic()
    result = run_hunt(batch, cfg, progress=not args.no_progress)
    written = write_report(result, args.out, plots=not args.no_plots, export=not args.no_export)
    print(f"cwola hunt over {len(batch):,} events, {len(result.windows)} window(s), "
          f"fit range {result.fit_range[0]:.0f}–{result.fit_range[1]:.0f} GeV "
          f"({time.monotonic() - t0:.0f} s); local significance Z ± ΔZ (observed / predicted "
          f"in the signal region), and global significance (look-elsewhere effect: "
          f"{describe_look_elsewhere(result)}):")
    print(format_table(result))
    print(f"report: {written['json']}; table: {written['table']}"
          + (f"; plots: {args.out / 'spectra'}/, {written['significance_plot']}"
             if "significance_plot" in written else "")
          + (f"; model: {written['model']}" if "model" in written else ""))
    return 0


def add_hunt_parser(cwola_sub: Any, formatter: Any) -> None:
    p = cwola_sub.add_parser(
        "hunt", formatter_class=formatter,
        help="slide signal-region windows in m_jj, train CWoLa classifiers by k-fold, fit the "
             "selected spectra, report local and global significances",
        description="The CWoLa hunt (arXiv 1805.02664): for each signal-region window in m_jj with a\n"
                    "sideband on each side, train a classifier of features not correlated with\n"
                    "m_jj (signal region = 1, sidebands = 0) by k-fold, so that every event is\n"
                    "scored by a model that never saw it (nested folds pick each model's epoch and\n"
                    "the best of them); for each efficiency keep the most signal-like fraction, fit\n"
                    "the dijet function f(x) = p0 (1-x)^p1 / x^(p2 + p3 ln x) to the selected m_jj\n"
                    "spectrum outside the window, and compare the prediction inside with what is\n"
                    "there. Efficiency 1 (no cut, the plain bump hunt) is always reported.\n"
                    "Beside each local significance: the global one, the chance that background\n"
                    "alone gives so large a local excess anywhere in the hunt (all windows x\n"
                    "efficiencies), from null toys: the hunt's fits repeated on pseudo-data of the\n"
                    "background-only fit, with selections that know nothing of m_jj.\n\n"
                    "Writes OUT/hunt.json, OUT/table.md, OUT/spectra/window_NN.png,\n"
                    "OUT/significance.png and OUT/model/ (the best window's classifier, a\n"
                    "cwola_columns model directory).",
        epilog="examples:\n"
               "  darktrigger cwola hunt --events dijets.h5 --out hunt/\n"
               "  darktrigger cwola hunt --events qcd.h5 --inject wprime.h5=150 --folds 5 \\\n"
               "      --efficiencies 0.1,0.01,0.002 --seed 1 --out hunt-injected/\n"
               "  darktrigger cwola hunt --events qcd.h5 --windows 3240-3780,3780-4400 --fit-range 2600,6000 \\\n"
               "      --features mj1,mj2,tau21_j1,tau21_j2 --on-error skip --out hunt-two/\n"
               "With --on-error skip a window with too few sideband events, or a fit that does not\n"
               "converge, is reported in the table and JSON (naming the window) and the hunt goes on.")
    from darktrigger.models.cwola.config import HuntConfig

    d = HuntConfig()  # the defaults, shown in --help
    effs = ",".join(f"{e:g}" for e in d.efficiencies)
    p.add_argument("--events", nargs="+", type=Path, required=True, help="event files (any format darktrigger reads)")
    p.add_argument("--inject", action="append", default=[], metavar="FILE=N",
                   help="also take the first N events of FILE (a signal injected into the data); "
                        "repeatable (default none)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--mass-column", default=d.mass_column,
                   help=f"the column to hunt in (default {d.mass_column})")
    p.add_argument("--features", default=",".join(d.features),
                   help=f"classifier inputs, not correlated with the mass (default {','.join(d.features)})")
    p.add_argument("--windows", default=d.windows,
                   help="auto (sliding, widths from --resolution) or signal regions LOW-HIGH in GeV, "
                        f"comma separated (default {d.windows})")
    p.add_argument("--folds", type=int, default=d.folds, help=f"k of the k-fold (default {d.folds})")
    p.add_argument("--inner-folds", type=int, default=d.inner_folds,
                   help=f"models trained per test fold, each validated on another fold (default {d.inner_folds})")
    p.add_argument("--keep", type=int, default=d.keep,
                   help="average the best KEEP inner models by validation loss (default all)")
    p.add_argument("--efficiencies", default=effs, help=f"selection efficiencies (default {effs})")
    p.add_argument("--resolution", type=float, default=d.resolution,
                   help=f"relative m_jj resolution: bins are half of it, windows 3 times (default {d.resolution:g})")
    p.add_argument("--fit-range", default=None,
                   help="LOW,HIGH in GeV (default: from the spectrum's turn-on to its last ~20 events)")
    p.add_argument("--min-sideband-events", type=int, default=d.min_sideband_events,
                   help=f"fewest events a sideband (and signal region) may hold (default {d.min_sideband_events})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"events per optimiser step (default {d.batch_size})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"early stopping on the inner validation fold (default {d.patience})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seeds the folds and the networks (default {d.seed})")
    p.add_argument("--threads", type=int, default=d.threads, help=f"torch threads (default {d.threads})")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="at most this many events per --events file (e.g. 1e5, 100k; default all)")
    p.add_argument("--on-error", choices=("fail", "skip"), default=d.on_error,
                   help="fail: stop at the first bad window or fit with a message naming it (default); "
                        "skip: report it and go on (also passed to the readers)")
    p.add_argument("--null-toys", type=event_count, default=d.null_toys,
                   help="pseudo-experiments for the global significance; the largest global Z they "
                        "resolve is that of p = 1/(N+1) (0: the trials factor 1-(1-p)^looks, which "
                        f"overstates small samples' excesses; default {d.null_toys})")
    p.add_argument("--no-plots", action="store_true", help="no PNGs (default: plots written)")
    p.add_argument("--no-export", action="store_true",
                   help="do not save the best window's model (default: saved)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    p.set_defaults(func=cmd_hunt)


def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``cwola`` with its ``hunt`` subcommand (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    p = sub.add_parser(
        "cwola", formatter_class=formatter,
        help="CWoLa (weakly supervised) searches: `darktrigger cwola hunt --help`",
        description="Classification Without Labels: weakly supervised searches.",
        epilog="example:\n  darktrigger cwola hunt --events dijets.h5 --out hunt/")
    cwola_sub = p.add_subparsers(dest="cwola_command", metavar="SUBCOMMAND", required=True)
    add_hunt_parser(cwola_sub, formatter)
