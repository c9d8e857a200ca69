"""``darktrigger firmware verify``: every implementation of a model on the same events, bit for bit.

Runs, on N events of a file: the QKeras model, hls4ml's C simulation (``compile()``/
``predict()``), the project's own testbench compiled with g++ against ``tb_data/``-style
files of those events, and (when the project has one) the RTL under Verilator (the
pipelined build and the combinational build the ``firmware`` backend scores with), and, for
a project built with ``--emulator`` checked on ``events``, the hls4mlEmulator plugin for
CMSSW, loaded through its interface by darktrigger's batch shim and fed CMSSW's 57 inputs
(its score, loss × 16 = ``floor(score · 2^m)``, compared with QKeras's on that grid), next
to the exact fixed-point reference. Scores are compared as integer counts of the score's
LSB. Reported: the fraction of events equal in all, the largest difference in LSBs,
trigger decisions at the model's calibrated thresholds (``darktrigger calibrate``; or,
for an uncalibrated model, thresholds at 1, 5 and 10 kHz taken from these events), the
RTL latency measured in the simulation, and da4ml's resource estimate.

    >>> report = verify(Path("fw/qvae"), Path("bkg.h5"), n=100_000)    # doctest: +SKIP
    >>> report.ok                                                       # doctest: +SKIP
    True

A report reads as a table (:meth:`VerifyReport.format`) and as JSON (:meth:`VerifyReport.to_dict`):

    >>> r = VerifyReport("fw/qvae", "qvae", 1000, 8, equal={"QKeras": 1.0, "RTL (Verilator)": 0.999},
    ...                  max_lsb={"QKeras": 0, "RTL (Verilator)": 3}, all_equal=0.999)
    >>> r.ok, r.to_dict()["max_diff_lsb"]["RTL (Verilator)"]
    (False, 3)
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware import hls, project, testbench
from darktrigger.firmware.errors import FirmwareError
from darktrigger.models.quantised.scorers import QuantisedScorer, lsb_counts
from darktrigger.replay.progress import Steps

log = logging.getLogger(__name__)

DEFAULT_RATES_KHZ = (1.0, 5.0, 10.0)


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``ok`` when every implementation and decision agrees and
    the RTL latency measured is the pipeline's depth."""

    project: str
    spec: str
    events: int
    score_frac: int
    #: implementation → fraction of events equal to QKeras
    equal: dict[str, float] = field(default_factory=dict)
    max_lsb: dict[str, int] = field(default_factory=dict)
    all_equal: float = 0.0
    #: threshold label → fraction of events with the same decision in every implementation
    decisions: dict[str, float] = field(default_factory=dict)
    thresholds_from: str = ""
    rtl: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: the hls4mlEmulator plugin (``build --emulator``): its score's LSB and how it was checked
    emulator: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.all_equal == 1.0 and all(v == 1.0 for v in self.decisions.values()) and \
            (self.rtl is None or self.rtl.get("measured_cycles") == self.rtl.get("cycles"))

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "spec": self.spec, "events": self.events,
                "score_lsb": f"2^-{self.score_frac}", "equal_to_qkeras": self.equal,
                "max_diff_lsb": self.max_lsb, "all_equal": self.all_equal,
                "decisions_equal": self.decisions, "thresholds_from": self.thresholds_from,
                "rtl": self.rtl, "emulator": self.emulator, "seconds": self.seconds, "ok": self.ok}

    def format(self) -> str:
        lines = [f"firmware verify: {self.spec} in {self.project}, {self.events:,} events "
                 f"(score LSB 2^-{self.score_frac})"]
        lines.append(f"  {'implementation':<32}{'equal to QKeras':>16}{'max |diff| (LSB)':>18}{'seconds':>9}")
        for name, frac in self.equal.items():
            lines.append(f"  {name:<32}{frac:>16.4%}{self.max_lsb[name]:>18,}"
                         f"{self.seconds.get(name, float('nan')):>9.1f}")
        lines.append(f"  events equal in all: {self.all_equal:.4%}")
        lines.append(f"  trigger decisions ({self.thresholds_from}):")
        for label, frac in self.decisions.items():
            lines.append(f"    {label:<40} same in all: {frac:.4%}")
        if self.rtl:
            r = self.rtl
            lines.append(f"  RTL latency: {r['measured_cycles']} clocks measured in Verilator "
                         f"({r['cycles']} pipeline stages) × {r['clock_ns']} ns = "
                         f"{(r['measured_cycles'] or 0) * r['clock_ns']:g} ns, II = 1")
            lines.append(f"  RTL scoring build (firmware backend): {r['scoring']}")
            lines.append(f"  da4ml resource estimate: {r['luts_estimate']:,.0f} LUT, "
                         f"{r['ffs_estimate']:,} FF")
        if self.emulator:
            e = self.emulator
            lines.append(f"  hls4mlEmulator plugin {e['plugin']}: {e['checked']}")
        lines.append("  result: " + ("OK, bit-exact" if self.ok else "MISMATCH"))
        return "\n".join(lines)


