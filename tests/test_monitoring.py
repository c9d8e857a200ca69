"""Monitoring: the stages' metrics, their exposition, ports and the topology's metrics section."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from darktrigger.daq.testing import free_port, write_metrics_topology
from darktrigger.monitoring.config import MetricsConfig, port_in_use, scrape_config
from darktrigger.monitoring.errors import MonitoringError
from darktrigger.monitoring.exposition import Server, serve
from darktrigger.monitoring.metrics import (
    LATENCY_BUCKETS_S,
    SCORE_BUCKETS,
    StageMetrics,
    WeightSums,
    metrics_ports,
)

OPENMETRICS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
               "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends
SEEDS = ["SingleMu22", "DoubleEG_25_12", "AXO_Loose"]


def _buckets(reg: CollectorRegistry, name: str, labels: dict[str, str]) -> tuple[list[float], float, float]:
    """(cumulative bucket counts, sum, count) of one histogram series in a registry."""
    bounds = [*map(str, [])]
    counts = []
    for fam in reg.collect():
        for s in fam.samples:
            if s.name == f"{name}_bucket" and all(s.labels.get(k) == v for k, v in labels.items()):
                bounds.append(s.labels["le"])
                counts.append(s.value)
    total = reg.get_sample_value(f"{name}_sum", labels)
    count = reg.get_sample_value(f"{name}_count", labels)
    assert total is not None
    assert count is not None
    order = np.argsort([float(b) for b in bounds])
    return [counts[i] for i in order], total, count


# -- vectorised histograms against prometheus_client's own, value by value ---------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_score_histogram_equals_per_value_reference(dtype: type) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([
        10 ** rng.uniform(-6, 5, 20_000),                 # below, across and above the buckets
        np.asarray(SCORE_BUCKETS),                         # exactly on every bound (le includes it)
        np.nextafter(np.asarray(SCORE_BUCKETS), np.inf),   # just above every bound
        [0.0, -0.0, -1.0, 1e-30, 1e30],                    # zero, negatives, tiny and huge
    ])
    if np.issubdtype(dtype, np.integer):  # integer scores (an HT in GeV): cast as doubles
        values = np.concatenate([rng.integers(-3, 40_000, 5_000), np.asarray(SCORE_BUCKETS[14:])])
    values = values.astype(dtype)
    reg, ref_reg = CollectorRegistry(), CollectorRegistry()
    m = StageMetrics(reg, "scorer-0", models=["vae"])
    ref = Histogram("ref_score", "reference", buckets=SCORE_BUCKETS, registry=ref_reg)
    for chunk in np.array_split(values, 7):  # several batches
        m.scores("vae", chunk)
    for v in values.tolist():
        ref.observe(float(v))
    got, got_sum, got_count = _buckets(reg, "darktrigger_anomaly_score", {"model": "vae"})
    want, want_sum, want_count = _buckets(ref_reg, "ref_score", {})
    assert got == want
    assert got_count == want_count == len(values)
    assert got_sum == pytest.approx(want_sum, rel=1e-6)  # summed in float32 per batch


def test_score_histogram_keeps_nan_out_and_inf_in_the_top_bucket() -> None:
    reg = CollectorRegistry()
    m = StageMetrics(reg, "scorer-0", models=["vae"])
    m.scores("vae", np.array([1.0, np.nan, np.inf, 2.0], np.float32))
    counts, total, count = _buckets(reg, "darktrigger_anomaly_score", {"model": "vae"})
    assert count == 3
    assert counts[-1] == 3
    assert total == 3.0
    assert counts[-2] == 2  # the inf is only in +Inf


def test_end_to_end_latency_weighted_equals_per_event_reference() -> None:
    rng = np.random.default_rng(5)
    reg, ref_reg = CollectorRegistry(), CollectorRegistry()
    m = StageMetrics(reg, "recorder", seeds=SEEDS)
    ref = Histogram("ref_latency", "reference", buckets=LATENCY_BUCKETS_S, registry=ref_reg)
    for _ in range(200):
        seconds, events = float(rng.exponential(0.01)), int(rng.integers(1, 50))
        m.end_to_end(seconds, events)
        for _ in range(events):
            ref.observe(seconds)
    got, got_sum, got_count = _buckets(reg, "darktrigger_software_end_to_end_latency_seconds", {})
    want, want_sum, want_count = _buckets(ref_reg, "ref_latency", {})
    assert got == want
    assert got_count == want_count
    assert got_sum == pytest.approx(want_sum, rel=1e-9)


def test_recorder_counts_per_seed_and_total() -> None:
    reg = CollectorRegistry()
    m = StageMetrics(reg, "recorder", seeds=SEEDS, budget_hz=100e3, bx_rate_hz=40e6)
    m.decisions(4096, np.array([12, 3, 40]), np.array([2, 3, 40]), np.array([1, 2, 37]), 44)
    m.decisions(100, np.array([1, 0, 0]), np.array([1, 0, 0]), np.array([1, 0, 0]), 1)
    get = reg.get_sample_value
    assert get("darktrigger_seed_events_total", {"seed": "SingleMu22"}) == 13
    assert get("darktrigger_seed_accepts_total", {"seed": "SingleMu22"}) == 3
    assert get("darktrigger_seed_pure_accepts_total", {"seed": "AXO_Loose"}) == 37
    assert get("darktrigger_recorded_input_events_total") == 4196
    assert get("darktrigger_accepted_events_total") == 45
    assert get("darktrigger_rate_budget_hz") == 100e3
    assert get("darktrigger_bx_rate_hz") == 40e6
    with pytest.raises(MonitoringError, match="3 arrays of 3"):
        m.decisions(10, np.zeros(2), np.zeros(3), np.zeros(3), 0)
    # unit weights: every weighted counter equals its count
    assert get("darktrigger_recorded_input_weight_total") == 4196
    assert get("darktrigger_recorded_input_weight_squared_total") == 4196
    assert get("darktrigger_accepted_weight_total") == 45
    assert get("darktrigger_seed_weighted_events_total", {"seed": "SingleMu22"}) == 13
    assert get("darktrigger_seed_weighted_accepts_squared_total", {"seed": "SingleMu22"}) == 3
    assert get("darktrigger_seed_weighted_pure_accepts_total", {"seed": "AXO_Loose"}) == 37


def test_recorder_weighted_counters_take_the_batch_s_weight_sums() -> None:
    """A batch of 4 events with weights (1, 3, 0.5, 0.5): SingleMu22 fires on events 0 and 1 and
    keeps 1 (prescale), AXO_Loose fires and keeps event 2, alone; the sums are exact."""
    reg = CollectorRegistry()
    m = StageMetrics(reg, "recorder", seeds=["SingleMu22", "AXO_Loose"], bx_rate_hz=28.61e6)
    w = WeightSums(events=5.0, events_sq=10.5, accepted=3.5, accepted_sq=9.25,
                   raw=np.array([4.0, 0.5]), raw_sq=np.array([10.0, 0.25]),
                   counts=np.array([3.0, 0.5]), counts_sq=np.array([9.0, 0.25]),
                   pure=np.array([3.0, 0.5]), pure_sq=np.array([9.0, 0.25]))
    m.decisions(4, np.array([2, 1]), np.array([1, 1]), np.array([1, 1]), 2, weights=w)
    m.decisions(4, np.array([2, 1]), np.array([1, 1]), np.array([1, 1]), 2, weights=w)
    get = reg.get_sample_value
    assert get("darktrigger_recorded_input_events_total") == 8
    assert get("darktrigger_recorded_input_weight_total") == 10.0
    assert get("darktrigger_recorded_input_weight_squared_total") == 21.0
    assert get("darktrigger_accepted_weight_total") == 7.0
    assert get("darktrigger_accepted_weight_squared_total") == 18.5
    assert get("darktrigger_seed_weighted_events_total", {"seed": "SingleMu22"}) == 8.0
    assert get("darktrigger_seed_weighted_events_squared_total", {"seed": "SingleMu22"}) == 20.0
    assert get("darktrigger_seed_weighted_accepts_total", {"seed": "SingleMu22"}) == 6.0
    assert get("darktrigger_seed_weighted_accepts_squared_total", {"seed": "AXO_Loose"}) == 0.5
    assert get("darktrigger_seed_weighted_pure_accepts_total", {"seed": "AXO_Loose"}) == 1.0
    assert get("darktrigger_seed_weighted_pure_accepts_squared_total", {"seed": "SingleMu22"}) == 18.0
    assert get("darktrigger_seed_accepts_total", {"seed": "SingleMu22"}) == 2  # the counts stay counts
    assert get("darktrigger_bx_rate_hz") == 28.61e6
    # a negative or NaN sum is refused, and nothing moves
    for bad in ({"events": -1.0}, {"raw": np.array([np.nan, 0.5])}):
        with pytest.raises(MonitoringError, match="finite and >= 0"):
            m.decisions(4, np.array([2, 1]), np.array([1, 1]), np.array([1, 1]), 2,
                        weights=dataclasses.replace(w, **bad))
    with pytest.raises(MonitoringError, match="6 arrays of 2"):
        m.decisions(4, np.array([2, 1]), np.array([1, 1]), np.array([1, 1]), 2,
                    weights=dataclasses.replace(w, pure_sq=np.zeros(3)))
    assert get("darktrigger_recorded_input_events_total") == 8
    assert get("darktrigger_recorded_input_weight_total") == 10.0


def test_only_stages_that_read_the_menu_export_the_crossing_rate() -> None:
    """The supervisor reads no menu: it must not export a crossing rate beside the menu's
    (the page and the rules take the largest over the stages)."""
    reg = CollectorRegistry()
    StageMetrics(reg, "supervisor")
    assert reg.get_sample_value("darktrigger_bx_rate_hz") is None
    with pytest.raises(MonitoringError, match="colliding-bunch crossing rate"):
        StageMetrics(CollectorRegistry(), "source", bx_rate_hz=0.0)
    with pytest.raises(MonitoringError, match="colliding-bunch crossing rate"):
        StageMetrics(CollectorRegistry(), "source", bx_rate_hz=float("nan"))


def test_every_figure_has_a_series_from_the_start() -> None:
    """Rates need a zero before the first increase: each stage's series exist at once."""
    reg = CollectorRegistry()
    for stage in ("source", "supervisor", "trigger"):
        StageMetrics(reg, stage)
    StageMetrics(reg, "recorder", seeds=SEEDS)
    StageMetrics(reg, "scorer-0", models=["vae"])
    text = generate_latest(reg).decode()
    for name in ("darktrigger_resent_batches_total", "darktrigger_inflight_batches",
                 "darktrigger_workers_alive", "darktrigger_workers_lost_total", "darktrigger_worker_restarts_total",
                 "darktrigger_lost_events_total", "darktrigger_recorded_input_events_total",
                 'darktrigger_seed_accepts_total{seed="AXO_Loose"}', 'darktrigger_anomaly_score_count{model="vae"}',
                 "darktrigger_software_end_to_end_latency_seconds_count", 'darktrigger_malformed_messages_total{stage="trigger"}',
                 'darktrigger_dropped_events_total{reason="invalid",stage="scorer-0"}', "darktrigger_build_info"):
        assert re.search(rf"^{re.escape(name)}[ {{]", text, re.M), name


