"""``vae``: a variational autoencoder with three scores, ``reco``, ``kl`` and ``mu2``.

Encoder 75-32-16 (leaky ReLU; on standardised features, below) to the latent means μ and log-variances
(``latent`` = 4 by default), decoder the mirror image. Trained on a **weighted sum** of
squared reconstruction errors over all 75 features, empty slots included, +
``beta`` · KL(q(z|x) ‖ N(0, 1)), ``beta`` = 1: the recipe of the quantised ``qvae``
(:mod:`darktrigger.models.quantised.scorers`), so that the float/quantised comparison is
about quantisation and not about recipes. Feature ``q`` of a slot of type ``k`` weighs
``reco_weights[q] · reco_object_weights[k]`` (defaults pT 8, η 1, φ 0 — cos and sin —;
MET 1, e/γ 64, μ 64, jet 1: leptons are rare in the SM mix, and unweighted no latent
direction is spent on them; φ is uniform noise).

Why a sum and not a mean: with a per-feature mean, the reconstruction term is ~1/75 of a
Gaussian likelihood's, the KL term wins and μ collapses onto 0 (median KL 1e-5 on
background before this recipe; the KL score then answers unseen inputs arbitrarily).
Measured on the toy ADC2021-format floor of tests/test_anomaly_floor.py (48k events, the
CLI's defaults): ``kl`` AUC 0.946 → 0.991 and ``mu2`` 0.924 → 0.991 (median KL on background
6.2: not collapsed); an unweighted sum collapses the other way (AUC 0.42: the latent spends
itself on jets); lepton weight 16 gives 0.963, 256 gives 0.989; the linear ``pca``
baseline 0.9944. The encoder then reads its features standardised (mean and std of the
training background, std floored at 0.05, ``input_std_floor``; folded into the first layer
after training) and without batch norm, as ``axo`` does (:mod:`darktrigger.models.neural.axo`
says why): ``kl`` 0.9907/0.9903 → 0.9968/0.9968/0.9971/0.9972 (seeds 0–3;
0.9965/0.9909 for seeds 0/1 with batch norm kept; on other toy files, data seeds 11/12/13,
0.9961 against ``pca``'s 0.9931). The quantised ``qvae`` has neither (its inputs are
CMSSW's integers, shifted).

==========  ==================================================================
variant     score
==========  ==================================================================
``mu2``     Σ μ² over the latent means — **the default**: the encoder-only score
            that the CMS AXOL1TL trigger runs in firmware; its ONNX graph holds
            the encoder only
``kl``      KL divergence of q(z|x) from the prior, ½ Σ (μ² + σ² − 1 − ln σ²)
``reco``    masked reconstruction error of the decoded μ (a per-feature mean over
            the filled features, unweighted)
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
from darktrigger.models.neural.training import TorchScorer, mlp
from darktrigger.models.preprocess import N_MODEL_FEATURES
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import SLOT_TYPES

#: the training reconstruction weights (module doc); the same defaults as ``qvae``'s
RECO_WEIGHTS = {"pt": 8.0, "eta": 1.0, "phi": 0.0}
RECO_OBJECT_WEIGHTS = {"met": 1.0, "egamma": 64.0, "muon": 64.0, "jet": 1.0}

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
    term, 1.0), ``slope`` (0.01), ``batch_norm`` (False), ``lr`` (1e-3), ``reco_weights``
    and ``reco_object_weights`` (the module doc's table), ``input_std_floor`` (0.05: the
    encoder reads standardised features, :class:`~darktrigger.models.neural.training.TorchScorer`).
    """

    description = "variational autoencoder: Σμ² (AXOL1TL), KL or reconstruction score"
    variants = ("mu2", "kl", "reco")
    default_variant = "mu2"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "hidden": [32, 16], "latent": 4, "beta": 1.0, "slope": 0.01, "batch_norm": False,
        "input_std_floor": 0.05,
        "lr": 1e-3, "reco_weights": dict(RECO_WEIGHTS), "reco_object_weights": dict(RECO_OBJECT_WEIGHTS),
    }
    input_stage = "encoder"

    def reco_weight_vector(self) -> torch.Tensor:
        """The weight of each of the 75 features in the training loss ``[75]`` (module doc):
        the pT block, the η block (no MET η), then cos φ and sin φ, each by slot."""
        h = self.hyperparameters
        for key, names in (("reco_weights", tuple(RECO_WEIGHTS)), ("reco_object_weights", tuple(RECO_OBJECT_WEIGHTS))):
            w = h.get(key)
            if not isinstance(w, dict) or set(w) != set(names) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < float("inf")
                    for v in w.values()):
                raise ConfigError(f"{self.where}: hyper-parameter {key} must map each of "
                                  f"{', '.join(names)} to a finite weight >= 0, got {w!r}")
        per_slot = torch.tensor([float(h["reco_object_weights"][k]) for k in SLOT_TYPES])
        q = {k: float(v) for k, v in h["reco_weights"].items()}
        out = torch.cat([q["pt"] * per_slot, q["eta"] * per_slot[1:], q["phi"] * per_slot, q["phi"] * per_slot])
        if not bool(out.any()):
            raise ConfigError(f"{self.where}: the reconstruction weights are all 0")
        return out

    def build(self) -> nn.Module:
        h = self.hyperparameters
        self.reco_weight_vector()  # checks the weights before training starts
        return VariationalAutoencoder(N_MODEL_FEATURES, tuple(h["hidden"]), int(h["latent"]),
                                      float(h["slope"]), bool(h["batch_norm"]))

    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        assert isinstance(net, VariationalAutoencoder)
        mu, logvar = net.encode(feats)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if net.training else mu
        diff = net.decoder(z) - feats
        reco = (diff * diff * self.reco_weight_vector()).sum(dim=1)
        return reco + float(self.hyperparameters["beta"]) * kl_divergence(mu, logvar)

    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        assert isinstance(net, VariationalAutoencoder)
        return HEADS[variant or "mu2"](net)