def _thresholds(scorer: QuantisedScorer, scores: np.ndarray) -> tuple[dict[str, float], str]:
    card = scorer.card
    found = {f"{t['model']} @ {t['rate_khz']:g} kHz": float(t["threshold"])
             for t in (card.thresholds if card else []) if t.get("model") == scorer.spec}
    if found:
        return found, "the model's calibrated thresholds"
    from darktrigger.models.thresholds import thresholds_for_rates

    # only to compare decisions between implementations: resolved or not, no warning
    made = thresholds_for_rates(scores.astype(np.float32), list(DEFAULT_RATES_KHZ), warn=False)
    return ({f"{scorer.spec} @ {t.rate_khz:g} kHz": float(t.threshold) for t in made},
            f"uncalibrated model: thresholds at {', '.join(f'{r:g}' for r in DEFAULT_RATES_KHZ)} kHz "
            f"of {made[0].input_rate_mhz:g} MHz from these events")


def read_test_vectors(project_dir: Path, n: int | None = None) -> np.ndarray:
    """The network inputs ``[N, 57]`` of the project's test vectors
    (``tb_data/tb_input_features.dat``), the first ``n``."""
    path = project_dir / "tb_data" / "tb_input_features.dat"
    if not path.is_file():
        raise FirmwareError(f"{project_dir}: no test vectors ({path.relative_to(project_dir)}); "
                            "give --events, or build the firmware again")
    x = np.loadtxt(path, dtype=np.float64, ndmin=2)
    return x if n is None else x[:n]


