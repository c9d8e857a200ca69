"""The firmware manifest, ``darktrigger-firmware.json``: what a firmware project holds, typed.

``darktrigger firmware build`` writes it last (:func:`write_manifest`), so a folder
without it is a build that did not finish; :func:`read_manifest` is the one reader, and
refuses such a folder with a :class:`~darktrigger.firmware.errors.ProjectError` that
says what to do. On disk it is JSON with the keys of :meth:`Manifest.to_dict`.

    >>> m = Manifest(spec="qvae", scorer="qvae", source_model="models/qvae", model_sha256="ab" * 32,
    ...              backend="Vitis", part="xcvu13p-flga2577-2-e", clock_ns=4.0,
    ...              input_type="ap_fixed<12,6>", score_type="ap_fixed<20,12>", score_frac=8,
    ...              precisions={}, precision_overrides={}, layers=[],
    ...              checks=BuildChecks(tb_events=10, qkeras_equals_reference=10, csim_equals_qkeras=10))
    >>> path = write_manifest(tmp_path, m)
    >>> read_manifest(tmp_path) == m
    True
    >>> read_manifest(tmp_path).checks.csim_equals_qkeras
    10
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from darktrigger.firmware.errors import ProjectError
from darktrigger.firmware.rtl import RTL_DIR, RTLInfo

MANIFEST = "darktrigger-firmware.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class BuildChecks:
    """Test vectors equal between implementations when the project was built (of ``tb_events``)."""

    tb_events: int
    qkeras_equals_reference: int
    csim_equals_qkeras: int
    #: both RTL builds equal to QKeras (None: built without RTL; then not in the JSON)
    rtl_equals_qkeras: int | None = None

    def to_dict(self) -> dict[str, int]:
        out = {"tb_events": self.tb_events, "qkeras_equals_reference": self.qkeras_equals_reference,
               "csim_equals_qkeras": self.csim_equals_qkeras}
        if self.rtl_equals_qkeras is not None:
            out["rtl_equals_qkeras"] = self.rtl_equals_qkeras
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildChecks:
        rtl = d.get("rtl_equals_qkeras")  # absent in projects without RTL
        return cls(int(d["tb_events"]), int(d["qkeras_equals_reference"]), int(d["csim_equals_qkeras"]),
                   None if rtl is None else int(rtl))


@dataclass(frozen=True)
class RTLRecord:
    """The project's RTL: what the build reports, where it is, the latency measured."""

    info: RTLInfo
    #: the RTL project's folder, relative to the firmware project
    directory: str = RTL_DIR
    #: clocks from input to output measured in the Verilator simulation (None: no single delay fits)
    measured_cycles: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "directory": self.directory, "measured_cycles": self.measured_cycles}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RTLRecord:
        measured = d["measured_cycles"]
        return cls(RTLInfo.from_dict(d), str(d["directory"]), None if measured is None else int(measured))


@dataclass(frozen=True)
class Manifest:
    """What ``darktrigger firmware build`` made (see :mod:`darktrigger.firmware.project`)."""

    spec: str
    scorer: str
    #: the model directory the firmware was built from
    source_model: str
    #: :func:`darktrigger.firmware.project.model_hash` of that model
    model_sha256: str
    backend: str
    part: str
    clock_ns: float
    input_type: str
    score_type: str
    #: fractional bits of the score (its LSB is 2^-score_frac)
    score_frac: int
    #: hls4ml precisions, layer → {result, accum, weight, bias}
    precisions: dict[str, dict[str, str]]
    precision_overrides: dict[str, dict[str, str]]
    #: :func:`darktrigger.models.quantised.fixedpoint.describe` of the network
    layers: list[dict[str, Any]]
    checks: BuildChecks
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    rtl: RTLRecord | None = None
    #: the vendor synthesis report's figures (:func:`darktrigger.firmware.vendor.read_report`)
    synth: dict[str, Any] | None = None
    build_seconds: float | None = None
    #: the hls4mlEmulator plugin for CMSSW (``--emulator``; :func:`darktrigger.firmware.emulator.export_plugin`)
    emulator: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object on disk."""
        return {
            "version": MANIFEST_VERSION, "complete": True, "spec": self.spec, "scorer": self.scorer,
            "source_model": self.source_model, "model_sha256": self.model_sha256,
            "backend": self.backend, "part": self.part, "clock_ns": self.clock_ns,
            "io_type": self.io_type, "strategy": self.strategy, "input_type": self.input_type,
            "score_type": self.score_type, "score_frac": self.score_frac,
            "precisions": self.precisions, "precision_overrides": self.precision_overrides,
            "layers": self.layers, "checks": self.checks.to_dict(),
            "rtl": None if self.rtl is None else self.rtl.to_dict(), "synth": self.synth,
            "build_seconds": self.build_seconds, "emulator": self.emulator,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = MANIFEST) -> Manifest:
        """The manifest of a JSON object (:meth:`to_dict`), or a ProjectError naming what is wrong."""
        if not isinstance(d, dict) or d.get("version") != MANIFEST_VERSION or d.get("complete") is not True:
            raise ProjectError(f"{where}: not a complete version-{MANIFEST_VERSION} firmware manifest; "
                               "build the firmware again")
        optional = ("emulator",)  # absent in projects built before it existed
        missing = [f.name for f in fields(cls) if f.name not in d and f.name not in optional]
        if missing:
            raise ProjectError(f"{where}: the firmware manifest lacks {', '.join(missing)}; "
                               "build the firmware again")
        try:
            simple = {f.name: d[f.name] for f in fields(cls) if f.name not in ("checks", "rtl") and f.name in d}
            rtl = d["rtl"]
            return cls(**simple, checks=BuildChecks.from_dict(d["checks"]),
                       rtl=None if rtl is None else RTLRecord.from_dict(rtl))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProjectError(f"{where}: a damaged firmware manifest ({type(exc).__name__}: {exc}); "
                               "build the firmware again") from None


def read_manifest(project: Path) -> Manifest:
    """The manifest of a complete project, or a ProjectError saying what the folder is."""
    project = Path(project)
    path = project / MANIFEST
    if not project.is_dir():
        raise ProjectError(f"{project}: no such firmware project (build one with "
                           "`darktrigger firmware build --model DIR --out DIR`)")
    if not path.is_file():
        what = "an unfinished firmware build" if (project / "hls4ml_config.yml").exists() else \
            "not a darktrigger firmware project"
        raise ProjectError(f"{project}: {what} (no {MANIFEST}); build it again with "
                           "`darktrigger firmware build`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{path}: not valid JSON ({exc})") from None
    return Manifest.from_dict(data, str(path))


def write_manifest(project: Path, manifest: Manifest) -> Path:
    """Write ``manifest`` into ``project`` (the last file a build writes); its path."""
    path = Path(project) / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=1) + "\n")
    return path
