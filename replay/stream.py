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

Injection by rate
-----------------
A signal can also enter a mixture at its physical rate, ``rate_hz`` = σ × L (a 2 fb
signal at 2.0e34 cm⁻²s⁻¹ is 2e-39 cm² × 2e34 cm⁻²s⁻¹ = 4e-5 Hz; ``LHCConditions.rate_hz``
computes it). Such a signal is still *drawn* at a fraction chosen for statistics
(``Inject(rate_hz, fraction)``; :data:`DEFAULT_INJECTION_FRACTION` when not given): exactly
``floor(fraction × n)`` of the first ``n`` events come from it. What makes its rate
physical is the ``weight`` column: the signal's events get the weight share
``rate_hz / crossing_rate_hz`` of the stream, and the other inputs (the zero-bias
background) fill the rest, keeping their relative weights:

* an injected event: ``w = w_file / mean(w_file) × (rate_hz / crossing_rate_hz) / fraction``,
* any other event: ``w = w_file / mean(w_file) × (1 − Σ rate_hz / crossing_rate_hz) / (1 − Σ fraction)``,

where ``mean(w_file)`` is the mean weight of that input file (read once, when the replay
starts). A stream event then stands for one bunch crossing on average, and a rate
computed from weights, Σw(fired) / Σw × crossing rate, gives the signal its physical
contribution, ``rate_hz`` × its efficiency, whatever fraction was drawn. With inputs of
uniform weights the shares are exact over any ``n`` for which ``fraction × n`` is whole.
The crossing rate must be the one the rates are computed at (the menu's; 28.61 MHz,
2544 colliding bunches, by default).

A mixture entry is a number (a fraction), ``"background"`` (this input fills whatever
the other entries leave) or an :class:`Inject` (also written as a mapping
``{rate_hz: 20, fraction: 0.001}``, as a topology's ``source.mix`` does). Injected
fractions are fractions of the stream; with a ``"background"`` entry the numbers are too,
and without one the numbers share what the injected entries leave, in proportion.

    >>> stream = Replay({"sm_mix.h5": "background", "ato4l.h5": Inject(rate_hz=20, fraction=0.5)},
    ...                 loop=True, max_events=2000, crossing_rate_hz=28.61e6)
    >>> batch = EventBatch.concat(list(stream))
    >>> w, injected = batch["weight"].astype(float), batch["truth"] == -1   # ADC2021 files carry no truth
    >>> int(injected.sum()), round(w[injected].sum() / w.sum() * 28.61e6, 3)   # events drawn, Hz
    (1000, 20.0)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.lhc import LHCConditions
from darktrigger.replay.readers import EventReader, open_events
from darktrigger.replay.readers.base import SkipReport

log = logging.getLogger(__name__)

BUNCH_SLOTS = 3564
LUMI_SECTION_SECONDS = 23.31  # 2^18 LHC orbits
UNPACED_EVENTS_PER_LUMI = 1_000_000
#: When paced, a batch is never longer than this fraction of a second of events,
#: so the emitted rate is smooth even at low rates.
MAX_BATCH_SECONDS = 0.1
#: The fraction of the replayed events a signal injected by rate is drawn at when no
#: fraction is given: enough events for an efficiency, few enough to leave the background.
DEFAULT_INJECTION_FRACTION = 1e-3
#: The mixture entry that fills what the other entries leave.
BACKGROUND = "background"
#: Counts of injected events are floor(fraction × n); this absorbs float rounding of a whole product.
_WHOLE = 1e-9


@dataclass(frozen=True)
class Inject:
    """A signal injected at its physical rate ``rate_hz`` (σ × L), drawn at ``fraction``
    of the events for statistics (see the module docs: the weights carry the rate)."""

    rate_hz: float
    fraction: float = DEFAULT_INJECTION_FRACTION

    def __post_init__(self) -> None:
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, int | float) \
                or not math.isfinite(self.rate_hz) or self.rate_hz <= 0:
            raise ConfigError(f"rate_hz must be a positive rate in Hz, got {self.rate_hz!r}")
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float) \
                or not 0 < self.fraction < 1:
            raise ConfigError(f"fraction must be a number in (0, 1): the share of the replayed events "
                              f"drawn from the signal, got {self.fraction!r}")


#: What a mixture maps a file to: a fraction, :data:`BACKGROUND`, or an injection by rate.
MixEntry = float | str | Inject


