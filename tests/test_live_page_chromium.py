"""The live page in headless Chromium on a Run-3-like menu (issue 14's acceptance): the total
rate on a log axis with the budget line, the anomaly seeds on a log axis against their targets.

The metrics come from :class:`darktrigger.monitoring.simulate.SimulatedPipeline`: real
registries on real ports, scraped by the real page, fed as the recorder feeds them, with
weighted events (a zero-bias stream's weights) at the colliding-bunch crossing rate. The
assertions read what the page's scripts wrote into the DOM once uPlot had drawn (each chart's
``data-*`` attributes: its axis scale and range, its series, the budget and the targets) and
compare it with ``/api/series``, never pixels. The screenshot is kept as
``live_page_run3.png`` in ``$DARKTRIGGER_ARTIFACTS`` (default: the system's temporary
folder's ``darktrigger-artifacts``) for a person to look at.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from darktrigger.monitoring.live import TARGET, LiveServer, serve_live
from darktrigger.monitoring.simulate import BX_RATE_HZ, SimulatedPipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: `make sysdeps` installs it")

#: the 2024 AXOL1TL working points (kHz), as the example menu's anomaly seeds are calibrated
AXO_KHZ = {"AXO_VLoose": 3.8, "AXO_Loose": 2.2, "AXO_Nominal": 1.5, "AXO_Tight": 1.1, "AXO_VTight": 0.45}
#: object seeds at rates of the order of CMS's unprescaled 2024 seeds (kHz)
OBJECT_KHZ = {"SingleMu22": 9.0, "SingleEG36er2p5": 12.0, "SingleJet180": 4.0, "HTT280er": 8.0, "ETMHF90": 3.0}
BUDGET_HZ = 110e3
TARGETS_HZ = {seed: khz * 1e3 for seed, khz in AXO_KHZ.items()}


class _Dom(HTMLParser):
    """Every element's attributes by id, and the text under each id'd element."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = a
            self.text.setdefault(a["id"], "")
        if tag not in ("br", "img", "meta", "link", "input", "col"):
            self._open.append(a.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident is not None:
                self.text[ident] += data


def _dom(html: str) -> _Dom:
    parser = _Dom()
    parser.feed(html)
    return parser


def _chromium(*args: str, url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
                           *args, url], capture_output=True, text=True, timeout=120)


def _run3_pipeline(budget_hz: float, seed: int) -> SimulatedPipeline:
    rates = {**OBJECT_KHZ, **AXO_KHZ}
    return SimulatedPipeline({s: khz * 1e3 / BX_RATE_HZ for s, khz in rates.items()}, ["axol1tl"], seed=seed,
                             budget_hz=budget_hz, weights=(0.5, 2.0), anomaly_targets_hz=TARGETS_HZ)


@pytest.fixture
def page() -> Iterator[tuple[LiveServer, SimulatedPipeline]]:
    """The stand-in pipeline fed ~400 k weighted events/s on real ports, the live page on it."""
    sim = _run3_pipeline(BUDGET_HZ, seed=11)
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            sim.step(20_000)

    feeder = threading.Thread(target=feed, daemon=True)
    server = serve_live(sim.serve(), "127.0.0.1", 0, interval_s=0.5)
    feeder.start()
    try:
        yield server, sim
    finally:
        stop.set()
        feeder.join(5)
        server.close()
        sim.close()


