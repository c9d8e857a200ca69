"""One pass over an objects block to tell whether every value is valid.

The event model's value rules (finite numbers, pT >= 0, |φ| <= π) are checked on every
batch a reader yields, so the check sits on the read path. numpy needs four passes
(isfinite, then min/max over strided columns); this numba kernel does one, and falls
back to numpy when numba is not importable. It only answers yes/no: the rows at fault
are found by :meth:`replay.events.EventBatch.problems` with numpy.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_kernel: Any = None


def _compile() -> Any:
    global _kernel
    if _kernel is None:
        try:
            import numba

            @numba.njit(cache=True, nogil=True)
            def block_ok(flat: np.ndarray, phi_limit: float) -> bool:  # pragma: no cover - compiled
                # branch-free over a block so the loop vectorises; NaN fails every comparison
                n = flat.shape[0] // 3
                lim = np.float32(phi_limit)
                inf = np.float32(math.inf)
                step = 4096
                for start in range(0, n, step):
                    ok = True
                    for i in range(start, min(n, start + step)):
                        pt = flat[3 * i]
                        eta = flat[3 * i + 1]
                        phi = flat[3 * i + 2]
                        ok &= (pt >= 0) & (pt < inf) & (eta > -inf) & (eta < inf) & (phi >= -lim) & (phi <= lim)
                    if not ok:
                        return False
                return True

            _kernel = block_ok
        except Exception as exc:  # numba missing or broken: numpy does the job, slower
            log.debug("numba unavailable for the value check (%s); using numpy", exc)
            _kernel = False
    return _kernel


def objects_ok(objects: np.ndarray, phi_limit: float) -> bool:
    """True when every (pT, η, φ) of a C-contiguous float32 ``[N, 19, 3]`` block is valid."""
    if len(objects) == 0:
        return True
    kernel = _compile()
    if kernel and objects.flags.c_contiguous:
        return bool(kernel(objects.reshape(-1), phi_limit))
    per_quantity = objects.reshape(-1, 3)
    phi = per_quantity[:, 2]
    return bool(np.isfinite(objects).all() and per_quantity[:, 0].min() >= 0
                and phi.min() >= -phi_limit and phi.max() <= phi_limit)
