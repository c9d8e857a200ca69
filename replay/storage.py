"""darktrigger's native HDF5 event files: chunked, compressed, appendable, crash-safe.

    >>> from darktrigger.replay.storage import NativeWriter, NativeFile
    >>> from darktrigger.replay.testing import random_batch
    >>> with NativeWriter("events.h5", provenance={"generator": "toy"}) as w:
    ...     w.write(random_batch(100, seed=1))
    >>> with NativeFile("events.h5") as f:
    ...     len(f), f.provenance["generator"], next(f.iter_batches(4096))
    (100, 'toy', EventBatch(n=100, extra=[]))

Layout: one dataset per column under ``/events`` (a ``/`` in a column name such as
``score/ae`` is stored as ``%2F``), chunked along events, compressed; root attributes
hold the format tag, schema version, column list and provenance (generator, process,
seed, software version, creation time). The file is written in HDF5's single-writer
multiple-reader (SWMR) mode, and ``/committed`` holds the number of events fully
written and flushed: a writer killed mid-file leaves a file readable up to its last
flushed chunk, and a reader may follow a file while it is being written.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from darktrigger.replay.errors import InputFormatError, SchemaError
from darktrigger.replay.events import (
    REQUIRED,
    SCHEMA_VERSION,
    EventBatch,
    expected_dtype,
    expected_shape,
)

log = logging.getLogger(__name__)

FORMAT_TAG = "darktrigger-events"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # the first bytes of every HDF5 file
#: ``lz4`` is Blosc(LZ4, byte shuffle) from hdf5plugin: the fastest to read here (see
#: BENCHMARKS.md); other tools need ``import hdf5plugin`` to read it. ``none`` is faster
#: still and readable by any HDF5 tool.
COMPRESSIONS = ("lz4", "zstd", "gzip", "lzf", "none")
DEFAULT_CHUNK_EVENTS = 16384


def _dataset_name(column: str) -> str:
    return column.replace("%", "%25").replace("/", "%2F")


def _h5py() -> Any:
    import h5py
    import hdf5plugin  # noqa: F401  (registers the Blosc filters with HDF5)

    return h5py


def _filter_options(compression: str) -> dict[str, Any]:
    if compression == "none":
        return {}
    if compression in ("gzip", "lzf"):
        return {"compression": compression, "shuffle": True}
    import hdf5plugin

    cname: Any = compression
    return dict(hdf5plugin.Blosc(cname=cname, clevel=5 if compression == "lz4" else 3,
                                 shuffle=hdf5plugin.Blosc.SHUFFLE))


class NativeWriter:
    """Write event batches to a native file; every ``chunk_events`` events are flushed.

    ``mode="w"`` creates (or overwrites) the file, ``mode="a"`` appends to an existing
    native file with the same columns. ``compression``: one of :data:`COMPRESSIONS`.
    """

    def __init__(self, path: str | Path, *, provenance: Mapping[str, Any] | None = None,
                 mode: str = "w", chunk_events: int = DEFAULT_CHUNK_EVENTS,
                 compression: str = "lz4") -> None:
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if chunk_events <= 0:
            raise ValueError(f"chunk_events must be positive, got {chunk_events}")
        h5py = _h5py()
        self.path = Path(path)
        self.chunk_events = int(chunk_events)
        self._filters = _filter_options(compression)
        self._pending: list[EventBatch] = []
        self._n_pending = 0
        self._columns: list[str] | None = None
        if mode == "a" and self.path.exists():
            check_native(self.path)
            try:
                self._file = h5py.File(self.path, "a", libver="latest")
            except OSError as exc:
                hint = (" (a writer was killed while writing it: its committed events can be read, "
                        "but to append, clear the flag with `h5clear -s FILE` from hdf5-tools or "
                        "write a new file)" if "already open for write" in str(exc) else "")
                raise InputFormatError(str(self.path), "", "a native file that can be opened for appending",
                                       f"{exc}{hint}") from exc
            self._columns = json.loads(self._file.attrs["columns"])
            self._committed = int(self._file["committed"][0])
            for name in self._columns:  # drop rows past the commit mark left by a crash
                ds = self._file["events"][_dataset_name(name)]
                if ds.shape[0] != self._committed:
                    ds.resize(self._committed, axis=0)
            self._file.swmr_mode = True
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.path, "w", libver="latest")
            self._committed = 0
            from darktrigger import __version__

            attrs = self._file.attrs
            attrs["darktrigger_format"] = FORMAT_TAG
            attrs["schema_version"] = SCHEMA_VERSION
            prov = {"software_version": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    **dict(provenance or {})}
            attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
            for key, value in prov.items():
                if isinstance(value, (str, int, float)):
                    attrs[key] = value
            self._file.create_dataset("committed", data=np.zeros(1, np.int64))

    @property
    def n_events(self) -> int:
        """Events accepted so far (committed plus still buffered)."""
        return self._committed + self._n_pending

    def _create(self, batch: EventBatch) -> None:
        grp = self._file.create_group("events")
        names = list(batch.columns)
        for name in names:
            arr = batch.columns[name]
            chunk_rows = max(1, min(self.chunk_events, (4 << 20) // max(1, arr[:1].nbytes)))
            grp.create_dataset(
                _dataset_name(name), shape=(0, *arr.shape[1:]), maxshape=(None, *arr.shape[1:]),
                dtype=arr.dtype, chunks=(chunk_rows, *arr.shape[1:]), **self._filters,
            )
        self._file.attrs["columns"] = json.dumps(names)
        self._columns = names
        self._file.swmr_mode = True  # no new objects or attributes from here on

    def write(self, batch: EventBatch) -> None:
        """Queue a batch; full chunks are written and flushed at once."""
        if self._columns is None:
            self._create(batch)
        elif set(batch.columns) != set(self._columns):
            raise SchemaError(
                f"{self.path}: batch has columns {sorted(batch.columns)}, "
                f"the file has {sorted(self._columns)}"
            )
        if len(batch) == 0:
            return
        self._pending.append(batch)
        self._n_pending += len(batch)
        while self._n_pending >= self.chunk_events:
            self._flush_rows(self.chunk_events)

    def flush(self) -> None:
        """Write and commit everything buffered, even a partial chunk."""
        if self._n_pending:
            self._flush_rows(self._n_pending)

    def _flush_rows(self, n: int) -> None:
        assert self._columns is not None
        merged = EventBatch.concat(self._pending) if len(self._pending) > 1 else self._pending[0]
        out, rest = merged[:n], merged[n:]
        start, stop = self._committed, self._committed + n
        grp = self._file["events"]
        for name in self._columns:
            ds = grp[_dataset_name(name)]
            ds.resize(stop, axis=0)
            ds[start:stop] = out.columns[name]
        self._file.flush()
        # The commit mark moves only after the data are on disk.
        self._file["committed"][0] = stop
        self._file.flush()
        self._committed = stop
        self._pending = [rest] if len(rest) else []
        self._n_pending = len(rest)

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> NativeWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_hdf5(path: str | Path) -> Any:
    """Open an HDF5 file for reading (ours or a public format's; the Blosc filters
    registered), following a live or killed SWMR writer if there is one.

    A plain open comes first: it checks the file's stored length, so a truncated file
    fails at once (an SWMR reader would retry its metadata reads for a long time).
    Only a file flagged as open by a writer is then opened in SWMR mode.
    """
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise InputFormatError(str(path), "", "a complete, readable HDF5 file",
                                   f"an unreadable one (truncated or corrupt? {exc})") from exc
    try:
        return h5py.File(path, "r", swmr=True)
    except OSError as exc:
        raise InputFormatError(str(path), "", "a complete, readable HDF5 file",
                               f"an unreadable one (truncated or corrupt? {exc})") from exc


def check_native(path: str | Path) -> None:
    """Raise :class:`InputFormatError` unless ``path`` is a readable native file."""
    with open_hdf5(path) as f:
        if f.attrs.get("darktrigger_format") != FORMAT_TAG:
            raise InputFormatError(str(path), "", f"a darktrigger native file ({FORMAT_TAG!r} tag)",
                                   "an HDF5 file without it")


class NativeFile:
    """Read access to a native file: provenance, length, batches in chunks.

    Only the committed events are visible; a file still being written can be re-read
    (``refresh()``) to see more.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open_hdf5(self.path)
        self._swmr = bool(self._file.swmr_mode)
        attrs = self._file.attrs
        if attrs.get("darktrigger_format") != FORMAT_TAG:
            self._file.close()
            raise InputFormatError(str(self.path), "", f"a darktrigger native file ({FORMAT_TAG!r} tag)",
                                   "an HDF5 file without it")
        version = int(attrs.get("schema_version", -1))
        if version > SCHEMA_VERSION:
            self._file.close()
            raise InputFormatError(
                str(self.path), "", f"schema version <= {SCHEMA_VERSION} (this darktrigger)",
                f"schema version {version}: upgrade darktrigger to read it",
            )
        self.provenance: dict[str, Any] = json.loads(attrs.get("provenance", "{}"))
        self.columns: list[str] = json.loads(attrs.get("columns", "[]"))
        self._datasets = {n: self._file["events"][_dataset_name(n)] for n in self.columns}
        for name, ds in self._datasets.items():
            if ds.dtype != expected_dtype(name) or ds.shape[1:] != expected_shape(name):
                raise InputFormatError(
                    str(self.path), f"column {name!r}",
                    f"dtype {expected_dtype(name)} and per-event shape {expected_shape(name)}",
                    f"{ds.dtype} and {ds.shape[1:]}",
                )
        missing = [n for n in REQUIRED if n not in self.columns and self.columns]
        if missing:
            raise InputFormatError(str(self.path), "", f"columns {', '.join(missing)}", "a file without them")
        self._n = self._read_committed()

    def _read_committed(self) -> int:
        ds = self._file["committed"]
        if self._swmr:
            ds.refresh()
            for d in self._datasets.values():
                d.refresh()
        n = int(ds[0])
        for d in self._datasets.values():
            n = min(n, d.shape[0])
        return n

    def refresh(self) -> int:
        """Re-read the commit mark (for a file still being written); returns the length."""
        self._n = self._read_committed()
        return self._n

    def __len__(self) -> int:
        return self._n

    def read(self, start: int, stop: int) -> EventBatch:
        """Events ``start:stop`` as one batch."""
        stop = min(stop, self._n)
        if not self.columns:
            return EventBatch.empty()
        try:
            return EventBatch({n: ds[start:stop] for n, ds in self._datasets.items()})
        except OSError as exc:
            raise InputFormatError(str(self.path), f"rows {start}-{stop - 1}", "readable data",
                                   f"an HDF5 read error ({exc}); is the file truncated?") from exc

    def iter_batches(self, chunk_size: int, start: int = 0) -> Iterator[EventBatch]:
        for a in range(start, self._n, chunk_size):
            yield self.read(a, a + chunk_size)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> NativeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_events(path: str | Path, batches: EventBatch | list[EventBatch] | Iterator[EventBatch], *,
                 provenance: Mapping[str, Any] | None = None, **options: Any) -> int:
    """Write batches to a new native file; returns the number of events written."""
    if isinstance(batches, EventBatch):
        batches = [batches]
    with NativeWriter(path, provenance=provenance, **options) as writer:
        for batch in batches:
            writer.write(batch)
        return writer.n_events
