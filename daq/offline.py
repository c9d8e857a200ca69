"""Offline jobs over many events — scoring files, a menu's rates, the scores ``evaluate`` and
``calibrate`` need — in one process or on Dask.

A job is planned as **chunks**: ranges of rows of its input files (a native file splits into
ranges of ``chunk_events`` rows, read by random access; a file of another format is one
chunk, read whole). Each chunk is one task, a plain function of the chunk that returns a
small result (scores, or a menu's counts and weight sums); the results come back in the
plan's order and are combined there. The same functions run the same chunks whether the
executor is this process (:class:`LocalExecutor`, the default) or a Dask ``distributed``
cluster (:class:`DaskExecutor`: ``--dask local:N`` starts a ``LocalCluster`` of N worker
processes, ``--dask tcp://host:8786`` uses a running scheduler), so the two give **the same
bits**: scores per event are computed on the same chunks, counts are integers, and the
weighted sums are added chunk by chunk in the plan's order (floating-point addition is not
associative; a fixed order makes the sum reproducible). Nothing is approximated: no
histogram merges, no sampled quantiles. Thresholds (weighted quantiles) and ROC curves/AUC
are an **exact merge**: ``evaluate`` and ``calibrate`` gather every event's score (float32,
4 bytes an event: 0.4 GB for 10⁸ crossings) in the plan's order and compute the metrics in
the client with the same code as in one process, so their error from the split is zero.

A worker that dies mid-task loses nothing: the scheduler runs its tasks again elsewhere
(tasks are pure functions of their chunk), and the results are the same. A scheduler that
cannot be reached is a :class:`~darktrigger.replay.errors.ConfigError` within
``connect_timeout_s`` (5 s).

On a cluster of several hosts, every worker must see the input files, the models and the
menu at the same paths (a shared file system), as the batch systems of HEP analysis
facilities provide; the scored output is written by the client alone.

    >>> from darktrigger.replay.generators.toy import ToyGenerator
    >>> from darktrigger.replay.storage import write_events
    >>> write_events("zb.h5", ToyGenerator().generate("zero_bias", 2500, seed=1))
    2500
    >>> [(c.start, c.stop) for c in plan_chunks(["zb.h5"], chunk_events=1000)]
    [(0, 1000), (1000, 2000), (2000, 2500)]
    >>> [(c.start, c.stop) for c in plan_chunks(["zb.h5"], chunk_events=1000, max_events=1500)]
    [(0, 1000), (1000, 1500)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from darktrigger.replay.errors import ConfigError, DarkTriggerError
from darktrigger.replay.events import EventBatch

log = logging.getLogger(__name__)

DEFAULT_CHUNK_EVENTS = 262_144  #: rows of a native file per task
CONNECT_TIMEOUT_S = 5.0  #: how long to try to reach a Dask scheduler

T = TypeVar("T")
R = TypeVar("R")


class OfflineJobError(DarkTriggerError, RuntimeError):
    """A job's task that could not be run (on Dask: one that kept killing its workers)."""


# -- the plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    """Rows ``start:stop`` of one file (``stop`` ≤ the file's rows), the unit of work."""

    path: str
    start: int
    stop: int

    @property
    def label(self) -> str:
        return f"{self.path}[{self.start}:{self.stop}]"


def plan_chunks(paths: Sequence[str | Path], chunk_events: int = DEFAULT_CHUNK_EVENTS, *,
                max_events: int | None = None) -> list[Chunk]:
    """The chunks of ``paths``, in order: native files in ranges of ``chunk_events`` rows,
    other formats one chunk each; at most ``max_events`` rows in all (module doc)."""
    from darktrigger.replay.readers import open_events
    from darktrigger.replay.readers.native import NativeReader

    if chunk_events <= 0:
        raise ConfigError(f"chunk_events must be positive, got {chunk_events}")
    if max_events is not None and max_events <= 0:
        raise ConfigError(f"max_events must be positive, got {max_events}")
    chunks: list[Chunk] = []
    left = max_events
    for path in paths:
        if not Path(path).exists():
            raise ConfigError(f"{path}: no such file")
        reader = open_events(path)
        known = reader.count()
        n = known if known is not None else sum(len(b) for b in open_events(path, on_error="skip"))
        if left is not None:
            n = min(n, left)
            left -= n
        step = chunk_events if isinstance(reader, NativeReader) else max(n, 1)
        chunks += [Chunk(str(path), a, min(a + step, n)) for a in range(0, n, step)]
        if left == 0:
            break
    return chunks


