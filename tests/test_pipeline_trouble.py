"""Trouble made visible (issue 17, point 8): a source that cannot keep its rate says so
(log, metrics, summary: requested and achieved), and a stalled recorder shows in the
source's metrics and log within seconds, long before the acknowledgement timeout."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from darktrigger.daq.summary import format_summary
from darktrigger.daq.supervisor import Supervisor
from darktrigger.daq.testing import free_metrics_base, make_setup, write_topology
from darktrigger.monitoring.live import figures, parse_exposition


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_setup(tmp_path_factory.mktemp("trouble"), n_bkg=5_000, model=False)


def _metrics(root: Path, name: str, **source: Any) -> tuple[Path, int]:
    base = free_metrics_base(2)
    path = write_topology(root, name, source=source, reliability={"stall_s": 1.0},
                          metrics={"enabled": True, "host": "127.0.0.1", "base_port": base, "live_page": False})
    return path, base


def _scrape(port: int) -> dict[Any, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return dict(parse_exposition(resp.read().decode()))
    except OSError:
        return {}


def _start(sup: Supervisor) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = sup.run(timeout_s=120, install_signals=False)
        except BaseException as exc:  # surfaced by the test
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, result


def test_a_source_that_cannot_keep_its_rate_says_so(root: Path) -> None:
    path, base = _metrics(root, "toofast.yaml", rate_hz=50_000_000, events=400_000)  # far above this machine
    sup = Supervisor(path)
    t, result = _start(sup)
    seen: dict[Any, float] = {}
    while t.is_alive():
        sample = _scrape(base)  # the source's port
        if ("darktrigger_source_achieved_rate_hz", ()) in sample:
            seen = sample
        time.sleep(0.2)
    t.join()
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary.status == "complete"
    assert summary.requested_rate_hz == 50_000_000
    assert summary.achieved_rate_hz is not None
    assert 0 < summary.achieved_rate_hz < 0.95 * 50_000_000
    assert "source rate: asked 50,000,000 Hz, achieved" in format_summary(summary)
    assert "(the source could not keep the rate)" in format_summary(summary)
    assert seen[("darktrigger_source_requested_rate_hz", ())] == 50_000_000
    assert 0 < seen[("darktrigger_source_achieved_rate_hz", ())] < 0.95 * 50_000_000


def test_a_stalled_recorder_shows_within_seconds(root: Path) -> None:
    path, base = _metrics(root, "stall.yaml", rate_hz=100_000, events=600_000)
    sup = Supervisor(path)
    t, result = _start(sup)
    try:
        deadline = time.monotonic() + 60
        while _scrape(base).get(("darktrigger_events_total", (("stage", "source"),)), 0) < 100_000:
            assert time.monotonic() < deadline, "the source never sent 100k events"
            time.sleep(0.1)
        recorder = sup.children["recorder"].proc.pid
        os.kill(recorder, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            stalled, sample = 0.0, {}
            while stalled <= 0 and time.monotonic() - stopped < 30:
                time.sleep(0.2)
                sample = _scrape(base)
                stalled = sample.get(("darktrigger_stalled_seconds", ()), 0.0)
            shown_after = time.monotonic() - stopped
        finally:
            os.kill(recorder, signal.SIGCONT)
        assert stalled > 0, "the stall never showed in the source's metrics"
        assert shown_after < 10  # seconds, not the 60 s acknowledgement timeout
        assert figures(sample, sample, 1.0, {"source": True})["workers"]["stalled s"] > 0  # the live page's
        log = (sup.logs / "source.log").read_text()
        assert "no acknowledgement for" in log
        assert "stalled" in log
    finally:
        t.join(120)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert (summary.status, summary.events_lost, summary.events_duplicated) == ("complete", 0, 0)
