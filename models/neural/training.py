"""Training of the neural scorers: the torch scorer base, the loop, and ``train_model``.

The loop (:func:`run_training`) is Adam on mini-batches drawn from tensors held in
memory (the preprocessing runs once, over the whole sample), with a validation loss
each epoch, early stopping after ``patience`` epochs without improvement, and the
best epoch's weights restored at the end. A seed fixes the initial weights, the batch
order and the VAE's noise (``torch.random.fork_rng``: the caller's RNG is untouched),
so the same seed gives the same weights.

:func:`train_model` trains on event files and saves the model directory:

    >>> from darktrigger.models import read_card
    >>> from darktrigger.replay.generators import GENERATORS
    >>> from darktrigger.replay.storage import write_events
    >>> write_events("bkg.h5", next(GENERATORS.get("toy")().generate("sm_mix", 2000, seed=1)))
    2000
    >>> out = train_model("ae", ["bkg.h5"], "models/ae", epochs=2, progress=False)
    >>> card = read_card(out)
    >>> card.history["epochs_run"], card.training_files[0]["events"], card.training["validation_events"]
    (2, 2000, 400)
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from abc import abstractmethod
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Unpack

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from darktrigger.models.base import (
    BatchLike,
    FitHistory,
    FitKeywords,
    FitOptions,
    Scorer,
    as_flat,
    get_scorer,
    new_history,
)
from darktrigger.models.card import (
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelFileError,
    TrainingFile,
    load_part,
    net_file,
    onnx_file,
    require_file,
    sha256_file,
)
from darktrigger.models.neural.inference import ColumnPreprocess, ScoreGraph
from darktrigger.models.preprocess import (
    N_MODEL_FEATURES,
    PREPROCESS_FILE,
    PreprocessModule,
    Preprocessor,
)
from darktrigger.replay.errors import ConfigError, SchemaError
from darktrigger.replay.events import N_FEATURES, EventBatch

log = logging.getLogger(__name__)

#: events per forward pass when scoring: small enough that the intermediates stay in
#: cache (chosen with ``bench/models_speed.py``)
SCORE_CHUNK = 4096
LOSS_CHUNK = 65536  #: events per forward pass of the validation loss
ONNX_OPSET = 17
LossFn = Callable[..., torch.Tensor]


def mlp(widths: Sequence[int], *, batch_norm: bool = True, slope: float = 0.01,
        last_activation: bool = True) -> nn.Sequential:
    """Dense layers ``widths[0] → … → widths[-1]``, each followed by batch norm and leaky ReLU."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(widths) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


