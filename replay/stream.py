"""The replay iterator: events from files, or a mixture of files, paced and stamped.

    >>> from darktrigger.replay.stream import Replay
    >>> from darktrigger.replay.testing import write_sample
    >>> background = write_sample("native", "sm_mix.h5", n=1000)
    >>> signal = write_sample("adc2021", "ato4l.h5", n=100)
    >>> [len(batch) for batch in Replay(["sm_mix.h5"], batch_size=256)]
    [256, 256, 256, 232]
    >>> mix = Replay({"sm_mix.h5": 0.99, "ato4l.h5": 0.01},
    ...              rate_hz=100_000, loop=True, max_events=5000)
    >>> last = [batch for batch in mix][-1]
    >>> mix.stats.per_input
    {'sm_mix.h5': 4948, 'ato4l.h5': 52}
    >>> int(last["event"][-1]), int(last["bx"][-1]), int(last["lumi"][-1])
    (5000, 1436, 1)

Stamping: every emitted event gets a fresh identity. ``run`` is fixed, ``event``
counts up from ``first_event``, ``bx`` walks through the 3564 bunch slots of an LHC
orbit (1…3564), and ``lumi`` starts at 1 and advances every ``events_per_lumi``
events — by default the events of one 23.31 s luminosity section at the pacing
rate, or 1,000,000 when not paced. ``truth``, ``weight`` and analysis columns are
kept; a mixture of files keeps the optional columns all its inputs share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.readers import EventReader, open_events
from darktrigger.replay.readers.base import SkipReport

log = logging.getLogger(__name__)

BUNCH_SLOTS = 3564
LUMI_SECTION_SECONDS = 23.31  # 2^18 LHC orbits
UNPACED_EVENTS_PER_LUMI = 1_000_000
#: When paced, a batch is never longer than this fraction of a second of events,
#: so the emitted rate is smooth even at low rates.
MAX_BATCH_SECONDS = 0.1


class _Buffered:
    """Events of one file, handed out in any sizes, looping over the file if asked."""

    def __init__(self, path: Path, loop: bool, reader_options: Mapping[str, Any]) -> None:
        self.path = path
        self.loop = loop
        self.options = dict(reader_options)
        self.reader: EventReader = open_events(path, **self.options)
        self.skipped: list[SkipReport] = [self.reader.skipped]
        self._it = iter(self.reader)
        self._held: list[EventBatch] = []
        self._n_held = 0
        self.exhausted = False
        self.passes = 1

    def _pull(self) -> bool:
        for _ in range(2):  # a second try after a loop restart
            try:
                batch = next(self._it)
            except StopIteration:
                if not self.loop:
                    return False
                self.reader = open_events(self.path, **self.options)
                self.skipped.append(self.reader.skipped)
                self._it = iter(self.reader)
                self.passes += 1
                continue
            if len(batch):
                self._held.append(batch)
                self._n_held += len(batch)
            return True
        raise ConfigError(f"{self.path}: no events to replay (the file is empty or all rows were skipped)")

    def take(self, n: int) -> EventBatch | None:
        """Up to ``n`` events; fewer at the end of a non-looping file; None when done."""
        while self._n_held < n:
            if not self._pull():
                break
        if self._n_held == 0:
            self.exhausted = True
            return None
        merged = EventBatch.concat(self._held) if len(self._held) > 1 else self._held[0]
        out, rest = merged[:n], merged[n:]
        self._held = [rest] if len(rest) else []
        self._n_held = len(rest)
        return out


@dataclass
class ReplayStats:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0
    per_input: dict[str, int] | None = None

    @property
    def rate_hz(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class Replay:
    """Batches of events from files, in sequence or mixed by fraction, paced and stamped.

    ``inputs`` is a list of files (read one after the other) or a mapping file →
    fraction (each batch draws its events from the files by a seeded multinomial;
    fractions are normalised). ``rate_hz=None`` replays as fast as possible.
    Without ``loop``, the replay ends when a file (any file of a mixture) runs out;
    ``max_events`` stops it after that many events in any case.
    """

    def __init__(self, inputs: Sequence[str | Path] | Mapping[str | Path, float], *,
                 batch_size: int = 4096, rate_hz: float | None = None, loop: bool = False,
                 max_events: int | None = None, run: int = 1, first_event: int = 1,
                 events_per_lumi: int | None = None, seed: int = 0,
                 reader_options: Mapping[str, Any] | None = None) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if rate_hz is not None and rate_hz <= 0:
            raise ConfigError(f"rate_hz must be positive (or None for as fast as possible), got {rate_hz}")
        if max_events is not None and max_events < 0:
            raise ConfigError(f"max_events must be >= 0, got {max_events}")
        if isinstance(inputs, Mapping):
            self.mixture = True
            paths = [Path(p) for p in inputs]
            fractions = np.array([float(f) for f in inputs.values()])
            if len(paths) == 0 or (fractions < 0).any() or fractions.sum() <= 0:
                raise ConfigError(f"mixture fractions must be >= 0 and not all 0, got {dict(inputs)}")
            self.fractions = fractions / fractions.sum()
        else:
            self.mixture = False
            paths = [Path(p) for p in inputs]
            if not paths:
                raise ConfigError("no input files to replay")
            self.fractions = np.full(len(paths), 1.0 / len(paths))
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"{p}: no such file to replay")
        self.paths = paths
        self.rate_hz = rate_hz
        if rate_hz is not None:
            batch_size = min(batch_size, max(1, int(rate_hz * MAX_BATCH_SECONDS)))
        self.batch_size = batch_size
        self.loop = loop
        self.max_events = max_events
        self.run = run
        self.first_event = first_event
        self.events_per_lumi = events_per_lumi or (
            max(1, round(rate_hz * LUMI_SECTION_SECONDS)) if rate_hz else UNPACED_EVENTS_PER_LUMI)
        self.seed = seed
        self.reader_options = dict(reader_options or {})
        self.stats = ReplayStats(per_input={str(p): 0 for p in paths})
        self._sources: list[_Buffered] = []

    @property
    def skipped(self) -> list[SkipReport]:
        """What the readers skipped (``on_error='skip'``), one report per pass over a file."""
        return [r for s in self._sources for r in s.skipped]

    def _stamp(self, batch: EventBatch, start: int) -> EventBatch:
        index = np.arange(start, start + len(batch), dtype=np.uint64)
        return batch.with_columns(
            run=np.full(len(batch), self.run, np.uint32),
            lumi=(1 + index // np.uint64(self.events_per_lumi)).astype(np.uint32),
            event=index + np.uint64(self.first_event),
            bx=(1 + index % np.uint64(BUNCH_SLOTS)).astype(np.uint16),
        )

    def _next_unstamped(self, want: int, rng: np.random.Generator) -> EventBatch | None:
        if not self.mixture:  # files in sequence; a batch may span the end of one file
            parts: list[EventBatch] = []
            have = 0
            while self._sources and have < want:
                out = self._sources[0].take(want - have)
                if out is None:
                    self._sources.pop(0)
                    continue
                self.stats.per_input[str(self._sources[0].path)] += len(out)  # type: ignore[index]
                parts.append(out)
                have += len(out)
            return self._common(parts) if parts else None
        counts = rng.multinomial(want, self.fractions)
        parts = []
        for src, k in zip(self._sources, counts, strict=True):
            if k == 0:
                continue
            got = src.take(int(k))
            if got is None or len(got) < k:
                log.info("replay: %s ran out; the mixture ends here", src.path)
                return None
            self.stats.per_input[str(src.path)] += len(got)  # type: ignore[index]
            parts.append(got)
        merged = self._common(parts)
        return merged[rng.permutation(len(merged))]

    @staticmethod
    def _common(parts: list[EventBatch]) -> EventBatch:
        """Concatenate, keeping the optional columns every part has."""
        common = set.intersection(*(set(p.names) for p in parts))
        parts = [p.without(*(set(p.names) - common)) if set(p.names) != common else p for p in parts]
        return EventBatch.concat(parts)

    def __iter__(self) -> Iterator[EventBatch]:
        rng = np.random.default_rng(self.seed)
        self._sources = [_Buffered(p, self.loop, self.reader_options) for p in self.paths]
        emitted = 0
        t0 = time.monotonic()
        try:
            while self.max_events is None or emitted < self.max_events:
                want = self.batch_size
                if self.max_events is not None:
                    want = min(want, self.max_events - emitted)
                batch = self._next_unstamped(want, rng)
                if batch is None or len(batch) == 0:
                    break
                if self.rate_hz is not None:  # a batch leaves when its last event is due
                    due = t0 + (emitted + len(batch)) / self.rate_hz
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                batch = self._stamp(batch, emitted)
                emitted += len(batch)
                self.stats.events = emitted
                self.stats.batches += 1
                self.stats.seconds = time.monotonic() - t0
                yield batch
        finally:
            self.stats.seconds = time.monotonic() - t0
            for report in self.skipped:
                if report.count:
                    log.warning("%s", report.summary())
