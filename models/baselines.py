"""The baselines every model is compared with: ``ht``, ``st`` (no training) and ``pca``.

* ``ht``: scalar sum of the jet pT (slots 9–18), GeV.
* ``st``: scalar sum of the pT of every object and the MET (all 19 slots), GeV.
* ``pca``: the linear reconstruction error of the preprocessed features (fitted in closed
  form on background; :class:`PCAScorer`): what a neural autoencoder must beat.

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
    new_history,
    register_scorer,
)
from darktrigger.models.card import ONNX_FILE, ModelCard
from darktrigger.models.neural.inference import ColumnMLP, RowNet
from darktrigger.models.neural.training import ONNX_OPSET, TorchScorer
from darktrigger.models.preprocess import N_MODEL_FEATURES, Preprocessor
from darktrigger.replay.errors import ConfigError
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


class Residual(nn.Module):
    """Feature-major features ``[75, N]`` → ``|A x + b|²`` ``[N]``, where ``A x + b`` is the
    residual of the projection onto the principal subspace, ``(1 − V Vᵀ)(x − μ)``."""

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.residual = ColumnMLP(net)

    def forward(self, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        r = self.residual(feats)
        return (r * r).sum(dim=0)

    def rows(self) -> RowNet:
        """Event-major network for ``model.onnx``: features → Σ residual²."""
        return RowNet([self.residual], "sum_squares")


@register_scorer("pca")
class PCAScorer(TorchScorer):
    """PCA: the linear baseline for the neural scorers. Trained in closed form (one pass, no
    epochs): the ``components`` leading principal axes of the preprocessed background
    features (:mod:`darktrigger.models.preprocess`: standardised pT^¼ and η, cos φ, sin φ,
    0 for an empty slot); the score is the squared distance of an event's features from
    that subspace, summed over all 75 features (an object where the background has none
    is part of the residual). A neural scorer that does worse than this on a signal has a
    recipe to fix, not a capacity to blame.

    Hyper-parameters: ``components`` (8).

        >>> from darktrigger.models import get_scorer
        >>> from darktrigger.replay.generators import GENERATORS
        >>> bkg = next(GENERATORS.get("toy")().generate("sm_mix", 3000, seed=1))
        >>> pca = get_scorer("pca")
        >>> history = pca.fit(bkg)
        >>> history["epochs_run"], pca.score(bkg).shape
        (1, (3000,))
    """

    description = "baseline: PCA reconstruction error on the standardised features (closed form)"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {"components": 8, "lr": 0.0}

    def build(self) -> nn.Module:
        """One linear layer, features → their residual ``(1 − V Vᵀ)(x − μ)`` (set by ``fit``)."""
        k = int(self.hyperparameters["components"])
        if not 1 <= k < N_MODEL_FEATURES:
            raise ConfigError(f"{self.where}: components must be 1-{N_MODEL_FEATURES - 1}, got {k}")
        return nn.Sequential(nn.Linear(N_MODEL_FEATURES, N_MODEL_FEATURES))

    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        r = net(feats)
        return (r * r).sum(dim=1)

    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        assert isinstance(net, nn.Sequential)
        return Residual(net)

    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        flat = as_flat(train, f"{self.where}, training batch")
        if labels is not None:
            raise ConfigError(f"{self.where}: is trained on background only; got labels")
        if len(flat) < 2 * N_MODEL_FEATURES:
            raise ConfigError(f"{self.where}: needs at least {2 * N_MODEL_FEATURES} training events "
                              f"to fit {N_MODEL_FEATURES} features' covariance, got {len(flat)}")
        self.pre = Preprocessor.fit(flat)
        feats = self._features(flat)[0].double()
        mean = feats.mean(dim=0)
        centred = feats - mean
        cov = centred.T @ centred / (len(feats) - 1)
        _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
        k = int(self.hyperparameters["components"])
        axes = vectors[:, -k:]  # [75, k]
        net = self.build()
        assert isinstance(net, nn.Sequential)
        layer = net[0]
        assert isinstance(layer, nn.Linear)
        project_out = torch.eye(N_MODEL_FEATURES, dtype=torch.float64) - axes @ axes.T
        with torch.no_grad():
            layer.weight.copy_(project_out)
            layer.bias.copy_(-(project_out @ mean))
        self.net = net.eval()
        self._graphs.clear()
        history = new_history(validation is not None)
        history["train_loss"].append(self.mean_loss(flat))
        if validation is not None:
            history["validation_loss"].append(self.mean_loss(validation))
        history["best_epoch"], history["epochs_run"], history["stopped_early"] = 1, 1, False
        history["best_loss"] = history[history["monitor"]][0]
        self.seed = options.seed
        n_val = 0 if validation is None else len(as_flat(validation, f"{self.where}, validation batch"))
        self.training = options.record(len(flat), n_val, history, method="closed-form PCA (eigh)")
        return history