class Standardise(nn.Module):
    """``(x − mean) / std`` per feature, with fixed buffers: the training-time input stage of
    :attr:`TorchScorer.input_stage` (folded into the first dense layer after training)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def fold_standardise(stage: nn.Sequential) -> nn.Sequential:
    """``Sequential(Standardise, Linear, …)`` → ``Sequential(Linear', …)`` computing the same:
    ``W (x − m)/s + b = (W/s) x + (b − (W/s) m)``, so the saved network has no extra layer.

        >>> torch.manual_seed(0) is not None
        True
        >>> stage = nn.Sequential(Standardise(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 4.0])),
        ...                       nn.Linear(2, 3), nn.ReLU())
        >>> x = torch.randn(5, 2)
        >>> before = stage(x)
        >>> folded = fold_standardise(stage)
        >>> len(folded), bool(torch.allclose(folded(x), before, atol=1e-6))
        (2, True)
    """
    first, linear = stage[0], stage[1]
    assert isinstance(first, Standardise)
    assert isinstance(linear, nn.Linear)
    with torch.no_grad():
        weight = linear.weight / first.std
        linear.bias.sub_(weight @ first.mean)
        linear.weight.copy_(weight)
    return nn.Sequential(*list(stage)[1:])


def score_in_chunks(graph: nn.Module, flat: np.ndarray) -> np.ndarray:
    """float32 scores ``[N]`` of a raw → score module on ``flat`` ``[N, 57]``, run on
    :data:`SCORE_CHUNK` events at a time without autograd (the torch backends' scoring)."""
    out = np.empty(len(flat), np.float32)
    with torch.inference_mode():
        for start in range(0, len(flat), SCORE_CHUNK):
            chunk = torch.from_numpy(flat[start:start + SCORE_CHUNK])
            out[start:start + len(chunk)] = graph(chunk).numpy()
    return out


def masked_mse(recon: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-event mean squared error over the filled features; 0 for an empty event."""
    err = ((recon - feats) ** 2 * mask).sum(dim=1)
    return err / mask.sum(dim=1).clamp(min=1.0)


@contextmanager
def torch_threads(threads: int | None) -> Any:
    """Run with ``torch.set_num_threads(threads)``, restoring the previous count after."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _mean_loss(net: nn.Module, loss_fn: LossFn, tensors: Sequence[torch.Tensor]) -> float:
    net.eval()
    total, n = 0.0, len(tensors[0])
    with torch.no_grad():
        for start in range(0, n, LOSS_CHUNK):
            total += float(loss_fn(net, *(t[start:start + LOSS_CHUNK] for t in tensors)).sum())
    return total / max(n, 1)


def run_training(net: nn.Module, loss_fn: LossFn, train: Sequence[torch.Tensor],
                 validation: Sequence[torch.Tensor] | None, options: FitOptions, *,
                 lr: float = 1e-3, desc: str = "train") -> FitHistory:
    """Train ``net`` in place on ``loss_fn(net, *tensors) → per-event loss``; the history.

    Monitors the validation loss (the training loss without validation); after
    ``options.patience`` epochs without a lower one it stops, and in every case it ends
    with the best epoch's weights. The batch order comes from ``options.seed``.
    """
    epochs, batch_size, patience = options.epochs, options.batch_size, options.patience
    n = len(train[0])
    if n < 2:
        raise ConfigError(f"{desc}: need at least 2 training events, got {n}")
    order_rng = torch.Generator().manual_seed(options.seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, foreach=True)
    history = new_history(bool(validation))
    best, best_epoch, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
    n_batches = math.ceil(n / batch_size)
    with tqdm(total=epochs * n_batches, disable=not options.progress, desc=desc, unit="batch",
              leave=False) as bar:
        for epoch in range(1, epochs + 1):
            bar.set_description(f"{desc} epoch {epoch}/{epochs}", refresh=False)
            net.train()
            perm = torch.randperm(n, generator=order_rng)
            total = 0.0
            seen = 0
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                if len(idx) < 2:  # batch norm cannot train on one event
                    continue
                loss = loss_fn(net, *(t[idx] for t in train)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                bar.update(1)
            history["train_loss"].append(total / seen)
            if validation:
                history["validation_loss"].append(_mean_loss(net, loss_fn, validation))
            current = history[history["monitor"]][-1]
            bar.set_postfix(loss=f"{current:.4g}")
            if not math.isfinite(current):
                log.warning("%s: loss is %s at epoch %d; stopping", desc, current, epoch)
                break
            if current < best:
                best, best_epoch, best_state = current, epoch, copy.deepcopy(net.state_dict())
            elif patience is not None and epoch - best_epoch >= patience:
                log.info("%s: no improvement for %d epochs, stopping at epoch %d (best %d)",
                         desc, patience, epoch, best_epoch)
                break
    net.load_state_dict(best_state)
    net.eval()
    history["best_epoch"], history["best_loss"] = best_epoch, best
    history["epochs_run"], history["stopped_early"] = epoch, epoch < epochs
    return history



NetT = TypeVar("NetT", bound=nn.Module)


def read_state_dict(path: Path) -> dict[str, Any]:
    """A torch state dict saved with ``torch.save``, or a :class:`ModelFileError` naming the
    file (the scorers with torch weights all read theirs through this)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a damaged file
        raise ModelFileError(f"{path}: not a readable torch state dict "
                             f"({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_weights(net: NetT, directory: Path, scorer: str) -> NetT:
    """``net`` (built from the card's hyper-parameters) with the weights saved in ``directory``,
    in evaluation mode; a :class:`ModelFileError` naming the file when they do not fit."""
    wpath = require_file(directory, WEIGHTS_FILE, "the network weights")
    state = read_state_dict(wpath)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{wpath}: the weights do not fit a {scorer!r} network with "
                             f"the card's hyper-parameters ({exc})") from None
    net.eval()
    return net

class TorchScorer(Scorer):
    """Base of the neural scorers: a network on the preprocessed features, trained by
    :func:`run_training`, scored by a :class:`ScoreGraph` that ONNX export takes whole.

    Subclasses implement :meth:`build` (the network), :meth:`loss` (per event) and
    :meth:`head` (features, mask → score for a variant, in the lean feature-major form
    of :mod:`darktrigger.models.neural.inference` that scoring and ONNX use).

    Input standardisation: a subclass that names :attr:`input_stage` (the attribute of its
    network that reads the features first, an ``nn.Sequential`` starting with a dense
    layer) and sets the hyper-parameter ``input_std_floor`` > 0 trains behind a fixed
    :class:`Standardise` of the features — mean and std of the training background, std
    floored at ``input_std_floor`` — folded into that first dense layer afterwards, so the
    saved network, its scores and ONNX have no extra layer. Its point: a feature the
    background never moves (a third lepton's slot) has std ≈ 0, so a signal that fills it
    arrives ≈ 1/floor times larger, as a PCA on standardised inputs sees it, instead of
    passing through the first layer's untrained initial weights at the size of a seen input.
    """

    hyperparameter_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3}
    #: the network's attribute that reads the features first (see input standardisation)
    input_stage: ClassVar[str | None] = None

    def __init__(self, variant: str | None = None, **hyperparameters: Any) -> None:
        super().__init__(variant, **hyperparameters)
        self.pre: Preprocessor | None = None
        self.net: nn.Module | None = None
        self._graphs: dict[str | None, ScoreGraph] = {}

    @abstractmethod
    def build(self) -> nn.Module:
        """A new, randomly initialised network (from ``self.hyperparameters``)."""

    @abstractmethod
    def loss(self, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
             *labels: torch.Tensor) -> torch.Tensor:
        """Per-event training loss ``[B]`` (noise, if any, from the global torch RNG)."""

    @abstractmethod
    def head(self, net: nn.Module, variant: str | None) -> nn.Module:
        """A module ``(feats [75, N], filled [19, N]) → score [N]`` for ``variant``, on
        feature-major tensors, with ``net``'s weights folded (see :mod:`darktrigger.models.neural.inference`)."""

    # -- fitting -----------------------------------------------------------------------
    def _labels(self, labels: np.ndarray | None, n: int, what: str) -> list[torch.Tensor]:
        if not self.needs_labels:
            if labels is not None:
                raise ConfigError(f"{self.where}: is trained on background only; got {what}")
            return []
        if labels is None:
            raise ConfigError(f"{self.where}: needs {what} (1 for one sample, 0 for the other), "
                              f"e.g. fit(batch, labels=np.r_[np.ones(n1), np.zeros(n0)])")
        arr = np.asarray(labels)
        if arr.shape != (n,) or not np.isin(arr, (0, 1)).all():
            raise SchemaError(f"{self.where}: {what} must be {n} values of 0 or 1, got shape "
                              f"{arr.shape} with values {np.unique(arr)[:5]}")
        return [torch.from_numpy(arr.astype(np.float32))]

    def _features(self, flat: np.ndarray) -> list[torch.Tensor]:
        assert self.pre is not None
        with torch.no_grad():
            feats, mask = PreprocessModule(self.pre)(torch.from_numpy(flat))
        return [feats, mask]

    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        flat = as_flat(train, f"{self.where}, training batch")
        train_t = self._labels(labels, len(flat), "labels")
        val_t: list[torch.Tensor] | None = None
        with torch_threads(options.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            self.pre = Preprocessor.fit(flat)
            train_t = self._features(flat) + train_t
            if validation is not None:
                vflat = as_flat(validation, f"{self.where}, validation batch")
                val_t = self._features(vflat) + self._labels(validation_labels, len(vflat),
                                                             "validation_labels")
            self.net = self.build()
            floor = self._input_std_floor()
            standardised = self.input_stage is not None and floor > 0
            if standardised:
                assert self.input_stage is not None
                feats = train_t[0]
                stage = getattr(self.net, self.input_stage)
                setattr(self.net, self.input_stage, nn.Sequential(
                    Standardise(feats.mean(dim=0), feats.std(dim=0).clamp_min(floor)), *stage))
            history = run_training(self.net, self.loss, train_t, val_t, options,
                                   lr=float(self.hyperparameters["lr"]), desc=f"train {self.name}")
            if standardised:
                assert self.input_stage is not None
                setattr(self.net, self.input_stage, fold_standardise(getattr(self.net, self.input_stage)))
        self._graphs.clear()
        self.seed = options.seed
        self.training = options.record(len(flat), 0 if val_t is None else len(val_t[0]), history)
        return history

    def _input_std_floor(self) -> float:
        """The hyper-parameter ``input_std_floor`` checked: a finite number >= 0 (0: off)."""
        floor = self.hyperparameters.get("input_std_floor") or 0.0
        if (not isinstance(floor, int | float) or isinstance(floor, bool) or not math.isfinite(floor)
                or floor < 0):
            raise ConfigError(f"{self.where}: hyper-parameter input_std_floor must be a finite "
                              f"number >= 0 (0: no input standardisation), got {floor!r}")
        return float(floor)

    def mean_loss(self, batch: BatchLike, labels: np.ndarray | None = None) -> float:
        """The model's mean per-event training loss on ``batch`` (evaluation mode)."""
        net = self._require_net()
        flat = as_flat(batch, self.where)
        tensors = self._features(flat) + self._labels(labels, len(flat), "labels")
        return _mean_loss(net, self.loss, tensors)

    # -- scoring -----------------------------------------------------------------------
    def _require_net(self) -> nn.Module:
        if self.net is None or self.pre is None:
            raise ConfigError(f"{self.where} is not trained: call fit() or load a model directory")
        return self.net

    def graph(self, variant: str | None = None) -> ScoreGraph:
        """The raw → score module for ``variant`` (the scorer's own by default), eval mode."""
        variant = variant or self.variant
        if variant not in self._graphs:
            net = self._require_net()
            assert self.pre is not None
            g = ScoreGraph(ColumnPreprocess(self.pre), self.head(net.eval(), variant))
            self._graphs[variant] = g.eval()
        return self._graphs[variant]

    def score(self, batch: BatchLike) -> np.ndarray:
        return score_in_chunks(self.graph(), as_flat(batch, self.where))

    # -- persistence -------------------------------------------------------------------
    def export_onnx(self, path: str | Path, variant: str | None = None) -> Path:
        """Write the ONNX graph raw ``objects`` [N, 57] → ``score`` [N] (dynamic N)."""
        g = self.graph(variant)
        dummy = torch.zeros(2, N_FEATURES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(g, (dummy,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["objects"], output_names=["score"],
                              dynamic_axes={"objects": {0: "batch"}, "score": {0: "batch"}})
        return Path(path)

    def export_net(self, path: str | Path, variant: str | None = None) -> Path | None:
        """Write the event-major network graph of ``variant``: ``features`` [N, 75] →
        ``score`` [N] or ``recon`` [N, 75] (dynamic N), the part of the score the
        ``onnxruntime`` backend runs after :func:`darktrigger.models.neural.kernels.features`; None (nothing
        written) for a head that has no event-major form."""
        rows = getattr(self.graph(variant).head, "rows", None)
        if not callable(rows):
            return None
        module: nn.Module = rows().eval()
        output = str(module.output)
        dummy = torch.zeros(2, N_MODEL_FEATURES)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["features"], output_names=[output],
                              dynamic_axes={"features": {0: "batch"}, output: {0: "batch"}})
        return Path(path)

    def _save_files(self, directory: Path) -> list[str]:
        net = self._require_net()
        assert self.pre is not None
        torch.save(net.state_dict(), directory / WEIGHTS_FILE)
        self.pre.save(directory)
        files = [WEIGHTS_FILE, PREPROCESS_FILE, ONNX_FILE]
        self.export_onnx(directory / ONNX_FILE, self.variant)
        if self.export_net(directory / net_file(None), self.variant):
            files.append(net_file(None))
        for v in self.variants:
            self.export_onnx(directory / onnx_file(v), v)
            files.append(onnx_file(v))
            if self.export_net(directory / net_file(v), v):
                files.append(net_file(v))
        return files

    def _load_files(self, directory: Path, card: ModelCard) -> None:
        self.pre = load_part(directory, PREPROCESS_FILE, "the preprocessing parameters", Preprocessor.load)
        self.net = load_weights(self.build(), directory, self.name)
        self._graphs.clear()


def read_events(paths: Sequence[Path], max_events: int | None, what: str, *,
                on_error: str = "fail", hashes: bool = True) -> tuple[EventBatch, list[TrainingFile]]:
    """All events of ``paths`` (at most ``max_events`` in all) and a record of each file
    (path, sha256 when ``hashes``, events used, role ``what``)."""
    from darktrigger.replay.readers import (
        open_events,  # readers pull in h5py/uproot; only train needs them
    )

    batches: list[EventBatch] = []
    files: list[TrainingFile] = []
    total = 0
    for path in paths:
        path = Path(path)
        used = 0
        for batch in open_events(path, on_error=on_error):
            if max_events is not None and total + len(batch) > max_events:
                batch = batch[: max_events - total]
            batches.append(batch)
            used += len(batch)
            total += len(batch)
            if max_events is not None and total >= max_events:
                break
        files.append(TrainingFile(path=str(path), sha256=sha256_file(path) if hashes else None,
                                  events=used, role=what))
        if max_events is not None and total >= max_events:
            break
    if total == 0:
        raise ConfigError(f"no {what} events in {', '.join(map(str, paths)) or '(no files)'}")
    return EventBatch.concat(batches), files


def train_model(scorer_name: str, background_paths: Sequence[Path], out_dir: str | Path, *,
                validation_fraction: float = 0.2, max_events: int | None = None,
                signal_paths: Sequence[Path] | None = None,
                hyperparameters: dict[str, Any] | None = None,
                **options: Unpack[FitKeywords]) -> Path:
    """Train ``scorer_name`` (``ae``, ``vae:mu2``, ``cwola``...) on files; the model directory.

    Reads the files with :func:`darktrigger.replay.readers.open_events` (at most ``max_events`` per
    sample), holds out a seeded random ``validation_fraction`` for the validation
    loss, fits, records every file with its sha256 and event count in the card, and
    saves weights, preprocessing, card and ONNX to ``out_dir``. ``cwola`` is trained
    on ``signal_paths`` (label 1, the signal-region sample) against
    ``background_paths`` (label 0). ``options`` are :meth:`Scorer.fit`'s; the progress bar is
    on unless ``progress=False``.
    """
    options.setdefault("progress", True)
    seed = options.get("seed", FitOptions.seed)
    scorer = get_scorer(scorer_name, **(hyperparameters or {}))
    if not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    bkg, files = read_events(background_paths, max_events, "background")
    if scorer.needs_labels:
        if not signal_paths:
            raise ConfigError(f"scorer {scorer_name!r} is trained on two samples: give "
                              "signal_paths (label 1) as well as background_paths (label 0)")
        sig, sig_files = read_events(signal_paths, max_events, "signal")
        files += sig_files
        data = EventBatch.concat([sig.without(*sig.extra_names), bkg.without(*bkg.extra_names)])
        labels: np.ndarray | None = np.r_[np.ones(len(sig)), np.zeros(len(bkg))].astype(np.float32)
    else:
        data, labels = bkg, None
    perm = np.random.default_rng(seed).permutation(len(data))
    n_val = int(round(validation_fraction * len(data)))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    log.info("training %s on %d events (%d for validation) from %d file(s)",
             scorer.spec, len(train_idx), n_val, len(files))
    scorer.fit(data[train_idx], validation=data[val_idx] if n_val else None,
               labels=None if labels is None else labels[train_idx],
               validation_labels=None if labels is None or not n_val else labels[val_idx],
               **options)
    scorer.training.update(files=files, validation_fraction=validation_fraction,
                           max_events=max_events)
    return scorer.save(out_dir)
