"""The ``onnxruntime`` backend: scores a model directory with onnxruntime, not torch.

Two graphs per variant are saved with a neural model:

* ``model.onnx`` (``model-<variant>.onnx``): the whole score, raw ``objects`` ``[N, 57]``
  float32 → ``score`` ``[N]``, preprocessing inside: self-contained, for use anywhere;
* ``net.onnx`` (``net-<variant>.onnx``): the network alone, event-major, model
  ``features`` ``[N, 75]`` → ``score`` ``[N]`` or ``recon`` ``[N, 75]``.

This backend scores with ``net.onnx``: the compiled kernels of
:mod:`darktrigger.models.neural.kernels` make the features (and, for a reconstruction,
the masked error), onnxruntime runs the network; that is faster than ``model.onnx``,
whose Cos/Sin and per-feature broadcasts cost more than the network (BENCHMARKS.md,
"Scoring throughput", has both). A scorer that saves no ``net.onnx`` (the baselines,
the quantised scorers) is scored with its ``model.onnx``. Either way the scores agree
with the torch backend within 1e-5 relative.

    >>> import numpy as np
    >>> from darktrigger.models import get_scorer, load_model
    >>> from darktrigger.replay.generators import GENERATORS
    >>> batch = next(GENERATORS.get("toy")().generate("sm_mix", 2000, seed=1))
    >>> vae = get_scorer("vae")
    >>> _ = vae.fit(batch, epochs=1)
    >>> scorer = load_model(vae.save("vae-toy"), backend="onnxruntime", variant="kl", threads=1)
    >>> scorer.spec, scorer.score(batch).shape
    ('vae:kl', (2000,))
    >>> t = vae.with_variant("kl").score(batch)
    >>> bool(np.allclose(scorer.score(batch), t, rtol=1e-5, atol=1e-5 * float(np.abs(t).mean())))
    True
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.models.backends import register_backend
from darktrigger.models.base import BatchLike, ScoreOnlyScorer, as_flat
from darktrigger.models.card import (
    ModelCard,
    ModelFileError,
    load_part,
    net_file,
    onnx_file,
    read_card,
    require_file,
)
from darktrigger.models.preprocess import N_MODEL_FEATURES, PREPROCESS_FILE, Preprocessor
from darktrigger.replay.errors import ConfigError, UnknownNameError
from darktrigger.replay.events import N_FEATURES, N_SLOTS

log = logging.getLogger(__name__)

#: events per session run: the intermediates of a chunk this size stay in cache (chosen
#: with ``bench/models_speed.py``)
SCORE_CHUNK = 4096


def session_options(threads: int = 1) -> Any:
    """The onnxruntime ``SessionOptions`` every darktrigger session uses: ``threads``
    intra-op threads, sequential execution, all graph optimisations, warnings off."""
    import onnxruntime as ort

    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def make_session(path: Path, threads: int = 1, n_in: int = N_FEATURES) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads on a graph with one
    input ``[N, n_in]``, or a ModelFileError."""
    import onnxruntime as ort

    opts = session_options(threads)
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf kinds
        raise ModelFileError(f"{path}: onnxruntime cannot load this ONNX model "
                             f"({type(exc).__name__}: {exc})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].shape[-1] != n_in:
        got = [(i.name, i.shape) for i in inputs]
        raise ModelFileError(f"{path}: expected one input [N, {n_in}], got {got}")
    return session


class OnnxScorer(ScoreOnlyScorer):
    """A saved model scored by onnxruntime. Not registered: it is a backend, made by
    :func:`darktrigger.models.load_model` with ``backend="onnxruntime"`` (or :meth:`load`).
    """

    name = "onnx"
    backend = "onnxruntime"

    def __init__(self, card: ModelCard, variant: str | None, session: Any, directory: Path,
                 pre: Preprocessor | None = None) -> None:
        self.model_card = card
        self.variant = variant
        self.hyperparameters = dict(card.hyperparameters)
        self.training, self.seed, self.card = card.training, card.seed, card
        self.session = session
        self.directory = directory
        self._input = session.get_inputs()[0].name
        #: set when ``session`` runs ``net.onnx``: the preprocessing the kernels apply
        self.pre = pre
        self._recon = session.get_outputs()[0].name == "recon"

    @property
    def spec(self) -> str:
        return self.model_card.scorer if self.variant is None else f"{self.model_card.scorer}:{self.variant}"

    @property
    def where(self) -> str:
        return f"scorer {self.spec!r} (onnxruntime, {self.directory})"

    @classmethod
    def load(cls, directory: str | Path, variant: str | None = None, *,
             threads: int = 1) -> OnnxScorer:
        directory = Path(directory)
        card = read_card(directory)
        if variant is not None and variant != card.variant:
            if variant not in card.variants:
                choices = ", ".join(card.variants) or "none"
                raise UnknownNameError(f"{directory}: model {card.scorer!r} has no variant "
                                       f"{variant!r}; its variants: {choices}")
            own: str | None = variant
        else:
            variant, own = card.variant, None
        if net_file(own) not in card.files:  # a scorer whose network has no event-major graph
            log.debug("%s has no %s: scoring with %s", directory, net_file(own), onnx_file(own))
            path = require_file(directory, onnx_file(own), f"the ONNX graph of {card.spec}")
            return cls(card, variant, make_session(path, threads), directory)
        path = require_file(directory, net_file(own), f"the ONNX network graph of {card.spec}")
        pre = load_part(directory, PREPROCESS_FILE, "the preprocessing parameters", Preprocessor.load)
        session = make_session(path, threads, N_MODEL_FEATURES)
        if session.get_outputs()[0].name not in ("score", "recon"):
            raise ModelFileError(f"{path}: expected the output 'score' or 'recon', "
                                 f"got {session.get_outputs()[0].name!r}")
        from darktrigger.models.neural import kernels  # numba: imported by the scorers that use it

        kernels.warm_up()  # numba's start-up and compile now, not on the first batch
        return cls(card, variant, session, directory, pre)

    def score(self, batch: BatchLike) -> np.ndarray:
        flat = as_flat(batch, self.where)
        out = np.empty(len(flat), np.float32)
        if self.pre is None:  # model.onnx: the whole score in the graph
            for start in range(0, len(flat), SCORE_CHUNK):
                chunk = flat[start:start + SCORE_CHUNK]
                out[start:start + len(chunk)] = self.session.run(None, {self._input: chunk})[0]
            return out
        from darktrigger.models.neural import kernels

        size = min(SCORE_CHUNK, len(flat))
        buffers = (np.empty((size, N_MODEL_FEATURES), np.float32), np.empty((size, N_SLOTS), np.float32))
        for start in range(0, len(flat), SCORE_CHUNK):
            chunk = flat[start:start + SCORE_CHUNK]
            feats, filled = kernels.features(chunk, self.pre.shift, self.pre.scale, out=buffers)
            result = self.session.run(None, {self._input: feats})[0]
            if self._recon:
                kernels.masked_mse(result, feats, filled, out=out[start:start + len(chunk)])
            else:
                out[start:start + len(chunk)] = result
        return out


@register_backend("onnxruntime", "net.onnx in onnxruntime after compiled (numba) preprocessing; scores only")
def _load(directory: Path, variant: str | None, *, threads: int) -> OnnxScorer:
    return OnnxScorer.load(directory, variant, threads=threads)
