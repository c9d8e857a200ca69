"""Packing variable-length object lists into the fixed 19-slot L1 block.

Readers of jagged formats (Dark Machines CSV, NanoAOD) and the generators all go
through :func:`pack_slots`, so the slot rules live in one place: objects of a type
are sorted by pT (highest first) within each event, and the highest-pT ones are kept
when there are more objects than slots.

    >>> import numpy as np
    >>> block = np.zeros((2, 19, 3), np.float32)
    >>> ev = np.array([0, 0, 1]); pt = np.array([10., 30., 5.])
    >>> dropped = pack_slots(block, "muon", ev, pt, np.zeros(3), np.zeros(3))
    >>> block[0, 5:7, 0].tolist(), block[1, 5, 0].item(), int(dropped.sum())
    ([30.0, 10.0], 5.0, 0)
"""

from __future__ import annotations

import numpy as np

from darktrigger.replay.events import N_SLOTS, SLOT_MET, SLOTS


def pack_slots(
    block: np.ndarray,
    kind: str,
    event_index: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
) -> np.ndarray:
    """Write objects of one type into their slots of ``block`` (``[N, 19, 3]``, in place).

    ``event_index[i]`` says which event (row of ``block``) object ``i`` belongs to; the
    arrays are flat over all objects of all events, in any order. Objects with pT <= 0
    (and NaN pT) are ignored, so readers must report such objects first. Returns, per
    event, how many objects did not fit (``int64[N]``).
    """
    if kind not in SLOTS or kind == "met":
        raise ValueError(f"kind must be one of egamma, muon, jet; got {kind!r}")
    sl = SLOTS[kind]
    n_slots = sl.stop - sl.start
    n_events = block.shape[0]
    event_index = np.asarray(event_index, dtype=np.int64)
    pt = np.asarray(pt, dtype=np.float64)
    keep = pt > 0
    if not keep.all():
        event_index, pt = event_index[keep], pt[keep]
        eta, phi = np.asarray(eta)[keep], np.asarray(phi)[keep]
    dropped = np.zeros(n_events, dtype=np.int64)
    if len(pt) == 0:
        return dropped
    order = np.lexsort((-pt, event_index))
    ev = event_index[order]
    first = np.searchsorted(ev, ev, side="left")
    rank = np.arange(len(ev)) - first
    fits = rank < n_slots
    rows = ev[fits]
    cols = sl.start + rank[fits]
    block[rows, cols, 0] = pt[order][fits]
    block[rows, cols, 1] = np.asarray(eta)[order][fits]
    block[rows, cols, 2] = np.asarray(phi)[order][fits]
    np.add.at(dropped, ev[~fits], 1)
    return dropped


def set_met(block: np.ndarray, met: np.ndarray, met_phi: np.ndarray) -> None:
    """Fill the MET slot (η = 0 by convention)."""
    block[:, SLOT_MET, 0] = met
    block[:, SLOT_MET, 1] = 0.0
    block[:, SLOT_MET, 2] = np.where(np.asarray(met) > 0, met_phi, 0.0)


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """φ folded into [-π, π)."""
    return (np.asarray(phi) + np.pi) % (2 * np.pi) - np.pi


def empty_block(n: int) -> np.ndarray:
    """A zeroed ``[n, 19, 3]`` float32 object block."""
    return np.zeros((n, N_SLOTS, 3), dtype=np.float32)
