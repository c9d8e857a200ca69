"""``qae`` and ``qvae``: quantisation-aware autoencoders in QKeras, scored in exact fixed point.

Both take CMSSW's 57 AXOL1TL inputs (hwPt/2, hwEta, hwPhi per object, muons on the muon
LSBs: :func:`darktrigger.replay.l1units.cmssw_inputs`), shift-normalised onto an
``ap_fixed<12,6>`` grid (:mod:`darktrigger.models.quantised.preprocess`), and are trained in QKeras with
quantised weights and activations (defaults: weights ``quantized_bits(8,1)`` =
``ap_fixed<8,2>``, biases ``quantized_bits(8,3)`` = ``ap_fixed<8,4>``, activations
``quantized_relu(8,3)`` = ``ap_ufixed<8,3>``; no batch norm, so nothing is folded later),
and pruned: ``sparsity`` (default 0.75) of each Dense kernel's weights are held at 0,
the smallest in magnitude, reached gradually in training
(:func:`darktrigger.models.quantised.training.sparsity_schedule`), as L1 trigger networks are. A zero
weight is no adder in firmware, so pruning makes the RTL smaller and its simulation faster
(BENCHMARKS.md). The score is computed in fixed point too, so firmware can compute it:

=========  ================================================================================
scorer     firmware network (:mod:`darktrigger.models.quantised.fixedpoint` layers) → score
=========  ================================================================================
``qvae``   57 → 32 → 16 → μ (``latent`` = 4), activations ``ap_ufixed<8,3>``, μ rounded to
           ``ap_fixed<10,5>``, score Σμ² (the AXOL1TL score); the log-variance and decoder exist
           only in training, whose reconstruction error weights pT and leptons up and φ to 0;
           the encoder reads pT and η (``encoder_inputs``), not φ
``qae``    57 → 32 → 16 → 3 (rounded to ``ap_fixed<8,4>``) → 16 → 32 → 57, difference to
           the input rounded to ``ap_fixed<10,5>``, score Σ d² over the 57 inputs
=========  ================================================================================

Each scorer brings its own training graph and loss (:meth:`QuantisedScorer.training_graph`,
built from :func:`darktrigger.models.quantised.training.keras_layers`); the shared QKeras loop
(:func:`darktrigger.models.quantised.training.train`) calls it. Training imports TensorFlow
(seconds); scoring does not: after training, the quantised
weights (exact dyadic numbers) go into ``weights.pt`` and a torch module computes the
fixed-point network exactly (float64 holds every value), and ``model.onnx`` computes it
in float32, exact as well because every intermediate fits 24 bits
(:func:`darktrigger.models.quantised.fixedpoint.check_float32_exact`). :meth:`QuantisedScorer.keras_model`
rebuilds the QKeras model from those weights for hls4ml and for bit-exact checks.

    >>> from darktrigger.models import get_scorer
    >>> q = get_scorer("qvae")
    >>> [layer.name for layer in q.layers()]
    ['enc1', 'relu1', 'enc2', 'relu2', 'mu', 'mu_q', 'score']
    >>> q.input_fmt.ap
    'ap_fixed<12,6>'
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from darktrigger.models.base import (
    BatchLike,
    FitHistory,
    FitOptions,
    Scorer,
    as_flat,
    register_scorer,
)
from darktrigger.models.card import (
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelFileError,
    load_part,
    require_file,
)
from darktrigger.models.neural.training import read_state_dict, score_in_chunks
from darktrigger.models.quantised.fixedpoint import (
    Dense,
    Fmt,
    Layer,
    Quant,
    Range,
    ReLU,
    SubInput,
    SumSquares,
    analyse,
    check_float32_exact,
    reference,
)
from darktrigger.models.quantised.preprocess import (
    INPUTS_FILE,
    QPREPROCESS_FILE,
    QUANTITIES,
    QPreprocessor,
)
from darktrigger.models.quantised.training import (
    LossFn,
    Params,
    firmware_model,
    import_tf,
    keras_layers,
)
from darktrigger.models.quantised.training import train as train_qkeras
from darktrigger.replay import l1units
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import N_FEATURES, SLOT_TYPES

log = logging.getLogger(__name__)

ONNX_OPSET = 17
#: ``qvae``'s log-variance is clipped to ±this in training (exp(lv) stays finite)
LOGVAR_LIMIT = 20.0

#: ``qvae``'s training reconstruction error weights, per quantity and per object type (the
#: product weights an input); see :class:`QVAEScorer`
RECO_WEIGHTS = {"pt": 8.0, "eta": 1.0, "phi": 0.0}
RECO_OBJECT_WEIGHTS = {"met": 1.0, "egamma": 64.0, "muon": 64.0, "jet": 1.0}

_BITS_DEFAULTS: dict[str, Any] = {
    "input_bits": 12, "input_integer": 6,
    "weight_bits": 8, "weight_integer": 1, "bias_bits": 8, "bias_integer": 3,
    "act_bits": 8, "act_integer": 3,
}


# -- the exact fixed-point network in torch ---------------------------------------------
class FixedNet(nn.Module):
    """The fixed-point layers on inputs ``[N, 57]`` (on the input grid) → every value exact.

    Runs in the dtype of its input: float64 for scoring, float32 for the ONNX graph.
    """

    def __init__(self, layers: list[Layer]) -> None:
        super().__init__()
        self.layers = layers
        for layer in layers:
            if isinstance(layer, Dense):
                self.register_buffer(f"{layer.name}_w", torch.zeros(layer.n_in, layer.n_out, dtype=torch.float64))
                self.register_buffer(f"{layer.name}_b", torch.zeros(layer.n_out, dtype=torch.float64))

    def params(self) -> Params:
        """Dense layer name → (W ``[n_in, n_out]``, b ``[n_out]``), float64 on their grids."""
        return {layer.name: (getattr(self, f"{layer.name}_w").numpy(), getattr(self, f"{layer.name}_b").numpy())
                for layer in self.layers if isinstance(layer, Dense)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = h = x
        for layer in self.layers:
            if isinstance(layer, Dense):
                w = getattr(self, f"{layer.name}_w").to(x.dtype)
                h = h @ w + getattr(self, f"{layer.name}_b").to(x.dtype)
            elif isinstance(layer, ReLU | Quant):
                f = layer.fmt
                h = torch.clamp(torch.round(h * 2.0**f.frac), f.low * 2.0**f.frac,
                                f.high * 2.0**f.frac) * 2.0**-f.frac
            elif isinstance(layer, SubInput):
                h = h - inp
            elif isinstance(layer, SumSquares):
                h = (h * h).sum(dim=1)
        return h


class QInputs(nn.Module):
    """raw ``[N, 57]`` float32 → shift-normalised inputs on the grid: :class:`QPreprocessor`
    (CMSSW's inputs, :func:`darktrigger.replay.l1units.hardware_counts_float`, then the shifts)
    in torch, operation for operation, so that torch, numpy and ONNX agree exactly."""

    scale: torch.Tensor
    pt_max: torch.Tensor
    eta_min: torch.Tensor
    eta_max: torch.Tensor
    inv_eta: torch.Tensor
    inv_phi: torch.Tensor
    phi_bins: torch.Tensor

    def __init__(self, qpre: QPreprocessor) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(qpre.scale_factors()), persistent=False)
        for name, value in (("pt_max", l1units.SLOT_PT_MAX), ("eta_min", l1units.SLOT_ETA_MIN),
                            ("eta_max", l1units.SLOT_ETA_MAX), ("inv_eta", l1units.SLOT_INV_ETA),
                            ("inv_phi", l1units.SLOT_INV_PHI), ("phi_bins", l1units.SLOT_PHI_BINS)):
            self.register_buffer(name, torch.from_numpy(value.copy()), persistent=False)
        self.frac, self.low, self.high = qpre.frac, qpre.low, qpre.high

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        pt = torch.minimum(torch.clamp(torch.floor(flat[:, 0::3] * (1 / l1units.PT_LSB)), min=0.0), self.pt_max)
        filled = (pt > 0).to(flat.dtype)
        eta = torch.minimum(torch.maximum(torch.round(flat[:, 1::3] * self.inv_eta), self.eta_min), self.eta_max)
        phi = torch.round(flat[:, 2::3] * self.inv_phi)
        phi = phi - self.phi_bins * torch.floor(phi / self.phi_bins)
        hw = torch.stack([torch.floor(pt * 0.5), eta * filled, phi * filled], dim=2).reshape(flat.shape[0], N_FEATURES)
        q = torch.clamp(torch.floor(hw * self.scale), self.low * 2.0**self.frac, self.high * 2.0**self.frac)
        return q * 2.0**-self.frac


class QScoreGraph(nn.Module):
    """raw ``[N, 57]`` → score ``[N]`` (the network in ``dtype``)."""

    def __init__(self, qpre: QPreprocessor, net: FixedNet, dtype: torch.dtype) -> None:
        super().__init__()
        self.inputs, self.net, self.dtype = QInputs(qpre), net, dtype

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.net(self.inputs(flat).to(self.dtype)).to(torch.float32)


# -- the scorers ------------------------------------------------------------------------------
class QuantisedScorer(Scorer):
    """Base of ``qae``/``qvae``: QKeras training, exact fixed-point scoring, firmware hooks.

    A subclass gives its firmware network (:meth:`layers`) and what it trains
    (:meth:`training_graph`); :meth:`weight_masks` where the network leaves connections out.
    """

    hyperparameter_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, variant: str | None = None, **hyperparameters: Any) -> None:
        super().__init__(variant, **hyperparameters)
        self.qpre: QPreprocessor | None = None
        self.net: FixedNet | None = None
        self._graph: QScoreGraph | None = None
        h = self.hyperparameters
        for key in _BITS_DEFAULTS:
            if not isinstance(h[key], int) or isinstance(h[key], bool):
                raise ConfigError(f"{self.where}: hyper-parameter {key} must be an integer, got {h[key]!r}")
        sparsity = h["sparsity"]
        if not isinstance(sparsity, int | float) or isinstance(sparsity, bool) or not 0 <= sparsity < 1:
            raise ConfigError(f"{self.where}: hyper-parameter sparsity must be a fraction in [0, 1), "
                              f"got {sparsity!r}")
        self.layers()  # validates the widths

    # -- the architecture ----------------------------------------------------------------
    @property
    def input_fmt(self) -> Fmt:
        h = self.hyperparameters
        return Fmt(int(h["input_bits"]), int(h["input_integer"]))

    def _dense(self, name: str, n_in: int, n_out: int) -> Dense:
        h = self.hyperparameters
        return Dense(name, n_in, n_out, Fmt.qkeras_bits(h["weight_bits"], h["weight_integer"]),
                     Fmt.qkeras_bits(h["bias_bits"], h["bias_integer"]))

    def _relu(self, name: str) -> ReLU:
        h = self.hyperparameters
        return ReLU(name, Fmt.qkeras_relu(h["act_bits"], h["act_integer"]))

    def _mlp(self, prefix: str, act: str, widths: list[int]) -> list[Layer]:
        out: list[Layer] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
            out += [self._dense(f"{prefix}{i}", a, b), self._relu(f"{act}{i}")]
        return out

    def layers(self) -> list[Layer]:
        """The firmware network, from the hyper-parameters."""
        raise NotImplementedError

    def training_graph(self, *, quantise: bool = True) -> tuple[Any, LossFn]:
        """(Keras model, per-event loss ``loss(model, x, training)`` ``[N]``) that training
        minimises; the model holds the firmware network's Dense layers under their names,
        from whose weights the trained network is taken. ``quantise=False``: the float twin
        (the same graph without rounding). Imports TensorFlow."""
        raise NotImplementedError

    def weight_masks(self) -> dict[str, np.ndarray]:
        """Dense layer → bool ``[n_in, n_out]``: the connections the network has (False: the
        weight is held at 0 in training and must be 0 in a saved model); layers not named
        are fully connected."""
        return {}

    def firmware_params(self, params: Params) -> Params:
        """The weights :func:`~darktrigger.models.quantised.training.train` gives → the
        firmware network's (the same here; ``qaxo`` widens its autoencoder's)."""
        return params

    def input_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-input [low, high] of the network inputs (pT and φ ≥ 0: CMSSW's φ is unsigned)."""
        fmt = self.input_fmt
        low = np.full(N_FEATURES, fmt.low)
        low[0::3] = low[2::3] = 0.0
        return low, np.full(N_FEATURES, fmt.high)

    def ranges(self) -> list[Range]:
        """Bounds and exact types of every layer's output for the trained weights."""
        net = self.network()
        return analyse(net.layers, net.params(), *self.input_bounds(), self.input_fmt.frac)

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        if labels is not None or validation_labels is not None:
            raise ConfigError(f"{self.where}: is trained on background only; got labels")
        flat = as_flat(train, f"{self.where}, training batch")
        if len(flat) < 2:
            raise ConfigError(f"{self.where}: need at least 2 training events, got {len(flat)}")
        fmt = self.input_fmt
        self.qpre = QPreprocessor.fit(flat, fmt.width, fmt.integer)
        x = self.qpre.transform(flat)
        xv = self.qpre.transform(as_flat(validation, f"{self.where}, validation batch")) \
            if validation is not None else None
        t0 = time.monotonic()
        params, history = train_qkeras(self, x, xv, options)
        params = self.firmware_params(params)
        self._set_params(params, "training")
        history["seconds"] = round(time.monotonic() - t0, 2)
        self.seed = options.seed
        self.training = options.record(
            len(flat), 0 if xv is None else len(xv), history, framework="qkeras",
            zero_weights={name: round(float(np.mean(w == 0)), 4) for name, (w, _) in params.items()})
        return history

    def _set_params(self, params: Params, where: str) -> None:
        net = FixedNet(self.layers())
        masks = self.weight_masks()
        for layer in net.layers:
            if not isinstance(layer, Dense):
                continue
            if layer.name not in params:
                raise ModelFileError(f"{where}: no weights for layer {layer.name!r}")
            for arr, fmt, what, shape in ((params[layer.name][0], layer.weight, "w", (layer.n_in, layer.n_out)),
                                          (params[layer.name][1], layer.bias, "b", (layer.n_out,))):
                arr = np.asarray(arr, np.float64)
                if arr.shape != shape:
                    raise ModelFileError(f"{where}: layer {layer.name!r} {what} has shape {arr.shape}, "
                                         f"the card's hyper-parameters give {shape}")
                mask = masks.get(layer.name)
                if what == "w" and mask is not None and np.any(arr[~mask] != 0):
                    raise ModelFileError(f"{where}: layer {layer.name!r} has weights on connections its "
                                         "hyper-parameters leave out (encoder_inputs, the MET's η)")
                scaled = arr * 2.0**fmt.frac
                if not np.array_equal(scaled, np.round(scaled)) or arr.min(initial=0) < fmt.low \
                        or arr.max(initial=0) > fmt.high:
                    raise ModelFileError(f"{where}: layer {layer.name!r} {what} is not on the "
                                         f"{fmt.ap} grid")
                getattr(net, f"{layer.name}_{what}").copy_(torch.from_numpy(arr))
        self.net = net.eval()
        self._graph = None
        check_float32_exact(self.ranges(), self.where)

    # -- scoring ---------------------------------------------------------------------------
    def network(self) -> FixedNet:
        """The trained fixed-point network (its ``layers`` and :meth:`FixedNet.params`), or a
        ConfigError saying how to get one."""
        if self.net is None or self.qpre is None:
            raise ConfigError(f"{self.where} is not trained: call fit() or load a model directory")
        return self.net

    def inputs(self, batch: BatchLike) -> np.ndarray:
        """The network inputs ``[N, 57]`` float32 on the ``ap_fixed`` grid (what firmware takes)."""
        self.network()
        assert self.qpre is not None
        return self.qpre.transform(as_flat(batch, self.where))

    def fixed_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's exact output (float64) for network inputs ``x`` (numpy reference)."""
        net = self.network()
        return reference(net.layers, net.params(), x)

    @property
    def score_fmt(self) -> Fmt:
        return self.ranges()[-1].fmt

    def graph(self, dtype: torch.dtype = torch.float64) -> QScoreGraph:
        """raw ``[N, 57]`` → score ``[N]`` as a torch module computing in ``dtype``."""
        net = self.network()
        assert self.qpre is not None
        if dtype != torch.float64:
            return QScoreGraph(self.qpre, net, dtype).eval()
        if self._graph is None:
            self._graph = QScoreGraph(self.qpre, net, torch.float64).eval()
        return self._graph

    def score(self, batch: BatchLike) -> np.ndarray:
        return score_in_chunks(self.graph(), as_flat(batch, self.where))

    def keras_model(self) -> Any:
        """The firmware network as a QKeras model with the trained weights (imports TensorFlow)."""
        return firmware_model(self, self.network().params())

    # -- persistence -------------------------------------------------------------------------
    def export_onnx(self, path: str | Path) -> Path:
        """Write the scoring graph in float32 (exact, see the module doc) as ONNX."""
        g = self.graph(torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(g, (torch.zeros(2, N_FEATURES),), str(path), dynamo=False,
                              opset_version=ONNX_OPSET, input_names=["objects"], output_names=["score"],
                              dynamic_axes={"objects": {0: "batch"}, "score": {0: "batch"}})
        return Path(path)

    def _save_files(self, directory: Path) -> list[str]:
        net = self.network()
        assert self.qpre is not None
        torch.save(net.state_dict(), directory / WEIGHTS_FILE)
        self.qpre.save(directory)
        self.export_onnx(directory / ONNX_FILE)
        return [WEIGHTS_FILE, QPREPROCESS_FILE, INPUTS_FILE, ONNX_FILE]

    def _load_files(self, directory: Path, card: ModelCard) -> None:
        wpath = require_file(directory, WEIGHTS_FILE, "the quantised weights")
        self.qpre = load_part(directory, QPREPROCESS_FILE, "the input quantisation", QPreprocessor.load)
        state = read_state_dict(wpath)
        params: Params = {}
        for layer in self.layers():
            if isinstance(layer, Dense):
                try:
                    params[layer.name] = (state[f"{layer.name}_w"].numpy(), state[f"{layer.name}_b"].numpy())
                except (KeyError, AttributeError):
                    raise ModelFileError(f"{wpath}: the weights do not fit a {self.name!r} network with "
                                         f"the card's hyper-parameters (no layer {layer.name!r})") from None
        self._set_params(params, str(wpath))


@register_scorer("qvae")
class QVAEScorer(QuantisedScorer):
    """Quantised VAE encoder (QKeras); score Σμ² in fixed point, as AXOL1TL. Higher = more anomalous.

    Hyper-parameters: ``hidden`` ([32, 16]), ``latent`` (4), ``beta`` (1.0), ``lr`` (1e-3),
    the bit widths (``input_bits``/``input_integer`` 12/6, ``weight_bits``/``weight_integer``
    8/1, ``bias_bits``/``bias_integer`` 8/3, ``act_bits``/``act_integer`` 8/3, in QKeras'
    terms), ``mu_bits``/``mu_integer`` (10/4), the type μ is rounded to, ``sparsity`` (0.75),
    ``encoder_inputs`` (pT and η), and the weights of the training reconstruction error
    (training only; the firmware network is the same): input ``3·slot + q`` counts
    ``reco_weights[q] · reco_object_weights[type of slot]``.

    ======================  ===========================================  ===========================
    hyper-parameter         default                                      why
    ======================  ===========================================  ===========================
    ``reco_weights``        pT 8, η 1, φ 0                               μ should encode the
                                                                         physics: φ is uniform
                                                                         noise, pT carries it
    ``reco_object_weights`` MET 1, e/γ 64, μ 64, jet 1                   leptons are rare in the
                                                                         SM mix: unweighted, no
                                                                         latent direction is
                                                                         spent on them
    ``encoder_inputs``      pT, η                                        φ has weight 0 in the
                                                                         loss: what μ would take
                                                                         from it is noise, at the
                                                                         cost of its weights
    ``sparsity``            0.75                                         the RTL's size and speed
    ======================  ===========================================  ===========================

    The signal efficiencies, the operation counts and the RTL speed these defaults give
    are in BENCHMARKS.md.

        >>> q = QVAEScorer(hidden=[8], encoder_inputs=["pt"])
        >>> mask = q.weight_masks()["enc1"]            # [57, 8]: the rows the encoder reads
        >>> mask.shape, int(mask[:, 0].sum())          # the 19 pT inputs
        ((57, 8), 19)
    """

    description = "quantised VAE encoder (QKeras), fixed-point Σμ² (AXOL1TL)"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "hidden": [32, 16], "latent": 4, "beta": 1.0, "lr": 1e-3, **_BITS_DEFAULTS,
        "mu_bits": 10, "mu_integer": 4, "sparsity": 0.75, "encoder_inputs": ["pt", "eta"],
        "reco_weights": dict(RECO_WEIGHTS), "reco_object_weights": dict(RECO_OBJECT_WEIGHTS),
    }

    def __init__(self, variant: str | None = None, **hyperparameters: Any) -> None:
        super().__init__(variant, **hyperparameters)
        self.reco_weight_vector()  # validates the weights
        self.weight_masks()

    def weight_masks(self) -> dict[str, np.ndarray]:
        """The first layer reads only the quantities in ``encoder_inputs``, and never the
        MET's η (always 0: its weights would cost adders and learn nothing)."""
        used = self.hyperparameters["encoder_inputs"]
        if not isinstance(used, list) or not used or not set(used) <= set(QUANTITIES) \
                or len(set(used)) != len(used):
            raise ConfigError(f"{self.where}: hyper-parameter encoder_inputs must list some of "
                              f"{', '.join(QUANTITIES)} once each, got {used!r}")
        rows = np.array([QUANTITIES[i % 3] in used for i in range(N_FEATURES)])
        rows[1] = False  # the MET's η
        first = next(layer for layer in self.layers() if isinstance(layer, Dense))
        return {first.name: np.repeat(rows[:, None], first.n_out, axis=1)}

    def reco_weight_vector(self) -> np.ndarray:
        """Weight of each of the 57 inputs in the training reconstruction error, float32 ``[57]``:
        ``reco_weights[quantity] · reco_object_weights[slot type]``."""
        h = self.hyperparameters
        out = np.empty(N_FEATURES, np.float32)
        for key, names in (("reco_weights", QUANTITIES), ("reco_object_weights", tuple(dict.fromkeys(SLOT_TYPES)))):
            w = h[key]
            if not isinstance(w, dict) or set(w) != set(names) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                    for v in w.values()):
                raise ConfigError(f"{self.where}: hyper-parameter {key} must map each of "
                                  f"{', '.join(names)} to a finite weight >= 0, got {w!r}")
        for slot, kind in enumerate(SLOT_TYPES):
            for q, quantity in enumerate(QUANTITIES):
                out[3 * slot + q] = float(h["reco_weights"][quantity]) * float(h["reco_object_weights"][kind])
        if not out.any():
            raise ConfigError(f"{self.where}: the reconstruction weights are all 0")
        return out

    def layers(self) -> list[Layer]:
        h = self.hyperparameters
        widths = [N_FEATURES, *map(int, h["hidden"])]
        return [*self._mlp("enc", "relu", widths), self._dense("mu", widths[-1], int(h["latent"])),
                Quant("mu_q", Fmt.qkeras_bits(h["mu_bits"], h["mu_integer"])), SumSquares("score")]

    def training_graph(self, *, quantise: bool = True) -> tuple[Any, LossFn]:
        """The firmware encoder up to μ, with a float log-variance head on its last hidden
        layer and a float decoder (neither is firmware); loss: the reconstruction error
        weighted by :meth:`reco_weight_vector`, summed over the 57 inputs, plus ``beta`` · KL."""
        tf = import_tf()
        h = self.hyperparameters
        latent = int(h["latent"])
        inp = tf.keras.Input((N_FEATURES,), name="inputs")
        last_hidden = [layer.name for layer in self.layers() if isinstance(layer, ReLU)][-1]
        outs = keras_layers(self, inp, upto="mu", quantise=quantise)
        logvar = tf.keras.layers.Dense(latent, name="logvar")(outs[last_hidden])
        z_in = tf.keras.Input((latent,), name="z")
        d = z_in
        for i, n in enumerate(reversed([int(n) for n in h["hidden"]])):
            d = tf.keras.layers.Dense(n, activation="relu", name=f"dec{i + 1}")(d)
        d = tf.keras.layers.Dense(N_FEATURES, name="recon")(d)
        decoder = tf.keras.Model(z_in, d, name="decoder")
        encoder = tf.keras.Model(inp, [outs["mu"], logvar], name="encoder")
        beta = float(h["beta"])
        reco_w = tf.constant(self.reco_weight_vector()[None, :])

        class VAE(tf.keras.Model):  # type: ignore[name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.encoder, self.decoder = encoder, decoder

            def call(self, x: Any, training: bool = False) -> Any:
                m, lv = self.encoder(x, training=training)
                return m, tf.clip_by_value(lv, -LOGVAR_LIMIT, LOGVAR_LIMIT)

        model = VAE()
        model(tf.zeros((1, N_FEATURES)))

        def vae_loss(m: Any, x: Any, training: bool) -> Any:
            mu, lv = m(x, training=training)
            z = mu + tf.exp(0.5 * lv) * tf.random.normal(tf.shape(mu)) if training else mu
            # a weighted sum, not a mean, over the 57 inputs (a Gaussian likelihood, the weights
            # its inverse variances): most inputs are empty slots, exactly 0 and easy to
            # reconstruct, and with a per-input mean the KL term wins and μ collapses onto 0
            reco = tf.reduce_sum(reco_w * tf.square(m.decoder(z, training=training) - x), axis=1)
            kl = 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(lv) - 1.0 - lv, axis=1)
            return reco + beta * kl

        return model, vae_loss