def test_exposition_parses_follows_conventions_and_labels_stay_bounded() -> None:
    reg = CollectorRegistry()
    stages = {s: StageMetrics(reg, s, version="9.9") for s in ("source", "trigger", "supervisor")}
    rec = StageMetrics(reg, "recorder", seeds=SEEDS, budget_hz=1e5, seed_bands_hz={"SingleMu22": (1e3, 2e4)},
                       anomaly_targets_hz={"AXO_Loose": 4e5})
    sc = StageMetrics(reg, "scorer-0", models=["vae", "ae"])

    def series() -> set[tuple[str, frozenset[tuple[str, str]]]]:
        return {(s.name, frozenset(s.labels.items())) for f in text_string_to_metric_families(
            generate_latest(reg).decode()) for s in f.samples}

    rng = np.random.default_rng(0)
    for _ in range(3):
        for st in stages.values():
            st.batch(4096, 1e-4)
        stages["source"].resent(2)
        stages["source"].inflight(5)
        stages["source"].workers(2)
        stages["source"].worker_lost()
        stages["supervisor"].worker_restart()
        sc.scores("vae", rng.lognormal(size=4096).astype(np.float32))
        sc.scores("ae", rng.lognormal(size=4096).astype(np.float32))
        sc.dropped_events(3, "invalid")
        sc.malformed()
        rec.decisions(4096, np.ones(3, np.int64), np.ones(3, np.int64), np.ones(3, np.int64), 2)
        rec.end_to_end(0.01, 4096)
    before = series()
    for _ in range(20):  # more batches, more values: no new series (bounded labels)
        sc.scores("vae", 10 ** rng.uniform(-5, 6, 4096).astype(np.float32))
        rec.decisions(4096, np.ones(3, np.int64), np.ones(3, np.int64), np.ones(3, np.int64), 2)
        rec.end_to_end(float(rng.exponential()), 4096)
        stages["trigger"].batch(4096, float(rng.exponential()))
    rec.lost(0)
    after = series()
    assert after == before
    labels = {k for _, ls in after for k, _ in ls}
    assert labels <= {"stage", "seed", "model", "reason", "le", "version", "python"}
    names = {n for n, _ in after}
    assert all(n.startswith("darktrigger_") for n in names)
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), fam.name
        if fam.type in ("histogram", "gauge") and not fam.name.endswith(("_info", "_created")):
            assert fam.name.endswith(("_seconds", "_hz", "_batches", "_alive", "_score")), fam.name
    # and the OpenMetrics text Prometheus asks for parses too
    route_text = _scrape_once(reg, OPENMETRICS)
    om = {f.name for f in parse_openmetrics(route_text)}
    assert "darktrigger_seed_accepts" in om
    assert "darktrigger_anomaly_score" in om


