"""Reader of the LHC Olympics 2020 HDF5 files (R&D set and black boxes; arXiv 2101.08320).

Each file is a pandas DataFrame written by ``DataFrame.to_hdf`` in the PyTables
"fixed" layout: a group (key ``df``) with attribute ``pandas_type = "frame"`` and a
dataset ``block0_values`` of shape ``(N, 2100)`` or ``(N, 2101)`` (stored transposed,
attribute ``transposed``): per event up to 700 hadrons × (pT [GeV], η, φ), massless,
zero padded, and in the R&D set a last column with the truth label (1 signal
W′ → XY, 0 QCD dijet). ``axis1`` holds the row index (the event number).

Every event is turned into the event model here: the hadrons (|η| < 5) are clustered
into anti-kT R = 1.0 jets with FastJet, the leading ten jets above 20 GeV fill the jet
slots, MET is the missing pT of the hadron list, the e/γ and μ slots stay empty (the
files carry no particle identity), and the CWoLa analysis columns ``mjj``, ``mj1``,
``mj2``, ``tau21_j1``, ``tau21_j2`` are computed as for the Pythia samples
(:func:`darktrigger.replay.detector.dijet_features`).

    >>> from darktrigger.replay.readers import open_events
    >>> from darktrigger.replay.testing import write_sample
    >>> path = write_sample("lhco", "events_anomalydetection.h5", n=20)
    >>> reader = open_events(path)
    >>> reader.name, reader.count()
    ('lhco', 20)
    >>> batch = next(iter(reader)); batch["mjj"][:3].round(-2).tolist()
    [4200.0, 2600.0, 3000.0]
    >>> batch["truth"][:4].tolist() == [LABELS[0], LABELS[1], LABELS[0], LABELS[1]]
    True

Options: ``key`` (the DataFrame's key, found when the file holds one), ``truth`` (a
process label for every event, overriding the label column; default: the label
column mapped to ``wprime_xy``/``qcd_dijet``, −1 (data) for a black box).
The clustering (twice: jets for the object block, then :func:`dijet_features` with
N-subjettiness) sets the speed, far below that of the other readers: hence a smaller
chunk, 4096 events by default (``chunk_size``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.replay.errors import InputFormatError
from darktrigger.replay.events import PROCESS_LABELS, EventBatch
from darktrigger.replay.objects import empty_block, pack_slots, set_met
from darktrigger.replay.readers.adc2021 import truth_label
from darktrigger.replay.readers.base import EventReader, register_reader
from darktrigger.replay.storage import HDF5_MAGIC, open_hdf5

log = logging.getLogger(__name__)

N_HADRONS = 700
N_COLUMNS = 3 * N_HADRONS            # 2100: (pT, η, φ) × 700
VALUES = "block0_values"
JET_RADIUS = 1.0
JET_PT_MIN = 20.0                    # GeV, as dijet_features
ETA_MAX = 5.0
LABELS = {0: PROCESS_LABELS["qcd_dijet"], 1: PROCESS_LABELS["wprime_xy"]}
CHUNK = 4096


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _frame_keys(f: Any) -> list[str]:
    """Top-level groups written by pandas as a "fixed" DataFrame."""
    import h5py

    keys = []
    for key, node in f.items():
        if isinstance(node, h5py.Group) and _text(node.attrs.get("pandas_type", "")) == "frame":
            keys.append(key)
    return keys


@register_reader("lhco")
class LHCOReader(EventReader):
    """LHC Olympics 2020 pandas HDF5 (700 hadrons × pT, η, φ [+ label]), clustered to R = 1 jets."""

    description = ("LHC Olympics 2020 HDF5 (pandas frame, 700 hadrons x (pT, eta, phi) "
                   "[+ label]); R=1.0 jets and dijet columns")

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        kwargs.setdefault("chunk_size", CHUNK)
        super().__init__(path, **kwargs)
        self._truth = self.options.get("truth")
        with self._open() as f:
            self.key = self._key(f)
            ds = self._values(f)
            self._n, self._ncols = int(ds.shape[0]), int(ds.shape[1])
            self._has_label = self._ncols == N_COLUMNS + 1
            self._dtype = ds.dtype
            self._index = self._index_of(f)

    # -- format detection and description --------------------------------------------
    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if not head.startswith(HDF5_MAGIC):
            return False
        import h5py
        import hdf5plugin  # noqa: F401  (Blosc-compressed frames)

        with h5py.File(path, "r") as f:
            if "darktrigger_format" in f.attrs:
                return False
            for key in _frame_keys(f):
                ds = f[key].get(VALUES)
                if isinstance(ds, h5py.Dataset) and ds.ndim == 2 and \
                        ds.shape[1] in (N_COLUMNS, N_COLUMNS + 1):
                    return True
        return False

    def count(self) -> int:
        return self._n

    def metadata(self) -> dict[str, Any]:
        return {"key": self.key, "shape": (self._n, self._ncols), "dtype": str(self._dtype),
                "label_column": self._has_label, "jets": f"anti-kT R={JET_RADIUS}, pT > {JET_PT_MIN} GeV",
                "truth": "label column" if self._truth is None and self._has_label else
                truth_label(self._truth)}

    # -- reading ---------------------------------------------------------------------
    def _open(self) -> Any:
        return open_hdf5(self.path)

    def _key(self, f: Any) -> str:
        key = self.options.get("key")
        keys = _frame_keys(f)
        if key is not None:
            if key not in keys:
                raise InputFormatError(str(self.path), f"key {key!r}", "a pandas DataFrame "
                                       "group of that name", f"frames {keys or 'none'}")
            return str(key)
        if len(keys) != 1:
            raise InputFormatError(str(self.path), "", "one pandas DataFrame (pandas_type "
                                   "'frame'); pass key= to choose", f"frames {keys or 'none'}")
        return keys[0]

    def _values(self, f: Any) -> Any:
        import h5py

        group = f[self.key]
        ds = group.get(VALUES)
        where = f"key {self.key!r}, dataset {VALUES!r}"
        if not isinstance(ds, h5py.Dataset):
            raise InputFormatError(str(self.path), f"key {self.key!r}", "a fixed-format frame "
                                   f"with one block {VALUES!r} (one float dtype for every column)",
                                   f"{sorted(group.keys())}")
        if ds.ndim != 2 or ds.shape[1] not in (N_COLUMNS, N_COLUMNS + 1):
            raise InputFormatError(str(self.path), where, f"shape (N, {N_COLUMNS}) or "
                                   f"(N, {N_COLUMNS + 1}) with the label", f"shape {ds.shape}")
        if ds.dtype.kind != "f":
            raise InputFormatError(str(self.path), where, "a float dtype", f"dtype {ds.dtype}")
        transposed = ds.attrs.get("transposed", True)
        if not bool(transposed):
            raise InputFormatError(str(self.path), where, "rows of events (pandas writes the "
                                   "block transposed, attribute transposed = True)",
                                   "transposed = False")
        return ds

    def _index_of(self, f: Any) -> np.ndarray | None:
        axis1 = f[self.key].get("axis1")
        if axis1 is None or axis1.shape != (self._n,) or axis1.dtype.kind not in "iu":
            return None
        return np.asarray(axis1[...])

    def __iter__(self) -> Iterator[EventBatch]:
        step = self.chunk_size
        with self._open() as f:
            ds = self._values(f)
            for start in range(0, self._n, step):
                stop = min(start + step, self._n)
                try:
                    raw = np.asarray(ds[start:stop], dtype=np.float64)
                except OSError as exc:
                    raise InputFormatError(str(self.path), f"rows {start}-{stop - 1}",
                                           f"readable data in {VALUES!r}",
                                           f"a read error (truncated or corrupt file? {exc})") from exc
                batch = self._build(raw, start)
                if len(batch):
                    yield batch
        self.log_skips()

    def _good_rows(self, raw: np.ndarray, start: int) -> np.ndarray:
        """bool ``[n]``: rows with finite values, pT ≥ 0, |φ| ≤ π and a 0/1 label."""
        hadrons = raw[:, :N_COLUMNS].reshape(len(raw), N_HADRONS, 3)
        ok = np.ones(len(raw), bool)
        checks = [
            (~np.isfinite(raw).all(axis=1), "finite numbers"),
            (np.nan_to_num(hadrons[:, :, 0], nan=0.0).min(axis=1) < 0, "pT >= 0 for every hadron"),
            (np.nan_to_num(np.abs(hadrons[:, :, 2]), nan=0.0).max(axis=1) > np.pi + 1e-4,
             "|phi| <= pi for every hadron"),
        ]
        if self._has_label:
            label = raw[:, N_COLUMNS]
            checks.append((np.isfinite(label) & ~np.isin(label, (0.0, 1.0)),
                           f"a truth label of 0 or 1 in column {N_COLUMNS}"))
        for bad, expected in checks:
            for row in np.flatnonzero(bad & ok):
                self.bad(f"row {start + row}", expected, _describe(raw[row]))
            ok &= ~bad
        return ok

    def _build(self, raw: np.ndarray, start: int) -> EventBatch:
        from darktrigger.replay.detector import ParticleBatch, _cluster, dijet_features

        ok = self._good_rows(raw, start)
        rows = np.flatnonzero(ok)
        raw = raw[ok]
        n = len(raw)
        hadrons = raw[:, :N_COLUMNS].reshape(n, N_HADRONS, 3)
        filled = hadrons[:, :, 0] > 0
        pt, eta, phi = hadrons[:, :, 0][filled], hadrons[:, :, 1][filled], hadrons[:, :, 2][filled]
        counts = filled.sum(axis=1)
        particles = ParticleBatch.from_arrays(
            px=pt * np.cos(phi), py=pt * np.sin(phi), pz=pt * np.sinh(eta), e=pt * np.cosh(eta),
            pid=np.full(len(pt), 211), counts=counts)
        block = empty_block(n)
        if n:
            in_calo = np.abs(particles.eta) < ETA_MAX
            ev = particles.event_index
            p4, n_jets, _ = _cluster(particles.px[in_calo], particles.py[in_calo],
                                     particles.pz[in_calo], particles.e[in_calo],
                                     np.bincount(ev[in_calo], minlength=n), JET_RADIUS, JET_PT_MIN)
            jpt = np.hypot(p4[:, 0], p4[:, 1])
            jeta = np.arcsinh(p4[:, 2] / np.maximum(jpt, 1e-9))
            pack_slots(block, "jet", np.repeat(np.arange(n), n_jets), jpt, jeta,
                       np.arctan2(p4[:, 1], p4[:, 0]))
            mx = -np.bincount(ev, weights=particles.px, minlength=n)
            my = -np.bincount(ev, weights=particles.py, minlength=n)
            set_met(block, np.hypot(mx, my), np.arctan2(my, mx))
            extra = dijet_features(particles, radius=JET_RADIUS, pt_min=JET_PT_MIN)
        else:
            extra = {k: np.zeros(0, np.float32) for k in ("mjj", "mj1", "mj2", "tau21_j1", "tau21_j2")}
        if self._truth is not None:
            truth: np.ndarray | int = truth_label(self._truth)
        elif self._has_label:
            truth = np.where(raw[:, N_COLUMNS] > 0.5, LABELS[1], LABELS[0]).astype(np.int16)
        else:
            truth = -1
        ids = (self._index[start + rows] if self._index is not None else start + rows)
        batch = EventBatch.from_objects(block, truth=truth, event=ids.astype(np.uint64), extra=extra)
        return self.screen(batch, first_row=start, locations=start + rows)


def _describe(row: np.ndarray) -> str:
    bad = np.flatnonzero(~np.isfinite(row))
    if len(bad):
        return f"{row[bad[0]]} in column {bad[0]}"
    hadrons = row[:N_COLUMNS].reshape(N_HADRONS, 3)
    neg = np.flatnonzero(hadrons[:, 0] < 0)
    if len(neg):
        return f"pT {hadrons[neg[0], 0]:g} for hadron {neg[0]}"
    wild = np.flatnonzero(np.abs(hadrons[:, 2]) > np.pi + 1e-4)
    if len(wild):
        return f"phi {hadrons[wild[0], 2]:g} for hadron {wild[0]}"
    return f"label {row[N_COLUMNS]:g}" if len(row) > N_COLUMNS else "a bad value"
