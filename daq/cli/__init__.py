"""The ``darktrigger`` command line: one module per command family, each registering its
subcommands with ``add_parsers(sub, formatter)``. Each subcommand's ``--help`` teaches it
by example.

    $ darktrigger generate --generator toy --process sm_mix --events 100000 --seed 1 --out bkg.h5
    $ darktrigger inspect bkg.h5
    $ darktrigger replay --mix bkg.h5=0.999 --mix sig.h5=0.001 --rate-hz 50000 --events 200000
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from darktrigger.daq.cli.common import formatter
from darktrigger.replay.errors import DarkTriggerError

log = logging.getLogger("darktrigger")


#: Modules that add subcommands: each has ``add_parsers(sub, formatter)``. One line a
#: module, so that adding a command family touches nothing else here.
COMMAND_MODULES: tuple[str, ...] = (
    "darktrigger.daq.cli.replay",
    "darktrigger.daq.cli.models",
    "darktrigger.daq.cli.score",
    "darktrigger.daq.cli.menu",
    "darktrigger.daq.cli.pipeline",
    "darktrigger.daq.cli.hunt",
    "darktrigger.daq.cli.monitor",
    "darktrigger.daq.cli.firmware",
    "darktrigger.daq.cli.demo",
)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darktrigger", formatter_class=formatter,
        description="Emulate a collider's real-time anomaly-detection trigger, end to end.",
        epilog="start here:\n"
               "  darktrigger generate --generator toy --process sm_mix --events 100000 --out bkg.h5\n"
               "  darktrigger inspect bkg.h5\n"
               "  darktrigger replay bkg.h5 --rate-hz 50000\n"
               "Each subcommand has its own --help with examples.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parsers(sub, formatter)
    return parser


def run_shown(args: Sequence[str]) -> str:
    """Run one ``darktrigger`` command in-process, echoing it first as a shell line.

    For scripts that show what they run (``make demo``, ``bench.physics``). Returns the
    command line; a non-zero exit is fatal (SystemExit naming the command).
    """
    import shlex

    line = "darktrigger " + shlex.join(args)
    print(f"$ {line}", flush=True)
    code = main(list(args))
    if code:
        raise SystemExit(f"failed with exit code {code}: {line}")
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    # progress lines of long steps (training, firmware build, ...) show at the default verbosity
    logging.getLogger("darktrigger.progress").setLevel(logging.INFO)
    try:
        return int(args.func(args))
    except (DarkTriggerError, FileNotFoundError) as exc:
        print(f"darktrigger {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `darktrigger inspect f | head` is fine
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"darktrigger {args.command}: interrupted", file=sys.stderr)
        return 130

