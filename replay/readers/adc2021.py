"""Reader of the ADC2021 (Anomaly Detection Data Challenge 2021) HDF5 files.

The files hold a dataset ``Particles`` of shape ``(N, 19, 4)`` whose last axis is
``[pT, η, φ, class]`` (class 1 MET, 2 e/γ, 3 muon, 4 jet, 0 for an empty slot), in
the same slot order as our event model; optionally ``Particles_Classes`` (the class
names) and ``EvtId`` (the black-box file's event ids). The class column is checked
against the slot and dropped.

    >>> from darktrigger.replay.readers import open_events
    >>> from darktrigger.replay.testing import write_sample
    >>> path = write_sample("adc2021", "background_for_training.h5", n=100)
    >>> reader = open_events(path, chunk_size=64, truth="qcd")
    >>> reader.name, reader.count()
    ('adc2021', 100)
    >>> batch = next(iter(reader)); batch.objects.shape, batch.objects.dtype
    ((64, 19, 3), dtype('float32'))
    >>> int(batch["truth"][0]) == PROCESS_LABELS["qcd"]
    True

Options: ``truth=`` a process label (int or a name in
:data:`~darktrigger.replay.events.PROCESS_LABELS`) for every event, default −1 (data).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.events import N_SLOTS, PROCESS_LABELS, SLOT_TYPES, EventBatch
from darktrigger.replay.readers.base import EventReader, register_reader
from darktrigger.replay.storage import HDF5_MAGIC, open_hdf5

log = logging.getLogger(__name__)

DATASET = "Particles"
#: The class every slot must carry when it is not empty (0).
SLOT_CLASS = np.array([{"met": 1, "egamma": 2, "muon": 3, "jet": 4}[k] for k in SLOT_TYPES],
                      dtype=np.float32)


def truth_label(value: Any) -> int:
    """A ``truth=`` option as an int label: an int, or a name of PROCESS_LABELS."""
    if value is None:
        return -1
    if isinstance(value, str):
        if value in PROCESS_LABELS:
            return PROCESS_LABELS[value]
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"truth must be an int or one of {', '.join(PROCESS_LABELS)}; got {value!r}"
            ) from None
    return int(value)


@register_reader("adc2021")
class ADC2021Reader(EventReader):
    """ADC2021 challenge HDF5: ``Particles`` ``(N, 19, 4)``, streamed in chunks."""

    description = "ADC2021 challenge HDF5 (dataset Particles, (N, 19, 4): pT, eta, phi, class)"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.truth = truth_label(self.options.get("truth"))
        with self._open() as f:
            ds = self._particles(f)
            self._n = int(ds.shape[0])
            self._dtype = ds.dtype
            self._classes = _class_names(f)
            self._has_evtid = "EvtId" in f
            if self._has_evtid:
                shape = f["EvtId"].shape
                if shape[0] != self._n or int(np.prod(shape[1:], dtype=np.int64)) != 1:
                    raise InputFormatError(str(self.path), "dataset 'EvtId'",
                                           f"shape ({self._n},) like Particles", str(shape))

    # -- format detection and description --------------------------------------------
    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if not head.startswith(HDF5_MAGIC):
            return False
        import h5py

        with h5py.File(path, "r") as f:
            if "darktrigger_format" in f.attrs:  # our native files are HDF5 too
                return False
            ds = f.get(DATASET)
            return isinstance(ds, h5py.Dataset) and ds.ndim >= 1 and ds.shape[-1] == 4

    def count(self) -> int:
        return self._n

    def metadata(self) -> dict[str, Any]:
        return {
            "dataset": DATASET,
            "shape": (self._n, N_SLOTS, 4),
            "dtype": str(self._dtype),
            "classes": self._classes,
            "has_evtid": self._has_evtid,
            "truth": self.truth,
        }

    # -- reading ---------------------------------------------------------------------
    def _open(self) -> Any:
        return open_hdf5(self.path)

    def _particles(self, f: Any) -> Any:
        import h5py

        ds = f.get(DATASET)
        if not isinstance(ds, h5py.Dataset):
            raise InputFormatError(str(self.path), f"dataset {DATASET!r}",
                                   "an ADC2021 file with a dataset 'Particles'",
                                   f"a file with {sorted(f.keys())}")
        if ds.ndim != 3 or ds.shape[1:] != (N_SLOTS, 4):
            raise InputFormatError(str(self.path), f"dataset {DATASET!r}",
                                   f"shape (N, {N_SLOTS}, 4)", f"shape {ds.shape}")
        if ds.dtype.kind != "f":
            raise InputFormatError(str(self.path), f"dataset {DATASET!r}",
                                   "a float dtype", f"dtype {ds.dtype}")
        return ds

    def __iter__(self) -> Iterator[EventBatch]:
        step = self.chunk_size
        with self._open() as f:
            ds = self._particles(f)
            evtid = f["EvtId"] if self._has_evtid else None
            buf = np.empty((min(step, self._n), N_SLOTS, 4), dtype=ds.dtype)
            for start in range(0, self._n, step):
                stop = min(start + step, self._n)
                m = stop - start
                try:
                    ds.read_direct(buf, np.s_[start:stop], np.s_[0:m])
                    ids = (np.asarray(evtid[start:stop]).reshape(m).astype(np.uint64)
                           if evtid is not None else np.arange(start, stop, dtype=np.uint64))
                except OSError as exc:
                    raise InputFormatError(str(self.path), f"rows {start}-{stop - 1}",
                                           "readable data in dataset 'Particles'",
                                           f"a read error (truncated or corrupt file? {exc})",
                                           ) from exc
                batch = self._build(buf[:m], ids, start)
                if len(batch):
                    yield batch
        self.log_skips()

    def _build(self, raw: np.ndarray, ids: np.ndarray, start: int) -> EventBatch:
        """Check the class column, drop it, and screen the values of one chunk."""
        # contiguous copies first: elementwise ops are slower on stride-4 views
        cls, pt = np.ascontiguousarray(raw[:, :, 3]), np.ascontiguousarray(raw[:, :, 0])
        ok = (cls == SLOT_CLASS) | ((cls == 0) & (pt == 0))
        locations = None
        if not ok.all():
            good = ok.all(axis=1)
            for row in np.flatnonzero(~good):
                slot = int(np.flatnonzero(~ok[row])[0])
                self.bad(f"row {start + row}",
                         f"class {int(SLOT_CLASS[slot])} ({SLOT_TYPES[slot]}) in slot {slot}, "
                         "or class 0 with pT 0 for an empty slot",
                         f"class {cls[row, slot]:g} with pT {pt[row, slot]:g}")
            raw, ids = raw[good], ids[good]
            locations = np.flatnonzero(good) + start
        objects = _drop_class_column(raw)
        n = len(objects)
        batch = EventBatch({
            "objects": objects,
            "run": np.ones(n, np.uint32),
            "lumi": np.ones(n, np.uint32),
            "event": ids,
            "bx": np.zeros(n, np.uint16),
            "truth": np.full(n, self.truth, np.int16),
            "weight": np.ones(n, np.float32),
        })
        return self.screen(batch, first_row=start, locations=locations)


_XYZ = np.dtype({"names": ["xyz"], "formats": ["V12"], "offsets": [0], "itemsize": 16})


def _drop_class_column(raw: np.ndarray) -> np.ndarray:
    """``raw[:, :, :3]`` as a new C-contiguous float32 array.

    For float32 input each (pT, η, φ) triple is copied as one 12-byte item, which is
    faster than numpy's strided copy with an inner length of 3 (see BENCHMARKS.md, ADC2021 read).
    """
    if raw.dtype == np.float32 and raw.flags.c_contiguous:
        out = np.empty((len(raw), N_SLOTS, 3), np.float32)
        np.copyto(out.reshape(-1).view("V12"), raw.reshape(-1).view(_XYZ)["xyz"])
        return out
    return raw[:, :, :3].astype(np.float32)


def _class_names(f: Any) -> list[str] | None:
    if "Particles_Classes" not in f:
        return None
    try:
        values = np.asarray(f["Particles_Classes"][()]).ravel()
    except (OSError, TypeError, ValueError) as exc:  # informative only: never fatal
        log.debug("cannot read Particles_Classes: %s", exc)
        return None
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
