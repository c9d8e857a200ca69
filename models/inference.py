"""The scoring graph: a trained network rewritten lean, for torch scoring and ONNX export.

Training works event-major (``[N, F]``, batch norm as its own layer). Scoring a large
batch that way spends most of its time outside the matrix products: onnxruntime
broadcasts a per-feature constant over ``[N, F]`` row by row and concatenates feature
blocks row by row. So the score graph

* works **feature-major**: the raw ``[N, 57]`` is transposed once, every tensor after
  is ``[F, N]``, per-feature constants broadcast along whole rows, feature blocks are
  concatenated as contiguous slabs, and layers are ``W @ h + b``;
* **folds batch norm** into the preceding linear layer (eval mode: running statistics);
* computes the same numbers as the training modules (tested to float32 rounding).

    >>> import torch
    >>> from models.preprocess import Preprocessor
    >>> pre = ColumnPreprocess(Preprocessor.identity())
    >>> feats, mask = pre(torch.zeros(5, 57))
    >>> tuple(feats.shape), tuple(mask.shape)
    ((75, 5), (75, 5))
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from models.preprocess import Preprocessor


class ColumnPreprocess(nn.Module):
    """raw ``[N, 57]`` → (features ``[75, N]``, mask ``[75, N]``), as :class:`PreprocessModule`
    but feature-major."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, pre: Preprocessor) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(pre.scale.copy())[:, None], persistent=False)
        self.register_buffer("shift", torch.from_numpy(pre.shift.copy())[:, None], persistent=False)

    def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cols = flat.t()  # [57, N]
        pt, eta, phi = cols[0::3], cols[4::3], cols[2::3]
        filled = (pt > 0).to(flat.dtype)
        raw = torch.cat([torch.log(pt + 1), eta, torch.cos(phi), torch.sin(phi)], dim=0)
        mask = torch.cat([filled, filled[1:], filled, filled], dim=0)
        return (raw - self.shift) * self.scale * mask, mask


class ColumnMLP(nn.Module):
    """A folded copy of an :func:`models.training.mlp` stack, applied to ``[F, N]``."""

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
                assert layer.running_mean is not None and layer.running_var is not None
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


def column_linear(layer: nn.Linear) -> ColumnMLP:
    """One linear layer (no activation) as a :class:`ColumnMLP`."""
    return ColumnMLP(nn.Sequential(layer))


def column_masked_mse(recon: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[F, N]`` tensors → per-event mean squared error over the filled features ``[N]``."""
    diff = (recon - feats) * mask
    err = (diff * diff).sum(dim=0)  # x*x, not x**2: onnxruntime's Pow is several times slower
    return err / mask.sum(dim=0).clamp(min=1.0)


class ScoreGraph(nn.Module):
    """raw ``[N, 57]`` → score ``[N]``: the preprocessing, then a scorer's head.

    The module the torch backend runs and ``model.onnx`` holds. ``head`` takes
    feature-major (features, mask), both ``[75, N]``.
    """

    def __init__(self, pre: ColumnPreprocess, head: nn.Module) -> None:
        super().__init__()
        self.pre, self.head = pre, head

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        feats, mask = self.pre(flat)
        return self.head(feats, mask)
