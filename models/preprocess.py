"""Preprocessing: the 57-number L1 input → the features the neural scorers learn on.

For every object slot the raw ``(pT, η, φ)`` becomes ``pT^¼`` (``√√pT``), ``η`` (not
for MET, whose η is always 0), ``cos φ`` and ``sin φ``. φ enters only through its cosine
and sine, so φ = π and φ = −π, or φ and φ + 2π, are the same point, and the loss
compares directions as (cos, sin) pairs. The features are laid out by quantity, not
by slot (the order is arbitrary for a dense network, and blocks need no gather):

==========  =====  =====================================================
block       width  content
==========  =====  =====================================================
``pt``      19     (pT^¼ − mean) / std, one mean/std per slot
``eta``     18     (η − mean) / std, slots 1–18 (MET has no η)
``cos``     19     cos φ, unscaled
``sin``     19     sin φ, unscaled
==========  =====  =====================================================

so :data:`N_MODEL_FEATURES` = 75 and the default autoencoder is 75-32-16-3-16-32-75.

pT^¼ compresses the L1 pT range much as log(1 + pT) does (1 GeV to 10 TeV becomes 1 to
10) and is 0 for an empty slot, and it is two square roots, which onnxruntime
vectorises (its Log is a scalar loop). pT must be ≥ 0, as the event model guarantees
(a negative pT gives a NaN feature, and a NaN score).

The mean and std of each scaled feature are fitted on background over *filled* slots
only (pT > 0): zero padding would otherwise pull every mean towards 0. A slot with
fewer than :data:`MIN_FILLED` filled events in the fit sample borrows the pooled
statistics of its object type (all jets, all muons, ...); std is floored at
:data:`MIN_STD`. Every feature of an empty slot is 0 and its mask is 0, so empty
slots stay out of the loss. pT is the mask: a slot is filled when pT > 0.

    >>> import numpy as np
    >>> from darktrigger.replay.events import EventBatch
    >>> obj = np.zeros((2, 19, 3), np.float32)
    >>> obj[:, 9] = (50.0, 1.0, np.pi)                  # one jet in each event
    >>> obj[1, 9, 2] = -np.pi                            # the same direction
    >>> pre = Preprocessor.fit(EventBatch.from_objects(obj).flat)
    >>> feats, mask = pre.transform(obj.reshape(2, 57))
    >>> feats.shape, float(mask.sum())
    ((2, 75), 8.0)
    >>> bool(np.allclose(feats[0], feats[1], atol=1e-6))
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from darktrigger.models.card import read_json, write_json
from darktrigger.replay.errors import SchemaError
from darktrigger.replay.events import N_FEATURES, N_SLOTS, SLOT_TYPES, SLOTS

log = logging.getLogger(__name__)

PREPROCESS_FILE = "preprocess.json"
#: what ``preprocess.json`` says it holds; a file of another kind is refused
PREPROCESS_KIND = "root4_pt_eta_cossin_v2"
N_ETA = N_SLOTS - 1  # MET has no η
N_MODEL_FEATURES = N_SLOTS + N_ETA + 2 * N_SLOTS  # 75
#: Names of the model features, in order (``pt:jet3``, ``eta:muon0``, ``cos:met``...).
SLOT_NAMES: tuple[str, ...] = tuple(
    kind if kind == "met" else f"{kind}{i - SLOTS[kind].start}" for i, kind in enumerate(SLOT_TYPES)
)
MODEL_FEATURE_NAMES: tuple[str, ...] = (
    *(f"pt:{s}" for s in SLOT_NAMES),
    *(f"eta:{s}" for s in SLOT_NAMES[1:]),
    *(f"cos:{s}" for s in SLOT_NAMES),
    *(f"sin:{s}" for s in SLOT_NAMES),
)
MIN_FILLED = 20  #: filled events a slot needs for its own mean/std
MIN_STD = 1e-2  #: floor on a fitted std (a constant feature would divide by ~0)


def _slot_stats(values: np.ndarray, filled: np.ndarray, types: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per column of ``values`` [N, S] over filled entries, pooled by type when sparse."""
    n_cols = values.shape[1]
    mean = np.zeros(n_cols, np.float64)
    std = np.ones(n_cols, np.float64)
    v64 = values.astype(np.float64)
    for kind in dict.fromkeys(types):
        cols = [i for i, t in enumerate(types) if t == kind]
        pooled = v64[:, cols][filled[:, cols]]
        for c in cols:
            own = v64[filled[:, c], c]
            sample = own if len(own) >= MIN_FILLED else pooled
            if len(sample) >= 2:
                mean[c] = sample.mean()
                std[c] = max(float(sample.std()), MIN_STD)
            elif len(sample) == 1:
                mean[c] = sample[0]
    return mean, std


