"""``darktrigger demo`` (what ``make demo`` runs), small: every step runs on zero bias, the
signal is injected at its stated rate, and the run summary holds the split and how it ended."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from darktrigger.daq.summary import RunSummary

pytestmark = pytest.mark.slow


def test_the_demo_runs_on_zero_bias_and_reports_the_split(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "darktrigger", "demo", "--out", str(out), "--zero-bias-events", "300k",
         "--train-events", "50k", "--calibration-events", "400k", "--pythia-events", "3", "--epochs", "1",
         "--workers", "1", "--signal-fraction", "0.01"],
        capture_output=True, text=True, timeout=900)
    text = done.stdout
    assert done.returncode == 0, text[-3000:] + done.stderr[-3000:]
    summary = RunSummary.from_json(out / "run" / "run_summary.json")
    assert summary.stopped_by == "end of run"
    assert summary.events_lost == 0
    assert summary.injected == {"toy_ato4l.h5": {"rate_hz": pytest.approx(20.0), "fraction": 0.01}}
    assert summary.background is not None
    assert summary.signal is not None
    assert "ato4l" in summary.signals
    # the injected signal adds its 20 Hz x the fraction of it the menu keeps, whatever fraction was
    # drawn (1 %, not the 0.7 ppm its rate is of the crossings): exact for zero bias of unit weights
    kept = summary.per_process["ato4l"].efficiency
    assert summary.signal.total_rate_hz == pytest.approx(20.0 * kept, rel=1e-4)
    for phrase in ("σ × L = 20 Hz", "background Hz", "ato4l eff. %", "unique %", "total accept rate",
                   "software pipeline latency", "AXO-like seeds on zero bias"):
        assert phrase in text, phrase
    assert "not zero bias" not in text
    # a second demo in the same folder reuses every generated file
    again = subprocess.run(
        [sys.executable, "-m", "darktrigger", "demo", "--out", str(out), "--zero-bias-events", "300k",
         "--train-events", "50k", "--calibration-events", "400k", "--pythia-events", "3", "--epochs", "1",
         "--workers", "1", "--signal-fraction", "0.01"],
        capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("reusing ") == 6