def read_chunk(chunk: Chunk, *, chunk_size: int = 65_536, on_error: str = "fail") -> Iterator[EventBatch]:
    """The events of a chunk, in batches of at most ``chunk_size`` (bad rows raise or are
    skipped, as ``on_error`` says; skipped rows are not replaced)."""
    from darktrigger.replay.readers import open_events
    from darktrigger.replay.readers.native import NativeReader

    reader = open_events(chunk.path, chunk_size=chunk_size, on_error=on_error)
    if isinstance(reader, NativeReader):
        yield from reader.iter_rows(chunk.start, chunk.stop)
        return
    seen = 0  # another format: read from the start, keep rows start:stop
    for batch in reader:
        a, b = max(chunk.start - seen, 0), min(chunk.stop - seen, len(batch))
        seen += len(batch)
        if b > a:
            yield batch[a:b]
        if seen >= chunk.stop:
            break


def _whole(chunk: Chunk, chunk_size: int, on_error: str) -> EventBatch:
    parts = list(read_chunk(chunk, chunk_size=chunk_size, on_error=on_error))
    if not parts:
        return EventBatch.empty()
    return parts[0] if len(parts) == 1 else EventBatch.concat(parts)


# -- executors -----------------------------------------------------------------------------------
class Executor(Protocol):
    """Runs a function on each item; yields the results in the items' order."""

    name: str

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str,
            events: Sequence[int] | None = None, progress: bool = True) -> Iterator[R]: ...

    def close(self) -> None: ...


def _progress(desc: str, total: int, enabled: bool) -> Any:
    from darktrigger.replay.progress import Progress

    return Progress(desc, total=total, unit="chunk", enabled=enabled)


def _rate_note(done_events: int, t0: float) -> str:
    dt = time.monotonic() - t0
    return f"{done_events / dt / 1e6:.2f} M events/s" if dt > 0 and done_events else ""


