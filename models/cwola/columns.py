"""``cwola_columns``: a CWoLa classifier on named analysis columns, e.g. jet masses and τ21.

The ``cwola`` scorer reads the 57-number L1 object block; a CWoLa bump hunt needs a
classifier on features *not* correlated with m_jj — the analysis columns ``mj1``,
``mj2``, ``tau21_j1``, ``tau21_j2`` of the event model — which this scorer reads by
name. One saved model can hold several member networks (the k fold models of a hunt's
window, :meth:`ColumnCWoLaScorer.ensemble`); the score is the mean of their logits.

    >>> import numpy as np
    >>> from darktrigger.models import get_scorer
    >>> from darktrigger.models.cwola import columns  # noqa: F401  (registers "cwola_columns")
    >>> from darktrigger.replay.events import EventBatch
    >>> from darktrigger.replay.generators import GENERATORS
    >>> toy = GENERATORS.get("toy")()
    >>> sig = next(toy.generate("wprime_xy", 500, seed=1))
    >>> bkg = next(toy.generate("qcd_dijet", 2000, seed=2))
    >>> both = EventBatch.concat([sig, bkg])
    >>> clf = get_scorer("cwola_columns", features=["mj1", "mj2", "tau21_j1", "tau21_j2"])
    >>> _ = clf.fit(both, labels=np.r_[np.ones(500), np.zeros(2000)], epochs=3)
    >>> bool(clf.score(sig).mean() > clf.score(bkg).mean())
    True
    >>> clf.score(EventBatch.from_objects(np.zeros((2, 19, 3), np.float32)))
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.SchemaError: scorer 'cwola_columns': the batch has no column 'mj1' (it has objects, run, lumi, event, bx, truth, weight); this scorer reads the analysis columns mj1, mj2, tau21_j1, tau21_j2

The model directory holds ``card.json`` and ``weights.pt`` (members, each with its
feature scaling as buffers). There is no ``model.onnx``: the ``onnxruntime`` backend
of :func:`darktrigger.models.load_model` takes the ``[N, 57]`` object block, which this scorer
does not read; load it with the torch backend (the default).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from darktrigger.models.base import BatchLike, FitHistory, FitOptions, Scorer, register_scorer
from darktrigger.models.card import WEIGHTS_FILE, ModelCard
from darktrigger.models.cwola.classifier import Classifier
from darktrigger.models.cwola.config import DEFAULT_FEATURES
from darktrigger.models.neural.training import (
    SCORE_CHUNK,
    load_weights,
    run_training,
    torch_threads,
)
from darktrigger.replay.errors import ConfigError, SchemaError
from darktrigger.replay.events import EventBatch

log = logging.getLogger(__name__)

MIN_STD = 1e-6


class Member(nn.Module):
    """Standardise ``[N, F]`` with fixed (mean, 1/std) buffers, then the classifier's logit."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, n_in: int, hidden: tuple[int, ...], slope: float, batch_norm: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("inv_std", torch.ones(n_in))
        self.net = Classifier(n_in, hidden, slope, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) * self.inv_std)