def mix_entry(value: Any, where: str) -> MixEntry:
    """One mixture value as a :data:`MixEntry`: a number, ``"background"``, an :class:`Inject`
    or a mapping ``{rate_hz: …, fraction: …}``; a :class:`ConfigError` naming ``where`` if not.

        >>> mix_entry({"rate_hz": 20}, "source.mix[sig.h5]")
        Inject(rate_hz=20, fraction=0.001)
        >>> mix_entry({"rate": 20}, "source.mix[sig.h5]")
        Traceback (most recent call last):
        ...
        darktrigger.replay.errors.ConfigError: source.mix[sig.h5]: unknown key(s) 'rate'; an injection by rate is {rate_hz: HZ, fraction: F} (fraction optional, default 0.001)
    """
    if isinstance(value, Inject) or value == BACKGROUND:
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - {"rate_hz", "fraction"})
        if unknown or "rate_hz" not in value:
            what = f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else "no rate_hz"
            raise ConfigError(f"{where}: {what}; an injection by rate is {{rate_hz: HZ, fraction: F}} "
                              f"(fraction optional, default {DEFAULT_INJECTION_FRACTION:g})")
        try:
            return Inject(value["rate_hz"], value.get("fraction", DEFAULT_INJECTION_FRACTION))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: mixture fractions must be numbers >= 0; expected a fraction, "
                          f"{BACKGROUND!r}, or an injection by rate {{rate_hz: HZ, fraction: F}}; got {value!r}")
    return float(value)


def mean_weight(path: Path, reader_options: Mapping[str, Any] | None = None) -> float:
    """The mean of a file's ``weight`` column (one pass); a :class:`ConfigError` naming the file
    and the first bad row if a weight is NaN, infinite or negative, or they sum to 0."""
    total, n = 0.0, 0
    for batch in open_events(path, **dict(reader_options or {})):
        w = np.asarray(batch["weight"], dtype=np.float64)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            row = n + int(np.argmax(bad))
            raise ConfigError(f"{path}, row {row}: expected a finite weight >= 0, got {w[row - n]!r}")
        total += float(w.sum())
        n += len(w)
    if n == 0 or total <= 0:
        raise ConfigError(f"{path}: the weights of its {n:,} events sum to {total:g}; a mixture injecting "
                          f"by rate needs inputs whose weights sum to more than 0")
    return total / n


