"""``vae``: a variational autoencoder with three scores, ``reco``, ``kl`` and ``mu2``.

Encoder 75-32-16 (batch norm, leaky ReLU) to the latent means μ and log-variances
(``latent`` = 4 by default), decoder the mirror image. Trained on masked
reconstruction error (as :mod:`darktrigger.models.neural.ae`, a per-feature mean) +
``beta`` · KL(q(z|x) ‖ N(0, 1)) with ``beta`` = 1 by default: a much smaller β leaves
the latent means free of the prior, and with them the Σμ² score uninformative.

==========  ==================================================================
variant     score
==========  ==================================================================
``mu2``     Σ μ² over the latent means — **the default**: the encoder-only score
            that the CMS AXOL1TL trigger runs in firmware; its ONNX graph holds
            the encoder only
``kl``      KL divergence of q(z|x) from the prior, ½ Σ (μ² + σ² − 1 − ln σ²)
``reco``    masked reconstruction error of the decoded μ
==========  ==================================================================

Choose with ``get_scorer("vae:kl")`` or ``load_model(dir, variant="kl")``; one
trained model serves every variant (``model-<variant>.onnx`` each).

    >>> from darktrigger.models import get_scorer
    >>> get_scorer("vae").spec, get_scorer("vae:reco").variants
    ('vae:mu2', ('mu2', 'kl', 'reco'))
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from darktrigger.models.base import register_scorer
from darktrigger.models.neural.inference import (
    ColumnMLP,
    RowKL,
    RowNet,
    column_linear,
    column_masked_mse,
)
from darktrigger.models.neural.training import TorchScorer, masked_mse, mlp
from darktrigger.models.preprocess import N_MODEL_FEATURES

LOGVAR_LIMIT = 20.0  #: log σ² is clipped to ±this, so extreme inputs give finite scores


class VariationalAutoencoder(nn.Module):
    """features → (μ, log σ²) → reconstruction; ``encode`` alone is the firmware part."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], latent: int, slope: float,
                 batch_norm: bool) -> None:
        super().__init__()
        self.encoder = mlp([n_in, *hidden], batch_norm=batch_norm, slope=slope)
        self.mu = nn.Linear(hidden[-1], latent)
        self.logvar = nn.Linear(hidden[-1], latent)
        self.decoder = mlp([latent, *reversed(hidden), n_in], batch_norm=batch_norm,
                           slope=slope, last_activation=False)

    def encode(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(feats)
        return self.mu(h), self.logvar(h).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-event KL(N(μ, σ²) ‖ N(0, 1)), summed over the latent dimensions."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar).sum(dim=1)


class Mu2(nn.Module):
    """Feature-major (features, filled) → Σ μ² ``[N]`` (encoder and μ layer only)."""

    def __init__(self, net: VariationalAutoencoder) -> None:
        super().__init__()
        self.encoder, self.mu = ColumnMLP(net.encoder), column_linear(net.mu)

    def forward(self, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        mu = self.mu(self.encoder(feats))
        return (mu * mu).sum(dim=0)

    def rows(self) -> RowNet:
        """Event-major network for ``net-mu2.onnx``: features → Σμ²."""
        return RowNet([self.encoder, self.mu], "sum_squares")


class KL(nn.Module):
    """Feature-major (features, filled) → KL divergence from the prior ``[N]``."""

    def __init__(self, net: VariationalAutoencoder) -> None:
        super().__init__()
        self.encoder = ColumnMLP(net.encoder)
        self.mu, self.logvar = column_linear(net.mu), column_linear(net.logvar)

    def forward(self, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        h = self.encoder(feats)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)
        return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(dim=0)

    def rows(self) -> RowKL:
        """Event-major network for ``net-kl.onnx``: features → KL divergence."""
        return RowKL(self.encoder, self.mu, self.logvar, LOGVAR_LIMIT)


class Reco(nn.Module):
    """Feature-major (features, filled) → masked reconstruction error of the decoded μ ``[N]``."""

    def __init__(self, net: VariationalAutoencoder) -> None:
        super().__init__()
        self.encoder, self.mu = ColumnMLP(net.encoder), column_linear(net.mu)
        self.decoder = ColumnMLP(net.decoder)

    def forward(self, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        return column_masked_mse(self.decoder(self.mu(self.encoder(feats))), feats, filled)

    def rows(self) -> RowNet:
        """Event-major network for ``net-reco.onnx``: features → reconstruction of μ."""
        return RowNet([self.encoder, self.mu, self.decoder], "recon")


HEADS: dict[str, type[nn.Module]] = {"mu2": Mu2, "kl": KL, "reco": Reco}


@register_scorer("vae")
class VAEScorer(TorchScorer):
    """Variational autoencoder. Higher score = more anomalous; variants ``mu2`` (default),
    ``kl``, ``reco``.

    Hyper-parameters: ``hidden`` ((32, 16)), ``latent`` (4), ``beta`` (weight of the KL
    term, 1.0), ``slope`` (0.01), ``batch_norm`` (True), ``lr`` (1e-3).
    """

    description = "variational autoencoder: Σμ² (AXOL1TL), KL or reconstruction score"
    variants = ("mu2", "kl", "reco")
    default_variant = "mu2"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "hidden": [32, 16], "latent": 4, "beta": 1.0, "slope": 0.01, "batch_norm": True,
        "lr": 1e-3,
    }

    def build(self) -> nn.Module:
        h = self.hyperparameters
        return VariationalAutoencoder(N_MODEL_FEATURES, tuple(h["hidden"]), int(h["latent"]),
                                      float(h["slope"]), bool(h["batch_norm"]))

    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        assert isinstance(net, VariationalAutoencoder)
        mu, logvar = net.encode(feats)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if net.training else mu
        reco = masked_mse(net.decoder(z), feats, mask)
        return reco + float(self.hyperparameters["beta"]) * kl_divergence(mu, logvar)

    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        assert isinstance(net, VariationalAutoencoder)
        return HEADS[variant or "mu2"](net)