class Ensemble(nn.Module):
    """The mean logit of its members."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def read_columns(batch: BatchLike, features: Sequence[str], where: str) -> np.ndarray:
    """The ``[N, F]`` float32 matrix of ``features`` from a batch (or a ``[N, F]`` array).

    A missing column or a non-finite value is a :class:`SchemaError` naming ``where``.
    """
    if isinstance(batch, EventBatch):
        cols: Mapping[str, np.ndarray] = batch.columns
    elif isinstance(batch, Mapping):
        cols = batch
    elif isinstance(batch, np.ndarray):
        if batch.ndim != 2 or batch.shape[1] != len(features):
            raise SchemaError(f"{where}: expected the analysis columns {', '.join(features)} "
                              f"(a batch with them, or an array [N, {len(features)}]), got an "
                              f"array of shape {batch.shape}")
        if batch.dtype.kind != "f":
            raise SchemaError(f"{where}: expected float features, got dtype {batch.dtype}")
        x = np.ascontiguousarray(batch, dtype=np.float32)
        cols = {f: x[:, i] for i, f in enumerate(features)}
    else:
        raise SchemaError(f"{where}: expected an EventBatch or a mapping of columns, "
                          f"got {type(batch).__name__}")
    missing = [f for f in features if f not in cols]
    if missing:
        raise SchemaError(f"{where}: the batch has no column {missing[0]!r} (it has "
                          f"{', '.join(map(str, cols)) or 'no columns'}); this scorer reads the "
                          f"analysis columns {', '.join(features)}")
    out = np.stack([np.asarray(cols[f], dtype=np.float32) for f in features], axis=1) \
        if features else np.zeros((0, 0), np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise SchemaError(f"{where}: column {features[col]!r} has {int(bad[:, col].sum())} "
                          f"non-finite value(s), first at row {row} ({out[row, col]})")
    return out


@register_scorer("cwola_columns")
class ColumnCWoLaScorer(Scorer):
    """CWoLa classifier on named analysis columns; score = mean logit of its members.

    Hyper-parameters: ``features`` (mj1, mj2, tau21_j1, tau21_j2), ``hidden`` ((32, 32)),
    ``slope`` (0.01), ``batch_norm`` (False), ``lr`` (1e-3), ``members`` (1; set by
    :meth:`ensemble`).
    """

    description = "CWoLa classifier on named analysis columns (mj1, mj2, tau21...), logit"
    needs_labels = True
    #: reads named analysis columns, not the [N, 19, 3] object block
    input_columns: ClassVar[bool] = True
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "features": list(DEFAULT_FEATURES), "hidden": [32, 32], "slope": 0.01,
        "batch_norm": False, "lr": 1e-3, "members": 1,
    }

    def __init__(self, variant: str | None = None, **hyperparameters: Any) -> None:
        super().__init__(variant, **hyperparameters)
        feats = self.hyperparameters["features"]
        if isinstance(feats, str):
            feats = [f.strip() for f in feats.split(",") if f.strip()]
        if not feats or not all(isinstance(f, str) and f for f in feats):
            raise ConfigError(f"{self.where}: features must be a non-empty list of column "
                              f"names, got {feats!r}")
        if len(set(feats)) != len(feats):
            raise ConfigError(f"{self.where}: features repeat a column: {feats}")
        self.hyperparameters["features"] = list(feats)
        if int(self.hyperparameters["members"]) < 1:
            raise ConfigError(f"{self.where}: members must be >= 1")
        self.net: Ensemble | None = None

    @property
    def features(self) -> list[str]:
        return list(self.hyperparameters["features"])

    def _member(self) -> Member:
        h = self.hyperparameters
        return Member(len(self.features), tuple(h["hidden"]), float(h["slope"]), bool(h["batch_norm"]))

    def _build(self) -> Ensemble:
        return Ensemble([self._member() for _ in range(int(self.hyperparameters["members"]))])

    @staticmethod
    def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return functional.binary_cross_entropy_with_logits(net(x), y, reduction="none")

    def _labels(self, labels: np.ndarray | None, n: int, what: str) -> torch.Tensor:
        if labels is None:
            raise ConfigError(f"{self.where}: needs {what} (1 for one sample, 0 for the other)")
        arr = np.asarray(labels)
        if arr.shape != (n,) or not np.isin(arr, (0, 1)).all():
            raise SchemaError(f"{self.where}: {what} must be {n} values of 0 or 1, got shape "
                              f"{arr.shape} with values {np.unique(arr)[:5]}")
        return torch.from_numpy(arr.astype(np.float32))

    # -- the interface -----------------------------------------------------------------
    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        """Train one member (``members`` becomes 1) on ``train`` with ``labels``."""
        x = read_columns(train, self.features, f"{self.where}, training batch")
        y = self._labels(labels, len(x), "labels")
        val: list[torch.Tensor] | None = None
        if validation is not None:
            xv = read_columns(validation, self.features, f"{self.where}, validation batch")
            val = [torch.from_numpy(xv), self._labels(validation_labels, len(xv), "validation_labels")]
        self.hyperparameters["members"] = 1
        with torch_threads(options.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            member = self._member()
            mean = x.mean(axis=0, dtype=np.float64)
            std = np.maximum(x.std(axis=0, dtype=np.float64), MIN_STD)
            member.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            member.inv_std.copy_(torch.from_numpy((1.0 / std).astype(np.float32)))
            history = run_training(member, self._loss, [torch.from_numpy(x), y], val, options,
                                   lr=float(self.hyperparameters["lr"]), desc=f"train {self.name}")
        self.net = Ensemble([member]).eval()
        self.seed = options.seed
        self.training = options.record(len(x), 0 if val is None else len(val[0]), history)
        return history

    @classmethod
    def ensemble(cls, scorers: Sequence[ColumnCWoLaScorer],
                 training: dict[str, Any] | None = None) -> ColumnCWoLaScorer:
        """One scorer whose members are all the members of ``scorers`` (same features and
        network shape); its score is the mean logit over them."""
        if not scorers:
            raise ConfigError("ensemble of zero cwola_columns scorers")
        first = scorers[0]
        shape_keys = ("features", "hidden", "slope", "batch_norm")
        for s in scorers:
            if s.net is None:
                raise ConfigError(f"{s.where} is not trained: cannot be an ensemble member")
            if any(s.hyperparameters[k] != first.hyperparameters[k] for k in shape_keys):
                raise ConfigError("ensemble members must share features, hidden, slope and "
                                  f"batch_norm; got {first.hyperparameters} and {s.hyperparameters}")
        hyper = {k: v for k, v in first.hyperparameters.items() if k != "members"}
        out = cls(**hyper, members=sum(len(s.net.members) for s in scorers if s.net is not None))
        out.net = Ensemble([m for s in scorers if s.net is not None for m in s.net.members]).eval()
        out.seed = first.seed
        out.training = dict(training or {})
        return out

    def _require_net(self) -> Ensemble:
        if self.net is None:
            raise ConfigError(f"{self.where} is not trained: call fit() or load a model directory")
        return self.net

    def score(self, batch: BatchLike) -> np.ndarray:
        net = self._require_net()
        x = read_columns(batch, self.features, self.where)
        out = np.empty(len(x), np.float32)
        with torch.inference_mode():
            for start in range(0, len(x), SCORE_CHUNK):
                out[start:start + SCORE_CHUNK] = net(torch.from_numpy(x[start:start + SCORE_CHUNK])).numpy()
        return out

    def mean_loss(self, batch: BatchLike, labels: np.ndarray) -> float:
        """Mean binary cross-entropy of the (ensemble) logit on ``batch``."""
        net = self._require_net()
        x = torch.from_numpy(read_columns(batch, self.features, self.where))
        y = self._labels(labels, len(x), "labels")
        with torch.inference_mode():
            return float(self._loss(net, x, y).mean()) if len(x) else float("nan")

    # -- persistence -------------------------------------------------------------------
    def _save_files(self, directory: Path) -> list[str]:
        torch.save(self._require_net().state_dict(), directory / WEIGHTS_FILE)
        return [WEIGHTS_FILE]

    def _load_files(self, directory: Path, card: ModelCard) -> None:
        self.net = load_weights(self._build(), directory, self.name)