class _Buffered:
    """Events of one file, handed out in any sizes, looping over the file if asked."""

    def __init__(self, path: Path, loop: bool, reader_options: Mapping[str, Any]) -> None:
        self.path = path
        self.loop = loop
        self.options = dict(reader_options)
        self.reader: EventReader = open_events(path, **self.options)
        #: one reader a pass; each starts its SkipReport anew when its pass starts, so the
        #: reports are read when asked (:attr:`skipped`), not kept from before the pass
        self.readers: list[EventReader] = [self.reader]
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
                self.readers.append(self.reader)
                self._it = iter(self.reader)
                self.passes += 1
                continue
            if len(batch):
                self._held.append(batch)
                self._n_held += len(batch)
            return True
        raise ConfigError(f"{self.path}: no events to replay (the file is empty or all rows were skipped)")

    @property
    def skipped(self) -> list[SkipReport]:
        """What each pass over the file skipped (``on_error='skip'``), so far."""
        return [r.skipped for r in self.readers]

    def take(self, n: int) -> EventBatch | None:
        """Up to ``n`` events; fewer at the end of a non-looping file; None when done."""
        while self._n_held < n:
            if not self._pull():
                break
        if self._n_held == 0:
            self.exhausted = True
            return None
        # only the rows handed out are copied (when they span chunks); the rest stay views
        take: list[EventBatch] = []
        have = 0
        while self._held and have < n:
            first = self._held[0]
            k = min(n - have, len(first))
            take.append(first[:k] if k < len(first) else first)
            have += k
            if k < len(first):
                self._held[0] = first[k:]
            else:
                self._held.pop(0)
        self._n_held -= have
        return take[0] if len(take) == 1 else EventBatch.concat(take)


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
    """Batches of events from files, in sequence or mixed, paced and stamped.

    ``inputs`` is a list of files (read one after the other) or a mapping file →
    :data:`MixEntry`: a fraction (each batch draws its events from the files by a seeded
    multinomial; fractions are normalised), ``"background"``, or an :class:`Inject` (a
    signal at its physical rate, see the module docs; ``crossing_rate_hz`` is the rate the
    weights are made for, 28.61 MHz by default). ``rate_hz=None`` replays as fast as
    possible. Without ``loop``, the replay ends when a file (any file of a mixture) runs
    out; ``max_events`` stops it after that many events in any case.
    """

    def __init__(self, inputs: Sequence[str | Path] | Mapping[str | Path, Any], *,
                 batch_size: int = 4096, rate_hz: float | None = None, loop: bool = False,
                 max_events: int | None = None, run: int = 1, first_event: int = 1,
                 events_per_lumi: int | None = None, seed: int = 0,
                 reader_options: Mapping[str, Any] | None = None,
                 crossing_rate_hz: float | None = None) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if rate_hz is not None and rate_hz <= 0:
            raise ConfigError(f"rate_hz must be positive (or None for as fast as possible), got {rate_hz}")
        if max_events is not None and max_events < 0:
            raise ConfigError(f"max_events must be >= 0, got {max_events}")
        self.crossing_rate_hz = float(crossing_rate_hz or LHCConditions().crossing_rate_hz)
        if not math.isfinite(self.crossing_rate_hz) or self.crossing_rate_hz <= 0:
            raise ConfigError(f"crossing_rate_hz must be a positive rate in Hz, got {crossing_rate_hz!r}")
        #: injected inputs by path (empty unless some entry is an :class:`Inject`)
        self.injected: dict[str, Inject] = {}
        #: per input, what its weights are multiplied by after division by their mean (None: kept)
        self._weight_factor: list[float] | None = None
        if isinstance(inputs, Mapping):
            self.mixture = True
            paths = [Path(p) for p in inputs]
            entries = [mix_entry(v, f"mixture entry {p}") for p, v in inputs.items()]
            self.fractions = self._fractions(paths, entries)
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
        #: every source of the current iteration, the finished ones too (their skip reports)
        self._opened: list[_Buffered] = []
        self._mean_weights: list[float] | None = None

    def _fractions(self, paths: list[Path], entries: list[MixEntry]) -> np.ndarray:
        """The stream fraction of each input (they sum to 1); sets the weight factors when
        some input is injected by rate."""
        shown = (f"{p.name}: {{rate_hz: {e.rate_hz:g}, fraction: {e.fraction:g}}}" if isinstance(e, Inject)
                 else f"{p.name}: {e:g}" if isinstance(e, float) else f"{p.name}: {e}"
                 for p, e in zip(paths, entries, strict=True))
        where = f"mixture {{{', '.join(shown)}}}"
        if not paths:
            raise ConfigError("a mixture needs at least one input file")
        injected = {i: e for i, e in enumerate(entries) if isinstance(e, Inject)}
        backgrounds = [i for i, e in enumerate(entries) if e == BACKGROUND]
        numbers = {i: e for i, e in enumerate(entries) if isinstance(e, float)}
        if len(backgrounds) > 1:
            raise ConfigError(f"{where}: {len(backgrounds)} entries are {BACKGROUND!r}; at most one input "
                              f"fills what the others leave (give the others fractions)")
        f_injected = sum(e.fraction for e in injected.values())
        out = np.zeros(len(paths))
        for i, e in injected.items():
            out[i] = e.fraction
        if backgrounds:
            rest = 1.0 - f_injected - sum(numbers.values())
            if rest <= 0:
                raise ConfigError(f"{where}: the fractions sum to {1 - rest:g}, leaving nothing for the "
                                  f"{BACKGROUND!r} input; they must sum to less than 1")
            for i, f in numbers.items():
                out[i] = f
            out[backgrounds[0]] = rest
        elif numbers:
            share = sum(numbers.values())
            if share <= 0:
                raise ConfigError(f"{where}: mixture fractions must be >= 0 and not all 0")
            if f_injected >= 1:
                raise ConfigError(f"{where}: the injected fractions sum to {f_injected:g}, leaving nothing "
                                  f"for the other inputs; they must sum to less than 1")
            for i, f in numbers.items():
                out[i] = f / share * (1.0 - f_injected)
        else:
            raise ConfigError(f"{where}: every input is injected by rate; a mixture needs a background "
                              f"too (an entry {BACKGROUND!r} or a fraction) whose weights fill the rest")
        if injected:
            share = sum(e.rate_hz for e in injected.values()) / self.crossing_rate_hz
            if share >= 1:
                raise ConfigError(f"{where}: the injected rates sum to "
                                  f"{share * self.crossing_rate_hz:,.0f} Hz, not below the crossing rate "
                                  f"{self.crossing_rate_hz:,.0f} Hz")
            rest = (1.0 - share) / (1.0 - f_injected)
            self._weight_factor = [e.rate_hz / self.crossing_rate_hz / e.fraction
                                   if isinstance(e, Inject) else rest for e in entries]
            self.injected = {str(p): e for p, e in zip(paths, entries, strict=True) if isinstance(e, Inject)}
        return out

    @property
    def skipped(self) -> list[SkipReport]:
        """What the readers skipped (``on_error='skip'``), one report per pass over a file."""
        return [r for s in self._opened for r in s.skipped]

    def _stamp(self, batch: EventBatch, start: int) -> EventBatch:
        index = np.arange(start, start + len(batch), dtype=np.uint64)
        return batch.with_columns(
            run=np.full(len(batch), self.run, np.uint32),
            lumi=(1 + index // np.uint64(self.events_per_lumi)).astype(np.uint32),
            event=index + np.uint64(self.first_event),
            bx=(1 + index % np.uint64(BUNCH_SLOTS)).astype(np.uint16),
        )

    def _counts(self, want: int, emitted: int, rng: np.random.Generator) -> np.ndarray:
        """How many of the next ``want`` events each input gives: injected inputs exactly
        floor(fraction × n) of the first n events, the others by a multinomial."""
        if not self.injected:
            return rng.multinomial(want, self.fractions)
        counts = np.zeros(len(self.paths), np.int64)
        rest = np.ones(len(self.paths), bool)
        for i, p in enumerate(self.paths):
            inject = self.injected.get(str(p))
            if inject is not None:
                f = inject.fraction
                counts[i] = math.floor(f * (emitted + want) + _WHOLE) - math.floor(f * emitted + _WHOLE)
                rest[i] = False
        shares = np.where(rest, self.fractions, 0.0)
        counts[rest] = rng.multinomial(want - int(counts.sum()), shares[rest] / shares[rest].sum())
        return counts

    def _next_unstamped(self, want: int, emitted: int, rng: np.random.Generator) -> EventBatch | None:
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
        counts = self._counts(want, emitted, rng)
        parts = []
        for i, (src, k) in enumerate(zip(self._sources, counts, strict=True)):
            if k == 0:
                continue
            got = src.take(int(k))
            if got is None or len(got) < k:
                log.info("replay: %s ran out; the mixture ends here", src.path)
                return None
            self.stats.per_input[str(src.path)] += len(got)  # type: ignore[index]
            if self._weight_factor is not None and self._mean_weights is not None:
                w = got["weight"].astype(np.float64) * (self._weight_factor[i] / self._mean_weights[i])
                got = got.with_columns(weight=w.astype(np.float32))
            parts.append(got)
        return self._shuffled(parts, rng.permutation(sum(map(len, parts))))

    @classmethod
    def _shuffled(cls, parts: list[EventBatch], perm: np.ndarray) -> EventBatch:
        """``concat(parts)[perm]`` in one scatter per column, without the concatenated copy:
        the row r of the concatenation goes to the position where ``perm`` names it."""
        if len(parts) == 1:
            return parts[0][perm]
        common = set.intersection(*(set(p.names) for p in parts))
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(len(perm), dtype=perm.dtype)
        columns: dict[str, np.ndarray] = {}
        for name in parts[0].columns:
            if name not in common:
                continue
            arrays = [p.columns[name] for p in parts]
            out = np.empty((len(perm), *arrays[0].shape[1:]), np.result_type(*arrays))
            start = 0
            for a in arrays:
                out[inverse[start:start + len(a)]] = a
                start += len(a)
            columns[name] = out
        return EventBatch(columns)

    @staticmethod
    def _common(parts: list[EventBatch]) -> EventBatch:
        """Concatenate, keeping the optional columns every part has."""
        common = set.intersection(*(set(p.names) for p in parts))
        parts = [p.without(*(set(p.names) - common)) if set(p.names) != common else p for p in parts]
        return EventBatch.concat(parts)

    def __iter__(self) -> Iterator[EventBatch]:
        rng = np.random.default_rng(self.seed)
        if self._weight_factor is not None and self._mean_weights is None:
            self._mean_weights = [mean_weight(p, self.reader_options) for p in self.paths]
        self._sources = [_Buffered(p, self.loop, self.reader_options) for p in self.paths]
        self._opened = list(self._sources)
        emitted = 0
        t0 = time.monotonic()
        try:
            while self.max_events is None or emitted < self.max_events:
                want = self.batch_size
                if self.max_events is not None:
                    want = min(want, self.max_events - emitted)
                batch = self._next_unstamped(want, emitted, rng)
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
