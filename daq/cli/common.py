"""What the command modules share: the help formatter and common options.

    >>> import argparse
    >>> p = argparse.ArgumentParser(formatter_class=formatter)
    >>> add_on_error(p)
    >>> p.parse_args(["--on-error", "skip"]).on_error
    'skip'
    >>> [event_count(x) for x in ("100000", "1e5", "100k", "1M", "2.5k")]
    [100000, 100000, 100000, 1000000, 2500]
"""

from __future__ import annotations

import argparse
import decimal
from pathlib import Path
from typing import Any

_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}


def event_count(text: str) -> int:
    """An argparse type for a count of events: ``100000``, ``1e5``, ``100k``, ``1M``.

    Integer-valued floats only; anything else is an error that says what is accepted.

        >>> event_count("1.5")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a whole number of events (e.g. 100000, 1e5, 100k, 1M), got '1.5'
    """
    raw = str(text).strip()
    scale = _SUFFIXES.get(raw[-1:].lower(), 1) if raw else 1
    body = raw[:-1] if scale != 1 else raw
    try:  # decimal, so that 2.3k is 2300 exactly (2.3 * 1000 is 2299.9999999999995 in floats)
        value = decimal.Decimal(body) * scale
    except decimal.InvalidOperation:
        value = decimal.Decimal("NaN")
    if not value.is_finite() or value != value.to_integral_value() or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of events (e.g. 100000, 1e5, 100k, 1M), got {text!r}")
    return int(value)


def registry_name(registry: Any) -> Any:
    """An argparse type that accepts a name of ``registry`` and otherwise fails with its
    "did you mean" message (any case), e.g. ``--backend Torch`` → did you mean 'torch'?"""
    from darktrigger.replay.registry import unknown_name

    def check(text: str) -> str:
        if text in registry:
            return text
        raise argparse.ArgumentTypeError(unknown_name(registry.kind, text, registry.names()))

    check.__name__ = registry.kind  # argparse names the type in some messages
    return check


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

    p.add_argument("--backend", type=registry_name(BACKENDS), default=default, metavar="NAME",
                   help=f"scoring backend: {', '.join(BACKENDS.names())} (default {default}; "
                        "firmware takes a firmware project folder and scores with its RTL)")


def parse_signals(items: list[str]) -> dict[str, Path]:
    """``--signal NAME=FILE`` options as {NAME: FILE}; a name given twice is an error.

        >>> parse_signals(["ato4l=a.h5", "lq=b.h5"])
        {'ato4l': PosixPath('a.h5'), 'lq': PosixPath('b.h5')}
    """
    from darktrigger.replay.errors import ConfigError

    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--signal takes NAME=FILE (e.g. ato4l=ato4l.h5), got {item!r}")
        if name in out:
            raise ConfigError(f"--signal {name!r} is given twice ({out[name]} and {path})")
        out[name] = Path(path)
    return out


def add_dask(p: argparse.ArgumentParser) -> None:
    """``--dask`` and ``--chunk-events``, as every offline command that can run on Dask takes them."""
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the chunks on Dask: local:N (a local cluster of N worker processes) "
                        "or a running scheduler's address (tcp://host:8786); same results as "
                        "without (default: this process)")
    p.add_argument("--chunk-events", type=event_count, default=None,
                   help="rows of a native file per task (default 262144; other formats: one "
                        "task a file)")
