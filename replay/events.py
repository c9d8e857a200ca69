"""The event model: a columnar batch of L1 trigger objects and identity columns.

One :class:`EventBatch` holds equal-length numpy columns, like an Arrow record batch:

==============  ===========  ===========================================================
column          dtype        meaning
==============  ===========  ===========================================================
``objects``     float32      ``[N, 19, 3]`` (pT in GeV, η, φ) per L1 object slot, in the
                             ADC2021 order: 0 MET, 1–4 e/γ, 5–8 μ, 9–18 jets; pT-ordered
                             within a type, zero-padded (pT = 0 is an empty slot), MET η = 0
``run``         uint32       run number
``lumi``        uint32       luminosity section
``event``       uint64       event number; (run, lumi, event) is unique
``bx``          uint16       bunch crossing, 1–3564 (0 when unknown)
``truth``       int16        generator process label (:data:`PROCESS_LABELS`), −1 for data
``weight``      float32      event weight
*others*        float32      optional ``[N]`` analysis features (``mjj``…) and ``score/<model>``
                             (Pythia ``zero_bias`` adds ``n_interactions``: pp interactions in
                             the crossing, hard and pile-up)
``trigger_bits`` uint64      optional ``[N]`` trigger decisions, one bit per seed
==============  ===========  ===========================================================

    >>> import numpy as np
    >>> from darktrigger.replay.events import EventBatch
    >>> b = EventBatch.from_objects(np.zeros((4, 19, 3), np.float32), truth=0)
    >>> len(b), b.flat.shape
    (4, (4, 57))
    >>> len(EventBatch.concat([b, b[1:3]]))
    6
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from darktrigger.replay.errors import SchemaError

SCHEMA_VERSION = 1

N_SLOTS = 19
N_FEATURES = N_SLOTS * 3  # the 57-number view
SLOT_MET = 0
SLOTS: dict[str, slice] = {
    "met": slice(0, 1),
    "egamma": slice(1, 5),
    "muon": slice(5, 9),
    "jet": slice(9, 19),
}
#: The type of each of the 19 slots, in order.
SLOT_TYPES: tuple[str, ...] = tuple(
    kind for kind, sl in SLOTS.items() for _ in range(sl.start, sl.stop)
)
#: Names of the 57 flat features, ``met_pt``, ``egamma0_eta``, ...
FEATURE_NAMES: tuple[str, ...] = tuple(
    f"{kind}{'' if kind == 'met' else i - SLOTS[kind].start}_{q}"
    for i, kind in enumerate(SLOT_TYPES)
    for q in ("pt", "eta", "phi")
)

#: Generator process labels stored in the ``truth`` column. Data is -1.
PROCESS_LABELS: dict[str, int] = {
    "qcd": 0,
    "wjets": 1,
    "zjets": 2,
    "ttbar": 3,
    "minbias": 4,
    "zero_bias": 5,
    "ato4l": 10,
    "lq_btau": 11,
    "h_tautau": 12,
    "hpm_taunu": 13,
    "qcd_dijet": 20,
    "wprime_xy": 21,
}
LABEL_NAMES: dict[int, str] = {v: k for k, v in PROCESS_LABELS.items()} | {-1: "data"}


def label_counts(labels: np.ndarray) -> dict[int, int]:
    """{label: events} of integer truth labels, by one bincount pass (``np.unique`` sorts,
    which costs more on every batch).

        >>> label_counts(np.array([0, 10, -1, 0], np.int16))
        {-1: 1, 0: 2, 10: 1}
    """
    if len(labels) == 0:
        return {}
    low = min(int(labels.min()), 0)  # -1 labels data
    counts = np.bincount(labels.astype(np.intp) - low)
    present = np.flatnonzero(counts)
    return dict(zip((present + low).tolist(), counts[present].tolist(), strict=True))


#: Processes that make up the Standard-Model background mixture ``sm_mix``.
SM_PROCESSES = ("qcd", "wjets", "zjets", "ttbar")
SIGNAL_PROCESSES = ("ato4l", "lq_btau", "h_tautau", "hpm_taunu")
DIJET_PROCESSES = ("qcd_dijet", "wprime_xy")
#: ``zero_bias``: one colliding bunch crossing per event, with pile-up (:mod:`darktrigger.replay.lhc`);
#: its events carry the label of the process of their hardest interaction (``minbias``, ``qcd``, ...)
ZERO_BIAS = "zero_bias"
ALL_PROCESSES = (*SM_PROCESSES, "sm_mix", ZERO_BIAS, *SIGNAL_PROCESSES, *DIJET_PROCESSES)
#: Truth labels of Standard-Model (background) events; every other label >= 0 is a signal.
#: Data (-1) is background too: it is what a trigger sees.
BACKGROUND_LABELS: frozenset[int] = frozenset(
    [PROCESS_LABELS[p] for p in (*SM_PROCESSES, "minbias", ZERO_BIAS, "qcd_dijet")] + [-1])


def is_signal(labels: np.ndarray) -> np.ndarray:
    """bool ``[N]``: events whose truth label is a signal process (not SM background, not data).

        >>> is_signal(np.array([0, 4, 10, -1, 21], np.int16)).tolist()
        [False, False, True, False, True]
    """
    return ~np.isin(np.asarray(labels), list(BACKGROUND_LABELS))

REQUIRED: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {
    "objects": (np.dtype(np.float32), (N_SLOTS, 3)),
    "run": (np.dtype(np.uint32), ()),
    "lumi": (np.dtype(np.uint32), ()),
    "event": (np.dtype(np.uint64), ()),
    "bx": (np.dtype(np.uint16), ()),
    "truth": (np.dtype(np.int16), ()),
    "weight": (np.dtype(np.float32), ()),
}
TRIGGER_BITS = "trigger_bits"
_PHI_TOLERANCE = 1e-4  # float32 rounding of ±π


def expected_dtype(name: str) -> np.dtype[Any]:
    """The dtype a column of this name must have."""
    if name in REQUIRED:
        return REQUIRED[name][0]
    if name == TRIGGER_BITS:
        return np.dtype(np.uint64)
    return np.dtype(np.float32)


def expected_shape(name: str) -> tuple[int, ...]:
    """The per-event shape a column of this name must have."""
    return REQUIRED[name][1] if name in REQUIRED else ()


class EventBatch:
    """A batch of N events as named, equal-length numpy columns (see module docs).

    Building one checks the structure (names, dtypes, shapes, lengths), which is cheap;
    :meth:`validate` checks the values (NaN/inf, φ range, negative pT).
    """

    __slots__ = ("columns",)

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        missing = [name for name in REQUIRED if name not in columns]
        if missing:
            raise SchemaError(
                f"event batch is missing column(s) {', '.join(missing)}; "
                f"every batch needs {', '.join(REQUIRED)}"
            )
        n = len(columns["objects"])
        for name, arr in columns.items():
            if not isinstance(arr, np.ndarray):
                raise SchemaError(f"column {name!r}: expected a numpy array, got {type(arr).__name__}")
            dtype, shape = expected_dtype(name), expected_shape(name)
            if arr.dtype != dtype:
                raise SchemaError(f"column {name!r}: expected dtype {dtype}, got {arr.dtype}")
            if arr.shape[1:] != shape or arr.ndim != 1 + len(shape):
                raise SchemaError(
                    f"column {name!r}: expected shape (N, {', '.join(map(str, shape))})"
                    if shape
                    else f"column {name!r}: expected shape (N,), got {arr.shape}"
                )
            if len(arr) != n:
                raise SchemaError(f"column {name!r} has {len(arr)} rows, 'objects' has {n}")
        self.columns: dict[str, np.ndarray] = dict(columns)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_objects(
        cls,
        objects: np.ndarray,
        *,
        truth: int | np.ndarray = -1,
        weight: float | np.ndarray = 1.0,
        run: int | np.ndarray = 1,
        lumi: int | np.ndarray = 1,
        event: np.ndarray | None = None,
        bx: int | np.ndarray = 0,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> EventBatch:
        """Build a batch from an ``[N, 19, 3]`` block, filling identity columns.

        ``event`` defaults to 0..N-1; scalars are broadcast.
        """
        objects = np.ascontiguousarray(objects, dtype=np.float32)
        n = len(objects)

        def col(value: Any, name: str) -> np.ndarray:
            dtype = REQUIRED[name][0]
            arr = np.asarray(value)
            if arr.ndim == 0:
                return np.full(n, arr, dtype=dtype)
            return np.ascontiguousarray(arr, dtype=dtype)

        columns = {
            "objects": objects,
            "run": col(run, "run"),
            "lumi": col(lumi, "lumi"),
            "event": col(np.arange(n) if event is None else event, "event"),
            "bx": col(bx, "bx"),
            "truth": col(truth, "truth"),
            "weight": col(weight, "weight"),
        }
        for name, arr in (extra or {}).items():
            columns[name] = np.ascontiguousarray(arr, dtype=expected_dtype(name))
        return cls(columns)

    @classmethod
    def empty(cls, extra: Iterable[str] = ()) -> EventBatch:
        """A batch of zero events (with the given optional columns)."""
        cols = {
            name: np.zeros((0, *shape), dtype=dtype) for name, (dtype, shape) in REQUIRED.items()
        }
        for name in extra:
            cols[name] = np.zeros((0, *expected_shape(name)), dtype=expected_dtype(name))
        return cls(cols)

    @classmethod
    def concat(cls, batches: Sequence[EventBatch]) -> EventBatch:
        """Concatenate batches that have the same columns."""
        if not batches:
            raise SchemaError("cannot concatenate zero batches")
        names = batches[0].names
        for i, b in enumerate(batches[1:], 1):
            if b.names != names:
                raise SchemaError(
                    f"cannot concatenate: batch {i} has columns {sorted(b.names)}, "
                    f"batch 0 has {sorted(names)}"
                )
        if len(batches) == 1:
            return batches[0]
        return cls({n: np.concatenate([b.columns[n] for b in batches]) for n in batches[0].columns})

    # -- access ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.columns["objects"])

    def __getitem__(self, key: str | slice | np.ndarray | Sequence[int]) -> Any:
        """``batch["mjj"]`` is a column; ``batch[10:20]`` or ``batch[mask]`` is a batch."""
        if isinstance(key, str):
            try:
                return self.columns[key]
            except KeyError:
                raise SchemaError(
                    f"no column {key!r} in this batch; it has {', '.join(self.columns)}"
                ) from None
        return EventBatch({n: a[key] for n, a in self.columns.items()})

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __repr__(self) -> str:
        extra = [n for n in self.columns if n not in REQUIRED]
        return f"EventBatch(n={len(self)}, extra={extra})"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.columns)

    @property
    def extra_names(self) -> list[str]:
        """Optional columns (analysis features, scores, trigger bits), in order."""
        return [n for n in self.columns if n not in REQUIRED]

    @property
    def objects(self) -> np.ndarray:
        return self.columns["objects"]

    @property
    def flat(self) -> np.ndarray:
        """The ``[N, 57]`` view the models take (pT, η, φ per slot); no copy when contiguous."""
        return self.columns["objects"].reshape(len(self), N_FEATURES)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values())

    def with_columns(self, **columns: np.ndarray) -> EventBatch:
        """A new batch with columns added or replaced (``score/ae`` via ``**{"score/ae": s}``)."""
        merged = dict(self.columns)
        for name, arr in columns.items():
            merged[name] = np.ascontiguousarray(arr, dtype=expected_dtype(name))
        return EventBatch(merged)

    def without(self, *names: str) -> EventBatch:
        """A new batch without the given optional columns."""
        for name in names:
            if name in REQUIRED:
                raise SchemaError(f"column {name!r} is required and cannot be dropped")
        return EventBatch({n: a for n, a in self.columns.items() if n not in names})

    def schema(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Column name → (dtype string, per-event shape), in column order."""
        return {n: (a.dtype.str, a.shape[1:]) for n, a in self.columns.items()}

    # -- value checks ---------------------------------------------------------------
    def problems(self) -> list[tuple[int, str]]:
        """(row, reason) for every row whose values break the event model, first reason only.

        Checks: NaN/inf in any float column, negative pT, φ outside [-π, π].
        """
        if self._values_ok():
            return []
        n = len(self)
        reason: list[str | None] = [None] * n
        obj = self.columns["objects"]

        def mark(mask: np.ndarray, why: Any) -> None:
            for row in np.flatnonzero(mask):
                if reason[row] is None:
                    reason[row] = why(row) if callable(why) else why

        finite = np.isfinite(obj)
        if not finite.all():
            bad = ~finite.all(axis=(1, 2))
            mark(bad, lambda r: _describe_nonfinite(obj[r]))
        pt, phi = obj[:, :, 0], obj[:, :, 2]
        neg = (pt < 0).any(axis=1)
        if neg.any():
            mark(neg, lambda r: _describe_slot(obj[r], pt[r] < 0, "pT >= 0"))
        with np.errstate(invalid="ignore"):
            out = (np.abs(phi) > math.pi + _PHI_TOLERANCE).any(axis=1)
        if out.any():
            mark(out, lambda r: _describe_slot(obj[r], np.abs(phi[r]) > math.pi + _PHI_TOLERANCE, "phi in [-pi, pi]", q=2))
        for name in self.extra_names:
            arr = self.columns[name]
            if arr.dtype.kind == "f":
                bad = ~np.isfinite(arr)
                if bad.any():
                    mark(bad, lambda r, name=name, arr=arr: f"column {name!r} is {arr[r]}, expected a finite number")
        return [(r, why) for r, why in enumerate(reason) if why is not None]

    def _values_ok(self) -> bool:
        """Fast whole-batch check; rows are looked at only if it fails."""
        # numpy, four passes: a one-pass numba kernel is faster per batch, but its first call
        # in a process costs more than it saves on the events most commands read.
        obj = self.columns["objects"]
        if len(obj) == 0:
            return True
        per_quantity = obj.reshape(-1, 3)
        phi = per_quantity[:, 2]
        limit = math.pi + _PHI_TOLERANCE
        if not (np.isfinite(obj).all() and per_quantity[:, 0].min() >= 0
                and phi.min() >= -limit and phi.max() <= limit):
            return False
        return all(np.isfinite(self.columns[n]).all() for n in self.extra_names
                   if self.columns[n].dtype.kind == "f")

    def validate(self, where: str = "event batch") -> EventBatch:
        """Raise :class:`SchemaError` naming the first bad row and column; return self.

            >>> objects = np.zeros((2, 19, 3), np.float32)
            >>> objects[1, 5, 0] = -1.0
            >>> EventBatch.from_objects(objects).validate("my.h5")
            Traceback (most recent call last):
            ...
            darktrigger.replay.errors.SchemaError: my.h5, row 1: objects slot 5 (muon) has pT = -1.0, expected pT >= 0
        """
        found = self.problems()
        if found:
            row, why = found[0]
            more = f" ({len(found) - 1} more bad rows)" if len(found) > 1 else ""
            raise SchemaError(f"{where}, row {row}: {why}{more}")
        return self


def _describe_slot(obj: np.ndarray, bad: np.ndarray, expected: str, q: int = 0) -> str:
    slot = int(np.flatnonzero(bad)[0])
    names = ("pT", "eta", "phi")
    return f"objects slot {slot} ({SLOT_TYPES[slot]}) has {names[q]} = {obj[slot, q]}, expected {expected}"


def _describe_nonfinite(obj: np.ndarray) -> str:
    slot, q = (int(x) for x in np.argwhere(~np.isfinite(obj))[0])
    names = ("pT", "eta", "phi")
    return f"objects slot {slot} ({SLOT_TYPES[slot]}) has {names[q]} = {obj[slot, q]}, expected a finite number"
