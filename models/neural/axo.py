"""``axo``: an AXOL1TL v5-style scorer — a feature extractor, then an autoencoder in feature
space; score = the squared reconstruction error of the features.

CMS's AXOL1TL v5/v6 (2025–26) runs a feature extractor 57→29→10 followed by an autoencoder
10→9→6→4→6→9→10 and triggers on the squared error in the 10-dimensional feature space.
Here the extractor reads the 75 preprocessed features (:mod:`darktrigger.models.preprocess`)
instead of the 57 raw numbers, so the default network is 75→29→10 then 10→9→6→4→6→9→10
(batch norm and leaky ReLU after every hidden layer, the feature layer linear).

Trained as a whole, the pair would collapse: features that are constant reconstruct
perfectly. The feature space is held open by VICReg's two regularisers (Bardes, Ponce,
LeCun 2022) on every training batch of features ``f``:

* **variance**: ``Σ_d max(0, 1 − std(f_d))`` — each feature keeps a spread of at least 1;
* **covariance**: ``Σ_{i≠j} cov(f)_ij² / d`` — the features do not copy each other;

so the loss is ``mean_d (AE(f) − f)² + variance_weight · variance + covariance_weight ·
covariance`` (defaults 1 and 0), in the validation loss too, so that early stopping cannot
prefer a collapsing epoch. The score is ``Σ_d (AE(f) − f)²`` (no regulariser: it is per
event).

Measured on the toy ADC2021-format floor of tests/test_anomaly_floor.py (48k training
events, the CLI's defaults; seeds 0–3 where given, else one seed, ±0.002 is seed noise):
with batch norm and raw features, AUC 0.980 (variance term alone), 0.960 (covariance 0.04
too), 0.971 without either (the features shrink to a median score of 2e-4: collapsing),
0.915 with variance weight 0.1; reading the input back from the features as an extra loss
term made it worse (0.90). The linear ``pca`` baseline reaches 0.9944 there. The gap was the
inputs the background never fills: their first-layer weights keep their initial values, so
a signal object there moved the features as little as any seen input does. The default now
trains the extractor behind a standardisation of its inputs (std floored at 0.05,
``input_std_floor``; folded into the first layer afterwards, see
:class:`~darktrigger.models.neural.training.TorchScorer`), without batch norm, which
renormalised the excursion away: AUC 0.9952, 0.9934, 0.9950, 0.9941 (seeds 0–3; 0.9931 and
0.9914 for seeds 0–1 with batch norm kept; floors 0.01 and 0.2 no better); on other toy
files (data seeds 11/12/13) 0.9942 against ``pca``'s 0.9931.

    >>> from darktrigger.models import get_scorer
    >>> from darktrigger.replay.generators import GENERATORS
    >>> bkg = next(GENERATORS.get("toy")().generate("sm_mix", 4000, seed=1))
    >>> axo = get_scorer("axo")
    >>> history = axo.fit(bkg, epochs=2, batch_size=256)
    >>> len(history["train_loss"]), axo.score(bkg).shape
    (2, (4000,))
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from darktrigger.models.base import register_scorer
from darktrigger.models.neural.inference import ColumnMLP
from darktrigger.models.neural.training import TorchScorer, mlp
from darktrigger.models.preprocess import N_MODEL_FEATURES


class FeatureAutoencoder(nn.Module):
    """features ``[N, 75]`` → (extracted ``f`` ``[N, d]``, its reconstruction ``[N, d]``)."""

    def __init__(self, n_in: int, extractor: tuple[int, ...], features: int,
                 hidden: tuple[int, ...], latent: int, slope: float, batch_norm: bool) -> None:
        super().__init__()
        self.extractor = mlp([n_in, *extractor, features], batch_norm=batch_norm, slope=slope,
                             last_activation=False)
        self.encoder = mlp([features, *hidden, latent], batch_norm=batch_norm, slope=slope,
                           last_activation=False)
        self.decoder = mlp([latent, *reversed(hidden), features], batch_norm=batch_norm,
                           slope=slope, last_activation=False)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.extractor(feats)
        return f, self.decoder(self.encoder(f))


def variance_term(f: torch.Tensor) -> torch.Tensor:
    """VICReg's variance hinge, ``Σ_d max(0, 1 − std(f_d))`` over a batch ``[B, d]``."""
    std = torch.sqrt(f.var(dim=0) + 1e-4)
    return torch.relu(1.0 - std).sum()


