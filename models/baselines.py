"""The baselines every model is compared with: ``ht`` and ``st``. No training.

* ``ht``: scalar sum of the jet pT (slots 9–18), GeV.
* ``st``: scalar sum of the pT of every object and the MET (all 19 slots), GeV.

``fit`` only checks the batch and returns ``{}``; ``save`` writes ``card.json`` and a
``model.onnx`` (raw [N, 57] → score), so a pipeline can run them like any model.

    >>> import numpy as np
    >>> from darktrigger.models import get_scorer
    >>> obj = np.zeros((1, 19, 3), np.float32)
    >>> obj[0, 0, 0], obj[0, 1, 0], obj[0, 9, 0], obj[0, 10, 0] = 40, 25, 100, 60
    >>> get_scorer("ht").score(obj), get_scorer("st").score(obj)
    (array([160.], dtype=float32), array([225.], dtype=float32))
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from darktrigger.models.base import (
    BatchLike,
    FitHistory,
    FitOptions,
    Scorer,
    as_flat,
    register_scorer,
)
from darktrigger.models.card import ONNX_FILE, ModelCard
from darktrigger.models.neural.training import ONNX_OPSET
from darktrigger.replay.events import N_FEATURES, SLOTS


class PtSum(nn.Module):
    """raw ``[N, 57]`` → Σ pT over slots ``[first, last)`` — the baselines' ONNX graph."""

    def __init__(self, first: int, last: int) -> None:
        super().__init__()
        self.first, self.last = first, last

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return flat[:, 3 * self.first:3 * self.last:3].sum(dim=1)


class PtSumScorer(Scorer):
    """A scalar sum of pT over a range of slots (the baselines)."""

    trainable = False
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {}
    slots: ClassVar[slice]

    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        as_flat(train, f"{self.where}, training batch")  # the schema check fit promises
        return {}

    def score(self, batch: BatchLike) -> np.ndarray:
        flat = as_flat(batch, self.where)
        pt = flat[:, 3 * self.slots.start:3 * self.slots.stop:3]
        return pt.sum(axis=1, dtype=np.float32)

    def _save_files(self, directory: Path) -> list[str]:
        module = PtSum(self.slots.start, self.slots.stop).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(2, N_FEATURES),), str(directory / ONNX_FILE),
                              dynamo=False, opset_version=ONNX_OPSET, input_names=["objects"],
                              output_names=["score"],
                              dynamic_axes={"objects": {0: "batch"}, "score": {0: "batch"}})
        return [ONNX_FILE]

    def _load_files(self, directory: Path, card: ModelCard) -> None:
        return None


@register_scorer("ht")
class HTScorer(PtSumScorer):
    """HT: scalar sum of jet pT, GeV."""

    description = "baseline: scalar sum of jet pT"
    slots = SLOTS["jet"]


@register_scorer("st")
class STScorer(PtSumScorer):
    """ST: scalar sum of all object pT and the MET, GeV."""

    description = "baseline: scalar sum of all object pT and MET"
    slots = slice(0, SLOTS["jet"].stop)
