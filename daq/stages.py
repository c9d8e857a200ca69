"""The pipeline's stages as plain classes: no sockets here (the runner owns those).

Each stage is fed batches in-process in the tests, and by :mod:`darktrigger.daq.runner` in a run:

    >>> from darktrigger.daq.trigger.menu import Menu
    >>> from darktrigger.replay.generators import GENERATORS
    >>> menu = Menu.from_dict({"seeds": [{"name": "SingleMu22", "type": "single_mu", "pt_min": 22}]})
    >>> batch = next(GENERATORS.get("toy")().generate("sm_mix", 1000, seed=1))
    >>> scored, dropped = ScorerStage({}).process(batch)
    >>> accepted, decision = TriggerStage(menu).process(scored)
    >>> int(decision.accepted.sum()) == len(accepted)
    True
    >>> recorder = RecorderStage(Path("out"), menu)
    >>> recorder.record(1, 0, accepted, decision, batch["truth"], batch["weight"])
    True
    >>> summary = recorder.summary(events_in=1000)
    >>> summary.events_lost, summary.events_accepted == len(accepted)
    (0, True)
    >>> recorder.close(summary)
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.daq.summary import ProcessCounts, RunSummary
from darktrigger.daq.topology import Topology
from darktrigger.daq.trigger.decision import Decision
from darktrigger.daq.trigger.efficiency import SignalEfficiency
from darktrigger.daq.trigger.menu import Menu
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.replay.errors import InputFormatError
from darktrigger.replay.events import LABEL_NAMES, TRIGGER_BITS, EventBatch, is_signal, label_counts

log = logging.getLogger(__name__)

SCORE_PREFIX = "score/"


class SeqSet:
    """A set of batch sequence numbers (0, 1, 2…) kept as the contiguous prefix ``0 … below-1``
    and the few beyond it. Batches are recorded and acknowledged nearly in order, so its size,
    and the checkpoints that save it, stay small however long the run.

        >>> seqs = SeqSet([(0, 3)])
        >>> seqs.add(5), seqs.add(3), seqs.add(5)
        (True, True, False)
        >>> 4 in seqs, 5 in seqs, len(seqs), seqs.ranges()
        (False, True, 5, [[0, 4], [5, 6]])
    """

    def __init__(self, ranges: Iterable[tuple[int, int] | list[int]] = ()) -> None:
        self.below = 0
        self._rest: set[int] = set()
        self._n = 0
        for start, stop in ranges:
            for seq in range(int(start), int(stop)):
                self.add(seq)

    def add(self, seq: int) -> bool:
        """Add ``seq``; False if it was there."""
        if seq in self:
            return False
        self._n += 1
        if seq == self.below:
            self.below += 1
            while self.below in self._rest:
                self._rest.remove(self.below)
                self.below += 1
        else:
            self._rest.add(seq)
        return True

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (0 <= seq < self.below or seq in self._rest)

    def __len__(self) -> int:
        return self._n

    def ranges(self) -> list[list[int]]:
        """The members as sorted ``[start, stop)`` ranges."""
        out = [[0, self.below]] if self.below else []
        for seq in sorted(self._rest):
            if out and out[-1][1] == seq:
                out[-1][1] = seq + 1
            else:
                out.append([seq, seq + 1])
        return out


class SourceStage:
    """Batches of the topology's replay, numbered ``seq`` = 0, 1, 2… within the run.

    Pacing is the runner's (it must keep serving its sockets while it waits), so the
    replay here runs unpaced; at a rate, batches hold at most 0.1 s of events.
    """

    def __init__(self, topo: Topology, max_events: int | None = None) -> None:
        from darktrigger.replay.stream import MAX_BATCH_SECONDS, Inject, Replay

        src = topo.source
        self.rate_hz = src.rate_hz
        batch_size = topo.batch_size
        if self.rate_hz:
            batch_size = min(batch_size, max(1, int(self.rate_hz * MAX_BATCH_SECONDS)))
        inputs: Any = {str(p): f for p, f in src.mix.items()} if src.mix else [str(p) for p in src.files]
        crossing_hz = None
        if any(isinstance(entry, Inject) for entry in src.mix.values()):
            # the weights of a signal injected by rate are made for the rate the menu counts at
            crossing_hz = Menu.from_yaml(topo.menu).bx_rate_mhz * 1e6
        self.replay = Replay(inputs, batch_size=batch_size, loop=src.loop,
                             max_events=max_events if max_events is not None else src.events,
                             run=topo.run, seed=src.seed, crossing_rate_hz=crossing_hz,
                             reader_options={"on_error": src.on_error},
                             events_per_lumi=round(self.rate_hz * 23.31) if self.rate_hz else None)
        self.run = topo.run
        self._reports: dict[int, Any] = {}  # every reader's skip report seen, by identity

    @property
    def injected(self) -> dict[str, dict[str, float]]:
        """The inputs injected by rate: file → {rate_hz, fraction} (for the run summary)."""
        return {Path(p).name: {"rate_hz": e.rate_hz, "fraction": e.fraction}
                for p, e in self.replay.injected.items()}

    def rows_skipped(self) -> dict[str, dict[str, Any]]:
        """The bad rows the readers skipped (``source.on_error: skip``), per file: how many
        and where (the first few, as the reader names them: ``row 17: ...``)."""
        out: dict[str, dict[str, Any]] = {}
        self._note_reports()
        for report in self._reports.values():
            if not report.count:
                continue
            entry = out.setdefault(Path(report.path).name, {"count": 0, "examples": []})
            entry["count"] += report.count
            entry["examples"] += report.examples[: max(0, 10 - len(entry["examples"]))]
        return out

    def _note_reports(self) -> None:
        """Keep every pass's report (one per reader and pass; ``Replay.skipped`` lists them)."""
        for report in self.replay.skipped:
            self._reports[id(report)] = report

    def __iter__(self) -> Iterator[tuple[int, EventBatch]]:
        for seq, batch in enumerate(self.replay):
            self._note_reports()  # the readers' reports, before the replay lets go of a finished file
            yield seq, batch


