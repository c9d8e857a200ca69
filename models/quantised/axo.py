"""``qaxo``: the quantised AXOL1TL v5-style scorer — a feature extractor, an autoencoder in
feature space, score = the squared reconstruction error of the features, in fixed point.

The float ``axo`` (:mod:`darktrigger.models.neural.axo`) is its recipe: extractor
57→29→10 on CMSSW's 57 integers (shift-normalised as ``qvae``'s,
:mod:`darktrigger.models.quantised.preprocess`), autoencoder 10→9→6→4→6→9→10, trained as a
whole on ``mean_d (AE(f) − f)² + variance_weight · Σ_d max(0, 1 − std(f_d))`` (VICReg's
variance hinge on the batch's features keeps the feature space from collapsing onto a
constant, which an autoencoder would reconstruct perfectly).

**One sequential network for firmware.** The error is between an *intermediate* (the
features f) and the output, which the layer algebra of
:mod:`darktrigger.models.quantised.fixedpoint` (Dense, ReLU, Quant, SubInput, SumSquares:
one path, as hls4ml's and da4ml's flows take it) cannot say. Rather than a new layer in every
backend, the firmware network carries f through the autoencoder, offset to be non-negative:
the first autoencoder layer also computes ``g = f + c`` (fixed identity weights, bias
``c = −min f``, 4 for the default ``ap_fixed<8,3>`` features), the ReLUs and the latent type
keep g exactly (they hold ``[0, 2c)`` on the feature grid), every later layer passes it on
with fixed identity weights, and the last layer computes ``recon − f = W·h + (b + c) − g``
in its one exact accumulation (its bias type has one integer bit more, for ``b + c``). So 10
pass-through units ride along each autoencoder layer; their weights are 1, −1 or 0, which
da4ml turns into wires and the HLS compiler folds. (A first version carried ``max(f, 0)``
and ``max(−f, 0)``: twice the units for the same exactness.) Eight Dense layers deep, the
network drove da4ml's scale factors to 2^-37, past what its bit slices handle;
:func:`darktrigger.firmware.rtl.trace` resets them after each rounding layer.

**Latency: why 5-bit weights and 75 % sparsity.** Eight layers in series at da4ml's one
adder level a unit and 4 units a 4 ns clock: with 8-bit weights at 50 % sparsity the RTL
was 63 units deep, 16 clocks = 64 ns (22 clocks before :func:`~darktrigger.firmware.rtl.quantise`
and :func:`~darktrigger.firmware.rtl.sum_of_squares` cut the rounding, saturation and
squares to their minimal depth), above AXOL1TL's 50 ns. The adder trees' depth follows the
number of non-zero weight digits, so AXOL1TL v5's recipe of few bits and pruning is what
fits: measured on the ADC2021-recipe Pythia training set (30k events, seed 1, 20 epochs;
``bench.adc2021_models``' files; AUC on ``ato4l``, qaxo and its float twin). Each row:
``darktrigger train --model qaxo --background bkg_train.h5 --out M --epochs 20 --seed 1
--set weight_bits=W --set sparsity=S``; the depth, clocks and LUTs from
:func:`darktrigger.firmware.rtl.trace` and da4ml's ``to_pipeline`` at a 4-unit cutoff (what
``firmware build --rtl`` does); the AUCs against the 52k-event paper-weighted test
background of the bench, the twin trained by ``bench.quantisation_cost.train_twin``:

=================  ===========  ======  ===========  ========  =========
weights / sparsity  da4ml depth  clocks  LUT (da4ml)  qaxo AUC  twin AUC
=================  ===========  ======  ===========  ========  =========
8 bits / 0.5        63           16      29,395       0.728     0.732
6 bits / 0.5        56           14      21,353       0.725     0.732
5 bits / 0.5        54           14      17,535       0.658     0.732
4 bits / 0.5        50           13      14,076       0.610     0.732
8 bits / 0.75       53           14      18,248       0.629     0.628
6 bits / 0.75       48           12      13,211       0.641     0.628
5 bits / 0.75       44           11      10,726       0.638     0.628
4 bits / 0.75       43           11       9,407       0.635     0.628
=================  ===========  ======  ===========  ========  =========

(clocks: da4ml's pipeline stages at a 4-unit cutoff, after its retiming; the 5-bit, 0.75
build measured 11 clocks = 44 ns in Verilator and was bit-exact in QKeras, C simulation,
testbench and both RTL builds on the 52k-event test background. One training seed each: the
AUCs move by a few hundredths from seed to seed.) The default is 5 bits at 0.75: it fits the
budget with a clock to spare and loses nothing against its float twin, at ≈ 0.09 AUC on
``ato4l`` against the 8-bit network; ``--set weight_bits=8 --set sparsity=0.5`` trains that one.

Training uses the narrow graph (the autoencoder as trained); :meth:`QAXOScorer.firmware_params` widens its weights into the firmware
network's, and every backend (QKeras, C simulation, testbench, RTL, the exact torch network)
scores that one network.

    >>> q = QAXOScorer()
    >>> [(layer.name, layer.n_in, layer.n_out) for layer in q.layers() if hasattr(layer, "n_out")]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('ext1', 57, 29), ('feat', 29, 10), ('ae1', 10, 19), ('ae2', 19, 16), ('latent', 16, 14),
     ('dec1', 14, 16), ('dec2', 16, 19), ('recon', 19, 10)]
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from darktrigger.models.base import register_scorer
from darktrigger.models.quantised.fixedpoint import Dense, Fmt, Layer, Quant, SumSquares
from darktrigger.models.quantised.scorers import _BITS_DEFAULTS, QuantisedScorer
from darktrigger.models.quantised.training import LossFn, Params, import_tf, keras_layers
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import N_FEATURES


@register_scorer("qaxo")
class QAXOScorer(QuantisedScorer):
    """Quantised AXOL1TL v5-style scorer (QKeras); score Σ_d (AE(f) − f)² in fixed point.

    Hyper-parameters: ``extractor`` ([29]), ``features`` (10), ``hidden`` ([9, 6]),
    ``latent`` (4), ``variance_weight`` (1.0), ``lr`` (1e-3), ``sparsity`` (0.75; the
    trained weights only), ``weight_bits``/``weight_integer`` (5/1, AXOL1TL v5's 4–5-bit
    weights), the other bit widths of :class:`~darktrigger.models.quantised.scorers.QVAEScorer`
    (activations 8/3 in QKeras' terms), ``feature_bits``/``feature_integer``
    (8/2: ``ap_fixed<8,3>``, whose range the activations' ``ap_ufixed<8,3>`` holds, as the
    pass-through needs), ``latent_bits``/``latent_integer`` (9/3) and
    ``diff_bits``/``diff_integer`` (10/4) for the rounded feature error.
    """

    description = "quantised AXOL1TL v5-style: feature extractor + autoencoder, fixed-point feature error"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "extractor": [29], "features": 10, "hidden": [9, 6], "latent": 4, "variance_weight": 1.0,
        "lr": 1e-3, **_BITS_DEFAULTS, "weight_bits": 5, "sparsity": 0.75,
        "feature_bits": 8, "feature_integer": 2, "latent_bits": 9, "latent_integer": 3,
        "diff_bits": 10, "diff_integer": 4,
    }

    def __init__(self, variant: str | None = None, **hyperparameters: Any) -> None:
        super().__init__(variant, **hyperparameters)
        self._check_pass_through()

    # -- widths --------------------------------------------------------------------------
    @property
    def _widths(self) -> tuple[list[int], int, list[int], int]:
        h = self.hyperparameters
        return (list(map(int, h["extractor"])), int(h["features"]), list(map(int, h["hidden"])),
                int(h["latent"]))

    def _fmt(self, key: str) -> Fmt:
        h = self.hyperparameters
        return Fmt.qkeras_bits(int(h[f"{key}_bits"]), int(h[f"{key}_integer"]))

    @property
    def offset(self) -> float:
        """``c``: what the pass-through adds to the features to make them non-negative."""
        return -self._fmt("feature").low

    def _check_pass_through(self) -> None:
        """The pass-through is exact only where the ReLUs and the latent type hold
        ``g = f + c`` on the feature type's grid and the weight and bias types hold 1 and c."""
        feat, act = self._fmt("feature"), self._relu("x").fmt
        latent, dense = self._fmt("latent"), self._dense("x", 1, 1)
        top = feat.high + self.offset
        for what, fmt in (("activation", act), ("latent", latent)):
            if fmt.frac < feat.frac or fmt.high < top:
                raise ConfigError(f"{self.where}: the {what} type {fmt.ap} cannot carry the features "
                                  f"({feat.ap}) exactly: it needs ≥ {feat.frac} fractional bits and "
                                  f"a maximum ≥ {top}")
        if dense.weight.high < 1 or dense.weight.low > -1:
            raise ConfigError(f"{self.where}: the weight type {dense.weight.ap} must hold ±1 (the pass-through)")
        if dense.bias.high < self.offset or (self.offset * 2.0**dense.bias.frac) % 1:
            raise ConfigError(f"{self.where}: the bias type {dense.bias.ap} must hold the features' "
                              f"offset {self.offset} (the pass-through)")

    # -- the firmware network ------------------------------------------------------------
    def layers(self) -> list[Layer]:
        extractor, features, hidden, latent = self._widths
        if not features or not hidden or min(extractor + hidden + [features, latent]) < 1:
            raise ConfigError(f"{self.where}: widths must be positive, got extractor {extractor}, "
                              f"features {features}, hidden {hidden}, latent {latent}")
        p = features  # the pass-through units g = f + c
        out: list[Layer] = [*self._mlp("ext", "relu", [N_FEATURES, *extractor]),
                            self._dense("feat", extractor[-1], features), Quant("feat_q", self._fmt("feature"))]
        enc = [features, *hidden]
        for i, (a, b) in enumerate(zip(enc[:-1], enc[1:], strict=True), start=1):
            out += [self._dense(f"ae{i}", a + (p if i > 1 else 0), b + p), self._relu(f"arelu{i}")]
        out += [self._dense("latent", hidden[-1] + p, latent + p), Quant("latent_q", self._fmt("latent"))]
        dec = [latent, *reversed(hidden)]
        for i, (a, b) in enumerate(zip(dec[:-1], dec[1:], strict=True), start=1):
            out += [self._dense(f"dec{i}", a + p, b + p), self._relu(f"drelu{i}")]
        h = self.hyperparameters
        recon = Dense("recon", hidden[0] + p, features, self._dense("x", 1, 1).weight,
                      Fmt.qkeras_bits(int(h["bias_bits"]) + 1, int(h["bias_integer"]) + 1))  # b + c
        out += [recon, Quant("diff_q", self._fmt("diff")), SumSquares("score")]
        return out

    def firmware_params(self, params: Params) -> Params:
        """The trained (narrow) weights → the firmware network's, with the pass-through."""
        _, features, _, _ = self._widths
        eye, c = np.eye(features), self.offset
        out: Params = {}
        for layer in self.layers():
            if not isinstance(layer, Dense):
                continue
            w, b = (np.asarray(a, np.float64) for a in params[layer.name])
            if w.shape == (layer.n_in, layer.n_out):
                out[layer.name] = (w, b)  # not widened (the extractor), or already wide
                continue
            n_in, n_out = w.shape
            if layer.name == "ae1":
                wide, bias = np.hstack([w, eye]), np.concatenate([b, np.full(features, c)])
            elif layer.name == "recon":
                wide, bias = np.vstack([w, -eye]), b + c
            else:
                wide = np.zeros((n_in + features, n_out + features))
                wide[:n_in, :n_out] = w
                wide[n_in:, n_out:] = eye
                bias = np.concatenate([b, np.zeros(features)])
            if wide.shape != (layer.n_in, layer.n_out):
                raise ConfigError(f"{self.where}: layer {layer.name!r} weights {w.shape} do not fit "
                                  f"the network's {(layer.n_in, layer.n_out)}")
            out[layer.name] = (wide, bias)
        return out

    # -- training --------------------------------------------------------------------------
    def training_graph(self, *, quantise: bool = True) -> tuple[Any, LossFn]:
        """The extractor as the firmware has it, then the narrow autoencoder (the firmware's
        layers without the pass-through) on the features; loss: the mean squared feature
        error plus ``variance_weight`` times the variance hinge of the batch's features."""
        from qkeras import QActivation, QDense, quantized_bits, quantized_relu

        tf = import_tf()
        _, features, hidden, latent = self._widths
        inp = tf.keras.Input((N_FEATURES,), name="inputs")
        f = keras_layers(self, inp, upto="feat_q", quantise=quantise)["feat_q"]
        dense = {layer.name: layer for layer in self.layers() if isinstance(layer, Dense)}
        act = self._relu("x").fmt

        def qdense(name: str, n: int, h: Any) -> Any:
            if not quantise:
                return tf.keras.layers.Dense(n, name=name, kernel_initializer="he_normal")(h)
            # the narrow layers train on the generic types (recon's wide bias holds b + c)
            w, b = dense[name].weight, self._dense("x", 1, 1).bias
            return QDense(n, name=name, kernel_quantizer=quantized_bits(w.width, w.integer - 1, alpha=1),
                          bias_quantizer=quantized_bits(b.width, b.integer - 1, alpha=1))(h)

        def relu(name: str, h: Any) -> Any:
            if not quantise:
                return tf.keras.layers.ReLU(name=name)(h)
            return QActivation(quantized_relu(act.width, act.integer), name=name)(h)

        h = f
        for i, n in enumerate(hidden, start=1):
            h = relu(f"arelu{i}", qdense(f"ae{i}", n, h))
        h = qdense("latent", latent, h)
        if quantise:
            lf = self._fmt("latent")
            h = QActivation(quantized_bits(lf.width, lf.integer - 1, alpha=1), name="latent_q")(h)
        for i, n in enumerate(reversed(hidden), start=1):
            h = relu(f"drelu{i}", qdense(f"dec{i}", n, h))
        recon = qdense("recon", features, h)
        model = tf.keras.Model(inp, [f, recon], name="qaxo_training")
        weight = float(self.hyperparameters["variance_weight"])

        def axo_loss(m: Any, x: Any, training: bool) -> Any:
            feats, rec = m(x, training=training)
            per_event = tf.reduce_mean(tf.square(rec - feats), axis=1)
            std = tf.sqrt(tf.math.reduce_variance(feats, axis=0) + 1e-4)
            hinge = tf.reduce_sum(tf.nn.relu(1.0 - std))
            return per_event + weight * hinge

        return model, axo_loss


__all__ = ["QAXOScorer"]
