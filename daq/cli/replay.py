"""``darktrigger generate``, ``inspect``, ``replay`` and ``formats``: the replay layer on the command line.

    $ darktrigger generate --generator toy --process sm_mix --events 100000 --seed 1 --out bkg.h5
    $ darktrigger inspect bkg.h5
    $ darktrigger replay --mix bkg.h5=0.999 --mix sig.h5=0.001 --rate-hz 50000 --events 200000
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from darktrigger.daq.cli.common import add_on_error, event_count
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import ALL_PROCESSES, LABEL_NAMES, label_counts

# -- generate -------------------------------------------------------------------------
#: events per part when a generator's events are made in independent parts (``--part-events``)
DEFAULT_PART_EVENTS = 10_000


def part_plan(n_events: int, seed: int, part_events: int) -> list[tuple[int, int, int]]:
    """(first event, events, seed) of each part: part 0 keeps ``seed``, part k > 0 a seed derived from (seed, k).

    The plan depends on ``n_events``, ``seed`` and ``part_events`` only, never on ``--jobs``.

        >>> [(a, n) for a, n, _ in part_plan(25, 7, 10)], part_plan(25, 7, 10)[0][2]
        ([(0, 10), (10, 10), (20, 5)], 7)
        >>> part_plan(5, 7, 10) == [(0, 5, 7)]
        True
    """
    import numpy as np

    plan = []
    for k, first in enumerate(range(0, n_events, part_events)):
        part_seed = seed if k == 0 else int(np.random.SeedSequence([seed, 31, k]).generate_state(1)[0] % 900_000_000) + 1
        plan.append((first, min(part_events, n_events - first), part_seed))
    return plan


def _generate_part(task: tuple[str, dict[str, Any], str, int, int, int]) -> tuple[dict[str, Any], list[Any]]:
    """One part in a worker process: its provenance and its batches."""
    from darktrigger.replay.generators import GENERATORS

    generator, options, process, n, seed, batch_size = task
    gen = GENERATORS.get(generator)(**options)
    batches = list(gen.generate(process, n, seed, batch_size=batch_size))
    return gen.provenance(process, seed), batches


def _generator_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.luminosity is not None:
        opts["luminosity"] = args.luminosity
    if args.pileup is not None:
        opts["pileup"] = args.pileup
    if args.recipe is not None:
        if args.generator != "pythia":
            raise ConfigError(f"--recipe is a Pythia recipe; it means nothing for --generator {args.generator}")
        opts["recipe"] = args.recipe
    if args.library_events is not None:
        if args.generator != "pythia" or (args.process != "zero_bias" and args.recipe is None):
            raise ConfigError("--library-events is the size of the minimum-bias library of Pythia zero_bias "
                              "and --recipe adc2021; it means nothing for "
                              f"--generator {args.generator} --process {args.process}")
        opts["library_events"] = args.library_events
    if args.mix_fractions is not None:
        if args.recipe is None or args.process != "sm_mix":
            raise ConfigError("--mix-fractions sets the event shares of --recipe adc2021's sm_mix cocktail; "
                              f"it means nothing for --process {args.process}"
                              + ("" if args.recipe else " without --recipe"))
        opts["mix_fractions"] = args.mix_fractions
    return opts


def mix_fractions(text: str) -> dict[str, float]:
    """``qcd=0.02,wjets=0.88`` → ``{"qcd": 0.02, "wjets": 0.88}`` (argparse type).

        >>> mix_fractions("qcd=0.02, wjets=0.9")
        {'qcd': 0.02, 'wjets': 0.9}
    """
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"expected process=fraction pairs such as qcd=0.02,wjets=0.88, got {item!r}")
    if not out:
        raise argparse.ArgumentTypeError("expected process=fraction pairs such as qcd=0.02,wjets=0.88")
    return out


def cmd_generate(args: argparse.Namespace) -> int:
    import logging
    import sys
    import time

    from tqdm import tqdm

    from darktrigger.replay.events import EventBatch
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.storage import NativeWriter

    started = time.monotonic()
    options = _generator_options(args)
    gcls = GENERATORS.get(args.generator)
    gen = gcls(**options)
    gen.check_process(args.process)
    if args.events <= 0:
        raise ConfigError(f"--events must be positive, got {args.events}")
    if args.jobs < 1 or args.part_events < 1:
        raise ConfigError(f"--jobs and --part-events must be >= 1, got {args.jobs} and {args.part_events}")
    log = logging.getLogger("darktrigger.generate")
    parallel = bool(getattr(gcls, "parallel_parts", False))
    plan = part_plan(args.events, args.seed, args.part_events) if parallel else [(0, args.events, args.seed)]
    if args.jobs > 1 and not parallel:
        log.warning("generator %r makes its events in one process (fast enough); --jobs %d ignored",
                    args.generator, args.jobs)
    prepare = getattr(gen, "prepare", None)
    if prepare is not None:  # shared inputs (Pythia's minimum-bias library) made once, before the workers
        prepare(args.process)
    show_bar = not args.no_progress and sys.stderr.isatty()
    writer: NativeWriter | None = None
    started = time.perf_counter()
    done = 0

    def write(part: int, prov: dict[str, Any], batches: Any, first: int, n_part: int) -> None:
        nonlocal writer, done
        for batch in batches:
            if len(plan) > 1:  # event numbers over the whole file; each part's weights scaled to its share
                batch = EventBatch({**batch.columns, "event": batch["event"] + first,
                                    "weight": (batch["weight"] * (n_part / args.events)).astype(batch["weight"].dtype)})
            if writer is None:
                meta = prov | {"n_events_requested": args.events, "parts": len(plan),
                               "part_events": args.part_events if len(plan) > 1 else args.events,
                               "options": options}
                writer = NativeWriter(args.out, provenance=meta, compression=args.compression)
            writer.write(batch)
            bar.update(len(batch))
            done += len(batch)
        if writer is not None:
            writer.flush()  # a stopped run leaves every finished part readable
        rate = done / max(time.perf_counter() - started, 1e-9)
        if not show_bar and not args.no_progress:
            print(f"{time.strftime('%H:%M:%S')} part {part + 1}/{len(plan)} done: {done:,} events written, "
                  f"{rate:.1f} events/s, {(args.events - done) / max(rate, 1e-9):.0f} s to go",
                  file=sys.stderr, flush=True)

    try:
        with tqdm(total=args.events, desc=f"{args.generator} {args.process}", unit="ev",
                  disable=not show_bar) as bar:
            if args.jobs > 1 and len(plan) > 1:
                import multiprocessing

                tasks = [(args.generator, options, args.process, n, s, args.batch_size) for _, n, s in plan]
                with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(plan))) as pool:
                    for k, (prov, batches) in enumerate(pool.imap(_generate_part, tasks)):
                        write(k, prov, batches, plan[k][0], plan[k][1])
            else:
                for k, (first, n, seed) in enumerate(plan):
                    part_gen = gcls(**options)
                    stream = part_gen.generate(args.process, n, seed, batch_size=args.batch_size)
                    head = next(stream)  # provenance is complete once the first batch exists (σ known)
                    write(k, part_gen.provenance(args.process, seed), _chain(head, stream), first, n)
    finally:
        if writer is not None:
            writer.close()
    n_written = writer.n_events if writer is not None else 0
    took = time.monotonic() - started
    print(f"wrote {n_written:,} {args.generator} {args.process} events (seed {args.seed}) to {args.out} "
          f"in {took:.1f} s ({n_written / max(took, 1e-9):,.0f} events/s)")
    return 0


def _chain(head: Any, rest: Any) -> Any:
    yield head
    yield from rest


def _generate_parser(sub: argparse._SubParsersAction, formatter: Any) -> None:
    p = sub.add_parser(
        "generate", formatter_class=formatter,
        help="generate events (Pythia 8 + detector model, or the fast toy) into a native file",
        description="Generate collider events of one process into darktrigger's native HDF5.\n\n"
                    "pythia: Pythia 8 at 13.6 TeV, FastJet anti-kT R=0.4 jets and a parametrised\n"
                    "        L1 detector (slow: for physics samples).\n"
                    "toy:    a fast parametric generator of the same processes, for large replays\n"
                    "        and tests; not physics-accurate.\n\n"
                    "zero_bias: one colliding bunch crossing per event with pile-up (--luminosity,\n"
                    "        --pileup), weights in Hz that sum to the crossing rate (28.6 MHz).\n\n"
                    "Pythia events are made in parts of --part-events (part 0 with --seed, part k\n"
                    "with a seed derived from (seed, k)), by --jobs worker processes; the file\n"
                    "depends on the events, seed and part size, not on --jobs. Each part's weights\n"
                    "are scaled by its share of the events, so the file's weights sum as one\n"
                    "part's would (σ in pb, or the crossing rate in Hz); every finished part is\n"
                    "committed, so a stopped run leaves a usable file.\n\n"
                    f"processes: {', '.join(ALL_PROCESSES)}",
        epilog="examples:\n"
               "  darktrigger generate --generator toy --process sm_mix --events 1000000 --seed 1 --out bkg.h5\n"
               "  darktrigger generate --generator pythia --process ato4l --events 10000 --seed 7 --out ato4l.h5\n"
               "  darktrigger generate --generator pythia --process zero_bias --events 100k --jobs 2 --out zb.h5\n"
               "  darktrigger generate --generator pythia --recipe adc2021 --process sm_mix --events 20k --jobs 2 --out adc_sm.h5\n"
               "The same generator, process, event count, seed and part size give the same file content.")
    p.add_argument("--generator", required=True, help="pythia or toy")
    p.add_argument("--process", required=True, help="process name (see above)")
    p.add_argument("--events", type=event_count, required=True, help="number of events (e.g. 100000, 1e5, 100k, 1M)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", type=Path, required=True, help="output file (native HDF5)")
    p.add_argument("--batch-size", type=int, default=10_000, help="events per written batch")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (Pythia; default 1)")
    p.add_argument("--part-events", type=event_count, default=DEFAULT_PART_EVENTS,
                   help=f"events per independently seeded part (Pythia; default {DEFAULT_PART_EVENTS:,})")
    p.add_argument("--luminosity", type=float, default=None,
                   help="zero_bias: instantaneous luminosity in cm^-2 s^-1 (default 2.0e34)")
    p.add_argument("--pileup", type=float, default=None,
                   help="zero_bias: mean pile-up μ (default: from the luminosity, 55.9 at 2.0e34)")
    p.add_argument("--library-events", type=event_count, default=None,
                   help="Pythia zero_bias: events in the minimum-bias library, made once and cached "
                        "in ~/.cache/darktrigger/minbias (default 100k, ~4 min; fewer for a quick look)")
    p.add_argument("--recipe", default=None, choices=("adc2021",),
                   help="pythia: a sample recipe. adc2021: the ADC2021 data paper's samples: --process "
                        "sm_mix is its SM cocktail (W 59.2 %%, QCD 33.8 %%, Z 6.7 %%, tt 0.3 %% of the events), "
                        "the signals ato4l, lq_btau, h_tautau, hpm_taunu; all through the single-lepton "
                        "filter on the L1 objects, with pile-up mu = 20 (--pileup overrides); slow: "
                        "~0.2 core-seconds an sm_mix event, 0.5 a QCD event (QCD passes only through fake electrons)")
    p.add_argument("--mix-fractions", type=mix_fractions, default=None, metavar="P=F,...",
                   help="--recipe adc2021 --process sm_mix: the cocktail's event shares, e.g. "
                        "qcd=0.02,wjets=0.88,zjets=0.099,ttbar=0.001 (normalised; default the paper's). "
                        "Each process's weights still sum to its filtered cross section, so a smaller QCD "
                        "share costs statistics, not physics: QCD is 95 %% of the default's cost")
    p.add_argument("--compression", default="lz4", choices=("lz4", "zstd", "gzip", "lzf", "none"),
                   help="HDF5 compression (default lz4: Blosc-LZ4, the fastest to read)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


# -- inspect --------------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from darktrigger.replay.readers import open_events
    from darktrigger.replay.summary import format_summary, summarize

    reader = open_events(args.file, format=args.format, on_error=args.on_error)
    info = summarize(reader)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(format_summary(info))
    return 0


def _inspect_parser(sub: argparse._SubParsersAction, formatter: Any) -> None:
    from darktrigger.replay.readers import READERS

    p = sub.add_parser(
        "inspect", formatter_class=formatter,
        help="what a file holds: format, events, schema, slot occupancy, pT summary",
        description="Detect a file's format by its content and summarise it, streaming (any size).\n\n"
                    f"formats: {', '.join(f'{n} ({c.description})' for n, c in READERS.items())}",
        epilog="examples:\n"
               "  darktrigger inspect background_for_training.h5\n"
               "  darktrigger inspect chan1.csv --on-error skip --json > chan1.json\n"
               "The JSON has keys file, format, events, schema, processes, occupancy, pt, columns, skipped.")
    p.add_argument("file", type=Path)
    p.add_argument("--format", default=None, help="force a reader instead of detecting it")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_on_error(p)
    p.set_defaults(func=cmd_inspect)


# -- replay ---------------------------------------------------------------------------
def _parse_mix(items: Sequence[str]) -> dict[str, float | str]:
    from darktrigger.replay.stream import BACKGROUND

    out: dict[str, float | str] = {}
    for item in items:
        path, sep, frac = item.rpartition("=")
        if not sep or not path:
            raise ConfigError(f"--mix takes FILE=FRACTION or FILE=background (e.g. sig.h5=1e-4), got {item!r}")
        if frac == BACKGROUND:
            out[path] = BACKGROUND
            continue
        try:
            out[path] = float(frac)
        except ValueError:
            raise ConfigError(f"--mix {item!r}: the fraction {frac!r} is not a number (or 'background')") from None
    return out


def _parse_inject(items: Sequence[str]) -> dict[str, Any]:
    """``FILE=RATE_HZ[@FRACTION]`` → {FILE: Inject(rate_hz, fraction)}."""
    from darktrigger.replay.stream import DEFAULT_INJECTION_FRACTION, Inject

    out: dict[str, Any] = {}
    for item in items:
        path, sep, spec = item.rpartition("=")
        rate, _, frac = spec.partition("@")
        if not sep or not path:
            raise ConfigError(f"--inject takes FILE=RATE_HZ[@FRACTION] (e.g. ato4l.h5=20@0.001), got {item!r}")
        try:
            out[path] = Inject(float(rate), float(frac) if frac else DEFAULT_INJECTION_FRACTION)
        except ValueError:
            raise ConfigError(f"--inject {item!r}: expected numbers, RATE_HZ[@FRACTION]") from None
    return out


def cmd_replay(args: argparse.Namespace) -> int:
    from darktrigger.replay.storage import NativeWriter
    from darktrigger.replay.stream import Replay

    mixed = bool(args.mix or args.inject)
    if bool(args.files) == mixed:
        raise ConfigError("give input files, or --mix FILE=FRACTION / --inject FILE=RATE_HZ ... (not both)")
    inputs: dict[str | Path, Any] | list[Path] = (
        {Path(k): v for k, v in {**_parse_mix(args.mix), **_parse_inject(args.inject)}.items()}
        if mixed else list(args.files))
    crossing = args.crossing_rate_mhz * 1e6 if args.crossing_rate_mhz else None
    replay = Replay(inputs, batch_size=args.batch_size, rate_hz=args.rate_hz, loop=args.loop,
                    max_events=args.events, seed=args.seed, run=args.run,
                    reader_options={"on_error": args.on_error}, crossing_rate_hz=crossing)
    truth: Counter[int] = Counter()
    writer = NativeWriter(args.out, provenance={"generator": "replay", "inputs": str(inputs)}) if args.out else None
    try:
        for batch in replay:
            truth.update(label_counts(batch["truth"]))
            if writer:
                writer.write(batch)
    finally:
        if writer:
            writer.close()
    st = replay.stats
    target = f"{args.rate_hz:,.0f} Hz" if args.rate_hz else "as fast as possible"
    print(f"replayed {st.events:,} events in {st.batches:,} batches, {st.seconds:.2f} s: "
          f"{st.rate_hz:,.0f} events/s (target {target})")
    for path, n in (st.per_input or {}).items():
        print(f"  from {path}: {n:,}")
    print("  processes: " + ", ".join(f"{LABEL_NAMES.get(k, k)} {v:,}" for k, v in sorted(truth.items())))
    skipped = sum(r.count for r in replay.skipped)
    if skipped:
        print(f"  skipped {skipped:,} bad event(s): " + "; ".join(r.summary() for r in replay.skipped if r.count))
    if args.out:
        print(f"  written to {args.out}")
    return 0


def _replay_parser(sub: argparse._SubParsersAction, formatter: Any) -> None:
    p = sub.add_parser(
        "replay", formatter_class=formatter,
        help="stream events from files or a mixture, paced to a rate, stamped with run/lumi/event/bx",
        description="Replay events in batches: files one after the other, or a mixture with\n"
                    "fractions (background with a signal injected at 1e-4, say), paced to a rate\n"
                    "or as fast as possible. Every event is stamped with a fresh run/lumi/event/bx.",
        epilog="examples:\n"
               "  darktrigger replay bkg.h5 --rate-hz 100000 --events 500000\n"
               "  darktrigger replay --mix bkg.h5=0.9999 --mix ato4l.h5=0.0001 --loop --events 2000000 --out stream.h5\n"
               "  darktrigger replay --mix zb.h5=background --inject ato4l.h5=20@0.001 --loop --events 2000000 --out stream.h5\n"
               "    (a signal at its rate sigma x L = 20 Hz, drawn at 1e-3 and weighted to 20 Hz of the 28.61 MHz)")
    p.add_argument("files", nargs="*", type=Path, help="input files (any format darktrigger reads)")
    p.add_argument("--mix", action="append", default=[], metavar="FILE=FRACTION",
                   help="mixture input, repeat for each file; fractions are normalised; FILE=background "
                        "fills what the injected signals leave")
    p.add_argument("--inject", action="append", default=[], metavar="FILE=RATE_HZ[@FRACTION]",
                   help="a signal at its physical rate sigma x L in Hz, drawn as FRACTION of the events "
                        "(default 0.001, for statistics) and weighted so that rates from the weights give it RATE_HZ")
    p.add_argument("--crossing-rate-mhz", type=float, default=None,
                   help="the crossing rate the injected weights are made for (default 28.61 MHz: 2544 colliding bunches)")
    p.add_argument("--rate-hz", type=float, default=None, help="target rate (default: as fast as possible)")
    p.add_argument("--batch-size", type=int, default=4096, help="events per batch (default 4096)")
    p.add_argument("--loop", action="store_true", help="start a file again when it ends")
    p.add_argument("--events", type=event_count, default=None, help="stop after this many events (e.g. 1e5, 100k)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mixture sampling")
    p.add_argument("--run", type=int, default=1, help="run number to stamp")
    p.add_argument("--out", type=Path, default=None, help="also write the replayed stream to a native file")
    add_on_error(p)
    p.set_defaults(func=cmd_replay)


# -- formats --------------------------------------------------------------------------
def cmd_formats(args: argparse.Namespace) -> int:
    from darktrigger.daq.trigger.seeds import SEEDS
    from darktrigger.models import BACKENDS, SCORERS
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.readers import READERS

    def first_sentence(doc: str | None) -> str:
        text = " ".join((doc or "").strip().split("\n\n")[0].split()).replace("``", "")
        return re.split(r"(?<=[a-z0-9)])\. (?=[A-Z])", text)[0].rstrip(".")

    print("readers (chosen by file content):")
    for name, cls in READERS.items():
        print(f"  {name:<14}{cls.description}")
    print("generators:")
    for name, gcls in GENERATORS.items():
        print(f"  {name:<14}{gcls.description}")
    print(f"processes: {', '.join(ALL_PROCESSES)}")
    print("scorers (higher score = more anomalous):")
    for name, scls in SCORERS.items():
        print(f"  {name:<14}{first_sentence(scls.__doc__)}")
    print("scoring backends (--backend, a menu model's backend:):")
    for name in BACKENDS.names():
        print(f"  {name:<14}{BACKENDS.get(name).description}")
    print("trigger seed types (a menu seed's type:):")
    for name, seed in SEEDS.items():
        print(f"  {name:<14}{first_sentence(seed.__doc__)}")
    return 0


def _formats_parser(sub: argparse._SubParsersAction, formatter: Any) -> None:
    p = sub.add_parser("formats", formatter_class=formatter,
                       help="list the readers, generators, processes, scorers, backends and seed types",
                       description="List every registered reader, generator, scorer, scoring backend "
                                   "and trigger seed type.",
                       epilog="example:\n  darktrigger formats")
    p.set_defaults(func=cmd_formats)




def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``generate``, ``inspect``, ``replay`` and ``formats`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    for add in (_generate_parser, _inspect_parser, _replay_parser, _formats_parser):
        add(sub, formatter)