class LocalExecutor:
    """This process, one chunk after the other."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str,
            events: Sequence[int] | None = None, progress: bool = True) -> Iterator[R]:
        t0, done = time.monotonic(), 0
        with _progress(desc, len(items), progress) as bar:
            for i, item in enumerate(items):
                result = fn(item)
                done += events[i] if events is not None else 0
                bar.describe("", _rate_note(done, t0))
                bar.update(1)
                yield result

    def close(self) -> None:
        return None


@dataclass
class DaskExecutor:
    """A Dask ``distributed`` client: ``local:N`` (a LocalCluster of N single-threaded worker
    processes, started here and stopped by :meth:`close`) or a scheduler's address."""

    spec: str
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    name: str = field(init=False, default="dask")
    client: Any = field(init=False, default=None)
    cluster: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        from distributed import Client, LocalCluster

        if not log.isEnabledFor(logging.DEBUG):  # the scheduler's and nannies' INFO lines are not ours
            logging.getLogger("distributed").setLevel(logging.WARNING)
        if self.spec.startswith("local:") or self.spec == "local":
            text = self.spec.partition(":")[2] or "2"
            if not text.isdigit() or int(text) < 1:
                raise ConfigError(f"--dask {self.spec}: expected local:N with N >= 1 worker processes")
            self.cluster = LocalCluster(n_workers=int(text), threads_per_worker=1, processes=True,
                                        dashboard_address=":0", scheduler_kwargs={"dashboard": False},
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self.name = f"dask local:{text}"
            return
        address = self.spec if "://" in self.spec else f"tcp://{self.spec}"
        try:
            self.client = Client(address, timeout=f"{self.connect_timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--dask {self.spec}: could not reach a Dask scheduler at {address} within "
                              f"{self.connect_timeout_s:g} s ({type(exc).__name__}: {exc}); start one with "
                              f"`dask scheduler` and `dask worker {address}`, or use --dask local:N") from None
        self.name = f"dask {address}"

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str,
            events: Sequence[int] | None = None, progress: bool = True) -> Iterator[R]:
        from distributed import as_completed

        futures = self.client.map(fn, list(items), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        ready: set[int] = set()
        nxt, t0, done = 0, time.monotonic(), 0
        with _progress(desc, len(futures), progress) as bar:
            for future in as_completed(futures):
                i = index[future.key]
                ready.add(i)
                done += events[i] if events is not None else 0
                bar.describe("", _rate_note(done, t0))
                bar.update(1)
                while nxt in ready:  # hand results out in the plan's order, as soon as they can be
                    yield _result(futures[nxt], items[nxt])
                    futures[nxt].release()
                    ready.discard(nxt)
                    nxt += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _result(future: Any, item: Any) -> Any:
    """A future's result; a task that kept killing its workers is a clear error naming it
    (another exception of a task is raised as it was raised on the worker)."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        what = getattr(getattr(item, "chunk", None), "label", repr(item))
        raise OfflineJobError(f"{what}: the task was running on every worker that died before it "
                              f"finished ({exc}); Dask gives up after "
                              f"distributed.scheduler.allowed-failures deaths — run it without --dask "
                              f"to see what kills the process") from None


def make_executor(dask: str | None) -> Executor:
    """``None`` → this process; ``local:N`` or an address → Dask (module doc)."""
    return LocalExecutor() if not dask else DaskExecutor(dask)


# -- scoring ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """A model to load in a task: the column name, its directory, backend, variant, threads."""

    name: str
    path: str
    backend: str = "onnxruntime"
    variant: str | None = None
    threads: int = 1


#: models loaded in this process, with the state of their files when loaded: a worker keeps
#: them between tasks, and loads a model again when its files have changed (retrained, say)
_LOADED: dict[ModelRef, tuple[tuple[tuple[str, int, int], ...], Any]] = {}


def _files_state(directory: str) -> tuple[tuple[str, int, int], ...]:
    """(name, size, modification time) of every file in a model directory."""
    root = Path(directory)
    if not root.is_dir():
        return ()
    return tuple(sorted((str(f.relative_to(root)), st.st_size, st.st_mtime_ns)
                        for f in root.rglob("*") if f.is_file() and (st := f.stat())))


def _scorer(ref: ModelRef) -> Any:
    state = _files_state(ref.path)
    if ref not in _LOADED or _LOADED[ref][0] != state:
        from darktrigger.models import load_model

        _LOADED[ref] = (state, load_model(ref.path, ref.backend, variant=ref.variant, threads=ref.threads))
    return _LOADED[ref][1]


@dataclass(frozen=True)
class ScoreTask:
    """Score one chunk with some models (a picklable task)."""

    chunk: Chunk
    models: tuple[ModelRef, ...]
    chunk_size: int = 65_536
    on_error: str = "fail"

    def __call__(self) -> dict[str, np.ndarray]:
        return self.scored()[1]

    def scored(self) -> tuple[EventBatch, dict[str, np.ndarray]]:
        """The chunk's events and their scores."""
        batch = _whole(self.chunk, self.chunk_size, self.on_error)
        return batch, {m.name: np.asarray(_scorer(m).score(batch), np.float32) for m in self.models}


def _run(task: Callable[[], R]) -> R:
    return task()


def _events_and_scores(task: ScoreTask) -> tuple[EventBatch | None, dict[str, np.ndarray]]:
    return task.scored()  # in this process: the events are at hand, no second read


def _scores_only(task: ScoreTask) -> tuple[EventBatch | None, dict[str, np.ndarray]]:
    return None, task()  # on a worker: only the scores travel back; the client reads the events


def score_files(paths: Sequence[str | Path], models: Sequence[ModelRef], out: str | Path, *,
                executor: Executor | None = None, chunk_events: int = DEFAULT_CHUNK_EVENTS,
                chunk_size: int = 65_536, on_error: str = "fail", max_events: int | None = None,
                progress: bool = True) -> int:
    """Write the events of ``paths`` to the native file ``out`` with a ``score/<name>`` column
    per model; returns the number of events. Tasks score chunks; this process reads each
    chunk again (in this process the task's events are kept instead) and writes it with its
    scores, in the plan's order, to a ``.part`` file
    beside ``out`` that replaces ``out`` when the job is complete (a failed job leaves no
    half-written ``out``)."""
    from darktrigger.daq.trigger.seeds import score_column
    from darktrigger.replay.storage import NativeWriter

    executor = executor or LocalExecutor()
    chunks = plan_chunks(paths, chunk_events, max_events=max_events)
    tasks = [ScoreTask(c, tuple(models), chunk_size, on_error) for c in chunks]
    provenance = {"scored": {"models": {m.name: {"path": m.path, "backend": m.backend, "variant": m.variant}
                                        for m in models},
                             "inputs": [str(p) for p in paths], "executor": executor.name}}
    n, out = 0, Path(out)
    part = out.with_name(f".{out.name}.part")
    try:
        with NativeWriter(part, provenance=provenance) as writer:
            fn = _events_and_scores if isinstance(executor, LocalExecutor) else _scores_only
            results = executor.map(fn, tasks, desc=f"score ({executor.name})",
                                   events=[c.stop - c.start for c in chunks], progress=progress)
            for chunk, (events, scores) in zip(chunks, results, strict=True):
                batch = events if events is not None else _whole(chunk, chunk_size, on_error)
                for s in scores.values():
                    if len(s) != len(batch):
                        raise ConfigError(f"{chunk.label}: a task scored {len(s)} events, the chunk has "
                                          f"{len(batch)} (did the file change during the job?)")
                writer.write(batch.with_columns(**{score_column(k): v for k, v in scores.items()}))
                n += len(batch)
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    return n


# -- a menu's counts -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CountTask:
    """A menu's counts on one chunk (a picklable task): the menu is read from its YAML in the
    task, its models loaded (and kept) by the worker."""

    chunk: Chunk
    menu_path: str
    threads: int = 1
    chunk_size: int = 65_536
    on_error: str = "fail"

    def __call__(self) -> tuple[Any, float, int]:
        from darktrigger.daq.trigger.menu import Menu, add_scores
        from darktrigger.daq.trigger.rates import MenuCounts
        from darktrigger.models.thresholds import checked_weights

        menu = Menu.from_yaml(self.menu_path)
        scorers = {name: _scorer(ModelRef(name, str(menu.models[name].path), menu.models[name].backend,
                                          menu.models[name].variant, self.threads))
                   for name in menu.used_models}
        counts = MenuCounts.for_menu(menu)
        total, events, row = 0.0, 0, self.chunk.start
        batch = _whole(self.chunk, self.chunk_size, self.on_error)
        if len(batch):
            weights = checked_weights(batch, self.chunk.path, first_row=row)
            total, events = float(weights.sum()), len(batch)
            counts.add(menu.decide(add_scores(batch, scorers)), weights=weights)
        return counts, total, events


def menu_counts(menu_path: str | Path, paths: Sequence[str | Path], *, executor: Executor | None = None,
                chunk_events: int = DEFAULT_CHUNK_EVENTS, chunk_size: int = 65_536, threads: int = 1,
                on_error: str = "fail", max_events: int | None = None, progress: bool = True) -> Any:
    """A menu's :class:`~darktrigger.daq.trigger.rates.MenuCounts` over files, merged chunk by
    chunk in the plan's order (module doc: exactly the same with any executor)."""
    from darktrigger.daq.trigger.menu import Menu
    from darktrigger.daq.trigger.rates import MenuCounts
    from darktrigger.models.thresholds import check_weight_sum

    menu = Menu.from_yaml(menu_path)
    if menu.uncalibrated:
        raise ConfigError(f"{menu.where}: seed(s) {', '.join(menu.uncalibrated)} have rate_khz but "
                          f"no threshold; run `darktrigger menu calibrate` first")
    executor = executor or LocalExecutor()
    chunks = plan_chunks(paths, chunk_events, max_events=max_events)
    tasks = [CountTask(c, str(Path(menu_path).resolve()), threads, chunk_size, on_error) for c in chunks]
    counts = MenuCounts.for_menu(menu)
    per_file: dict[str, tuple[float, int]] = {}
    results = executor.map(_run, tasks, desc=f"menu rates ({executor.name})",
                           events=[c.stop - c.start for c in chunks], progress=progress)
    for chunk, (part, total, events) in zip(chunks, results, strict=True):
        counts.merge(part)
        t, n = per_file.get(chunk.path, (0.0, 0))
        per_file[chunk.path] = (t + total, n + events)
    for path, (total, n_events) in per_file.items():
        check_weight_sum(total, n_events, path)
    return counts


def close_quietly(executor: Executor) -> None:
    """Close an executor, logging (not raising) what goes wrong while a cluster stops."""
    try:
        executor.close()
    except Exception as exc:  # noqa: BLE001 (a cluster's shutdown noise must not hide the job's result)
        log.debug("closing %s: %s", executor.name, exc)
