"""The ``firmware`` scoring backend: events scored by the firmware itself.

``load_model(project, backend="firmware")`` gives a scorer that turns events into the
firmware's fixed-point inputs (the L1 hardware units, shift-normalised, exactly as
:mod:`darktrigger.models.quantised.preprocess` defines them) and runs them through the project's compiled
RTL under Verilator (``engine="rtl"``, the default when the project has RTL) or
hls4ml's C simulation (``engine="csim"``). The RTL engine runs the project's
combinational build (``rtl/comb``: da4ml's netlist without the pipeline registers, one
``eval()`` an event, where the pipelined build takes a clock of two; ``firmware verify``
checks both bit for bit; speeds in BENCHMARKS.md). The trigger emulation then runs the
very logic that would run on the FPGA, as the CMS emulators do. A scorer may be used
from several threads at once.

    >>> from darktrigger.models import load_model
    >>> load_model(tmp_path, backend="firmware")
    Traceback (most recent call last):
    ...
    darktrigger.firmware.errors.ProjectError: ...: not a darktrigger firmware project (no darktrigger-firmware.json); build it again with `darktrigger firmware build`
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
        self.manifest, self.model = project.open_project(directory)
        self.directory = directory
        engine = engine or ("rtl" if self.manifest.rtl else "csim")
        if engine not in ENGINES:
            raise ConfigError(f"firmware engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine
        self.variant = None
        self.hyperparameters = dict(self.model.hyperparameters)
        self.training, self.seed, self.card = self.model.training, self.model.seed, self.model.card
        self._run: Callable[[np.ndarray], np.ndarray]
        if engine == "rtl":
            if self.manifest.rtl is None:
                raise ProjectError(f"{directory}: has no RTL; build it with `darktrigger firmware build --rtl`")
            from darktrigger.firmware import rtl

            self._run = rtl.RTLRunner(directory / self.manifest.rtl.directory).run
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
