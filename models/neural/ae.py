"""``ae``: a dense autoencoder; score = masked reconstruction error.

The network works on the preprocessed features (:mod:`darktrigger.models.preprocess`), so its
width follows the preprocessing: with the default ``hidden=(32, 16)`` and
``latent=3`` it is 75-32-16-3-16-32-75 (the field's 57-32-16-3-16-32-57 on the raw
numbers, with φ as (cos, sin) and no MET η), batch norm and leaky ReLU after every
hidden layer. The score (and the training loss) is the mean squared error over the
*filled* features only, φ compared as (cos φ, sin φ); an event with no object scores 0.

    >>> from darktrigger.models import get_scorer
    >>> from darktrigger.replay.generators import GENERATORS
    >>> bkg = next(GENERATORS.get("toy")().generate("sm_mix", 4000, seed=1))
    >>> ae = get_scorer("ae")
    >>> history = ae.fit(bkg, epochs=2, batch_size=256)
    >>> len(history["train_loss"]), ae.score(bkg).shape
    (2, (4000,))
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from darktrigger.models.base import register_scorer
from darktrigger.models.neural.inference import ColumnMLP, RowNet, column_masked_mse
from darktrigger.models.neural.training import TorchScorer, masked_mse, mlp
from darktrigger.models.preprocess import N_MODEL_FEATURES


class Autoencoder(nn.Module):
    """features ``[N, F]`` → reconstruction ``[N, F]`` through a ``latent``-wide bottleneck."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], latent: int, slope: float,
                 batch_norm: bool) -> None:
        super().__init__()
        self.encoder = mlp([n_in, *hidden, latent], batch_norm=batch_norm, slope=slope,
                           last_activation=False)
        self.decoder = mlp([latent, *reversed(hidden), n_in], batch_norm=batch_norm,
                           slope=slope, last_activation=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(feats))


class ReconstructionError(nn.Module):
    """Feature-major features ``[75, N]``, filled ``[19, N]`` → masked reconstruction error ``[N]``."""

    def __init__(self, net: Autoencoder) -> None:
        super().__init__()
        self.encoder, self.decoder = ColumnMLP(net.encoder), ColumnMLP(net.decoder)

    def forward(self, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        return column_masked_mse(self.decoder(self.encoder(feats)), feats, filled)

    def rows(self) -> RowNet:
        """Event-major network for ``net.onnx``: features → reconstruction."""
        return RowNet([self.encoder, self.decoder], "recon")


@register_scorer("ae")
class AEScorer(TorchScorer):
    """Dense autoencoder. Higher score = worse reconstruction = more anomalous.

    Hyper-parameters: ``hidden`` (default (32, 16)), ``latent`` (3), ``slope`` of the
    leaky ReLU (0.01), ``batch_norm`` (True), ``lr`` (1e-3).
    """

    description = "dense autoencoder, masked reconstruction error"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "hidden": [32, 16], "latent": 3, "slope": 0.01, "batch_norm": True, "lr": 1e-3,
    }

    def build(self) -> nn.Module:
        h = self.hyperparameters
        return Autoencoder(N_MODEL_FEATURES, tuple(h["hidden"]), int(h["latent"]),
                           float(h["slope"]), bool(h["batch_norm"]))

    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        return masked_mse(net(feats), feats, mask)

    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        assert isinstance(net, Autoencoder)
        return ReconstructionError(net)