class ScorerStage:
    """Adds a ``score/<name>`` float32 column per model; drops (and counts) events whose
    values break the event model (NaN, negative pT…), so one bad event never poisons a batch.
    """

    def __init__(self, scorers: Mapping[str, Any]) -> None:
        self.scorers = dict(scorers)

    @classmethod
    def from_menu(cls, menu: Menu, backend: str | None = None, threads: int = 1) -> ScorerStage:
        """Load every model the menu declares (``backend`` overrides the menu's)."""
        from darktrigger.models import load_model

        scorers = {}
        for name, spec in menu.used_models.items():
            scorers[name] = load_model(spec.path, backend or spec.backend, variant=spec.variant, threads=threads)
        return cls(scorers)

    def process(self, batch: EventBatch) -> tuple[EventBatch, int]:
        """(the batch with score columns, the number of events dropped as invalid)."""
        dropped = 0
        found = batch.problems()  # a whole-batch check; rows are looked at only if it fails
        if found:
            keep = np.ones(len(batch), bool)
            keep[[row for row, _ in found]] = False
            dropped = len(found)
            log.warning("scorer: dropped %d invalid event(s) of %d (first: %s)", dropped, len(batch),
                        found[0][1])
            batch = batch[keep]
        scores = {f"{SCORE_PREFIX}{name}": s.score(batch) for name, s in self.scorers.items()}
        return batch.with_columns(**scores) if scores else batch, dropped


class TriggerStage:
    """Runs the menu: the accepted events (with ``trigger_bits``) and the whole decision."""

    def __init__(self, menu: Menu) -> None:
        self.menu = menu

    def process(self, batch: EventBatch) -> tuple[EventBatch, Decision]:
        decision = self.menu.decide(batch)
        keep = decision.accepted
        accepted = batch[keep].with_columns(**{TRIGGER_BITS: decision.bits[keep]})
        return accepted, decision


class LatencyHistogram:
    """Per-event latencies (seconds) in log bins 1 % wide from 10 µs to 10⁴ s: a fixed size
    however long the run (the recorder's checkpoint holds it), quantiles to 1 %.

        >>> h = LatencyHistogram()
        >>> h.add(0.010, 99); h.add(0.200, 1)
        >>> [round(q, 3) for q in h.quantiles((0.5, 0.99, 1.0))]
        [0.01, 0.01, 0.201]
    """

    LOW_S, HIGH_S, RATIO = 1e-5, 1e4, 1.01

    def __init__(self) -> None:
        n = math.ceil(math.log(self.HIGH_S / self.LOW_S) / math.log(self.RATIO))
        self.counts = np.zeros(n + 2, np.float64)  # [under LOW_S, bins…, over HIGH_S]

    def add(self, seconds: float, events: int) -> None:
        """``events`` events of one batch, each with latency ``seconds``."""
        if seconds < self.LOW_S:
            i = 0
        elif seconds >= self.HIGH_S:
            i = len(self.counts) - 1
        else:
            i = 1 + int(math.log(seconds / self.LOW_S) / math.log(self.RATIO))
        self.counts[i] += events

    def quantiles(self, qs: tuple[float, ...]) -> list[float]:
        """Each quantile's bin's upper edge (at most 1 % above the true value); 0 with no events."""
        total = self.counts.sum()
        if total == 0:
            return [0.0 for _ in qs]
        cum = np.cumsum(self.counts)
        out = []
        for q in qs:
            i = min(int(np.searchsorted(cum, q * total)), len(cum) - 1)
            out.append(self.LOW_S * self.RATIO ** min(i, len(cum) - 2))
        return out


