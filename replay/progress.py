"""Progress of long work, one way everywhere: a tqdm bar when stderr is a terminal, otherwise
log lines on the ``darktrigger.progress`` logger (at most one every ``every_s`` seconds —
10, or ``$DARKTRIGGER_PROGRESS_S`` — and one at the end), so that a job writing to a file
or a pipe still says how far it is. Training, the firmware build, the CWoLa hunt and the
offline (Dask) jobs use it. A job of a few long steps (read, score, write) logs a numbered
line as each starts instead (:class:`Steps`).

    >>> import io, logging
    >>> stream = io.StringIO()
    >>> handler = logging.StreamHandler(stream)
    >>> PROGRESS_LOG.addHandler(handler)
    >>> with Progress("score", total=4, unit="chunk", every_s=0.0, terminal=False) as bar:
    ...     bar.update(2)
    ...     bar.describe("", "1.2 M events/s")
    ...     bar.update(2)
    >>> PROGRESS_LOG.removeHandler(handler)
    >>> print(stream.getvalue(), end="")
    score: 2/4 chunk (50 %, 0 s, ~0 s to go)
    score: 4/4 chunk (100 %, 0 s), 1.2 M events/s
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any

from darktrigger.replay.errors import ConfigError

PROGRESS_LOG = logging.getLogger("darktrigger.progress")
PROGRESS_LOG.setLevel(logging.INFO)
PROGRESS_ENV = "DARKTRIGGER_PROGRESS_S"  #: seconds between progress log lines, if set


def progress_every_s() -> float:
    """Seconds between progress log lines: ``$DARKTRIGGER_PROGRESS_S``, or 10."""
    text = os.environ.get(PROGRESS_ENV, "10")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"environment variable {PROGRESS_ENV}: expected seconds >= 0 between "
                          f"progress lines, got {text!r}")
    return value



class Progress:
    """Progress of a long loop: a tqdm bar on a terminal (``terminal=None``: stderr is one),
    otherwise log lines on :data:`PROGRESS_LOG`, one at most every ``every_s`` seconds
    (None: :func:`progress_every_s`) and one at the end; nothing when ``enabled`` is False. ``describe`` sets the stage
    (``epoch 3/30``) and what follows it (``loss 0.51``); ``update`` counts done units."""

    def __init__(self, name: str, total: int, unit: str = "batch", *, enabled: bool = True,
                 every_s: float | None = None, terminal: bool | None = None) -> None:
        self.name, self.total, self.unit = name, total, unit
        self.every_s = progress_every_s() if every_s is None and enabled else (every_s or 0.0)
        self.enabled = enabled
        self.done, self.stage, self.note = 0, "", ""
        self.t0 = self.last = time.monotonic()
        self.logged_at = -1
        self.bar: Any = None
        if enabled and (sys.stderr.isatty() if terminal is None else terminal):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit=unit, leave=False)

    def describe(self, stage: str, note: str = "") -> None:
        self.stage, self.note = stage, note
        if self.bar is not None:
            self.bar.set_description(f"{self.name} {stage}" if stage else self.name, refresh=False)
            self.bar.set_postfix_str(note)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last >= self.every_s:
            self._log()

    def _log(self) -> None:
        now = time.monotonic()
        elapsed = now - self.t0
        frac = self.done / self.total if self.total else 1.0
        left = f", ~{elapsed * (1 - frac) / frac:.0f} s to go" if 0 < frac < 1 else ""
        PROGRESS_LOG.info("%s: %s%s/%s %s (%.0f %%, %.0f s%s)%s", self.name,
                          f"{self.stage}: " if self.stage else "", f"{self.done:,}", f"{self.total:,}",
                          self.unit, 100 * frac, elapsed, left, f", {self.note}" if self.note else "")
        self.last, self.logged_at = now, self.done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.logged_at != self.done:
            self._log()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Steps:
    """Progress of a job of a few long steps: a log line on :data:`PROGRESS_LOG` as each step
    starts, numbered, with the time since the start; silent when not ``enabled``. The total
    grows if a step is added on the way (``total`` is what was planned).

        >>> import io, logging
        >>> stream = io.StringIO()
        >>> handler = logging.StreamHandler(stream)
        >>> PROGRESS_LOG.addHandler(handler)
        >>> steps = Steps("evaluate", 2)
        >>> steps("reading bkg.h5"); steps("scoring with vae:mu2")
        >>> PROGRESS_LOG.removeHandler(handler)
        >>> print(stream.getvalue(), end="")
        evaluate [1/2] reading bkg.h5 (0 s so far)
        evaluate [2/2] scoring with vae:mu2 (0 s so far)
    """

    def __init__(self, what: str, total: int, *, enabled: bool = True) -> None:
        self.what, self.total, self.enabled = what, total, enabled
        self.done = 0
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        self.done += 1
        self.total = max(self.total, self.done)
        if self.enabled:
            PROGRESS_LOG.info("%s [%d/%d] %s (%.0f s so far)", self.what, self.done, self.total,
                              text, time.monotonic() - self.t0)
