"""The ``firmware`` scoring backend: events scored by the firmware itself.

``load_model(project, backend="firmware")`` gives a scorer that turns events into the
firmware's fixed-point inputs (the L1 hardware units, shift-normalised, exactly as
:mod:`darktrigger.models.quantised.preprocess` defines them) and runs them through the project's compiled
RTL under Verilator (``engine="rtl"``, the default when the project has RTL) or
hls4ml's C simulation (``engine="csim"``). The RTL engine runs the project's
combinational build (``rtl/comb``: da4ml's netlist without the pipeline registers, one
``eval()`` an event: 29,900 instructions against 33,300 for a clock of the pipelined
build of qvae, 59,300 against 72,600 for qae; both builds are checked bit for bit by
``firmware verify``), or the pipelined build in projects made before it existed. The trigger emulation then runs the very
logic that would run on the FPGA, as the CMS emulators do.

    >>> from darktrigger.models import load_model
    >>> scorer = load_model("fw/qvae", backend="firmware")             # doctest: +SKIP
    >>> scorer.score(batch)                                            # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware import project
from darktrigger.firmware.errors import ProjectError
from darktrigger.models.backends import register_backend
from darktrigger.models.base import BatchLike, ScoreOnlyScorer, as_flat
from darktrigger.replay.errors import ConfigError

ENGINES = ("rtl", "csim")
CHUNK = 65536


class FirmwareScorer(ScoreOnlyScorer):
    """A firmware project scored by its RTL (Verilator) or its HLS C simulation. Not
    registered as a scorer: it is a backend (:func:`darktrigger.models.load_model`)."""

    name = "firmware"
    backend = "firmware"
    retrain_hint = "train the model, then build its firmware again"

    def __init__(self, directory: Path, engine: str | None = None) -> None:
        manifest = project.read_manifest(directory)
        self.directory = directory
        self.manifest = manifest
        self.model = project.load_quantised(directory)
        if project.model_hash(directory) != manifest["model_sha256"]:
            raise ProjectError(f"{directory}: its model files changed after the firmware was built; "
                               "build the firmware again")
        engine = engine or ("rtl" if manifest.get("rtl") else "csim")
        if engine not in ENGINES:
            raise ConfigError(f"firmware engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if engine == "rtl" and not manifest.get("rtl"):
            raise ProjectError(f"{directory}: has no RTL; build it with `darktrigger firmware build --rtl`")
        self.engine = engine
        self.variant = None
        self.hyperparameters = dict(self.model.hyperparameters)
        self.training, self.seed, self.card = self.model.training, self.model.seed, self.model.card
        self._run: Any
        if engine == "rtl":
            from darktrigger.firmware import rtl

            runner = rtl.RTLRunner(*rtl.load(directory / manifest["rtl"]["directory"]))
            self._run = runner.run
        else:
            from darktrigger.firmware import hls

            csim = hls.load_project(directory)
            self._run = lambda x: hls.csim_predict(csim, x)

    @property
    def spec(self) -> str:
        return self.model.spec

    @property
    def where(self) -> str:
        return f"scorer {self.spec!r} (firmware {self.engine}, {self.directory})"

    @classmethod
    def load(cls, directory: str | Path, variant: str | None = None, *, threads: int = 1,
             engine: str | None = None) -> FirmwareScorer:
        if variant is not None:
            raise ConfigError(f"{directory}: the firmware computes one score; got variant {variant!r}")
        return cls(Path(directory), engine)


    def score(self, batch: BatchLike) -> np.ndarray:
        flat = as_flat(batch, self.where)
        x = self.model.inputs(flat)
        out = np.empty(len(flat), np.float32)
        for start in range(0, len(x), CHUNK):
            chunk = x[start:start + CHUNK]
            out[start:start + len(chunk)] = self._run(chunk)
        return out


@register_backend("firmware", "a firmware project's RTL under Verilator (or its HLS C simulation); scores only")
def _load(directory: Path, variant: str | None, *, threads: int) -> FirmwareScorer:
    return FirmwareScorer.load(directory, variant, threads=threads)