def covariance_term(f: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term, the off-diagonal covariances squared over ``d``."""
    centred = f - f.mean(dim=0)
    cov = centred.T @ centred / max(len(f) - 1, 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return (off * off).sum() / f.shape[1]


class FeatureError(nn.Module):
    """Feature-major features ``[75, N]``, filled ``[19, N]`` → Σ_d (AE(f) − f)² ``[N]``."""

    def __init__(self, net: FeatureAutoencoder) -> None:
        super().__init__()
        self.extractor = ColumnMLP(net.extractor)
        self.encoder, self.decoder = ColumnMLP(net.encoder), ColumnMLP(net.decoder)

    def forward(self, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        f = self.extractor(feats)
        diff = self.decoder(self.encoder(f)) - f
        return (diff * diff).sum(dim=0)

    def rows(self) -> RowFeatureError:
        """Event-major network for ``net.onnx``: features → score."""
        return RowFeatureError(self)


class RowFeatureError(nn.Module):
    """:class:`FeatureError` event-major: features ``[N, 75]`` → ``score`` ``[N]``."""

    output = "score"

    def __init__(self, head: FeatureError) -> None:
        super().__init__()
        self.extractor, self.encoder = head.extractor.rows(), head.encoder.rows()
        self.decoder = head.decoder.rows()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        f = self.extractor(feats)
        diff = self.decoder(self.encoder(f)) - f
        return (diff * diff).sum(dim=1)


@register_scorer("axo")
class AXOScorer(TorchScorer):
    """AXOL1TL v5-style: feature extractor + autoencoder in feature space (module doc).

    Hyper-parameters: ``extractor`` (hidden widths, [29]), ``features`` (10), ``hidden``
    ([9, 6]), ``latent`` (4), ``variance_weight`` (1.0), ``covariance_weight`` (0.0),
    ``slope`` (0.01), ``batch_norm`` (False), ``lr`` (1e-3), ``input_std_floor`` (0.05: the
    extractor reads standardised features, :class:`~darktrigger.models.neural.training.TorchScorer`).
    """

    description = "AXOL1TL v5-style: feature extractor + autoencoder, squared error in feature space"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "extractor": [29], "features": 10, "hidden": [9, 6], "latent": 4,
        "variance_weight": 1.0, "covariance_weight": 0.0, "slope": 0.01, "batch_norm": False,
        "lr": 1e-3, "input_std_floor": 0.05,
    }
    input_stage = "extractor"

    def build(self) -> nn.Module:
        h = self.hyperparameters
        return FeatureAutoencoder(N_MODEL_FEATURES, tuple(h["extractor"]), int(h["features"]),
                                  tuple(h["hidden"]), int(h["latent"]), float(h["slope"]),
                                  bool(h["batch_norm"]))

    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        assert isinstance(net, FeatureAutoencoder)
        f, recon = net(feats)
        per_event = ((recon - f) ** 2).mean(dim=1)
        if len(f) < 2:
            return per_event
        # the batch's terms, added to every event's loss; in the validation loss too (over
        # its chunk), so that early stopping cannot prefer a collapsing feature space
        h = self.hyperparameters
        batch_terms = (float(h["variance_weight"]) * variance_term(f)
                       + float(h["covariance_weight"]) * covariance_term(f))
        return per_event + batch_terms

    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        assert isinstance(net, FeatureAutoencoder)
        return FeatureError(net)
