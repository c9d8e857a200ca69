"""QKeras models of the quantised scorers: the training loop and the firmware network.

Used to train a quantised scorer or to hand one to hls4ml. Importing this module is cheap;
its functions import TensorFlow and QKeras (seconds) when they are called. The layers are
built from the scorer's fixed-point description (:mod:`darktrigger.models.quantised.fixedpoint`),
one Keras layer each, named as there:

=============  ==================================================================
fixed point    Keras
=============  ==================================================================
``Dense``      ``QDense(kernel_quantizer=quantized_bits(b, i, alpha=1), bias_quantizer=...)``
``ReLU``       ``QActivation(quantized_relu(b, i))``
``Quant``      ``QActivation(quantized_bits(b, i, alpha=1))``
``SubInput``   ``Subtract()([h, inputs])``
``SumSquares`` ``Dot(axes=1)([h, h])``
=============  ==================================================================

The training loop mirrors :func:`darktrigger.models.neural.training.run_training`: Adam on seeded
mini-batches, a validation loss each epoch, early stopping after ``patience`` epochs,
the best epoch's weights kept. What is trained and its loss come from the scorer
(:meth:`QuantisedNetwork.training_graph`): each quantised scorer builds its own graph
from :func:`keras_layers`, so this module knows no scorer by name and imports none (the
scorers import it).

``quantise=False`` (:func:`train`, :func:`firmware_model`) builds the *float twin* of the
same network: plain ``Dense`` (with QDense's initialisers) and ``ReLU``, no rounding
(``Quant`` is the identity), the same loss and training loop. Its difference from the
quantised model is the cost of quantisation proper (``bench/quantisation_cost.py``).

    >>> sparsity_schedule(5, 0.5)
    [0.0, 0.4375, 0.5, 0.5, 0.5]

Progress (``progress=True``, as ``darktrigger train`` asks): :class:`Progress` draws a tqdm
bar over the batches, with the epoch in its label, when stderr is a terminal, and
otherwise writes a log line (logger ``darktrigger.progress``) at most every ``every_s``
seconds (10, or ``DARKTRIGGER_PROGRESS_S`` from the environment) and one at the end:

    >>> import io, logging
    >>> stream = io.StringIO()
    >>> handler = logging.StreamHandler(stream)
    >>> PROGRESS_LOG.addHandler(handler)
    >>> with Progress("qae", total=4, unit="batch", every_s=0.0, terminal=False) as bar:
    ...     bar.describe("epoch 1/2")
    ...     bar.update(2)
    ...     bar.describe("epoch 2/2", "loss 0.5")
    ...     bar.update(2)
    >>> PROGRESS_LOG.removeHandler(handler)
    >>> print(stream.getvalue(), end="")
    qae: epoch 1/2: 2/4 batch (50 %, 0 s, ~0 s to go)
    qae: epoch 2/2: 4/4 batch (100 %, 0 s), loss 0.5
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from darktrigger.models.base import FitHistory, FitOptions, new_history
from darktrigger.models.quantised.fixedpoint import Dense, Layer, Quant, ReLU, SubInput, SumSquares
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.progress import PROGRESS_ENV as PROGRESS_ENV
from darktrigger.replay.progress import PROGRESS_LOG as PROGRESS_LOG
from darktrigger.replay.progress import Progress as Progress
from darktrigger.replay.progress import progress_every_s as progress_every_s

log = logging.getLogger(__name__)
#: where asked-for progress goes when stderr is not a terminal: INFO, so that the command
#: line's default verbosity (WARNING) shows it; nothing is logged here without progress=True
#: per-event loss ``[N]`` of a training graph: ``loss(model, x, training)``
LossFn = Callable[[Any, Any, bool], Any]
Params = dict[str, tuple[np.ndarray, np.ndarray]]


class QuantisedNetwork(Protocol):
    """What the training loop needs of a quantised scorer
    (:class:`darktrigger.models.quantised.scorers.QuantisedScorer` is one)."""

    hyperparameters: dict[str, Any]

    @property
    def name(self) -> str: ...

    def layers(self) -> list[Layer]:
        """The firmware network as fixed-point layers."""
        ...

    def weight_masks(self) -> dict[str, np.ndarray]:
        """Dense layer name → bool ``[n_in, n_out]``: the connections the network has."""
        ...

    def training_graph(self, *, quantise: bool = True) -> tuple[Any, LossFn]:
        """(Keras model, per-event loss) to train; the model holds the firmware network's
        Dense layers under their names (:func:`keras_layers` builds them)."""
        ...


def import_tf(threads: int | None = None) -> Any:
    """TensorFlow, quiet, with ``threads`` intra-op threads when it is not yet running.

    Its C++ log keeps errors only (``TF_CPP_MIN_LOG_LEVEL``, unless the user set it), and
    on a machine without an NVIDIA driver none at all: there the CUDA plugins' start-up
    "errors" (cuDNN, cuFFT, cuBLAS factories, TensorRT) are noise, not news.
    """
    no_gpu = not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidia0"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if no_gpu else "2")
    import tensorflow as tf

    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised: keep what it has
            pass
    return tf


def keras_layers(network: QuantisedNetwork, inp: Any, upto: str | None = None, *,
                 quantise: bool = True) -> dict[str, Any]:
    """Apply the network's layers (up to and including ``upto``) to ``inp``; name → tensor.

    ``quantise=False``: the float twin (``Dense``, ``ReLU``, and ``Quant`` left out)."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf = import_tf()
    h = inp
    out: dict[str, Any] = {}
    for layer in network.layers():
        if isinstance(layer, Dense):
            w, b = layer.weight, layer.bias
            if quantise:
                h = QDense(layer.n_out, name=layer.name,
                           kernel_quantizer=quantized_bits(w.width, w.integer - 1, alpha=1),
                           bias_quantizer=quantized_bits(b.width, b.integer - 1, alpha=1))(h)
            else:  # QDense's initialisers (Dense's differ), so that one seed starts both alike
                h = tf.keras.layers.Dense(layer.n_out, name=layer.name, kernel_initializer="he_normal",
                                          bias_initializer="zeros")(h)
        elif isinstance(layer, ReLU):
            if quantise:
                h = QActivation(quantized_relu(layer.fmt.width, layer.fmt.integer), name=layer.name)(h)
            else:
                h = tf.keras.layers.ReLU(name=layer.name)(h)
        elif isinstance(layer, Quant):
            f = layer.fmt
            if quantise:
                h = QActivation(quantized_bits(f.width, f.integer - 1, alpha=1), name=layer.name)(h)
        elif isinstance(layer, SubInput):
            h = tf.keras.layers.Subtract(name=layer.name)([h, inp])
        elif isinstance(layer, SumSquares):
            h = tf.keras.layers.Dot(axes=1, name=layer.name)([h, h])
        out[layer.name] = h
        if layer.name == upto:
            break
    return out


