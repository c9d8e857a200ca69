"""The scoring graph: a trained network rewritten lean, for torch scoring and ONNX export.

Training works event-major (``[N, F]``, batch norm as its own layer). Scoring a large
batch that way spends most of its time outside the matrix products: onnxruntime
broadcasts a per-feature constant over ``[N, F]`` row by row and concatenates feature
blocks row by row. So the score graph

* works **feature-major**: the raw ``[N, 57]`` is transposed once, every tensor after
  is ``[F, N]``, per-feature constants broadcast along whole rows, feature blocks are
  concatenated as contiguous slabs, and layers are ``W @ h + b``;
* scales and masks each block with as few whole-row operations as it needs (cos and
  sin are only masked), and passes heads the 19 per-slot ``filled`` rows, not a 75-row
  expanded mask (only the reconstruction error expands it; the other heads never do);
* keeps onnxruntime's Cos and Sin: a float32 polynomial of Mul/Add/Round accurate to
  2e-7 over [-π, π] needs about 35 whole-row operations per slot, which cost as much
  as Cos and Sin;
* **folds batch norm** into the preceding linear layer (eval mode: running statistics);
* computes the same numbers as the training modules (tested to float32 rounding).

That graph, whole, is ``model.onnx``. The ``onnxruntime`` backend runs only its network,
event-major (:class:`RowMLP`, :class:`RowNet`: ``net.onnx``), after the compiled
preprocessing of :mod:`darktrigger.models.neural.kernels`: event-major, onnxruntime packs
the constant weights once, and the kernels do the preprocessing in less time than the
graph does (BENCHMARKS.md, "Scoring throughput", times each part alone).

    >>> import torch
    >>> from darktrigger.models.preprocess import Preprocessor
    >>> pre = ColumnPreprocess(Preprocessor.identity())
    >>> feats, filled = pre(torch.zeros(5, 57))
    >>> tuple(feats.shape), tuple(filled.shape)
    ((75, 5), (19, 5))
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from darktrigger.models.preprocess import Preprocessor
from darktrigger.replay.events import N_SLOTS


class ColumnPreprocess(nn.Module):
    """raw ``[N, 57]`` → (features ``[75, N]``, filled ``[19, N]``): the features of
    :class:`PreprocessModule` feature-major, and the per-slot mask (1.0 where pT > 0)."""

    pt_scale: torch.Tensor
    pt_shift: torch.Tensor
    eta_scale: torch.Tensor
    eta_shift: torch.Tensor

    def __init__(self, pre: Preprocessor) -> None:
        super().__init__()
        scale = torch.from_numpy(pre.scale.copy())[:, None]
        shift = torch.from_numpy(pre.shift.copy())[:, None]
        n_scaled = 2 * N_SLOTS - 1  # pt and eta rows; cos/sin rows are not scaled
        self.register_buffer("pt_scale", scale[:N_SLOTS].clone(), persistent=False)
        self.register_buffer("pt_shift", shift[:N_SLOTS].clone(), persistent=False)
        self.register_buffer("eta_scale", scale[N_SLOTS:n_scaled].clone(), persistent=False)
        self.register_buffer("eta_shift", shift[N_SLOTS:n_scaled].clone(), persistent=False)

    def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cols = flat.t().contiguous()  # [57, N]; contiguous rows: torch then vectorises along N
        pt, eta, phi = cols[0::3], cols[4::3], cols[2::3]
        filled = (pt > 0).to(flat.dtype)
        # same operation order as PreprocessModule ((raw − shift) · scale · mask): same bits
        pt_f = (torch.sqrt(torch.sqrt(pt)) - self.pt_shift) * self.pt_scale * filled
        eta_f = (eta - self.eta_shift) * self.eta_scale * filled[1:]
        # cos/sin have shift 0 and scale 1: only the mask (x − 0 and x · 1 are exact)
        feats = torch.cat([pt_f, eta_f, torch.cos(phi) * filled, torch.sin(phi) * filled], dim=0)
        return feats, filled


class ColumnMLP(nn.Module):
    """A folded copy of an :func:`darktrigger.models.neural.training.mlp` stack, applied to ``[F, N]``."""

    def __init__(self, seq: nn.Sequential) -> None:
        super().__init__()
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        self.slopes: list[float | None] = []
        for layer in seq:
            if isinstance(layer, nn.Linear):
                weights.append(layer.weight.detach().double())
                biases.append(layer.bias.detach().double())
                self.slopes.append(None)
            elif isinstance(layer, nn.BatchNorm1d):
                assert layer.running_mean is not None
                assert layer.running_var is not None
                gain = layer.weight.detach().double() / torch.sqrt(layer.running_var.double() + layer.eps)
                weights[-1] = weights[-1] * gain[:, None]
                biases[-1] = (biases[-1] - layer.running_mean.double()) * gain + layer.bias.detach().double()
            elif isinstance(layer, nn.LeakyReLU):
                self.slopes[-1] = float(layer.negative_slope)
            else:  # pragma: no cover - mlp() makes only these
                raise TypeError(f"cannot fold layer {layer!r}")
        self.weights = nn.ParameterList(nn.Parameter(w.float(), requires_grad=False) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b.float()[:, None], requires_grad=False) for b in biases)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for w, b, slope in zip(self.weights, self.biases, self.slopes, strict=True):
            h = torch.addmm(b, w, h)
            if slope is not None:
                h = functional.leaky_relu(h, slope)
        return h

    def rows(self) -> RowMLP:
        """The same folded layers, event-major (for the ``net.onnx`` graphs)."""
        return RowMLP(self)


class RowMLP(nn.Module):
    """A :class:`ColumnMLP`'s folded layers applied event-major, ``[N, F]`` → ``[N, F']``
    (``h @ Wᵀ + b``): the weights are the constant operand onnxruntime packs once."""

    def __init__(self, col: ColumnMLP) -> None:
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w.detach().t().contiguous(), requires_grad=False)
                                        for w in col.weights)
        self.biases = nn.ParameterList(nn.Parameter(b.detach()[:, 0].clone(), requires_grad=False)
                                       for b in col.biases)
        self.slopes = list(col.slopes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for w, b, slope in zip(self.weights, self.biases, self.slopes, strict=True):
            h = torch.addmm(b, h, w)
            if slope is not None:
                h = functional.leaky_relu(h, slope)
        return h


class RowNet(nn.Module):
    """A head's network event-major: features ``[N, 75]`` → ``score`` ``[N]`` or ``recon``
    ``[N, 75]`` (what :attr:`output` names), through ``stages`` in turn.

    ``finish``: ``"sum_squares"`` (Σ over the last stage's outputs of their squares, the
    VAE's Σμ²), ``"flat"`` (a single output column, a classifier's logit), ``"mse"`` (the
    mean over all features of (reconstruction − features)², the autoencoder's score) or
    ``"recon"`` (the reconstruction itself; its masked error is
    :func:`darktrigger.models.neural.kernels.masked_mse`).
    """

    FINISHES = {"sum_squares": "score", "flat": "score", "mse": "score", "recon": "recon"}

    def __init__(self, stages: list[ColumnMLP], finish: str) -> None:
        super().__init__()
        if finish not in self.FINISHES:
            raise ValueError(f"finish must be one of {sorted(self.FINISHES)}, got {finish!r}")
        self.stages = nn.ModuleList(stage.rows() for stage in stages)
        self.finish = finish
        self.output = self.FINISHES[finish]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = feats
        for stage in self.stages:
            h = stage(h)
        if self.finish == "sum_squares":
            return (h * h).sum(dim=1)
        if self.finish == "flat":
            return h.reshape(-1)
        if self.finish == "mse":
            diff = h - feats
            return (diff * diff).mean(dim=1)
        return h


class RowKL(nn.Module):
    """The VAE's KL divergence from the prior, event-major: features ``[N, 75]`` → ``score``."""

    output = "score"

    def __init__(self, encoder: ColumnMLP, mu: ColumnMLP, logvar: ColumnMLP, limit: float) -> None:
        super().__init__()
        self.encoder, self.mu, self.logvar = encoder.rows(), mu.rows(), logvar.rows()
        self.limit = limit

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.encoder(feats)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-self.limit, self.limit)
        return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(dim=1)