@register_scorer("qae")
class QAEScorer(QuantisedScorer):
    """Quantised autoencoder (QKeras); score Σ (x̂ − x)² in fixed point. Higher = more anomalous.

    Hyper-parameters: ``hidden`` ([32, 16]), ``latent`` (3), ``lr`` (1e-3), the bit widths
    and ``sparsity`` (0.75) as :class:`QVAEScorer`, ``latent_bits``/``latent_integer`` (8/3)
    for the bottleneck and ``diff_bits``/``diff_integer`` (10/4) for the rounded
    reconstruction difference. Its efficiencies and operation counts: BENCHMARKS.md.

        >>> [layer.name for layer in QAEScorer(hidden=[8]).layers()]
        ['enc1', 'relu1', 'latent', 'latent_q', 'dec1', 'drelu1', 'recon', 'diff', 'diff_q', 'score']
    """

    description = "quantised autoencoder (QKeras), fixed-point reconstruction error"
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {
        "hidden": [32, 16], "latent": 3, "lr": 1e-3, **_BITS_DEFAULTS, "sparsity": 0.75,
        "latent_bits": 8, "latent_integer": 3, "diff_bits": 10, "diff_integer": 4,
    }

    def layers(self) -> list[Layer]:
        h = self.hyperparameters
        hidden = list(map(int, h["hidden"]))
        enc = [N_FEATURES, *hidden]
        dec = [int(h["latent"]), *reversed(hidden)]
        return [*self._mlp("enc", "relu", enc), self._dense("latent", enc[-1], int(h["latent"])),
                Quant("latent_q", Fmt.qkeras_bits(h["latent_bits"], h["latent_integer"])),
                *self._mlp("dec", "drelu", dec), self._dense("recon", dec[-1], N_FEATURES),
                SubInput("diff"), Quant("diff_q", Fmt.qkeras_bits(h["diff_bits"], h["diff_integer"])),
                SumSquares("score")]

    def training_graph(self, *, quantise: bool = True) -> tuple[Any, LossFn]:
        """The firmware network up to the (unrounded) decoder output ``recon``; loss: the
        mean squared reconstruction error over the 57 inputs."""
        tf = import_tf()
        inp = tf.keras.Input((N_FEATURES,), name="inputs")
        outs = keras_layers(self, inp, upto="recon", quantise=quantise)
        model = tf.keras.Model(inp, outs["recon"])

        def ae_loss(m: Any, x: Any, training: bool) -> Any:
            return tf.reduce_mean(tf.square(m(x, training=training) - x), axis=1)

        return model, ae_loss


def lsb_counts(values: np.ndarray, frac: int) -> np.ndarray:
    """Exact fixed-point values as int64 counts of their LSB (``value · 2^frac``)."""
    scaled = np.asarray(values, np.float64) * 2.0**frac
    counts = np.round(scaled)
    if not np.array_equal(counts, scaled):
        bad = int(np.flatnonzero(counts.ravel() != scaled.ravel())[0])
        raise ValueError(f"value {scaled.ravel()[bad] * 2.0**-frac!r} is not a multiple of 2^-{frac}")
    return counts.astype(np.int64)