def _only(decision: Decision, rows: np.ndarray) -> Decision:
    """The decision with every event outside ``rows`` (bool ``[N]``) fired by no seed: counted
    with all events' weights, it gives those rows' share of each rate."""
    zero = np.uint64(0)
    return Decision(np.where(rows, decision.raw, zero), np.where(rows, decision.bits, zero), decision.names)


class RecorderStage:
    """Keeps each (run, seq) once, writes accepted events to ``<output>/events.h5`` and
    counts everything for the run summary (``<output>/run_summary.json``): the menu's counts
    from every event's weight, split into background (truth not a signal: zero bias) and
    injected signal, and each signal's efficiency per seed."""

    #: what :meth:`checkpoint` saves and :meth:`resume` restores (the accepted event numbers
    #: are read back from the events file instead)
    STATE = ("seen", "counts", "background", "signal", "signals", "events_seen", "events_accepted",
             "events_invalid", "duplicate_batches", "batches", "_latency", "truth_in", "truth_accepted",
             "t_first")

    def __init__(self, output: Path, menu: Menu, run: int = 1, *, resume: bool = False) -> None:
        from darktrigger.replay.storage import NativeWriter

        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.menu = menu
        self.run = run
        self.events_path = self.output / "events.h5"
        self.state_path = self.output / ".recorder-state.pkl"
        state = self._load_state() if resume else None
        recovered: np.ndarray | None = None
        if state is not None:
            recovered = self._recover_events(int(state["committed"]))
        else:
            self.state_path.unlink(missing_ok=True)
        self.writer = NativeWriter(self.events_path, provenance={"run": run, "menu": str(menu.where)},
                                   chunk_events=4096, mode="a" if recovered is not None else "w")
        #: the batches recorded: run → their seqs
        self.seen: dict[int, SeqSet] = {}
        self.counts = MenuCounts.for_menu(menu)
        #: the same counts for the background (zero-bias) events alone and the signal events alone
        self.background = MenuCounts.for_menu(menu)
        self.signal = MenuCounts.for_menu(menu)
        self.signals: dict[str, SignalEfficiency] = {}
        self.events_seen = 0
        self.events_accepted = 0
        self.events_invalid = 0
        self.duplicate_batches = 0
        self.batches = 0
        self._latency = LatencyHistogram()
        self._accepted_ids: list[np.ndarray] = []
        self.truth_in: Counter[int] = Counter()
        self.truth_accepted: Counter[int] = Counter()
        self.t_first: float | None = None
        #: the counts of the last batch recorded (for the metrics)
        self.last_counts: MenuCounts | None = None
        #: the accepted columns' layout (the runner's check), restored with the state
        self.schema: Any = None
        if state is not None:
            for name in self.STATE:
                setattr(self, name, state[name])
            self.schema = state["schema"]
            self._accepted_ids = [recovered if recovered is not None else np.zeros(0, np.uint64)]
            log.info("recorder: resumed from its checkpoint: %d batches, %d events (%d accepted) recorded",
                     self.batches, self.events_seen, self.events_accepted)

    # -- restart and resume ------------------------------------------------------------
    def checkpoint(self, schema: Any = None) -> None:
        """Save the counts of everything recorded, after a flush (so they match the events
        file's committed rows) and before the batches are acknowledged: a recorder started
        again with ``resume`` continues from here, and the source sends again what was not
        acknowledged. Written whole or not at all."""
        import pickle

        state = {name: getattr(self, name) for name in self.STATE}
        state.update(committed=self.writer.n_events, schema=schema, run=self.run)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(self.state_path)

    def _load_state(self) -> dict[str, Any] | None:
        import pickle

        if not self.state_path.exists() or not self.events_path.exists():
            return None
        state = pickle.loads(self.state_path.read_bytes())  # noqa: S301 - our own checkpoint, in our output
        if state.get("run") != self.run:
            return None
        return dict(state)

    def _recover_events(self, committed: int) -> np.ndarray | None:
        """The events file of a recorder that was killed: its first ``committed`` rows (those
        the checkpoint counts) copied to a fresh file that plain h5py opens (the killed
        writer's file stays flagged as open for writing until repaired). Their event
        numbers; None when the file had no columns yet (then it is written afresh)."""
        from darktrigger.replay.storage import NativeFile, NativeWriter

        crashed = self.events_path.with_name(self.events_path.name + ".crashed")
        self.events_path.replace(crashed)
        ids = [np.zeros(0, np.uint64)]
        with NativeFile(crashed) as old:
            if not old.columns:
                crashed.unlink()
                return None
            if committed > len(old):
                raise InputFormatError(str(crashed), "", f"at least {committed} committed events (the "
                                       f"recorder's checkpoint)", f"{len(old)}")
            with NativeWriter(self.events_path, chunk_events=4096, provenance={
                    "run": self.run, "menu": str(self.menu.where)}) as new:
                new.write(old.read(0, 0))  # the columns, even with no rows
                for start in range(0, committed, 65536):
                    part = old.read(start, min(committed, start + 65536))
                    new.write(part)
                    ids.append(np.asarray(part.columns["event"]))
        crashed.unlink()
        log.info("recorder: %s recovered: %d committed events kept", self.events_path, committed)
        return np.concatenate(ids)

    def record(self, run: int, seq: int, accepted: EventBatch, decision: Decision, truth: np.ndarray,
               weights: np.ndarray | None = None, *, t_emit: float | None = None, invalid: int = 0) -> bool:
        """Record one decided batch: its accepted events, and every event's decision, truth
        label and weight (``weights`` ``[N]``; None: unit weights). False (and nothing
        written) if (run, seq) was seen."""
        if not self.seen.setdefault(run, SeqSet()).add(seq):
            self.duplicate_batches += 1
            return False
        if self.t_first is None:
            self.t_first = time.time()
        self.writer.write(accepted)
        w = None if weights is None else np.asarray(weights, np.float64)
        self.last_counts = MenuCounts.for_menu(self.menu).add(decision, weights=w)
        self.counts.merge(self.last_counts)
        signal = is_signal(truth)
        self.background.add(_only(decision, ~signal), weights=w)
        self.signal.add(_only(decision, signal), weights=w)
        if signal.any():
            self._count_signals(decision, truth, signal, w)
        n = len(decision.bits)
        self.batches += 1
        self.events_seen += n
        self.events_accepted += len(accepted)
        self.events_invalid += invalid
        self._accepted_ids.append(np.asarray(accepted.columns["event"]).copy())
        self.truth_in.update(label_counts(truth))
        self.truth_accepted.update(label_counts(truth[decision.accepted]))
        if t_emit is not None:
            self._latency.add(time.time() - t_emit, n)
        return True

    def _count_signals(self, decision: Decision, truth: np.ndarray, signal: np.ndarray,
                       weights: np.ndarray | None) -> None:
        for label in np.unique(truth[signal]).tolist():
            rows = truth == label
            name = LABEL_NAMES.get(label, str(label))
            counts = self.signals.get(name)
            if counts is None:
                counts = self.signals[name] = SignalEfficiency.for_menu(self.menu, name)
            counts.add(Decision(decision.raw[rows], decision.bits[rows], decision.names),
                       None if weights is None else weights[rows])

    def flush(self) -> None:
        self.writer.flush()

    def summary(self, events_in: int | None, batches_in: int | None = None) -> RunSummary:
        """The run summary; ``events_in``, ``batches_in``: what the source emitted (None if
        unknown). The runner adds what only it knows (how the run stopped, bad messages)."""
        ids = np.concatenate(self._accepted_ids) if self._accepted_ids else np.zeros(0, np.uint64)
        duplicated = int(len(ids) - len(np.unique(ids)))
        p50, p99 = self._latency.quantiles((0.5, 0.99))
        accounted = self.events_seen + self.events_invalid
        per_process = {LABEL_NAMES.get(label, str(label)): ProcessCounts(n_in, self.truth_accepted.get(label, 0))
                       for label, n_in in sorted(self.truth_in.items())}
        return RunSummary(
            run=self.run,
            events_in=events_in,
            events_accepted=self.events_accepted,
            events_rejected=self.events_seen - self.events_accepted,
            events_invalid=self.events_invalid,
            events_lost=None if events_in is None else events_in - accounted,
            events_duplicated=duplicated,
            batches_in=batches_in,
            batches_recorded=self.batches,
            duplicate_batches_dropped=self.duplicate_batches,
            latency_p50_s=p50,
            latency_p99_s=p99,
            menu=copy.deepcopy(self.counts),  # a snapshot: later batches do not change it
            background=copy.deepcopy(self.background),
            signal=copy.deepcopy(self.signal),
            signals=copy.deepcopy(self.signals),
            per_process=per_process,
            events_file=str(self.events_path),
        )

    def close(self, summary: RunSummary | None = None) -> None:
        """Flush and close the events file; write ``run_summary.json`` if given a summary (the
        run is over: the checkpoint goes)."""
        self.writer.close()
        if summary is not None:
            summary.write(self.output / "run_summary.json")
            self.state_path.unlink(missing_ok=True)
            (self.output / ".source-state.json").unlink(missing_ok=True)  # the source's (runner.SourceRunner)
