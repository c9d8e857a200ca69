"""A real Prometheus server on loopback scrapes a running pipeline every second.

Through its HTTP API, every recording rule and every query of the Grafana dashboard must
return data, and the trigger rates it reports must agree with the run's own counts within
5 %. Two pipelines: the stand-in one (known seed probabilities) and the real DAQ pipeline
(``darktrigger run``'s supervisor, every stage a process, metrics on).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from darktrigger.daq.summary import RunSummary
from darktrigger.daq.testing import free_port, free_port_block
from darktrigger.monitoring.config import PROMETHEUS_DIR, scrape_config
from darktrigger.monitoring.dashboard import expressions, fill_variables
from darktrigger.monitoring.simulate import BX_RATE_HZ, SimulatedPipeline

PROMETHEUS = shutil.which("prometheus")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed: `make sysdeps` installs Debian's package")]
#: the dashboard's "over budget" series: empty while the total is within its budget
OVER_BUDGET = "> on (job) max by (job) (darktrigger_rate_budget_hz"


class Prometheus:
    """``prometheus`` on 127.0.0.1:<free port>, storage in a temporary folder, stopped on exit."""

    def __init__(self, config: str, tmp: Path) -> None:
        self.port = free_port()
        (tmp / "prometheus.yml").write_text(config)
        self.log = open(tmp / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        assert PROMETHEUS is not None
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = tmp / "prometheus.log"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str, at: float | None = None) -> dict[str, float]:
        """{the series' labels as text: value} of an instant query."""
        return {json.dumps({k: v for k, v in s["metric"].items() if k != "__name__"}, sort_keys=True):
                float(s["value"][1]) for s in self.query(expr, at)}

    def wait_for(self, expr: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"no data for {expr} after {timeout_s} s")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def recording_rules() -> list[str]:
    return [r["record"] for g in yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
            for r in g["rules"]]


def every_query_has_data(prom: Prometheus, job: str, models: list[str], at: float | None = None, *,
                         over_budget: bool | None) -> None:
    """Every recording rule and dashboard query answers; the "over budget" series only when
    ``over_budget`` (False: it must be empty; None: not checked)."""
    missing = [r for r in recording_rules() if not prom.query(f'{r}{{job="{job}"}}', at)]
    for title, expr in expressions():
        if OVER_BUDGET in expr and not over_budget:
            if over_budget is False:
                assert not prom.query(fill_variables(expr, job=job), at), f"{title}: {expr} drawn within the budget"
            continue
        for model in models if "$model" in expr else models[:1]:
            if not prom.query(fill_variables(expr, job=job, model=model), at):
                missing.append(f"{title}: {fill_variables(expr, job=job, model=model)}")
    assert not missing, "no data for:\n" + "\n".join(missing)


@pytest.fixture
def simulated(tmp_path: Path) -> Iterator[tuple[SimulatedPipeline, Prometheus]]:
    sim = SimulatedPipeline({"SingleMu22": 3e-3, "ETM90": 2e-3, "AXO_Loose": 1e-2, "AXO_Tight": 2.5e-3},
                            ["vae", "ae"], seed=9, budget_hz=3e5, anomaly_targets_hz={"AXO_Loose": 2.9e5},
                            seed_bands_hz={"SingleMu22": (5e4, 1.5e5)}, weights=(0.2, 5.0))
    targets = sim.serve()
    prom = Prometheus(scrape_config(targets, job="darktrigger-sim", scrape_interval="1s"), tmp_path)
    try:
        yield sim, prom
    finally:
        prom.stop()
        sim.close()


def test_prometheus_on_the_stand_in_pipeline(simulated: tuple[SimulatedPipeline, Prometheus]) -> None:
    """Fed at a steady 100 k events/s: rules, dashboard queries and alerts from a real server."""
    sim, prom = simulated
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            sim.step(5_000)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        prom.wait_for('darktrigger:seed_rate_hz{job="darktrigger-sim"}')
        prom.wait_for('ALERTS{alertname="DarktriggerTotalRateOverBudget", alertstate="firing"}', timeout_s=90)
        every_query_has_data(prom, "darktrigger-sim", ["vae", "ae"], over_budget=True)
        rates = prom.value('darktrigger:seed_rate_hz{job="darktrigger-sim"}')
        errors = prom.value('darktrigger:seed_rate_uncertainty_hz{job="darktrigger-sim"}')
        total = prom.value('darktrigger:l1_rate_hz{job="darktrigger-sim"}')
        total_error = prom.value('darktrigger:l1_rate_uncertainty_hz{job="darktrigger-sim"}')
    finally:
        stop.set()
        feeder.join(5)
    w = sim.recorder_counts().weights  # weighted events: the rates are weighted fractions
    for i, seed in enumerate(sim.seeds):
        key = json.dumps({"job": "darktrigger-sim", "seed": seed}, sort_keys=True)
        want = w.counts[i] / w.events * BX_RATE_HZ
        assert rates[key] == pytest.approx(want, rel=0.05), seed
        # a 30 s window of ~100 k weighted events/s: a few per cent
        assert 0.002 * want < errors[key] < 0.05 * want, (seed, errors[key], want)
    assert list(total.values())[0] == pytest.approx(w.accepted / w.events * BX_RATE_HZ, rel=0.05)
    assert 0 < list(total_error.values())[0] < 0.05 * list(total.values())[0]
    firing = {s["metric"]["alertname"] for s in prom.query('ALERTS{alertstate="firing"}')}
    # 1.74 % of 28.6 MHz (500 kHz) is over the 300 kHz budget, and SingleMu22 at 86 kHz is inside its band
    assert "DarktriggerTotalRateOverBudget" in firing
    assert "DarktriggerSeedRateOutOfBand" not in firing


def test_prometheus_on_the_real_pipeline(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``darktrigger run``'s supervisor (every stage a process) with metrics on, paced to run
    ~25 s; Prometheus scrapes every stage each second; its rates agree with the run summary
    within 5 %."""
    from darktrigger.daq.supervisor import Supervisor
    from darktrigger.daq.testing import make_setup, write_topology
    from darktrigger.daq.topology import Topology

    root = make_setup(tmp_path_factory.mktemp("monitoring-pipeline"))
    base = free_port_block(20)
    path = write_topology(root, "monitored.yaml", source={"rate_hz": 100_000},
                          metrics={"enabled": True, "host": "127.0.0.1", "base_port": base, "live_page": True})
    topo = Topology.from_yaml(path)
    cfg = topo.metrics
    prom = Prometheus(scrape_config(cfg.targets(topo.workers.count), job="darktrigger-run"), root)
    sup = Supervisor(path, events=2_500_000)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = sup.run(timeout_s=150, install_signals=False)
        except BaseException as exc:  # shown below
            result["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    try:
        runner.start()
        prom.wait_for('darktrigger:seed_rate_hz{job="darktrigger-run"}', timeout_s=60)
        time.sleep(10)  # steady state: the 30 s windows fill with the run's own mix
        at = time.time()
        every_query_has_data(prom, "darktrigger-run", ["vae"], at, over_budget=None)
        page = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{cfg.ports(2)['supervisor']}/api/series",
                                                 timeout=5).read())
        assert page["t"]
        assert all(t["up"] for t in page["targets"].values()), page["targets"]
        rule_rates = prom.value('darktrigger:seed_rate_hz{job="darktrigger-run"}', at)
        rule_total = prom.value('darktrigger:l1_rate_hz{job="darktrigger-run"}', at)
        window_events = sum(prom.value('increase(darktrigger_recorded_input_events_total'
                                       '{job="darktrigger-run"}[30s])', at).values())
        runner.join(180)
        assert "summary" in result, f"the run did not finish: {result.get('error')!r}"
        # whole-run fractions from the last scraped counters
        last_accepts = prom.value('last_over_time(darktrigger_seed_accepts_total{job="darktrigger-run"}[5m])')
        last_seen = sum(prom.value('last_over_time(darktrigger_recorded_input_events_total'
                                   '{job="darktrigger-run"}[5m])').values())
    finally:
        if runner.is_alive():
            sup.drain()
            runner.join(60)
        prom.stop()
    summary: RunSummary = result["summary"]
    assert summary.events_lost == 0
    bx = summary.menu.bx_rate_mhz * 1e6  # the menu's crossing rate, as the stages export it
    seeds = {s["name"]: s for s in summary.menu.to_dict()["seeds"]}
    checked = 0
    for key, got in rule_rates.items():
        seed = json.loads(key)["seed"]
        want = seeds[seed]["rate_hz"]
        if want / bx * window_events >= 3000:  # 5 % is then > 2.7 σ of the window's own statistics
            assert got == pytest.approx(want, rel=0.05), (seed, got, want)
            checked += 1
    assert checked >= 2, rule_rates
    total = list(rule_total.values())[0]
    assert total == pytest.approx(summary.menu.total_rate_hz, rel=0.05), (
        f"total L1: Prometheus {total:,.0f} Hz, run summary {summary.menu.total_rate_hz:,.0f} Hz")
    for key, n in last_accepts.items():
        seed = json.loads(key)["seed"]
        if seeds[seed]["count"] >= 500:
            assert n / last_seen * bx == pytest.approx(seeds[seed]["rate_hz"], rel=0.05), seed
    assert not math.isnan(last_seen)
