"""QKeras models of :mod:`darktrigger.models.quantised.scorers`: the training loop and the firmware network.

Imported only to train a quantised scorer or to hand one to hls4ml: importing it loads
TensorFlow (seconds). The layers are built from the scorer's fixed-point description
(:mod:`darktrigger.models.quantised.fixedpoint`), one Keras layer each, named as there:

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
the best epoch's weights kept. ``qae`` minimises the mean squared reconstruction error
of the (unrounded) decoder output; ``qvae`` the weighted summed squared error (weights
from :meth:`darktrigger.models.quantised.scorers.QVAEScorer.reco_weight_vector`) plus ``beta`` · KL, with μ
from the quantised encoder and the log-variance and decoder in float (they are not
firmware).

``quantise=False`` (:func:`train`, :func:`firmware_model`) builds the *float twin* of the
same network: plain ``Dense`` (with QDense's initialisers) and ``ReLU``, no rounding
(``Quant`` is the identity), the same loss and training loop. Its difference from the
quantised model is the cost of quantisation proper (:mod:`bench.quantisation_cost`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from darktrigger.models.base import FitHistory, FitOptions, new_history
from darktrigger.models.quantised.fixedpoint import Dense, Quant, ReLU, SubInput, SumSquares
from darktrigger.replay.errors import ConfigError

if TYPE_CHECKING:
    from darktrigger.models.quantised.scorers import QuantisedScorer

log = logging.getLogger(__name__)
LOGVAR_LIMIT = 20.0


def import_tf(threads: int | None = None) -> Any:
    """TensorFlow, quiet, with ``threads`` intra-op threads when it is not yet running."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised: keep what it has
            pass
    return tf


