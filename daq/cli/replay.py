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
def cmd_generate(args: argparse.Namespace) -> int:
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.storage import NativeWriter

    gen = GENERATORS.get(args.generator)()
    gen.check_process(args.process)
    if args.events <= 0:
        raise ConfigError(f"--events must be positive, got {args.events}")
    prov = gen.provenance(args.process, args.seed) | {"n_events_requested": args.events}
    with NativeWriter(args.out, provenance=prov, compression=args.compression) as writer:
        for batch in gen.generate(args.process, args.events, args.seed,
                                  batch_size=args.batch_size, progress=not args.no_progress):
            writer.write(batch)
        n = writer.n_events
    print(f"wrote {n:,} {args.generator} {args.process} events (seed {args.seed}) to {args.out}")
    return 0


def _generate_parser(sub: argparse._SubParsersAction, formatter: Any) -> None:
    p = sub.add_parser(
        "generate", formatter_class=formatter,
        help="generate events (Pythia 8 + detector model, or the fast toy) into a native file",
        description="Generate collider events of one process into darktrigger's native HDF5.\n\n"
                    "pythia: Pythia 8 at 13.6 TeV, FastJet anti-kT R=0.4 jets and a parametrised\n"
                    "        L1 detector (slow: for physics samples).\n"
                    "toy:    a fast parametric generator of the same processes, for large replays\n"
                    "        and tests; not physics-accurate.\n\n"
                    f"processes: {', '.join(ALL_PROCESSES)}",
        epilog="examples:\n"
               "  darktrigger generate --generator toy --process sm_mix --events 1000000 --seed 1 --out bkg.h5\n"
               "  darktrigger generate --generator pythia --process ato4l --events 10000 --seed 7 --out ato4l.h5\n"
               "The same generator, process, event count and seed give the same file content.")
    p.add_argument("--generator", required=True, help="pythia or toy")
    p.add_argument("--process", required=True, help="process name (see above)")
    p.add_argument("--events", type=event_count, required=True, help="number of events (e.g. 100000, 1e5, 100k, 1M)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", type=Path, required=True, help="output file (native HDF5)")
    p.add_argument("--batch-size", type=int, default=10_000, help="events per written batch")
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
def _parse_mix(items: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        path, sep, frac = item.rpartition("=")
        if not sep or not path:
            raise ConfigError(f"--mix takes FILE=FRACTION (e.g. sig.h5=1e-4), got {item!r}")
        try:
            out[path] = float(frac)
        except ValueError:
            raise ConfigError(f"--mix {item!r}: the fraction {frac!r} is not a number") from None
    return out


def cmd_replay(args: argparse.Namespace) -> int:
    from darktrigger.replay.storage import NativeWriter
    from darktrigger.replay.stream import Replay

    if bool(args.files) == bool(args.mix):
        raise ConfigError("give input files, or --mix FILE=FRACTION ... (not both)")
    inputs: dict[str | Path, float] | list[Path] = {Path(k): v for k, v in _parse_mix(args.mix).items()} if args.mix else list(args.files)
    replay = Replay(inputs, batch_size=args.batch_size, rate_hz=args.rate_hz, loop=args.loop,
                    max_events=args.events, seed=args.seed, run=args.run,
                    reader_options={"on_error": args.on_error})
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
               "  darktrigger replay --mix bkg.h5=0.9999 --mix ato4l.h5=0.0001 --loop --events 2000000 --out stream.h5")
    p.add_argument("files", nargs="*", type=Path, help="input files (any format darktrigger reads)")
    p.add_argument("--mix", action="append", default=[], metavar="FILE=FRACTION",
                   help="mixture input, repeat for each file; fractions are normalised")
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
