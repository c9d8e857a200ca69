"""Compiled one-pass counting for the power-of-two histograms (the scorer's score histograms).

numpy needs several passes over a batch for such a histogram (a sum, the exponent bits, a
``bincount`` that converts and scans twice); this kernel reads each score once: its
exponent bits index a table that folds every exponent onto its bucket, and the finite ones
add to the sum. :class:`darktrigger.monitoring.metrics._Histograms` uses it for batches of
at least :data:`darktrigger.monitoring.metrics.FASTHIST_MIN_VALUES` scores, so numba is
imported only then (the scorer stage imports it anyway for the onnxruntime backend's
kernels). What it saves: BENCHMARKS.md, "Monitoring overhead".

    >>> import numpy as np
    >>> from darktrigger.monitoring.metrics import SCORE_BUCKETS, _Histograms
    >>> values = np.array([0.5, 1.0, 3.0, np.nan], np.float32)
    >>> table = _Histograms("h", "", SCORE_BUCKETS, None)._exponent_table(values.dtype)
    >>> counts, total = count(values, table, len(SCORE_BUCKETS) + 1)
    >>> [SCORE_BUCKETS[i] for i in counts.nonzero()[0]], total   # each value's upper bound
    ([0.5, 1.0, 4.0], 4.5)
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _count(bits: Any, values: Any, one: Any, shift: Any, mask: Any, table: Any, counts: Any) -> float:
    # numba widens uint32 arithmetic to 64 bits: 0 - 1 is then 2^64 − 1, and the mask keeps
    # the index inside the table (for float32 as for float64 it is then all ones: −0.0's row)
    total = 0.0
    for i in range(bits.shape[0]):
        x = values[i]
        if x != x:  # NaN: in no bucket, not in the sum
            continue
        counts[table[((bits[i] - one) >> shift) & mask]] += 1
        if x - x == 0:  # finite
            total += x
    return total


def count(values: np.ndarray, table: np.ndarray, buckets: int) -> tuple[np.ndarray, float]:
    """(counts of the ``buckets`` buckets, sum of the finite values) of float32 or float64
    ``values`` (C contiguous); ``table`` maps ``(bits − 1) >> mantissa bits`` onto buckets."""
    utype, shift = (np.uint32, 23) if values.dtype == np.float32 else (np.uint64, 52)
    counts = np.zeros(buckets, np.int64)
    total = _count(values.view(utype), values, utype(1), utype(shift), utype(len(table) - 1), table, counts)
    return counts, float(total)
