"""What the command modules share: the help formatter and common options.

    >>> import argparse
    >>> p = argparse.ArgumentParser(formatter_class=formatter)
    >>> add_on_error(p)
    >>> p.parse_args(["--on-error", "skip"]).on_error
    'skip'
"""

from __future__ import annotations

import argparse


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help kept as written (examples line by line), options aligned at column 32."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_on_error(p: argparse.ArgumentParser) -> None:
    """``--on-error fail|skip``, as every command that reads event files takes it."""
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="fail: stop at the first bad line/row with an error naming it (default); "
                        "skip: read the rest and report how many were skipped and where")


def add_backend(p: argparse.ArgumentParser, default: str = "onnxruntime") -> None:
    """``--backend NAME``: any registered scoring backend (a firmware project folder for ``firmware``)."""
    from darktrigger.models.backends import BACKENDS

    p.add_argument("--backend", choices=BACKENDS.names(), default=default,
                   help=f"scoring backend: {', '.join(BACKENDS.names())} (default {default}; "
                        "firmware takes a firmware project folder and scores with its RTL)")