def _scrape_once(reg: CollectorRegistry, accept: str) -> str:
    with serve(reg, "127.0.0.1", 0) as server:
        req = urllib.request.Request(server.url + "/metrics", headers={"Accept": accept})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
            return str(resp.read().decode())


def test_stages_share_a_registry_and_bad_calls_say_what_to_do() -> None:
    reg = CollectorRegistry()
    a, b = StageMetrics(reg, "scorer-0", models=["vae"]), StageMetrics(reg, "scorer-1", models=["vae"])
    a.batch(10, 0.001)
    b.batch(20, 0.001)
    assert reg.get_sample_value("darktrigger_events_total", {"stage": "scorer-1"}) == 20
    with pytest.raises(MonitoringError, match="model 'ae' was not declared"):
        a.scores("ae", np.ones(3, np.float32))
    with pytest.raises(MonitoringError, match="drop reason 'nan'"):
        a.dropped_events(1, "nan")
    with pytest.raises(MonitoringError, match="decisions\\(\\) needs the menu's seeds"):
        a.decisions(1, np.zeros(0), np.zeros(0), np.zeros(0), 0)
    with pytest.raises(MonitoringError, match="not the global REGISTRY"):
        StageMetrics(None, "x")  # type: ignore[arg-type]
    with pytest.raises(MonitoringError, match="unknown seed"):
        StageMetrics(CollectorRegistry(), "recorder", seeds=["A"], seed_bands_hz={"B": (0, 1)})