def n_inputs(network: QuantisedNetwork) -> int:
    """The width of the network's input (its first Dense layer's)."""
    first = network.layers()[0]
    if not isinstance(first, Dense):
        raise ConfigError(f"scorer {network.name!r}: the network must start with a Dense layer, "
                          f"not {type(first).__name__}")
    return first.n_in


def firmware_model(network: QuantisedNetwork, params: Params, *, quantise: bool = True) -> Any:
    """The firmware network as a Keras model (inputs ``[N, 57]`` → score ``[N, 1]``), weights set.

    ``quantise=False``: its float twin, for the weights :func:`train` gives with ``quantise=False``."""
    tf = import_tf()
    inp = tf.keras.Input((n_inputs(network),), name="inputs")
    outs = keras_layers(network, inp, quantise=quantise)
    name = f"{network.name}_firmware" if quantise else f"{network.name}_float_twin"
    model = tf.keras.Model(inp, list(outs.values())[-1], name=name)
    for name, (w, b) in params.items():
        model.get_layer(name).set_weights([np.asarray(w, np.float32), np.asarray(b, np.float32)])
    return model


def train(network: QuantisedNetwork, x: np.ndarray, xv: np.ndarray | None, options: FitOptions, *,
          quantise: bool = True) -> tuple[Params, FitHistory]:
    """Train the network's graph on inputs ``x`` (on the grid); (quantised weights, history).

    ``quantise=False`` trains the float twin instead, the same way; (float weights, history)."""
    epochs, batch_size, seed, patience = options.epochs, options.batch_size, options.seed, options.patience
    tf = import_tf(options.threads)
    # set_random_seed seeds numpy's global generator too: put the caller's state back
    state = np.random.get_state()  # noqa: NPY002
    try:
        tf.keras.utils.set_random_seed(seed)
        model, loss_fn = network.training_graph(quantise=quantise)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    opt = tf.keras.optimizers.Adam(float(network.hyperparameters["lr"]))

    @tf.function(reduce_retracing=True)
    def step(xb: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(model, xb, True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function(reduce_retracing=True)
    def eval_loss(xb: Any) -> Any:
        return tf.reduce_sum(loss_fn(model, xb, False))

    def mean_loss(data: np.ndarray) -> float:
        total = sum(float(eval_loss(tf.constant(data[i:i + 65536]))) for i in range(0, len(data), 65536))
        return total / max(len(data), 1)

    rng = np.random.default_rng(seed)
    history = new_history(xv is not None, sparsity=[])
    monitored = history["validation_loss"] if xv is not None else history["train_loss"]
    best, best_epoch, best_weights = math.inf, 0, copy.deepcopy(model.get_weights())
    target = float(network.hyperparameters["sparsity"])
    schedule = sparsity_schedule(epochs, target)
    dense = [layer.name for layer in network.layers() if isinstance(layer, Dense)]
    kernels = [find_layer(model, name).kernel for name in dense]
    allowed = network.weight_masks()
    masks: list[Any] = []
    epoch, current = 0, math.nan
    n_batches = math.ceil(len(x) / batch_size)
    with Progress(f"train {network.name}", epochs * n_batches, "batch", enabled=options.progress) as bar:
        for epoch in range(1, epochs + 1):
            bar.describe(f"epoch {epoch}/{epochs}", bar.note)
            if target > 0 or allowed:
                masks = [tf.constant(prune_mask(k.numpy(), schedule[epoch - 1], allowed.get(name)))
                         for name, k in zip(dense, kernels, strict=True)]
                apply_masks(kernels, masks)
            perm = rng.permutation(len(x))
            total, seen = 0.0, 0
            for start in range(0, len(x), batch_size):
                idx = perm[start:start + batch_size]
                total += float(step(tf.constant(x[idx]))) * len(idx)
                seen += len(idx)
                if masks:
                    apply_masks(kernels, masks)
                bar.update(1)
            history["sparsity"].append(schedule[epoch - 1])
            history["train_loss"].append(total / seen)
            if xv is not None:
                history["validation_loss"].append(mean_loss(xv))
            current = monitored[-1]
            bar.describe(f"epoch {epoch}/{epochs}", f"{history['monitor']} {current:.5g}"
                         + (f", sparsity {schedule[epoch - 1]:g}" if target > 0 else ""))
            if not math.isfinite(current):
                log.warning("%s: loss is %s at epoch %d; stopping", network.name, current, epoch)
                break
            if schedule[epoch - 1] < target:  # still pruning: not a candidate, no early stop
                continue
            if current < best:
                best, best_epoch, best_weights = current, epoch, copy.deepcopy(model.get_weights())
            elif patience is not None and epoch - best_epoch >= patience:
                log.info("%s: no improvement for %d epochs, stopping at epoch %d (best %d)",
                         network.name, patience, epoch, best_epoch)
                break
    if best_epoch == 0:
        raise ConfigError(f"scorer {network.name!r}: training diverged (loss {current})")
    model.set_weights(best_weights)
    history["best_epoch"], history["best_loss"] = best_epoch, best
    history["epochs_run"], history["stopped_early"] = epoch, epoch < epochs
    params = quantised_params(network, model) if quantise else float_params(network, model)
    return params, history


def sparsity_schedule(epochs: int, target: float) -> list[float]:
    """The pruned fraction of each Dense kernel during each epoch (magnitude pruning).

    Dense training for the first fifth of the epochs, then the fraction rises as
    ``target · (1 − (1 − t)³)`` (Zhu & Gupta 2017, as TensorFlow Model Optimization's
    polynomial decay) to ``target`` at three fifths, held from there on; only epochs at
    ``target`` compete for the kept weights and count towards early stopping.

        >>> sparsity_schedule(10, 0.8)
        [0.0, 0.0, 0.4625, 0.7, 0.7875, 0.8, 0.8, 0.8, 0.8, 0.8]
        >>> sparsity_schedule(2, 0.5)
        [0.4375, 0.5]
    """
    if not 0 <= target < 1:
        raise ConfigError(f"sparsity must be in [0, 1), got {target}")
    if target == 0:
        return [0.0] * epochs
    start, end = epochs // 5, max(1, math.ceil(0.6 * epochs))
    out = []
    for epoch in range(1, epochs + 1):
        t = max(0.0, (epoch - start) / (end - start))
        out.append(target if epoch >= end else round(target * (1.0 - (1.0 - t) ** 3), 6))
    return out


def prune_mask(kernel: np.ndarray, fraction: float, allowed: np.ndarray | None = None) -> np.ndarray:
    """1/0 mask (kernel's dtype): 0 where ``allowed`` is False (a connection the network
    does not have) and on the ``round(fraction · n)`` smallest |weights| of the ``n``
    allowed ones; ties broken by position, so one kernel and fraction give one mask."""
    ok = np.ones(kernel.shape, bool) if allowed is None else np.asarray(allowed, bool)
    if ok.shape != kernel.shape:
        raise ConfigError(f"weight mask of shape {ok.shape} for a kernel of shape {kernel.shape}")
    mask = ok.astype(kernel.dtype)
    idx = np.flatnonzero(ok)
    k = int(round(fraction * idx.size))
    if k:
        mask.flat[idx[np.argsort(np.abs(kernel.flat[idx]), kind="stable")[:k]]] = 0
    return mask


def apply_masks(kernels: list[Any], masks: list[Any]) -> None:
    for kernel, mask in zip(kernels, masks, strict=True):
        kernel.assign(kernel * mask)


def find_layer(m: Any, name: str) -> Any:
    """The layer ``name`` of a Keras model, looked for in nested models too; None if absent."""
    for layer in m.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            found = find_layer(layer, name)
            if found is not None:
                return found
    return None


def quantised_params(network: QuantisedNetwork, model: Any) -> Params:
    """Each QDense layer's weights as its quantizers see them (exact, on their grids)."""
    params = {}
    for layer in network.layers():
        if isinstance(layer, Dense):
            k = find_layer(model, layer.name)
            w = np.asarray(k.kernel_quantizer_internal(k.kernel), np.float64)
            b = np.asarray(k.bias_quantizer_internal(k.bias), np.float64)
            params[layer.name] = (w, b)
    return params


def float_params(network: QuantisedNetwork, model: Any) -> Params:
    """Each Dense layer's float weights (float32, as trained) of a float twin."""
    params = {}
    for layer in network.layers():
        if isinstance(layer, Dense):
            w, b = find_layer(model, layer.name).get_weights()
            params[layer.name] = (np.asarray(w, np.float32), np.asarray(b, np.float32))
    return params