def verify(project_dir: Path, events: Path | None = None, n: int = 100_000, *,
           model_dir: Path | None = None, use_rtl: bool = True,
           use_testbench: bool = True, progress: bool = False) -> VerifyReport:
    """Run every implementation on ``n`` events of ``events`` (without ``events``: on the
    project's test vectors in ``tb_data/``); the report (see the module doc). With
    ``progress``, a log line as each implementation starts (``darktrigger.progress``)."""
    from darktrigger.models.base import as_flat
    from darktrigger.models.neural.training import read_events

    manifest, scorer = project.open_project(project_dir, model_dir)
    rtl_runs = 2 if use_rtl and manifest.rtl is not None else 0
    plugin = manifest.emulator if events is not None else None
    steps = Steps(f"firmware verify {project_dir}", 3 + use_testbench + rtl_runs + bool(plugin),
                          enabled=progress)
    steps(f"reading {events or 'the test vectors'}")
    flat = None
    if events is None:
        x = read_test_vectors(project_dir, n)
    else:
        flat = as_flat(read_events([events], n, "verification", hashes=False)[0], "verification")
        x = scorer.inputs(flat)
    frac = manifest.score_frac
    seconds: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}

    def timed(name: str, fn: Any) -> None:
        t0 = time.monotonic()
        outputs[name] = np.asarray(fn(), np.float64).reshape(-1)
        seconds[name] = time.monotonic() - t0

    timed("reference (numpy)", lambda: scorer.fixed_outputs(x)["score"][:, 0])
    steps(f"QKeras on {len(x):,} events")
    keras_model = scorer.keras_model()
    timed("QKeras", lambda: keras_model.predict(x, batch_size=8192, verbose=0)[:, 0])
    steps(f"hls4ml C simulation: compiling (g++), then {len(x):,} events")
    csim = hls.load_project(project_dir)
    timed("hls4ml C sim (predict)", lambda: hls.csim_predict(csim, x))
    if use_testbench:
        steps(f"the project's testbench: compiling (g++), then {len(x):,} events")
        with tempfile.TemporaryDirectory(prefix="darktrigger-verify-") as tmp:
            binary = testbench.compile_testbench(project_dir, Path(tmp) / "tb")
            timed("testbench (g++)", lambda: testbench.run(binary, x, outputs["QKeras"], Path(tmp)))
    rtl_info: dict[str, Any] | None = None
    if use_rtl and manifest.rtl is not None:
        from darktrigger.firmware import rtl

        runner = rtl.RTLRunner(project_dir / manifest.rtl.directory)
        steps(f"RTL (Verilator), pipelined, on {len(x):,} events")
        timed("RTL (Verilator)", lambda: runner.run_pipelined(x))
        steps(f"RTL (Verilator), combinational, on {len(x):,} events; latency measured")
        timed("RTL, combinational (Verilator)", lambda: runner.run(x))
        rtl_info = {**runner.info.to_dict(), "measured_cycles": rtl.measure_latency(
            runner, lambda v: scorer.fixed_outputs(v)["score"][:, 0]), "scoring": runner.scoring}
    plugin_info: dict[str, Any] | None = None
    references = {}
    if plugin is not None:
        from darktrigger.firmware import emulator
        from darktrigger.replay.l1units import cmssw_inputs

        assert flat is not None
        label = "CMSSW plugin (hls4mlEmulator)"
        m = int(plugin["score_shift"])
        steps(f"the hls4mlEmulator plugin through the interface (batch shim), on {len(x):,} events")
        with tempfile.TemporaryDirectory(prefix="darktrigger-verify-") as tmp:
            shim = emulator.load_export(project_dir, plugin, Path(tmp))
            timed(label, lambda: shim.score(cmssw_inputs(flat)) * 2.0**-m)
            shim.close()
        # CMSSW reads floor(score * 2^m), m chosen so that no score saturates 18 bits: at m = frac
        # that is the score itself; below, it is compared with QKeras's score on that coarser grid
        if m < frac:
            references[label] = emulator.cmssw_score(outputs["QKeras"], m) * 2.0**-m
        plugin_info = {"plugin": f"{plugin['directory']}/{plugin['plugin']}", "score_shift": m,
                       "checked": f"fed CMSSW's 57 inputs, loss x 16 = floor(score x 2^{m})"
                                  + (" = the score's own LSBs" if m >= frac else
                                     f", compared with QKeras's score floored to 2^-{m}; "
                                     "decisions not compared (its own threshold grid)")}
    counts = {name: lsb_counts(v, frac) for name, v in outputs.items()}
    base = counts["QKeras"]
    same = np.ones(len(x), bool)
    equal, max_lsb = {}, {}
    for name, c in counts.items():
        if name in references:
            base_here = lsb_counts(references[name], frac)
            eq = c == base_here
            same &= eq
            equal[name] = float(eq.mean()) if len(x) else 1.0
            max_lsb[name] = int(np.abs(c - base_here).max(initial=0))
            continue
        eq = c == base
        same &= eq
        equal[name] = float(eq.mean()) if len(x) else 1.0
        max_lsb[name] = int(np.abs(c - base).max(initial=0))
    thresholds, source = _thresholds(scorer, outputs["QKeras"])
    decisions = {}
    for label, thr in thresholds.items():
        fired = np.stack([v.astype(np.float32) > np.float32(thr) for name, v in outputs.items()
                          if name not in references])
        decisions[label] = float(np.mean(np.all(fired == fired[0], axis=0))) if len(x) else 1.0
    return VerifyReport(str(project_dir), scorer.spec, len(x), frac, equal, max_lsb,
                        float(same.mean()) if len(x) else 1.0, decisions, source, rtl_info,
                        {k: round(v, 2) for k, v in seconds.items()}, plugin_info)