@dataclass(frozen=True)
class Preprocessor:
    """The fitted scaling: ``(feature − shift) · scale`` per model feature, masked.

    ``shift`` and ``scale`` are float32 ``[75]`` (cos/sin blocks have shift 0 and
    scale 1). Build one with :meth:`fit`; keep it with :meth:`save`/:meth:`load`.

        >>> pre = Preprocessor.identity()
        >>> pre.shift.shape
        (75,)
    """

    shift: np.ndarray
    scale: np.ndarray
    n_fit: int = 0

    def __post_init__(self) -> None:
        for name in ("shift", "scale"):
            arr = getattr(self, name)
            if arr.shape != (N_MODEL_FEATURES,) or arr.dtype != np.float32:
                raise SchemaError(f"preprocessing {name}: expected float32 [{N_MODEL_FEATURES}], "
                                  f"got {arr.dtype} {arr.shape}")
            if not np.isfinite(arr).all():
                raise SchemaError(f"preprocessing {name}: expected finite numbers, got {arr}")

    @classmethod
    def identity(cls) -> Preprocessor:
        """No scaling (shift 0, scale 1): for tests and for the baselines."""
        return cls(np.zeros(N_MODEL_FEATURES, np.float32), np.ones(N_MODEL_FEATURES, np.float32))

    @classmethod
    def fit(cls, flat: np.ndarray) -> Preprocessor:
        """Fit the per-feature mean/std on background events ``flat`` [N, 57] (GeV, rad)."""
        flat = np.asarray(flat, np.float32).reshape(-1, N_FEATURES)
        pt, eta = flat[:, 0::3], flat[:, 1::3]
        filled = pt > 0
        pt_mean, pt_std = _slot_stats(np.sqrt(np.sqrt(np.maximum(pt, 0))), filled, SLOT_TYPES)
        eta_mean, eta_std = _slot_stats(eta[:, 1:], filled[:, 1:], SLOT_TYPES[1:])
        shift = np.concatenate([pt_mean, eta_mean, np.zeros(2 * N_SLOTS)]).astype(np.float32)
        scale = np.concatenate([1 / pt_std, 1 / eta_std, np.ones(2 * N_SLOTS)]).astype(np.float32)
        log.debug("preprocessing fitted on %d events", len(flat))
        return cls(shift, scale, n_fit=len(flat))

    def raw_features(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled features and the mask, float32 [N, 75] each (numpy reference)."""
        flat = np.asarray(flat, np.float32).reshape(-1, N_FEATURES)
        pt, eta, phi = flat[:, 0::3], flat[:, 1::3], flat[:, 2::3]
        filled = (pt > 0).astype(np.float32)
        feats = np.concatenate([np.sqrt(np.sqrt(pt)), eta[:, 1:], np.cos(phi), np.sin(phi)], axis=1)
        mask = np.concatenate([filled, filled[:, 1:], filled, filled], axis=1)
        return feats, mask

    def transform(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled, masked features and the mask, float32 [N, 75] each (numpy reference).

        The torch module :class:`PreprocessModule` computes the same thing inside the
        networks and their ONNX graphs.
        """
        feats, mask = self.raw_features(flat)
        return ((feats - self.shift) * self.scale * mask).astype(np.float32), mask

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": PREPROCESS_KIND,
            "features": list(MODEL_FEATURE_NAMES),
            "shift": [float(x) for x in self.shift],
            "scale": [float(x) for x in self.scale],
            "n_fit": int(self.n_fit),
            "doc": "feature = (raw - shift) * scale * mask; raw = sqrt(sqrt(pT)), eta, cos(phi), "
                   "sin(phi) per slot in blocks; mask = pT > 0; see models/preprocess.py",
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = PREPROCESS_FILE) -> Preprocessor:
        """Inverse of :meth:`to_dict`; a :class:`SchemaError` naming ``where`` if it does not fit."""
        if not isinstance(data, dict) or data.get("kind") != PREPROCESS_KIND:
            got = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise SchemaError(f"{where}: expected preprocessing of kind {PREPROCESS_KIND!r}, "
                              f"got {got!r}; retrain the model with this darktrigger")
        try:
            shift = np.asarray(data["shift"], np.float32)
            scale = np.asarray(data["scale"], np.float32)
            n_fit = int(data["n_fit"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"{where}: expected lists 'shift' and 'scale' of numbers and an "
                              f"integer 'n_fit' ({type(exc).__name__}: {exc})") from None
        try:
            return cls(shift, scale, n_fit)
        except SchemaError as exc:
            raise SchemaError(f"{where}: {exc}") from None

    def save(self, directory: str | Path) -> Path:
        return write_json(Path(directory) / PREPROCESS_FILE, self.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> Preprocessor:
        path = Path(directory) / PREPROCESS_FILE
        return cls.from_dict(read_json(path), str(path))


class PreprocessModule(nn.Module):
    """The preprocessing as a torch module: ``[N, 57]`` raw → (features, mask) ``[N, 75]``.

    Used for training; the scoring graph (torch backend and ONNX) computes the same
    numbers feature-major in :class:`darktrigger.models.neural.inference.ColumnPreprocess`.

        >>> mod = PreprocessModule(Preprocessor.identity())
        >>> feats, mask = mod(torch.zeros(3, 57))
        >>> tuple(feats.shape), float(mask.sum())
        ((3, 75), 0.0)
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, pre: Preprocessor) -> None:
        super().__init__()
        # not persistent: the values live in preprocess.json, weights.pt holds the network
        self.register_buffer("shift", torch.from_numpy(pre.shift.copy()), persistent=False)
        self.register_buffer("scale", torch.from_numpy(pre.scale.copy()), persistent=False)

    def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pt, eta, phi = flat[:, 0::3], flat[:, 4::3], flat[:, 2::3]
        filled = (pt > 0).to(flat.dtype)
        raw = torch.cat([torch.sqrt(torch.sqrt(pt)), eta, torch.cos(phi), torch.sin(phi)], dim=1)
        mask = torch.cat([filled, filled[:, 1:], filled, filled], dim=1)
        return (raw - self.shift) * self.scale * mask, mask
