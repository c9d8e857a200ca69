"""Vendor HLS tools: synthesis of a project and its report, only where a tool is on PATH.

Nothing else in darktrigger needs a vendor tool. :func:`find_tool` says which one is
there (``vitis_hls`` for the Vitis backend, ``vivado_hls`` for Vivado);
:func:`synthesise` runs the project's ``build_prj.tcl`` (C simulation and synthesis) and
:func:`read_report` reads latency, II and resources from ``myproject_csynth.xml``.

    >>> find_tool("Quartus") is None                 # a backend with no tool known here
    True
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from darktrigger.firmware.errors import FirmwareError, ToolMissingError

TOOLS = {"Vitis": "vitis_hls", "Vivado": "vivado_hls"}


def find_tool(backend: str) -> str | None:
    """The path of the backend's HLS tool, or None."""
    return shutil.which(TOOLS.get(backend, ""))


def synthesise(project: Path, backend: str, timeout_s: float = 4 * 3600) -> dict[str, Any]:
    """Run C simulation and synthesis with the vendor tool; the report's figures."""
    tool = find_tool(backend)
    if tool is None:
        raise ToolMissingError(f"--synth needs {TOOLS.get(backend, backend)!r} on PATH (backend "
                               f"{backend}); it is not installed here. Everything else works without it")
    res = subprocess.run([tool, "-f", "build_prj.tcl", "csim=1 synth=1 cosim=0 validation=0"],
                         cwd=project, capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        raise FirmwareError(f"{project}: {Path(tool).name} failed (exit {res.returncode}):\n"
                            f"{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
    reports = sorted(project.glob("*_prj/solution1/syn/report/myproject_csynth.xml"))
    if not reports:
        raise FirmwareError(f"{project}: synthesis ran but wrote no myproject_csynth.xml")
    return read_report(reports[0])


def read_report(path: Path) -> dict[str, Any]:
    """Latency (cycles, ns), II, LUT, FF, DSP and BRAM from a Vivado/Vitis HLS csynth XML."""
    root = ET.parse(path).getroot()

    def text(tag: str) -> str | None:
        el = root.find(tag)
        return el.text if el is not None else None

    def num(tag: str) -> float | None:
        t = text(tag)
        try:
            return float(t) if t is not None else None
        except ValueError:
            return None

    period = num("UserAssignments/TargetClockPeriod")
    best = num("PerformanceEstimates/SummaryOfOverallLatency/Best-caseLatency")
    worst = num("PerformanceEstimates/SummaryOfOverallLatency/Worst-caseLatency")
    res = "AreaEstimates/Resources/"
    return {
        "report": str(path), "clock_ns": period,
        "estimated_clock_ns": num("PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod"),
        "latency_cycles": [best, worst], "latency_ns": [None if c is None or period is None else c * period
                                                        for c in (best, worst)],
        "ii": num("PerformanceEstimates/SummaryOfOverallLatency/Interval-min"),
        "lut": num(res + "LUT"), "ff": num(res + "FF"), "dsp": num(res + "DSP") or num(res + "DSP48E"),
        "bram": num(res + "BRAM_18K"),
    }