def test_metrics_ports() -> None:
    assert metrics_ports(9300, 2) == {"source": 9300, "trigger": 9301, "recorder": 9302, "supervisor": 9303,
                                      "scorer-0": 9310, "scorer-1": 9311}
    with pytest.raises(MonitoringError, match="past 65535"):
        metrics_ports(65530, 3)
    with pytest.raises(MonitoringError, match=">= 1024"):
        metrics_ports(80, 1)


# -- serving -----------------------------------------------------------------------------
def test_scrapes_during_start_up_and_shutdown_never_error() -> None:
    """A client scraping without pause while stages start, run and stop, five times over:
    every answer is 200 (or the connection is refused while nothing listens)."""
    port = free_port()
    statuses: list[int] = []
    refused = 0
    stop = threading.Event()

    def scraper() -> None:
        nonlocal refused
        while not stop.is_set():
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": OPENMETRICS})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    resp.read()
                    statuses.append(resp.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            except (urllib.error.URLError, ConnectionError):
                refused += 1

    threads = [threading.Thread(target=scraper) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            reg = CollectorRegistry()
            server = serve(reg, "127.0.0.1", port)        # served before the metrics exist...
            m = StageMetrics(reg, "recorder", seeds=SEEDS)  # ...registered while scrapes arrive
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                m.decisions(64, np.ones(3, np.int64), np.ones(3, np.int64), np.zeros(3, np.int64), 1)
                m.end_to_end(0.001, 64)
            server.close()
            time.sleep(0.05)  # nothing listens: refused connections are expected here
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert statuses
    assert set(statuses) == {200}, set(statuses)


def test_a_failing_collector_gets_the_last_good_answer_not_a_500() -> None:
    reg = CollectorRegistry()
    StageMetrics(reg, "trigger")
    calls = 0

    class Flaky:
        def collect(self) -> list[Metric]:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise RuntimeError("boom")
            return []

    reg.register(Flaky())
    with serve(reg, "127.0.0.1", 0) as server:
        first = urllib.request.urlopen(server.url + "/metrics", timeout=5).read()
        resp = urllib.request.urlopen(server.url + "/metrics", timeout=5)
        assert resp.status == 200
        assert resp.read() == first
        assert b"darktrigger_events_total" in first


def test_a_port_in_use_is_a_clear_error() -> None:
    with serve(CollectorRegistry(), "127.0.0.1", 0) as server:
        with pytest.raises(MonitoringError, match=f"cannot serve on 127.0.0.1:{server.port}.*base_port"):
            serve(CollectorRegistry(), "127.0.0.1", server.port)
        with pytest.raises(MonitoringError, match="the recorder stage's metrics port 127.0.0.1"):
            port_in_use("127.0.0.1", server.port, "the recorder stage's metrics port")
    assert isinstance(server, Server)


# -- the topology's metrics section and the scrape config ----------------------------------
def test_metrics_config_validates_and_finds_clashes() -> None:
    cfg = MetricsConfig.from_mapping({"base_port": 9400, "seed_bands_hz": {"A": [1, 2]}})
    assert cfg.seed_bands_hz == {"A": (1.0, 2.0)}
    assert cfg.enabled
    assert cfg.live_page
    with pytest.raises(MonitoringError, match=r"unknown key\(s\) \['port'\]"):
        MetricsConfig.from_mapping({"port": 1})
    with pytest.raises(MonitoringError, match="seed_bands_hz.A must be"):
        MetricsConfig.from_mapping({"seed_bands_hz": {"A": [2, 1]}})
    with pytest.raises(MonitoringError, match="the scorer-1 stage's metrics port 9411 .* is also endpoints.dispatch"):
        cfg.check(workers=2, taken={"dispatch": 9411})
    cfg.check(workers=1, taken={"dispatch": 9411})


def test_scrape_config_names_every_stage() -> None:
    cfg = MetricsConfig.from_mapping({"base_port": 9500})
    text = scrape_config(cfg.targets(3), job="darktrigger-run7", scrape_interval="2s", rule_dir="/r")
    assert '  - "/r/rules.yml"' in text
    assert 'job_name: "darktrigger-run7"' in text
    for stage, port in cfg.ports(3).items():
        assert f'- targets: ["127.0.0.1:{port}"]\n        labels: {{component: "{stage}"}}' in text
    with pytest.raises(MonitoringError, match="must start with 'darktrigger'"):
        scrape_config({}, job="pipeline")
    with pytest.raises(MonitoringError, match="Prometheus duration"):
        scrape_config({}, scrape_interval="1 second")


def test_monitor_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from darktrigger.daq.cli import main

    topo = write_metrics_topology(tmp_path, {"base_port": 9600})
    out = tmp_path / "prometheus.yml"
    assert main(["monitor", "config", "--config", str(topo), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("- targets:") == 6
    assert '"127.0.0.1:9611"' in text
    assert "monitoring/prometheus/alerts.yml" in text
    assert main(["monitor", "config", "--config", str(topo), "--scrape-interval", "5s"]) == 0
    assert "scrape_interval: 5s" in capsys.readouterr().out


def test_a_port_clash_in_the_topology_is_an_error_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from darktrigger.daq.cli import main
    from darktrigger.daq.topology import Topology
    from darktrigger.replay.errors import ConfigError

    topo = write_metrics_topology(tmp_path, {"base_port": 9700}, dispatch_port=9702)
    with pytest.raises(ConfigError, match="recorder stage's metrics port 9702 .* is also endpoints.dispatch"):
        Topology.from_yaml(topo)
    assert main(["monitor", "config", "--config", str(topo)]) == 2
    assert "port clash" in capsys.readouterr().err
    assert main(["monitor", "serve", "--config", str(topo), "--duration", "0"]) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_and_numpy_histograms_count_alike(dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """monitoring.fasthist (long batches) against the numpy path, bucket for bucket."""
    from darktrigger.monitoring import metrics

    rng = np.random.default_rng(5)
    values: np.ndarray = np.concatenate([10 ** rng.uniform(-6, 5, 30_000), np.asarray(SCORE_BUCKETS),
                             np.nextafter(np.asarray(SCORE_BUCKETS), np.inf),
                             [0.0, -0.0, -1.0, 1e-30, 1e30, np.inf, -np.inf, np.nan, 5e-324]]).astype(dtype)
    got = {}
    for minimum in (10**9, 1):  # numpy, then compiled
        monkeypatch.setattr(metrics, "FASTHIST_MIN_VALUES", minimum)
        reg = CollectorRegistry()
        StageMetrics(reg, "scorer-0", models=["vae"]).scores("vae", values)
        got[minimum] = _buckets(reg, "darktrigger_anomaly_score", {"model": "vae"})
    (b_np, s_np, c_np), (b_nb, s_nb, c_nb) = got[10**9], got[1]
    assert b_np == b_nb
    assert c_np == c_nb == len(values) - 1  # the NaN is counted nowhere
    assert s_nb == pytest.approx(s_np, rel=1e-6)


def test_the_recorder_s_weighted_counters_give_menu_counts_rates_and_errors() -> None:
    """StageMetrics fed a batch's MenuCounts (WeightSums.of) gives, through the live page's
    arithmetic, exactly MenuCounts's weighted rates and uncertainties, per seed and in total."""
    from darktrigger.daq.trigger.decision import Decision
    from darktrigger.daq.trigger.rates import MenuCounts
    from darktrigger.monitoring.live import weighted_rate

    rng = np.random.default_rng(8)
    names = ("SingleMu22", "ETMHF90", "AXO_Nominal")
    n = 5000
    fired = rng.random((n, 3)) < [0.02, 0.05, 0.01]
    kept = fired & (rng.random((n, 3)) < [1.0, 0.5, 1.0])  # ETMHF90 prescaled by about 2
    bits = (kept * (1 << np.arange(3))).sum(axis=1).astype(np.uint64)
    raw = (fired * (1 << np.arange(3))).sum(axis=1).astype(np.uint64)
    weights = rng.lognormal(0.0, 1.0, n)
    counts = MenuCounts(names, bx_rate_mhz=28.61).add(Decision(raw=raw, bits=bits, names=names), weights=weights)
    reg = CollectorRegistry()
    m = StageMetrics(reg, "recorder", seeds=list(names), bx_rate_hz=28.61e6)
    m.decisions(counts.events, counts.raw, counts.counts, counts.pure, counts.accepted, weights=WeightSums.of(counts))

    def get(name: str, labels: dict[str, str] | None = None) -> float:
        value = reg.get_sample_value(name, labels)
        assert value is not None, name
        return value

    all_w, all_w2 = get("darktrigger_recorded_input_weight_total"), get("darktrigger_recorded_input_weight_squared_total")
    assert all_w == pytest.approx(weights.sum(), rel=1e-12)
    for i, seed in enumerate(names):
        rate, err = weighted_rate(get("darktrigger_seed_weighted_accepts_total", {"seed": seed}),
                                  get("darktrigger_seed_weighted_accepts_squared_total", {"seed": seed}),
                                  all_w, all_w2, 28.61e6)
        assert rate == pytest.approx(counts.rates_hz[i], rel=1e-12), seed
        assert err == pytest.approx(counts.rate_uncertainties_hz[i], rel=1e-9), seed
        raw_rate, _ = weighted_rate(get("darktrigger_seed_weighted_events_total", {"seed": seed}), 0.0,
                                    all_w, all_w2, 28.61e6)
        assert raw_rate == pytest.approx(counts.raw_rates_hz[i], rel=1e-12), seed
    total, total_err = weighted_rate(get("darktrigger_accepted_weight_total"),
                                     get("darktrigger_accepted_weight_squared_total"), all_w, all_w2, 28.61e6)
    assert total == pytest.approx(counts.total_rate_hz, rel=1e-12)
    assert total_err == pytest.approx(counts.total_rate_uncertainty_hz, rel=1e-9)