def column_linear(layer: nn.Linear) -> ColumnMLP:
    """One linear layer (no activation) as a :class:`ColumnMLP`."""
    return ColumnMLP(nn.Sequential(layer))


def column_masked_mse(recon: torch.Tensor, feats: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """``[75, N]`` reconstruction and features, ``[19, N]`` filled → per-event mean squared
    error over the filled features ``[N]`` (0 for an empty event)."""
    mask = torch.cat([filled, filled[1:], filled, filled], dim=0)
    diff = recon * mask - feats  # = (recon − feats) · mask: feats are 0 where mask is
    err = (diff * diff).sum(dim=0)  # x*x, not x**2: onnxruntime's Pow is slower than a Mul
    count = filled.sum(dim=0) * 4 - filled[0]  # pT, η, cos, sin per slot; MET has no η
    return err / count.clamp(min=1.0)


def column_mse(recon: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """``[75, N]`` reconstruction and features → per-event mean squared error over all 75
    features ``[N]``: an empty slot's features are 0, and a reconstruction away from 0 there
    counts, as a filled slot where the background has none does."""
    diff = recon - feats
    return (diff * diff).mean(dim=0)


class ScoreGraph(nn.Module):
    """raw ``[N, 57]`` → score ``[N]``: the preprocessing, then a scorer's head.

    The module the torch backend runs and ``model.onnx`` holds. ``head`` takes
    feature-major (features ``[75, N]``, filled ``[19, N]``).
    """

    def __init__(self, pre: ColumnPreprocess, head: nn.Module) -> None:
        super().__init__()
        self.pre, self.head = pre, head

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        feats, filled = self.pre(flat)
        return self.head(feats, filled)
