"""Compiled (numba) kernels of the ``onnxruntime`` backend: preprocessing and masked error.

onnxruntime runs a dense network well when it is event-major (``[N, F]`` activations,
the constant weights packed once when the session loads) but spends most of a score
elsewhere when the graph also does the preprocessing: its ``Cos``/``Sin`` are scalar
loops, a per-feature scale broadcast over ``[N, F]`` goes row by row, and transposing
to feature-major (where those are fast) costs the weight packing back. So the backend
splits the work (:class:`darktrigger.models.neural.onnx_backend.OnnxScorer`):

1. :func:`features` (here): raw ``[N, 57]`` → the scaled, masked model features
   ``[N, 75]`` (exactly :meth:`darktrigger.models.preprocess.Preprocessor.transform`, to float32
   rounding) and the per-slot ``filled`` ``[N, 19]``, in one pass per event, with a
   branch-free float32 sin/cos that the compiler vectorises;
2. the network, in onnxruntime (``net.onnx``): features → score, or → reconstruction;
3. :func:`masked_mse` (here), for the reconstruction scores: the masked mean squared
   error over the filled features, one pass per event.

BENCHMARKS.md ("Scoring throughput", from ``bench/models_speed.py``) has this split's
speed beside the self-contained ``model.onnx``'s, and the kernel's alone.

The sin/cos: φ is first wrapped into [−π, π] (so φ + 2π gives φ; above ~1e7 rad,
where float32 holds no angle, the result is only kept finite), then reduced by the nearest multiple k of π/2 in three parts
(Cody–Waite, exact for |k| ≤ 2), and the Cephes single-precision minimax polynomials
on [−π/4, π/4] give sin and cos of the remainder; k mod 4 picks and signs them. Largest
difference to the float64 sin/cos of the float32 φ: 1.7e-7 on [−π, π] (at φ = ±π, which
the wrap maps onto each other), 3.6e-7 on [−4π, 4π] (the float32 2π of the wrap);
numpy's float32 ``np.cos`` is within 6.7e-8 (``tests/test_kernels.py``). The scores stay
within the backends' 1e-5 agreement.

numba compiles the kernels on their first call in a process (the machine code is
cached on disk after the first compile, but numba's own start-up remains).
:func:`warm_up` does it ahead, so a pipeline worker pays it while it starts, not on
its first batch.

    >>> import numpy as np
    >>> from darktrigger.models.preprocess import Preprocessor
    >>> pre = Preprocessor.identity()
    >>> flat = np.zeros((2, 57), np.float32)
    >>> flat[:, 27:30] = (16.0, 0.5, np.pi)             # a jet in slot 9
    >>> feats, filled = features(flat, pre.shift, pre.scale)
    >>> feats[0, [9, 27, 46, 65]].round(6).tolist()      # pT^¼, η, cos φ, sin φ of slot 9
    [2.0, 0.5, -1.0, 0.0]
    >>> filled.sum(axis=1).tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from darktrigger.replay.events import N_FEATURES, N_SLOTS

#: feature layout of darktrigger.models.preprocess (blocks pt 19, eta 18, cos 19, sin 19)
_ETA0, _COS0, _SIN0, N_OUT = N_SLOTS - 1, 2 * N_SLOTS - 1, 3 * N_SLOTS - 1, 4 * N_SLOTS - 1

_f32 = np.float32
_TWO_PI, _INV_TWO_PI = _f32(2 * math.pi), _f32(1 / (2 * math.pi))
_TWO_OVER_PI = _f32(2 / math.pi)
# π/2 in three float32 parts: the first two have few bits, so k · part is exact for |k| ≤ 2
_PIO2_1, _PIO2_2, _PIO2_3 = _f32(1.5703125), _f32(4.837512969970703125e-4), _f32(7.54978995489188216e-8)
# Cephes sinf/cosf minimax coefficients on [−π/4, π/4]
_S1, _S2, _S3 = _f32(-1.6666654611e-1), _f32(8.3321608736e-3), _f32(-1.9515295891e-4)
_C1, _C2, _C3 = _f32(4.166664568298827e-2), _f32(-1.388731625493765e-3), _f32(2.443315711809948e-5)
_HALF, _ONE, _ZERO, _FOUR = _f32(0.5), _f32(1.0), _f32(0.0), _f32(4.0)
# no 'reassoc': it would undo the Cody–Waite reduction; 'contract' lets it use FMA
_MATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


@nb.njit(inline="always", fastmath=_MATH)
def sincos(phi: Any) -> Any:
    """(sin φ, cos φ) in float32, branch-free (the module docstring has the method)."""
    x = phi - _TWO_PI * np.floor(phi * _INV_TWO_PI + _HALF)  # into [−π, π]
    # float32 has no angle left above ~1e7 rad: there, keep the result finite (|k| ≤ 2)
    x = min(max(x, -_FOUR), _FOUR)
    k = np.floor(x * _TWO_OVER_PI + _HALF)
    r = ((x - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    z = r * r
    s = r + r * z * (_S1 + z * (_S2 + z * _S3))
    c = _ONE - _HALF * z + z * z * (_C1 + z * (_C2 + z * _C3))
    q = np.int32(k) & 3
    odd = (q & 1) != 0
    sa = c if odd else s
    ca = s if odd else c
    sa = -sa if (q & 2) != 0 else sa
    ca = -ca if ((q + 1) & 2) != 0 else ca
    return sa, ca


@nb.njit(fastmath=_MATH, nogil=True, cache=True)
def features_into(flat: Any, shift: Any, scale: Any, feats: Any, filled: Any) -> None:
    for i in range(flat.shape[0]):
        row, f, m = flat[i], feats[i], filled[i]
        for s in range(N_SLOTS):
            pt = row[3 * s]
            w = _ONE if pt > _ZERO else _ZERO
            m[s] = w
            # the operation order of Preprocessor.transform: (raw − shift) · scale · mask
            f[s] = (np.sqrt(np.sqrt(pt)) - shift[s]) * scale[s] * w
            sn, cs = sincos(row[3 * s + 2])
            f[_COS0 + s] = cs * w
            f[_SIN0 + s] = sn * w
        for s in range(1, N_SLOTS):  # MET (slot 0) has no η
            f[_ETA0 + s] = (row[3 * s + 1] - shift[_ETA0 + s]) * scale[_ETA0 + s] * m[s]


@nb.njit(fastmath=True, nogil=True, cache=True)
def masked_mse_into(recon: Any, feats: Any, filled: Any, out: Any) -> None:
    for i in range(recon.shape[0]):
        r, f, m = recon[i], feats[i], filled[i]
        acc = _ZERO
        count = _ZERO
        for s in range(N_SLOTS):
            w = m[s]
            # (recon − feats) · mask = recon · mask − feats: feats are 0 where mask is
            d0 = r[s] * w - f[s]
            d2 = r[_COS0 + s] * w - f[_COS0 + s]
            d3 = r[_SIN0 + s] * w - f[_SIN0 + s]
            acc += d0 * d0 + d2 * d2 + d3 * d3
            count += w
        for s in range(1, N_SLOTS):
            d1 = r[_ETA0 + s] * m[s] - f[_ETA0 + s]
            acc += d1 * d1
        count = _FOUR * count - m[0]  # pT, η, cos, sin per filled slot; MET has no η
        out[i] = acc / max(count, _ONE)


def features(flat: np.ndarray, shift: np.ndarray, scale: np.ndarray,
             out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw float32 ``[N, 57]`` → (features ``[N, 75]``, filled ``[N, 19]``), float32.

    ``shift``/``scale`` are a :class:`~darktrigger.models.preprocess.Preprocessor`'s (float32 ``[75]``);
    ``out`` are arrays of at least ``N`` rows to write into (their first ``N`` rows are
    returned), so a caller scoring chunk after chunk allocates once.
    """
    n = len(flat)
    feats, filled = out if out is not None else (np.empty((n, N_OUT), np.float32),
                                                  np.empty((n, N_SLOTS), np.float32))
    feats, filled = feats[:n], filled[:n]
    features_into(np.ascontiguousarray(flat, np.float32).reshape(n, N_FEATURES),
                  shift, scale, feats, filled)
    return feats, filled


def masked_mse(recon: np.ndarray, feats: np.ndarray, filled: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
    """Per-event mean squared error over the filled features: reconstruction and features
    ``[N, 75]``, filled ``[N, 19]`` → ``[N]`` (0 for an empty event), as
    :func:`darktrigger.models.neural.inference.column_masked_mse` computes it feature-major."""
    n = len(recon)
    result = np.empty(n, np.float32) if out is None else out[:n]
    masked_mse_into(recon, feats, filled, result)
    return result


def warm_up() -> None:
    """Compile (or load from numba's cache) both kernels now, on a two-event batch."""
    flat = np.zeros((2, N_FEATURES), np.float32)
    ones = np.ones(N_OUT, np.float32)
    feats, filled = features(flat, ones * 0, ones)
    masked_mse(feats, feats, filled)
