"""docs/METRICS.md is the table the code generates, and it tells the truth about which stage
exports which family (issue 19, point 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from darktrigger.daq.cli import main
from darktrigger.daq.launch import stage_metrics
from darktrigger.daq.topology import Topology
from darktrigger.daq.trigger.menu import Menu
from darktrigger.monitoring.catalogue import families, markdown
from darktrigger.monitoring.metrics import StageMetrics

DOC = Path(__file__).resolve().parents[1] / "docs" / "METRICS.md"


def test_metrics_md_is_current() -> None:
    assert DOC.read_text() == markdown(), "run `darktrigger monitor metrics-doc --out docs/METRICS.md`"


def test_the_command_writes_the_shipped_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "METRICS.md"
    assert main(["monitor", "metrics-doc", "--out", str(out)]) == 0
    assert out.read_text() == DOC.read_text()
    assert f"wrote {out}" in capsys.readouterr().out


def _exported(registry: CollectorRegistry) -> set[str]:
    return {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}


@pytest.mark.parametrize("stage", ["source", "scorer-0", "trigger", "recorder"])
def test_every_family_a_stage_serves_is_in_the_table_under_that_stage(stage: str) -> None:
    topo = Topology.from_dict({"menu": "m.yaml", "source": {"files": ["a.h5"]}})
    menu = Menu.from_dict({"budget_khz": 100, "seeds": [{"name": "MET90", "type": "met", "met_min": 90}]})
    metrics, server = stage_metrics(topo, menu, stage, serve=False)
    assert server is None
    assert metrics is not None
    documented = {f.name for f in families() if stage.replace("-0", "-N") in f.stages}
    served = _exported(metrics.registry)
    assert served
    assert served <= documented, f"{stage} serves {sorted(served - documented)} that docs/METRICS.md omits"


def test_the_supervisors_families_are_in_the_table() -> None:
    registry = CollectorRegistry()
    StageMetrics(registry, "supervisor", version="x")
    documented = {f.name for f in families() if "supervisor" in f.stages}
    assert _exported(registry) == documented


def test_per_seed_counts_are_the_recorders_and_latencies_say_software() -> None:
    rows = {f.name: f for f in families()}
    assert rows["darktrigger_seed_events_total"].stages == ("recorder",)
    assert "trigger" not in rows["darktrigger_seed_accepts_total"].stages
    latencies = [name for name in rows if "latency" in name]
    assert latencies
    assert all(name.startswith("darktrigger_software_") for name in latencies), latencies
    assert all(rows[name].unit == "s" for name in latencies)


def test_the_recorder_exports_the_menu_s_crossing_rate_budget_and_anomaly_targets() -> None:
    """What the live page and the dashboard draw the rates against comes from the menu: its
    crossing rate (colliding bunches by default, not 40 MHz), its budget and each anomaly
    seed's rate_khz; every stage that reads the menu exports the crossing rate."""
    from darktrigger.replay.lhc import COLLIDING_BX_RATE_MHZ

    topo = Topology.from_dict({"menu": "m.yaml", "source": {"files": ["a.h5"]}})
    menu = Menu.from_dict({"budget_khz": 110, "models": {"vae": {"path": "models/vae"}}, "seeds": [
        {"name": "MET90", "type": "met", "met_min": 90},
        {"name": "AXO_Nominal", "type": "anomaly", "model": "vae", "rate_khz": 1.5},
        {"name": "AXO_Tight", "type": "anomaly", "model": "vae", "rate_khz": 1.1}]})
    for stage in ("source", "scorer-0", "trigger", "recorder"):
        metrics, _ = stage_metrics(topo, menu, stage, serve=False)
        assert metrics is not None
        get = metrics.registry.get_sample_value
        assert get("darktrigger_bx_rate_hz") == COLLIDING_BX_RATE_MHZ * 1e6, stage
        assert get("darktrigger_rate_budget_hz") == 110e3, stage
    assert get("darktrigger_anomaly_seed_target_rate_hz", {"seed": "AXO_Nominal"}) == 1.5e3
    assert get("darktrigger_anomaly_seed_target_rate_hz", {"seed": "AXO_Tight"}) == 1.1e3
    assert get("darktrigger_anomaly_seed_target_rate_hz", {"seed": "MET90"}) is None
    assert "darktrigger_anomaly_seed_target_rate_hz" in {f.name for f in families() if "recorder" in f.stages}