def _series(server: LiveServer, points: int, timeout_s: float = 30.0) -> dict[str, Any]:
    """/api/series once it has ``points`` rows and every seed has a rate."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(server.url + "/api/series", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        charts = {c["id"]: c for c in data["charts"]}
        seeds = charts["seeds"]["series"]
        if len(data["t"]) >= points and len(seeds) == len(OBJECT_KHZ) + len(AXO_KHZ) and all(
                any(v for v in s[-3:]) for s in seeds.values()):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"the live page had {len(data['t'])} points after {timeout_s} s: {data}")
        time.sleep(0.2)


def _last(column: list[float | None]) -> float:
    return next(v for v in reversed(column) if v is not None)


@pytest.mark.slow
def test_the_live_page_shows_the_budget_and_the_anomaly_seeds_on_log_axes(
        page: tuple[LiveServer, SimulatedPipeline], tmp_path: Path) -> None:
    server, _ = page
    data = _series(server, 14)  # 7 s: the 5 s window full
    charts = {c["id"]: c for c in data["charts"]}
    lowest_seed = min(_last(s) for s in charts["seeds"]["series"].values())

    run = _chromium("--dump-dom", url=server.url + "/", tmp=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    dom = _dom(run.stdout)
    for chart in ("total", "seeds", "anomaly", "pure"):
        el = dom.by_id[f"chart-{chart}"]
        assert el.get("data-drawn"), f"{chart}: uPlot never drew it"
        assert int(el["data-points"]) > 0, chart
        assert el["data-y-scale"] == "log", f"{chart}: the rates' axis is {el['data-y-scale']}"

    # the total: its rate and the budget as a line, on an axis spanning the budget and the lowest seed
    total = dom.by_id["chart-total"]
    assert json.loads(total["data-series"]) == ["budget", "L1 rate"]
    assert float(total["data-budget"]) == BUDGET_HZ
    assert float(total["data-y-max"]) >= BUDGET_HZ
    assert float(total["data-y-min"]) <= lowest_seed / 2  # a whole decade below: ~450 Hz → 100 Hz
    assert [float(total["data-y-min"]), float(total["data-y-max"])] == charts["total"]["y_range"]
    assert total["data-over-budget"] == "false"  # ~40 kHz of 110 kHz
    assert _last(charts["total"]["series"]["L1 rate"]) < BUDGET_HZ
    assert "(recorder)" in dom.text["chart-total"]  # it names the stage exporting its series

    # the anomaly seeds: each one beside its target, the targets the menu's rates
    anomaly = dom.by_id["chart-anomaly"]
    assert json.loads(anomaly["data-series"]) == [k for s in AXO_KHZ for k in (s, s + TARGET)]
    assert json.loads(anomaly["data-targets"]) == TARGETS_HZ
    assert float(anomaly["data-y-min"]) <= min(TARGETS_HZ.values())
    assert float(anomaly["data-y-max"]) >= max(TARGETS_HZ.values())
    assert "darktrigger_anomaly_seed_target_rate_hz (recorder)" in dom.text["chart-anomaly"]
    n_eff = data["now"]["effective_events"]  # of the last 5 s window
    for seed, target in TARGETS_HZ.items():  # calibrated: each seed's window rate within 5σ of its target
        rate = _last(charts["anomaly"]["series"][seed])
        sigma = BX_RATE_HZ * math.sqrt(target / BX_RATE_HZ / n_eff)
        assert abs(rate - target) < 5 * sigma, (seed, rate, target, sigma)

    # the header and the menu table: k events/s, the crossing rate, every seed's rate ± error
    now = dom.text["now"]
    assert " k events/s" in now
    assert "ev/s" not in now.replace("events/s", "")
    assert "28.61 MHz" in now
    assert "±" in now
    menu = dom.text["menu"]
    for seed in [*OBJECT_KHZ, *AXO_KHZ]:
        assert seed in menu
    assert menu.count("±") == len(OBJECT_KHZ) + len(AXO_KHZ)

    shot = tmp_path / "live_page_run3.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1400,2300", url=server.url + "/", tmp=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 50_000, run.stderr[-2000:]  # drawn charts, not an empty page
    keep = Path(os.environ.get("DARKTRIGGER_ARTIFACTS", Path(tempfile.gettempdir()) / "darktrigger-artifacts"))
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "live_page_run3.png")


@pytest.mark.slow
def test_a_total_over_its_budget_is_marked_red(tmp_path: Path) -> None:
    """The same menu against a 20 kHz budget: the page marks the total over budget."""
    sim = _run3_pipeline(20e3, seed=12)
    server = serve_live(sim.serve(), "127.0.0.1", 0, interval_s=0.5)
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            sim.step(20_000)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        data = _series(server, 6)
        assert data["over_budget"] is True
        run = _chromium("--dump-dom", url=server.url + "/", tmp=tmp_path)
    finally:
        stop.set()
        feeder.join(5)
        server.close()
        sim.close()
    assert run.returncode == 0, run.stderr[-2000:]
    dom = _dom(run.stdout)
    total = dom.by_id["chart-total"]
    assert total["data-over-budget"] == "true"
    assert float(total["data-budget"]) == 20e3
    assert float(total["data-y-min"]) <= 20e3 <= float(total["data-y-max"])
    assert "over" in dom.by_id["l1"]["class"].split()
    assert dom.by_id["now"]["data-over-budget"] == "true"
