"""``darktrigger score``: write event files out again with each model's score as a column.

    $ darktrigger score --model models/vae --events zb.h5 --out zb_scored.h5
    $ darktrigger score --model ae=models/ae --model models/axo --events a.h5 b.h5 --out s.h5 --dask local:2

The output is a native file: the events of the inputs in order, with a ``score/<name>``
column per model (``name``: as given in ``NAME=DIR``, else the directory's name), which
``menu rates``, ``menu calibrate`` and the pipeline use instead of scoring again. The work is
split into chunks (:mod:`darktrigger.daq.offline`), in this process or on Dask, with the same
bits either way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from darktrigger.daq.cli.common import add_dask, add_on_error, event_count
from darktrigger.replay.errors import ConfigError


def parse_models(specs: list[str], backend: str, threads: int) -> list[Any]:
    """``[NAME=]DIR`` → :class:`~darktrigger.daq.offline.ModelRef`; names must be unique.

        >>> [(m.name, m.path) for m in parse_models(["models/vae", "a=models/ae"], "onnxruntime", 1)]
        [('vae', 'models/vae'), ('a', 'models/ae')]
    """
    from darktrigger.daq.offline import ModelRef

    refs: list[ModelRef] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not name or not path:
            raise ConfigError(f"--model {spec!r}: expected DIR or NAME=DIR")
        if any(r.name == name for r in refs):
            raise ConfigError(f"--model {spec!r}: a second model named {name!r}; name them, e.g. "
                              f"--model {name}2={path}")
        refs.append(ModelRef(name, path, backend, None, threads))
    return refs


def cmd_score(args: argparse.Namespace) -> int:
    from darktrigger.daq.offline import (
        DEFAULT_CHUNK_EVENTS,
        close_quietly,
        make_executor,
        score_files,
    )
    from darktrigger.models.card import read_card

    models = parse_models(args.model, args.backend, args.threads)
    for m in models:  # every input checked before any output is touched
        read_card(Path(m.path))
    for path in args.events:
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
    if args.out.exists() and not args.force:
        raise ConfigError(f"{args.out} exists; pass --force to replace it")
    if any(p.resolve() == args.out.resolve() for p in args.events):
        raise ConfigError(f"{args.out}: the output cannot be one of the inputs")
    executor = make_executor(args.dask)
    t0 = time.monotonic()
    try:
        n = score_files(args.events, models, args.out, executor=executor,
                        chunk_events=args.chunk_events or DEFAULT_CHUNK_EVENTS, chunk_size=args.chunk_size,
                        on_error=args.on_error, max_events=args.max_events, progress=not args.no_progress)
    finally:
        close_quietly(executor)
    dt = time.monotonic() - t0
    columns = ", ".join(f"score/{m.name}" for m in models)
    print(f"scored {n:,} events with {len(models)} model(s) ({columns}) in {dt:.1f} s "
          f"({n / dt / 1e6:.2f} M events/s, {executor.name}); written to {args.out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``score`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    p = sub.add_parser(
        "score", formatter_class=formatter,
        help="write event files again with a score/<model> column per model (optionally on Dask)",
        description="Score every event of the input files with each model and write them, in\n"
                    "order, to a native file with a score/<name> column per model. The files are\n"
                    "split into chunks (ranges of a native file's rows; another format: one chunk a\n"
                    "file), scored in this process or on Dask (--dask local:N starts N worker\n"
                    "processes; --dask ADDRESS uses a running scheduler), with the same scores\n"
                    "either way. menu rates and menu calibrate read the score columns instead of\n"
                    "scoring again.",
        epilog="examples:\n"
               "  darktrigger score --model models/vae --events zb.h5 --out zb_scored.h5\n"
               "  darktrigger score --model ae=models/ae --model models/axo --events a.h5 b.h5 --out s.h5\n"
               "  darktrigger score --model models/vae --events zb_*.h5 --out s.h5 --dask local:2")
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]DIR",
                   help="a model directory, its column named NAME (default: the directory's name); repeat")
    p.add_argument("--events", type=Path, nargs="+", required=True, help="event files (any format)")
    p.add_argument("--out", type=Path, required=True, help="native file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--backend", default="onnxruntime",
                   help="scoring backend: onnxruntime, torch, firmware, ... (default onnxruntime)")
    p.add_argument("--threads", type=int, default=1, help="threads per model (default 1)")
    p.add_argument("--max-events", type=event_count, default=None,
                   help="score at most this many events (e.g. 1e6, 1M; default all)")
    p.add_argument("--chunk-size", type=int, default=65536, help="events per batch read (default 65536)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    add_dask(p)
    add_on_error(p)
    p.set_defaults(func=cmd_score)
