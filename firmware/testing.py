"""Plugin projects for tests: an hls4ml network of AXOL1TL v1's shape in AXOL1TL's layout.

:func:`axol1tl_v1_project` writes what ``cms-hls4ml/AXOL1TL``'s ``AXOL1TL_v1`` folder holds,
made here from the published facts (no third-party source): an hls4ml project (io_parallel)
of a 57 → 32 → 16 → 3 dense network with ReLU (random weights on a 2^-6 grid, seeded), its
weights compiled in and its code in a namespace, under ``NN/``; a ``scales.h`` with an offset
and a right shift per input; an emulator class whose ``prepare_input`` computes
``(in − offset) >> shift`` in ``ap_fixed<18,13>`` and whose loss is Σμ² in
``ap_ufixed<18,14>`` (v1's score), read out as ``std::pair<std::array<result_t, 3>, loss>``;
and a Makefile. ``darktrigger firmware import --emulator`` takes it as it would take CMS's.

    $ python -c "from darktrigger.firmware.testing import axol1tl_v1_project as p; p('GTADModel_v1')"
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware import hls
from darktrigger.firmware.emulator import N_INPUTS, PluginLayout, write_plugin_project

#: the network's output type: also the driver's (``std::array<RESULT_TYPE, 3>``)
RESULT_TYPE = "ap_fixed<10,7,AP_RND_CONV,AP_SAT>"
V1_NAME = "GTADModel_v1"


def v1_scales() -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Right shifts and offsets per input, of the kind AXOL1TL v1's ``scales.h`` has: pT/2
    by 16; η by 32 (calorimeter) or 64 (muon counts are 4× finer); φ centred (72 of 144,
    288 of 576) and divided by 32 (calorimeter) or 128 (muon)."""
    shifts, offsets = [], []
    for slot in range(19):
        muon = 5 <= slot <= 8
        shifts += [4, 6 if muon else 5, 7 if muon else 5]
        offsets += [0.0, 0.0, 288.0 if muon else 72.0]
    return tuple(shifts), tuple(offsets)


def v1_keras_model(seed: int = 1) -> Any:
    """57 → 32 → 16 → 3 Dense with ReLU, weights N(0, 0.3) rounded to 2^-6 (seeded)."""
    tf = hls.import_hls4ml() and __import__("tensorflow")
    rng = np.random.default_rng(seed)
    inp = tf.keras.Input((N_INPUTS,), name="inputs")
    x = tf.keras.layers.ReLU(name="relu1")(tf.keras.layers.Dense(32, name="dense1")(inp))
    x = tf.keras.layers.ReLU(name="relu2")(tf.keras.layers.Dense(16, name="dense2")(x))
    mu = tf.keras.layers.Dense(3, name="mu")(x)
    model = tf.keras.Model(inp, mu)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([np.round(rng.normal(0.0, 0.3, w.shape) * 64) / 64 for w in weights])
    return model


def axol1tl_v1_project(out: str | Path, seed: int = 1, name: str = V1_NAME) -> Path:
    """Write the project (module doc) into ``out``; ``out``."""
    precision = {"inputs": {"result": "ap_fixed<16,6>"},
                 "relu1": {"result": "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"},
                 "relu2": {"result": "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"},
                 "mu": {"result": RESULT_TYPE}, "mu_linear": {"result": RESULT_TYPE}}
    model = v1_keras_model(seed)
    hls4ml = hls.import_hls4ml()
    with hls._quiet():
        cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    cfg["Model"].update(Strategy="Latency", ReuseFactor=1, Precision="ap_fixed<16,6>")
    for layer, entry in precision.items():
        if layer in cfg["LayerName"]:
            cfg["LayerName"][layer].setdefault("Precision", {}).update(entry)
    shifts, offsets = v1_scales()
    namespace = f"hls4ml_{name.lower()}"
    with tempfile.TemporaryDirectory(prefix="darktrigger-v1-") as tmp, hls._quiet():
        hm = hls4ml.converters.convert_from_keras_model(
            model, output_dir=tmp, project_name=name, backend="Vitis", io_type="io_parallel",
            hls_config=cfg, namespace=namespace, write_weights_txt=False)
        hm.write()
        layout = PluginLayout(name, shifts, offsets, scaling="axol1tl", loss="sum_squares",
                              result="array", namespace=namespace)
        return write_plugin_project(Path(tmp) / "firmware", Path(out), layout)
