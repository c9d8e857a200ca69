"""hls4ml projects of the quantised scorers, with precisions chosen so the C simulation is exact.

hls4ml's defaults (``ap_fixed<16,6>`` for every result and accumulator) leave many
outputs of a QKeras model unequal (DESIGN.md). Exactness needs every type
set on purpose, and :func:`precisions` sets all of them from the trained model's own
bounds (:func:`darktrigger.models.quantised.fixedpoint.analyse`):

================  ============================================================
layer             types
================  ============================================================
input             ``ap_fixed<12,6>``: the grid the inputs are on, so nothing rounds
``Dense``         weight/bias: the QKeras quantizers' types; accumulator and result:
                  the narrowest type holding every partial sum exactly (fractional
                  bits = input's + weight's; integer bits from Σ|x|max·|w| + |b|)
``*_linear``      hls4ml's pass-through after a Dense: the Dense's result type
``ReLU``/``Quant``  the quantizer's type with ``AP_RND_CONV, AP_SAT`` (QKeras rounds
                  half to even and clips)
``Subtract``      exact: the fractional bits of the finer operand
``Dot`` (Σx²)     exact: twice the operand's fractional bits
================  ============================================================

    >>> from darktrigger.models import load_model
    >>> from darktrigger.models.quantised.testing import train_small
    >>> scorer = load_model(train_small("qvae", tmp_path / "qvae", n=600, hidden=[8], latent=2))
    >>> p = precisions(scorer)
    >>> p["enc1"]["weight"], p["enc1"]["bias"], p["relu1"]
    ('ap_fixed<8,2>', 'ap_fixed<8,4>', {'result': 'ap_ufixed<8,3,AP_RND_CONV,AP_SAT>'})
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware.errors import FirmwareError, ToolMissingError, UnsupportedModelError
from darktrigger.models.quantised.fixedpoint import Dense, Quant, ReLU, SubInput, SumSquares
from darktrigger.models.quantised.scorers import QuantisedScorer
from darktrigger.models.quantised.training import import_tf

log = logging.getLogger(__name__)

PROJECT_NAME = "myproject"  #: hls4ml's top function and file names
BACKENDS = ("Vitis", "Vivado")
DEFAULT_PART = "xcvu13p-flga2577-2-e"
INPUT_LAYER = "inputs"



def import_hls4ml() -> Any:
    """hls4ml, with TensorFlow (which it imports) as quiet as training has it."""
    import_tf()
    import hls4ml

    return hls4ml

def require_cxx() -> str:
    """The C++ compiler hls4ml's ``compile()`` calls (``g++``), or a ToolMissingError."""
    path = shutil.which("g++")
    if path is None:
        raise ToolMissingError("g++ is not on PATH: hls4ml's C simulation and the project's testbench "
                               "are compiled with it; install it (Debian/Ubuntu: apt-get install g++)")
    return path


def precisions(scorer: QuantisedScorer) -> dict[str, dict[str, str]]:
    """hls4ml ``Precision`` entries, layer name → {result, accum, weight, bias}, all exact."""
    out: dict[str, dict[str, str]] = {INPUT_LAYER: {"result": scorer.input_fmt.ap}}
    for layer, r in zip(scorer.layers(), scorer.ranges(), strict=True):
        if isinstance(layer, Dense):
            acc = r.accum_fmt.ap
            out[layer.name] = {"result": acc, "accum": acc, "weight": layer.weight.ap,
                               "bias": layer.bias.ap}
            out[f"{layer.name}_linear"] = {"result": acc}
        elif isinstance(layer, ReLU | Quant):
            out[layer.name] = {"result": layer.fmt.hls()}
        elif isinstance(layer, SubInput):
            out[layer.name] = {"result": r.fmt.ap}
        elif isinstance(layer, SumSquares):
            acc = r.accum_fmt.ap
            out[layer.name] = {"result": acc, "accum": acc}
    return out


