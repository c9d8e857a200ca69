"""The built-in live page: its figures, its JSON, and the page itself in headless Chromium.

The stages here are :class:`darktrigger.monitoring.simulate.SimulatedPipeline`'s: real registries on
real ports fed as a run feeds them, with known seed probabilities. The Chromium test keeps
its screenshot as ``live_page.png`` in ``$DARKTRIGGER_ARTIFACTS`` (default: the system's
temporary folder's ``darktrigger-artifacts``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from darktrigger.daq.testing import free_port, free_port_block, write_metrics_topology
from darktrigger.monitoring.catalogue import exported_by
from darktrigger.monitoring.live import (
    CHARTS,
    TARGET,
    LiveServer,
    figures,
    histogram_quantile,
    log_range,
    parse_exposition,
    serve_live,
    weighted_rate,
)
from darktrigger.monitoring.simulate import BX_RATE_HZ, SimulatedPipeline

PROBS = {"SingleMu22": 2e-3, "ETM90": 5e-4, "AXO_Loose": 1e-2, "AXO_Tight": 2.5e-3}
#: what the anomaly seeds were calibrated to: their rates in the stand-in, one of them off by 20 %
TARGETS = {"AXO_Loose": 1e-2 * BX_RATE_HZ, "AXO_Tight": 2.5e-3 * BX_RATE_HZ * 1.2}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_histogram_quantile_is_prometheus_s() -> None:
    inf = math.inf
    # the alert test's case: every event in (1, 2.5] → p99 = 1 + 1.5 × 0.99
    assert histogram_quantile(0.99, [0.5, 1.0, 2.5, inf], [0, 0, 100, 100]) == pytest.approx(2.485)
    assert histogram_quantile(0.5, [1.0, 2.0, inf], [0, 10, 10]) == 1.5
    assert histogram_quantile(0.5, [1.0, 2.0, inf], [0, 0, 10]) == 2.0       # all above: the top bound
    assert histogram_quantile(0.5, [1.0, 2.0, inf], [10, 10, 10]) == 0.5     # first bucket from 0
    assert math.isnan(histogram_quantile(0.5, [1.0, inf], [0, 0]))
    # against numpy on fine buckets
    rng = np.random.default_rng(1)
    x = rng.exponential(1.0, 200_000)
    bounds = [*np.linspace(0.01, 10, 1000), inf]
    cum = [float((x <= b).sum()) for b in bounds]
    for q in (0.5, 0.9, 0.99):
        assert histogram_quantile(q, bounds, cum) == pytest.approx(np.quantile(x, q), rel=0.01)


def test_figures_are_the_recording_rules_on_two_scrapes() -> None:
    sim = SimulatedPipeline(PROBS, ["vae"], seed=2, anomaly_targets_hz=TARGETS)
    text = "".join(_text(r) for r in sim.registries.values())
    old = parse_exposition(text)
    sim.step(400_000)
    new = parse_exposition("".join(_text(r) for r in sim.registries.values()))
    row = figures(old, new, 2.0, {"recorder": True})
    c = sim.recorder_counts()
    bx = BX_RATE_HZ  # the colliding-bunch crossing rate, 28.6 MHz
    assert row["now"]["bx_rate_hz"] == bx
    assert row["total"]["L1 rate"] == pytest.approx(c.accepted / c.events * bx)
    assert row["total"]["budget"] == 1e6
    for i, seed in enumerate(PROBS):
        assert row["seeds"][seed] == pytest.approx(c.counts[i] / c.events * bx)
        assert row["pure"][seed] == pytest.approx(c.pure[i] / c.events * bx)
        # unit weights: the binomial uncertainty
        p = c.counts[i] / c.events
        assert row["errors"][f"seeds/{seed}"] == pytest.approx(bx * math.sqrt(p * (1 - p) / c.events))
    # the anomaly chart: each anomaly seed before prescale, and its target
    assert set(row["anomaly"]) == {"AXO_Loose", "AXO_Loose" + TARGET, "AXO_Tight", "AXO_Tight" + TARGET}
    assert row["anomaly"]["AXO_Tight" + TARGET] == TARGETS["AXO_Tight"]
    assert row["anomaly"]["AXO_Loose"] == pytest.approx(c.raw[2] / c.events * bx)
    assert row["throughput"]["recorder"] == pytest.approx(200_000)
    assert 0.004 < row["latency"]["software end to end p50"] < row["latency"]["software end to end p99"] < 0.1
    # log-normal(0, 1.5) scores: median 1 (within the bucket's width, a quarter decade)
    assert 0.56 < row["scores"]["vae/p50"] < 1.78
    assert row["workers"]["alive"] == 2
    assert row["problems"]["lost events"] == 0


def test_figures_of_weighted_events_are_weighted_fractions() -> None:
    """Events weighted log-uniformly in [0.1, 10]: every rate is Σw(kept)/Σw × the crossing
    rate, exactly as the recorder summed them, with var(p) = Σw²(x − p)²/(Σw)²."""
    sim = SimulatedPipeline(PROBS, ["vae"], seed=5, weights=(0.1, 10.0), anomaly_targets_hz=TARGETS)
    old = parse_exposition("".join(_text(r) for r in sim.registries.values()))
    sim.step(300_000)
    new = parse_exposition("".join(_text(r) for r in sim.registries.values()))
    row = figures(old, new, 1.5, {"recorder": True})
    w = sim.recorder_counts().weights
    c = sim.recorder_counts()
    bx = BX_RATE_HZ
    assert row["total"]["L1 rate"] == pytest.approx(w.accepted / w.events * bx, rel=1e-12)
    p = w.accepted / w.events
    var = ((1 - p) ** 2 * w.accepted_sq + p * p * (w.events_sq - w.accepted_sq)) / w.events ** 2
    assert row["errors"]["total/L1 rate"] == pytest.approx(bx * math.sqrt(var), rel=1e-9)
    assert row["now"]["effective_events"] == pytest.approx(w.events ** 2 / w.events_sq)
    assert row["now"]["effective_events"] < 0.8 * c.events  # the weights spread: fewer effective events
    for i, seed in enumerate(PROBS):
        assert row["seeds"][seed] == pytest.approx(w.counts[i] / w.events * bx, rel=1e-12)
        assert row["pure"][seed] == pytest.approx(w.pure[i] / w.events * bx, rel=1e-12)
        # the weighted fraction is not the count fraction (weights drawn per event)...
        assert row["seeds"][seed] != pytest.approx(c.counts[i] / c.events * bx, rel=1e-6)
        # ...but estimates the same probability, within 5 of its uncertainties
        assert abs(row["seeds"][seed] - PROBS[seed] * bx) < 5 * row["errors"][f"seeds/{seed}"]
    assert row["anomaly"]["AXO_Loose"] == pytest.approx(w.raw[2] / w.events * bx, rel=1e-12)


def test_weighted_rate_of_unit_weights_is_the_binomial_and_an_empty_seed_one_effective_event() -> None:
    rate, err = weighted_rate(30, 30, 10_000, 10_000, 28.61e6)
    assert rate == 30 / 10_000 * 28.61e6
    assert err == pytest.approx(28.61e6 * math.sqrt(0.003 * 0.997 / 10_000), rel=1e-12)
    # the same events each counted twice (weight 2): the same rate and uncertainty
    assert weighted_rate(60, 120, 20_000, 40_000, 28.61e6) == pytest.approx((rate, err), rel=1e-12)
    assert weighted_rate(0, 0, 10_000, 10_000, 28.61e6) == (0.0, 28.61e6 / 10_000)
    assert all(math.isnan(v) for v in weighted_rate(0, 0, 0, 0, 28.61e6))


def test_log_ranges_are_whole_decades_around_the_values() -> None:
    assert log_range([[450.0, 3800.0], [None, 0.0], [110e3]]) == [100.0, 1e6]
    assert log_range([[1e5]]) == [1e4, 1e6]  # a decade either side of a single power of ten
    assert log_range([[None], [0.0]]) is None


def test_every_chart_names_families_some_stage_exports() -> None:
    by = exported_by()
    for chart in CHARTS:
        assert chart["sources"], chart["id"]
        assert set(chart["sources"]) <= set(by), (chart["id"], set(chart["sources"]) - set(by))


def test_without_a_crossing_rate_there_are_no_rates() -> None:
    """A page scraping only the supervisor (no menu, no crossing rate) shows no rate at all,
    rather than one at an assumed 40 MHz."""
    sim = SimulatedPipeline(PROBS, ["vae"], seed=2)
    text = {stage: _text(r) for stage, r in sim.registries.items()}
    cut = "".join(t for t in text.values()).replace("darktrigger_bx_rate_hz", "other_gauge")
    old = parse_exposition(cut)
    sim.step(50_000)
    cut = "".join(_text(r) for r in sim.registries.values()).replace("darktrigger_bx_rate_hz", "other_gauge")
    row = figures(old, parse_exposition(cut), 1.0, {"recorder": True})
    assert "L1 rate" not in row.get("total", {})
    assert "seeds" not in row
    assert "bx_rate_hz" not in row["now"]


def _text(reg: Any) -> str:
    from prometheus_client import generate_latest

    return str(generate_latest(reg).decode())


@pytest.fixture
def live() -> Iterator[tuple[LiveServer, SimulatedPipeline]]:
    """A simulated pipeline fed at ~400 k events/s on real ports, and the live page on it."""
    sim = SimulatedPipeline(PROBS, ["vae", "ae"], seed=4, anomaly_targets_hz=TARGETS)
    targets = sim.serve()
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            sim.step(20_000)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    server = serve_live(targets, "127.0.0.1", 0, interval_s=0.5)
    try:
        yield server, sim
    finally:
        stop.set()
        feeder.join(5)
        server.close()
        sim.close()


def _series_when(server: LiveServer, points: int, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(server.url + "/api/series", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        full = all(any(v is not None for v in s) for c in data["charts"] for s in c["series"].values()
                   if c["id"] != "problems")
        if len(data["t"]) >= points and full:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"the live page had {len(data['t'])} points after {timeout_s} s: {data}")
        time.sleep(0.2)


def test_api_series_has_every_chart_with_sensible_figures(live: tuple[LiveServer, SimulatedPipeline]) -> None:
    server, sim = live
    data = _series_when(server, 6)
    charts = {c["id"]: c for c in data["charts"]}
    assert list(charts) == ["total", "seeds", "anomaly", "pure", "scores-vae", "scores-ae", "latency",
                            "throughput", "workers", "problems"]
    assert set(charts["seeds"]["series"]) == set(PROBS)
    assert list(charts["anomaly"]["series"]) == ["AXO_Loose", "AXO_Loose" + TARGET, "AXO_Tight", "AXO_Tight" + TARGET]
    assert all(t["up"] for t in data["targets"].values()), data["targets"]
    # the 5 s window's rate of a seed firing 1 % of events: 1 % × 28.6 MHz, within its statistics
    last = [v for v in charts["seeds"]["series"]["AXO_Loose"] if v is not None][-1]
    assert last == pytest.approx(0.01 * BX_RATE_HZ, rel=0.1)
    assert data["errors"]["seeds/AXO_Loose"] > 0
    assert charts["total"]["series"]["budget"][-1] == 1e6
    # rates on log axes whose range holds the budget and the lowest seed
    assert all(charts[k]["log"] for k in ("total", "seeds", "anomaly", "pure"))
    lowest = min(v for s in charts["seeds"]["series"].values() for v in s if v)
    low, high = charts["total"]["y_range"]
    assert low <= lowest
    assert high > 1e6
    assert data["over_budget"] is False  # about 430 kHz against 1 MHz
    assert charts["total"]["sources"]["darktrigger_accepted_weight_total"] == ["recorder"]
    assert charts["throughput"]["unit"] == "events/s"
    with urllib.request.urlopen(server.url + "/", timeout=5) as resp:
        page = resp.read().decode()
    assert "static/uPlot.iife.min.js" in page
    assert "http" not in page.split("<footer>")[0]  # no CDN
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "live.js", "live.css"):
        with urllib.request.urlopen(f"{server.url}/static/{name}", timeout=5) as resp:
            assert resp.status == 200
            assert len(resp.read()) > 500


def test_the_page_survives_stages_that_are_not_up_yet() -> None:
    server = serve_live({"recorder": f"127.0.0.1:{free_port()}"}, "127.0.0.1", 0, interval_s=0.2)
    try:
        server.page.tick()
        with urllib.request.urlopen(server.url + "/api/series", timeout=5) as resp:
            data = json.loads(resp.read())
        assert resp.status == 200
        assert data["targets"]["recorder"]["up"] is False
        assert "Connection refused" in data["targets"]["recorder"]["error"]
    finally:
        server.close()


def _chromium(*args: str, url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=4000",
                           *args, url], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: `make sysdeps` installs it")
def test_the_page_in_headless_chromium_shows_non_empty_charts(
        live: tuple[LiveServer, SimulatedPipeline], tmp_path: Path) -> None:
    server, _ = live
    data = _series_when(server, 8)
    expected = [c["id"] for c in data["charts"]]
    dom = _chromium("--dump-dom", url=server.url + "/", tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    drawn = dict(re.findall(r'id="chart-([\w-]+)" data-points="(\d+)"', dom.stdout))
    assert list(drawn) == expected, dom.stdout[:3000]
    assert all(int(n) > 0 for n in drawn.values()), drawn
    assert dom.stdout.count('class="uplot') == len(expected)  # a uPlot canvas in every chart

    shot = tmp_path / "live_page.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1400,1700", url=server.url + "/", tmp=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.exists(), run.stderr[-2000:]
    from matplotlib.image import imread

    img = imread(shot)[..., :3]
    assert img.shape[:2] == (1700, 1400)
    colours = np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 50  # lines, labels and legends, not a blank page
    keep = Path(os.environ.get("DARKTRIGGER_ARTIFACTS", Path(tempfile.gettempdir()) / "darktrigger-artifacts"))
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "live_page.png")


def test_monitor_serve_command_shows_a_topology_s_stages(tmp_path: Path) -> None:
    """``darktrigger monitor serve`` against stages on the topology's metrics ports."""
    from darktrigger.daq.cli import main
    from darktrigger.monitoring.metrics import metrics_ports

    base = free_port_block(20)
    sim = SimulatedPipeline(PROBS, ["vae"], seed=1)
    sim.serve(ports=metrics_ports(base, 2))
    sim.step(50_000)
    port = free_port()
    done: list[int] = []
    cmd = threading.Thread(target=lambda: done.append(main([
        "monitor", "serve", "--config", str(write_metrics_topology(tmp_path, {"base_port": base})), "--port", str(port),
        "--duration", "4"])))
    cmd.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            sim.step(20_000)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/series", timeout=2) as resp:
                    data = json.loads(resp.read())
                if len(data["t"]) >= 2 and all(t["up"] for t in data["targets"].values()):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the page never saw every stage up"
            time.sleep(0.2)
        assert set(data["targets"]) == set(metrics_ports(base, 2))
    finally:
        cmd.join(10)
        sim.close()
    assert done == [0]
