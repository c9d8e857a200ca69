"""``cwola``: a dense classifier trained on two mixed samples (Classification Without Labels).

CWoLa (arXiv 1708.02949) trains a classifier to tell two *mixed* samples apart, e.g.
a signal-region window (label 1) from its sidebands (label 0); where the two differ
only by a signal fraction, the optimal classifier is the optimal signal/background
one. The labels go to :meth:`fit` as an array beside the batch:

    >>> import numpy as np
    >>> from darktrigger.models import get_scorer
    >>> from darktrigger.replay.events import EventBatch
    >>> from darktrigger.replay.generators import GENERATORS
    >>> toy = GENERATORS.get("toy")()
    >>> sr = next(toy.generate("ato4l", 1000, seed=1))           # sample labelled 1
    >>> sb = next(toy.generate("sm_mix", 3000, seed=2))          # sample labelled 0
    >>> both = EventBatch.concat([sr, sb])
    >>> clf = get_scorer("cwola")
    >>> _ = clf.fit(both, labels=np.r_[np.ones(1000), np.zeros(3000)], epochs=2)
    >>> bool(clf.score(sr).mean() > clf.score(sb).mean())
    True

The score is the classifier's **logit** (log-odds of label 1): monotonic in the
probability, so every threshold and ROC is the same, but it keeps resolution in the
far tail where a float32 probability rounds to 1. Features are the preprocessed ones
(:mod:`darktrigger.models.preprocess`, fitted on the whole training batch); k-folding and the
choice of features uncorrelated with m_jj belong to the CWoLa hunt, not here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional

from darktrigger.models.base import register_scorer
from darktrigger.models.neural.inference import ColumnMLP, RowNet, column_linear
from darktrigger.models.neural.training import TorchScorer, mlp
from darktrigger.models.preprocess import N_MODEL_FEATURES


class Classifier(nn.Module):
    """features ``[N, F]`` → logit ``[N]``."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], slope: float, batch_norm: bool) -> None:
        super().__init__()
        self.body = mlp([n_in, *hidden], batch_norm=batch_norm, slope=slope)
        self.out = nn.Linear(hidden[-1], 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(feats)).squeeze(1)


class Logit(nn.Module):
    """Feature-major (features, mask) → the classifier's logit ``[N]``."""

    def __init__(self, net: Classifier) -> None:
        super().__init__()
        self.body, self.out = ColumnMLP(net.body), column_linear(net.out)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(feats)).reshape(-1)

    def rows(self) -> RowNet:
        """Event-major network for ``net.onnx``: features → logit."""
        return RowNet([self.body, self.out], "flat")


@register_scorer("cwola")
class CWoLaScorer(TorchScorer):
    """Dense classifier of two samples; score = logit of label 1 (higher = more like it).

    ``fit(batch, labels=...)`` with ``labels`` float/int ``[N]`` of 1 and 0 (and
    ``validation_labels`` with a ``validation`` batch). Hyper-parameters: ``hidden``
    ((64, 32)), ``slope`` (0.01), ``batch_norm`` (True), ``lr`` (1e-3).
    """

    description = "CWoLa dense classifier of two samples, logit score"
    needs_labels = True
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "hidden": [64, 32], "slope": 0.01, "batch_norm": True, "lr": 1e-3,
    }

    def build(self) -> nn.Module:
        h = self.hyperparameters
        return Classifier(N_MODEL_FEATURES, tuple(h["hidden"]), float(h["slope"]),
                          bool(h["batch_norm"]))

    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        return functional.binary_cross_entropy_with_logits(net(feats), labels[0], reduction="none")

    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        assert isinstance(net, Classifier)
        return Logit(net)