def hls_config(keras_model: Any, precision: dict[str, dict[str, str]], backend: str) -> dict[str, Any]:
    """The hls4ml configuration: io_parallel, latency strategy, reuse 1, every precision set."""
    hls4ml = import_hls4ml()

    cfg = hls4ml.utils.config_from_keras_model(keras_model, granularity="name", backend=backend)
    cfg["Model"].update(Strategy="Latency", ReuseFactor=1)
    unset = [name for name in cfg["LayerName"] if name not in precision]
    if unset:
        raise FirmwareError(f"hls4ml made layers the precisions do not cover: {', '.join(unset)}")
    for name, entry in cfg["LayerName"].items():
        entry.setdefault("Precision", {}).update(precision[name])
    return cfg


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """hls4ml's progress prints, and Keras's warning that QKeras quantisers are not Keras
    constraints (hls4ml serialises the model with them), kept from the user's terminal."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The `keras\.constraints\.serialize\(\)` API",
                                category=UserWarning)
        yield


def convert(keras_model: Any, out_dir: Path, *, precision: dict[str, dict[str, str]] | None = None,
            backend: str = "Vitis", part: str = DEFAULT_PART, clock_ns: float = 4.0,
            tb_inputs: np.ndarray | None = None, tb_outputs: np.ndarray | None = None,
            where: str = "model", project_name: str = PROJECT_NAME, **writer: Any) -> Any:
    """Write the hls4ml project of ``keras_model`` into ``out_dir``; the hls4ml model.

    Without ``precision`` hls4ml's own defaults are used. An unsupported layer is an
    :class:`UnsupportedModelError` naming it. ``writer`` goes to hls4ml's writer
    configuration (``namespace``, ``write_weights_txt``: an hls4mlEmulator plugin has its
    weights compiled in and its code in a namespace).
    """
    hls4ml = import_hls4ml()

    if backend not in BACKENDS:
        raise FirmwareError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    try:
        with _quiet():
            if precision is None:
                cfg = hls4ml.utils.config_from_keras_model(keras_model, granularity="name", backend=backend)
            else:
                cfg = hls_config(keras_model, precision, backend)
    except Exception as exc:
        raise _unsupported(keras_model, exc, where) from None
    with tempfile.TemporaryDirectory(prefix="darktrigger-tb-") as tmp:
        tb: dict[str, str] = {}
        if tb_inputs is not None and tb_outputs is not None:
            np.save(Path(tmp) / "in.npy", np.asarray(tb_inputs, np.float64))
            np.save(Path(tmp) / "out.npy", np.asarray(tb_outputs, np.float64).reshape(len(tb_outputs), -1))
            tb = {"input_data_tb": str(Path(tmp) / "in.npy"), "output_data_tb": str(Path(tmp) / "out.npy")}
        try:
            with _quiet():
                model = hls4ml.converters.convert_from_keras_model(
                    keras_model, output_dir=str(out_dir), project_name=project_name, backend=backend,
                    part=part, clock_period=clock_ns, io_type="io_parallel", hls_config=cfg, **tb, **writer)
                model.write()
            # written once: a later write() (compile() writes again) keeps tb_data as it is
            model.config.config.pop("InputData", None)
            model.config.config.pop("OutputPredictions", None)
        except FirmwareError:
            raise
        except Exception as exc:
            raise _unsupported(keras_model, exc, where) from None
    return model


def _unsupported(keras_model: Any, exc: Exception, where: str) -> FirmwareError:
    hls4ml = import_hls4ml()

    known = set(hls4ml.converters.get_supported_keras_layers())
    bad = [f"{layer.name} ({type(layer).__name__})" for layer in keras_model.layers
           if type(layer).__name__ not in known]
    if bad:
        return UnsupportedModelError(f"{where}: hls4ml cannot convert layer(s) {', '.join(bad)}: "
                                     f"hls4ml 1.3 has no converter for them ({exc})")
    return FirmwareError(f"{where}: hls4ml failed to convert the model ({type(exc).__name__}: {exc})")


def compile_csim(model: Any, where: str = "project") -> Any:
    """Compile hls4ml's C simulation (``compile()``, g++); the model, ready for ``predict``."""
    require_cxx()
    try:
        with _quiet():
            model.compile()
    except Exception as exc:
        raise FirmwareError(f"{where}: g++ could not compile hls4ml's C simulation "
                            f"({type(exc).__name__}: {exc})") from None
    return model


def csim_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """C simulation outputs ``[N]`` float64 for inputs ``x`` ``[N, 57]`` (on the grid)."""
    y = model.predict(np.ascontiguousarray(x, np.float64))  # prints nothing: no redirect needed
    return np.asarray(y, np.float64).reshape(len(x), -1)[:, 0]


def load_project(project: Path, where: str | None = None) -> Any:
    """The hls4ml model of a written project (from its ``hls4ml_config.yml``), compiled."""
    hls4ml = import_hls4ml()

    where = where or str(project)
    cfg = project / "hls4ml_config.yml"
    if not cfg.is_file():
        raise FirmwareError(f"{where}: no hls4ml_config.yml; not an hls4ml project")
    cwd = os.getcwd()
    try:
        with _quiet():
            model = hls4ml.converters.link_existing_project(str(project))
    except Exception as exc:
        raise FirmwareError(f"{where}: hls4ml cannot open the project ({type(exc).__name__}: {exc})") from None
    finally:
        os.chdir(cwd)
    model.config.config["OutputDir"] = str(project)  # the project may have moved since
    return compile_csim(model, where)
