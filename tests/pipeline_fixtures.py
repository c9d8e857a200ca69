"""A small pipeline set-up for the DAQ tests: toy events, a briefly trained VAE, a
calibrated menu, a topology on free loopback ports, and the offline answer to compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from darktrigger.daq.trigger.menu import Menu, calibrate_menu
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.daq.stages import ScorerStage, SourceStage, TriggerStage
from darktrigger.daq.topology import Topology, free_tcp_ports
from darktrigger.replay.generators import GENERATORS
from darktrigger.replay.storage import write_events

MENU = {
    "name": "test",
    "bx_rate_mhz": 40,
    "budget_khz": 2000,
    "models": {"vae": {"path": "models/vae", "variant": "mu2"}},
    "seeds": [
        {"name": "SingleMu22", "type": "single_mu", "pt_min": 22, "eta_max": 2.4},
        {"name": "SingleMu7", "type": "single_mu", "pt_min": 7, "prescale": 7},
        {"name": "DoubleEG_25_12", "type": "double_eg", "pt_min": [25, 12]},
        {"name": "HTT360", "type": "ht", "ht_min": 360},
        {"name": "ETM90", "type": "met", "met_min": 90},
        {"name": "AXO_Loose", "type": "anomaly", "model": "vae", "rate_khz": 400},
        {"name": "AXO_Tight", "type": "anomaly", "model": "vae", "rate_khz": 100},
    ],
}


free_ports = free_tcp_ports


def make_setup(root: Path, n_bkg: int = 60_000) -> Path:
    """Events, model and calibrated menu under ``root``; returns ``root``."""
    toy = GENERATORS.get("toy")()
    bkg = next(toy.generate("sm_mix", n_bkg, seed=11, batch_size=n_bkg))
    sig = next(toy.generate("ato4l", 5_000, seed=12, batch_size=5_000))
    write_events(root / "bkg.h5", bkg)
    write_events(root / "sig.h5", sig)
    from darktrigger.models import get_scorer

    vae = get_scorer("vae")
    vae.fit(bkg[:20_000], epochs=1, batch_size=512, seed=0)
    vae.save(root / "models" / "vae")
    menu = Menu.from_dict(MENU, where=str(root / "menu.yaml"), base_dir=root)
    calibrate_menu(menu, bkg[20_000:]).to_yaml(root / "menu.yaml")
    return root


def write_topology(root: Path, name: str = "topology.yaml", **overrides: Any) -> Path:
    ports = free_ports(4)
    topo: dict[str, Any] = {
        "run": 3,
        "output": f"out-{name.split('.')[0]}",
        "menu": "menu.yaml",
        "batch_size": 4096,
        "source": {"mix": {"bkg.h5": 0.99, "sig.h5": 0.01}, "loop": True, "events": 100_000, "seed": 5},
        "workers": {"count": 2, "prefetch": 2},
        "endpoints": {k: f"tcp://127.0.0.1:{p}" for k, p in
                      zip(("dispatch", "acks", "trigger", "recorder"), ports, strict=True)},
        "reliability": {"worker_timeout_s": 1.0, "heartbeat_s": 0.1},
        "metrics": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(topo.get(key), dict):
            topo[key] = {**topo[key], **value}
        else:
            topo[key] = value
    path = root / name
    path.write_text(yaml.safe_dump(topo))
    return path


def free_metrics_base(workers: int = 2) -> int:
    """A metrics.base_port whose ports (base…base+3, base+10…base+10+workers) are all free now."""
    from tests.test_monitoring import _free_port_block

    return _free_port_block(10 + workers)


def offline(topo: Topology, events: int) -> tuple[np.ndarray, MenuCounts]:
    """What the pipeline must record: the accepted event numbers (sorted) and the counts,
    from the same replay, scored and decided in this process."""
    menu = Menu.from_yaml(topo.menu)
    scorer, trigger = ScorerStage.from_menu(menu), TriggerStage(menu)
    counts = MenuCounts.for_menu(menu)
    ids = []
    for _, batch in SourceStage(topo, max_events=events):
        scored, _ = scorer.process(batch)
        accepted, decision = trigger.process(scored)
        counts.add(decision)
        ids.append(accepted.columns["event"])
    return np.sort(np.concatenate(ids)), counts


def recorded_ids(topo: Topology) -> np.ndarray:
    from darktrigger.replay.storage import NativeFile

    with NativeFile(topo.output / "events.h5") as f:
        return np.sort(f.read(0, len(f)).columns["event"]) if len(f) else np.zeros(0, np.uint64)
