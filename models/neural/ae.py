"""``ae``: a dense autoencoder; score = reconstruction error.

The network works on the preprocessed features (:mod:`darktrigger.models.preprocess`), so its
width follows the preprocessing: with the default ``hidden=(32, 16)`` and
``latent=3`` it is 75-32-16-3-16-32-75 (the field's 57-32-16-3-16-32-57 on the raw
numbers, with φ as (cos φ, sin φ) and no MET η), batch norm and leaky ReLU after every
hidden layer. The score (and the training loss) is chosen by the hyper-parameter ``loss``:

==========  =======================================================================
``loss``    score and training loss
==========  =======================================================================
``full``    the mean squared error over all 75 features, empty slots (features 0)
            included — **the default**
``masked``  the mean squared error over the *filled* features only (an event with
            no object scores 0)
==========  =======================================================================

Why ``full``: a slot the background never fills (a third lepton in a background of
at most two) has inputs that are always 0 in training, so under ``masked`` its
reconstruction is never trained and a signal object there costs whatever the untrained
outputs happen to give. Under ``full`` the network learns that such a slot stays
empty, and an object there is a large error. Measured on toy ADC2021-format files
(tests/test_anomaly_floor.py: a background of 0–2 leptons, 4-lepton ``ato4l``, 48k
training events, the CLI's defaults): AUC 0.994 with ``full``, 0.983 with ``masked``,
0.994 for the linear ``pca`` baseline.

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
from darktrigger.models.neural.inference import ColumnMLP, RowNet, column_masked_mse, column_mse
from darktrigger.models.neural.training import TorchScorer, masked_mse, mlp
from darktrigger.models.preprocess import N_MODEL_FEATURES
from darktrigger.replay.errors import ConfigError


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


LOSSES = ("full", "masked")  #: the ``loss`` hyper-parameter's values (module doc)


class ReconstructionError(nn.Module):
    """Feature-major features ``[75, N]``, filled ``[19, N]`` → reconstruction error ``[N]``,
    over all features (``masked=False``) or the filled ones."""

    def __init__(self, net: Autoencoder, masked: bool = False) -> None:
        super().__init__()
        self.encoder, self.decoder = ColumnMLP(net.encoder), ColumnMLP(net.decoder)
        self.masked = masked

    def forward(self, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        recon = self.decoder(self.encoder(feats))
        return column_masked_mse(recon, feats, filled) if self.masked else column_mse(recon, feats)

    def rows(self) -> RowNet:
        """Event-major network for ``net.onnx``: features → the score (``full``), or the
        reconstruction whose masked error the compiled kernel takes (``masked``)."""
        return RowNet([self.encoder, self.decoder], "recon" if self.masked else "mse")


@register_scorer("ae")
class AEScorer(TorchScorer):
    """Dense autoencoder. Higher score = worse reconstruction = more anomalous.

    Hyper-parameters: ``hidden`` (default (32, 16)), ``latent`` (3), ``slope`` of the
    leaky ReLU (0.01), ``batch_norm`` (True), ``lr`` (1e-3), ``loss`` (``"full"``: over
    all features; ``"masked"``: the filled ones — see the module doc), ``input_std_floor``
    (0: off; > 0 standardises the encoder's inputs as ``vae`` and ``axo`` do by default — for
    ``ae`` it changed nothing measurable: toy floor 0.994 either way, ADC2021-recipe Pythia
    ``lq_btau`` 0.836 with 0.05 and no batch norm against 0.833, BENCHMARKS.md).
    """

    description = "dense autoencoder, reconstruction error over all features (or the filled ones)"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "hidden": [32, 16], "latent": 3, "slope": 0.01, "batch_norm": True, "lr": 1e-3,
        "loss": "full", "input_std_floor": 0.0,
    }
    input_stage = "encoder"

    @property
    def masked(self) -> bool:
        loss = self.hyperparameters.get("loss", "full")
        if loss not in LOSSES:
            raise ConfigError(f"{self.where}: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        return bool(loss == "masked")

    def build(self) -> nn.Module:
        h = self.hyperparameters
        self.masked  # noqa: B018  (checks the loss before training starts)
        return Autoencoder(N_MODEL_FEATURES, tuple(h["hidden"]), int(h["latent"]),
                           float(h["slope"]), bool(h["batch_norm"]))

    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        recon = net(feats)
        if self.masked:
            return masked_mse(recon, feats, mask)
        diff = recon - feats
        return (diff * diff).mean(dim=1)

    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        assert isinstance(net, Autoencoder)
        return ReconstructionError(net, masked=self.masked)