def _keras_layers(scorer: QuantisedScorer, inp: Any, upto: str | None = None, *,
                  quantise: bool = True) -> dict[str, Any]:
    """Apply the scorer's layers (up to and including ``upto``) to ``inp``; name → tensor.

    ``quantise=False``: the float twin (``Dense``, ``ReLU``, and ``Quant`` left out)."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf = import_tf()
    h = inp
    out: dict[str, Any] = {}
    for layer in scorer.layers():
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


def firmware_model(scorer: QuantisedScorer, params: dict[str, tuple[np.ndarray, np.ndarray]], *,
                   quantise: bool = True) -> Any:
    """The firmware network as a Keras model (inputs ``[N, 57]`` → score ``[N, 1]``), weights set.

    ``quantise=False``: its float twin, for the weights :func:`train` gives with ``quantise=False``."""
    tf = import_tf()
    inp = tf.keras.Input((scorer.layers()[0].n_in,), name="inputs")  # type: ignore[union-attr]
    outs = _keras_layers(scorer, inp, quantise=quantise)
    name = f"{scorer.name}_firmware" if quantise else f"{scorer.name}_float_twin"
    model = tf.keras.Model(inp, list(outs.values())[-1], name=name)
    for name, (w, b) in params.items():
        model.get_layer(name).set_weights([np.asarray(w, np.float32), np.asarray(b, np.float32)])
    return model


def _training_model(scorer: QuantisedScorer, quantise: bool = True) -> tuple[Any, Any]:
    """(model, per-event loss function(model, x, training)) for the scorer (or its float twin)."""
    tf = import_tf()
    h = scorer.hyperparameters
    n_in = scorer.layers()[0].n_in  # type: ignore[union-attr]
    inp = tf.keras.Input((n_in,), name="inputs")
    if scorer.name == "qae":
        outs = _keras_layers(scorer, inp, upto="recon", quantise=quantise)
        model = tf.keras.Model(inp, outs["recon"])

        def ae_loss(m: Any, x: Any, training: bool) -> Any:
            return tf.reduce_mean(tf.square(m(x, training=training) - x), axis=1)

        return model, ae_loss
    hidden = [int(n) for n in h["hidden"]]
    last_hidden = [layer.name for layer in scorer.layers() if isinstance(layer, ReLU)][-1]
    outs = _keras_layers(scorer, inp, upto="mu", quantise=quantise)
    mu = outs["mu"]
    logvar = tf.keras.layers.Dense(int(h["latent"]), name="logvar")(outs[last_hidden])
    z_in = tf.keras.Input((int(h["latent"]),), name="z")
    d = z_in
    for i, n in enumerate(reversed(hidden)):
        d = tf.keras.layers.Dense(n, activation="relu", name=f"dec{i + 1}")(d)
    d = tf.keras.layers.Dense(n_in, name="recon")(d)
    decoder = tf.keras.Model(z_in, d, name="decoder")
    encoder = tf.keras.Model(inp, [mu, logvar], name="encoder")
    beta = float(h["beta"])
    reco_w = tf.constant(scorer.reco_weight_vector()[None, :])  # type: ignore[attr-defined]

    class VAE(tf.keras.Model):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = encoder, decoder

        def call(self, x: Any, training: bool = False) -> Any:
            m, lv = self.encoder(x, training=training)
            return m, tf.clip_by_value(lv, -LOGVAR_LIMIT, LOGVAR_LIMIT)

    model = VAE()
    model(tf.zeros((1, n_in)))

    def vae_loss(m: Any, x: Any, training: bool) -> Any:
        mu_, lv = m(x, training=training)
        z = mu_ + tf.exp(0.5 * lv) * tf.random.normal(tf.shape(mu_)) if training else mu_
        # weighted sum, not a mean, over the 57 inputs (a Gaussian likelihood, the weights its
        # inverse variances): most inputs are empty slots, exactly 0 and easy to reconstruct,
        # and with a per-input mean the KL term won and μ collapsed onto 0. With equal weights
        # μ encoded φ (uniform noise to a trigger) and Σμ² ranked ato4l below background (AUC
        # 0.42); the weights (QVAEScorer) make μ encode pT and the rare leptons instead
        reco = tf.reduce_sum(reco_w * tf.square(m.decoder(z, training=training) - x), axis=1)
        kl = 0.5 * tf.reduce_sum(tf.square(mu_) + tf.exp(lv) - 1.0 - lv, axis=1)
        return reco + beta * kl

    return model, vae_loss


def train(scorer: QuantisedScorer, x: np.ndarray, xv: np.ndarray | None, options: FitOptions, *,
          quantise: bool = True) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], FitHistory]:
    """Train ``scorer``'s QKeras model on inputs ``x`` (on the grid); (quantised weights, history).

    ``quantise=False`` trains the float twin instead, the same way; (float weights, history)."""
    epochs, batch_size, seed, patience = options.epochs, options.batch_size, options.seed, options.patience
    tf = import_tf(options.threads)
    # set_random_seed seeds numpy's global generator too: put the caller's state back
    state = np.random.get_state()  # noqa: NPY002
    try:
        tf.keras.utils.set_random_seed(seed)
        model, loss_fn = _training_model(scorer, quantise)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    opt = tf.keras.optimizers.Adam(float(scorer.hyperparameters["lr"]))

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
    best, best_epoch, best_weights = math.inf, 0, copy.deepcopy(model.get_weights())
    target = float(scorer.hyperparameters.get("sparsity", 0.0))
    schedule = sparsity_schedule(epochs, target)
    dense = [layer.name for layer in scorer.layers() if isinstance(layer, Dense)]
    kernels = [_find_layer(model, name).kernel for name in dense]
    allowed = scorer.weight_masks(training=True)
    masks: list[Any] = []
    epoch = 0
    for epoch in range(1, epochs + 1):
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
        history["sparsity"].append(schedule[epoch - 1])
        history["train_loss"].append(total / seen)
        if xv is not None:
            history["validation_loss"].append(mean_loss(xv))
        current = history[history["monitor"]][-1]
        if options.progress:
            log.info("%s epoch %d: %s %.5g", scorer.name, epoch, history["monitor"], current)
        if not math.isfinite(current):
            log.warning("%s: loss is %s at epoch %d; stopping", scorer.name, current, epoch)
            break
        if schedule[epoch - 1] < target:  # still pruning: not a candidate, no early stop
            continue
        if current < best:
            best, best_epoch, best_weights = current, epoch, copy.deepcopy(model.get_weights())
        elif patience is not None and epoch - best_epoch >= patience:
            break
    if best_epoch == 0:
        raise ConfigError(f"scorer {scorer.name!r}: training diverged (loss {current})")
    model.set_weights(best_weights)
    history.update(best_epoch=best_epoch, best_loss=best, epochs_run=epoch,
                   stopped_early=epoch < epochs)
    params = quantised_params(scorer, model) if quantise else float_params(scorer, model)
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


def _find_layer(m: Any, name: str) -> Any:
    """The layer ``name`` of a Keras model, looked for in nested models too; None if absent."""
    for layer in m.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            found = _find_layer(layer, name)
            if found is not None:
                return found
    return None


def quantised_params(scorer: QuantisedScorer, model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each QDense layer's weights as its quantizers see them (exact, on their grids)."""
    params = {}
    for layer in scorer.layers():
        if isinstance(layer, Dense):
            k = _find_layer(model, layer.name)
            w = np.asarray(k.kernel_quantizer_internal(k.kernel), np.float64)
            b = np.asarray(k.bias_quantizer_internal(k.bias), np.float64)
            params[layer.name] = (w, b)
    return params


def float_params(scorer: QuantisedScorer, model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each Dense layer's float weights (float32, as trained) of a float twin."""
    params = {}
    for layer in scorer.layers():
        if isinstance(layer, Dense):
            w, b = _find_layer(model, layer.name).get_weights()
            params[layer.name] = (np.asarray(w, np.float32), np.asarray(b, np.float32))
    return params
