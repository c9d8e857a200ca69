"""Test helpers shipped with the package: free ports, a small pipeline set-up, topologies
on free loopback ports, and the offline answer a run must match.

The DAQ and monitoring tests and the benchmarks use them; so can a user's own checks of
a pipeline. Event batches and spec-conform input files are :mod:`darktrigger.replay.testing`'s.

    >>> from pathlib import Path
    >>> from darktrigger.daq.topology import Topology
    >>> root = make_setup(Path("pipeline"), n_bkg=2_000, model=False)  # toy events, object seeds
    >>> topo = Topology.from_yaml(write_topology(root))
    >>> ids, counts = offline(topo, 5_000)    # what a run of 5,000 events must record
    >>> counts.events, len(ids) == counts.accepted
    (5000, True)
    >>> len(set(free_ports(4)))
    4
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from darktrigger.daq.topology import ENDPOINT_NAMES, Topology
from darktrigger.daq.trigger.menu import Menu, calibrate_menu
from darktrigger.daq.trigger.rates import MenuCounts

#: The test menu: CMS-like object seeds (one prescaled) and two anomaly seeds on a VAE,
#: calibrated by :func:`make_setup` to 400 and 100 kHz.
TEST_MENU: dict[str, Any] = {
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


# -- ports ------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A tcp port free on ``host`` right now."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct tcp ports free on ``host`` right now (held together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_block(n: int, host: str = "127.0.0.1") -> int:
    """A port ``base`` such that ``base`` … ``base + n - 1`` are all free on ``host`` now."""
    for _ in range(50):
        base = free_port(host)
        if base + n > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError(f"no block of {n} free ports on {host} in 50 tries")


def free_metrics_base(workers: int = 2) -> int:
    """A ``metrics.base_port`` whose ports (base … base+3, base+10 … base+10+workers) are free now."""
    return free_port_block(10 + workers)


# -- a pipeline set-up ------------------------------------------------------------------
def make_setup(root: Path, n_bkg: int = 60_000, *, model: bool = True) -> Path:
    """Toy events (``bkg.h5``: ``sm_mix``, ``sig.h5``: 5,000 ``ato4l``) and ``menu.yaml``
    under ``root``; returns ``root``.

    With ``model`` (the default), a VAE is trained for one epoch on 20,000 background
    events (``n_bkg`` must be larger) and the menu is :data:`TEST_MENU` with its anomaly
    seeds calibrated on the rest; without, the menu holds the object seeds only: no
    model, no training, a set-up in a second.
    """
    from darktrigger.replay.generators import GENERATORS
    from darktrigger.replay.storage import write_events

    root.mkdir(parents=True, exist_ok=True)
    toy = GENERATORS.get("toy")()
    bkg = next(toy.generate("sm_mix", n_bkg, seed=11, batch_size=n_bkg))
    sig = next(toy.generate("ato4l", 5_000, seed=12, batch_size=5_000))
    write_events(root / "bkg.h5", bkg)
    write_events(root / "sig.h5", sig)
    where = str(root / "menu.yaml")
    if not model:
        objects = {**{k: v for k, v in TEST_MENU.items() if k != "models"},
                   "seeds": [s for s in TEST_MENU["seeds"] if s["type"] != "anomaly"]}
        Menu.from_dict(objects, where=where).to_yaml(root / "menu.yaml")
        return root
    from darktrigger.models import get_scorer

    vae = get_scorer("vae")
    vae.fit(bkg[:20_000], epochs=1, batch_size=512, seed=0)
    vae.save(root / "models" / "vae")
    menu = Menu.from_dict(TEST_MENU, where=where, base_dir=root)
    calibrate_menu(menu, bkg[20_000:]).to_yaml(root / "menu.yaml")
    return root


def write_topology(root: Path, name: str = "topology.yaml", **overrides: Any) -> Path:
    """A topology for :func:`make_setup`'s files on free loopback ports: run 3, output
    ``out-<name>``, the mixture bkg 0.99 / sig 0.01 looped, 100,000 events, batches of
    4,096, two workers, quick worker timeouts, metrics off. ``overrides`` replace
    top-level keys; a mapping given for a mapping key updates it."""
    topo: dict[str, Any] = {
        "run": 3,
        "output": f"out-{name.split('.')[0]}",
        "menu": "menu.yaml",
        "batch_size": 4096,
        "source": {"mix": {"bkg.h5": 0.99, "sig.h5": 0.01}, "loop": True, "events": 100_000, "seed": 5},
        "workers": {"count": 2, "prefetch": 2},
        "endpoints": {k: f"tcp://127.0.0.1:{p}" for k, p in
                      zip(ENDPOINT_NAMES, free_ports(len(ENDPOINT_NAMES)), strict=True)},
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


def write_metrics_topology(root: Path, metrics: dict[str, Any], dispatch_port: int = 5550) -> Path:
    """``root/topology.yaml`` with the given ``metrics:`` section, two workers and the
    default endpoints (``dispatch`` on ``dispatch_port``): for the commands that read a
    topology's metrics without starting its stages (``darktrigger monitor``).

        >>> from darktrigger.daq.topology import Topology
        >>> Topology.from_yaml(write_metrics_topology(Path("."), {"base_port": 9600})).metrics.base_port
        9600
    """
    path = root / "topology.yaml"
    path.write_text(yaml.safe_dump({
        "menu": "menu.yaml", "source": {"files": ["a.h5"]}, "workers": {"count": 2},
        "endpoints": {"dispatch": f"tcp://127.0.0.1:{dispatch_port}", "acks": "tcp://127.0.0.1:5551",
                      "trigger": "tcp://127.0.0.1:5552", "recorder": "tcp://127.0.0.1:5553"},
        "metrics": metrics}))
    return path


# -- what a run must record -------------------------------------------------------------
def offline(topo: Topology, events: int) -> tuple[np.ndarray, MenuCounts]:
    """What the pipeline must record: the accepted event numbers (sorted) and the counts,
    from the same replay, scored and decided in this process."""
    from darktrigger.daq.stages import ScorerStage, SourceStage, TriggerStage

    menu = Menu.from_yaml(topo.menu)
    scorer, trigger = ScorerStage.from_menu(menu), TriggerStage(menu)
    counts = MenuCounts.for_menu(menu)
    ids = []
    for _, batch in SourceStage(topo, max_events=events):
        scored, _ = scorer.process(batch)
        accepted, decision = trigger.process(scored)
        counts.add(decision, weights=scored.columns["weight"].astype(np.float64))  # as the recorder counts
        ids.append(accepted.columns["event"])
    return np.sort(np.concatenate(ids)), counts


def check_against_offline(topo: Topology, summary: Any) -> None:
    """The exactness contract of a finished run (a :class:`~darktrigger.daq.summary.RunSummary`):
    nothing lost or duplicated, every event in recorded once, and the recorded events and
    the menu's counts equal to :func:`offline` on the same events. An ``AssertionError``
    naming what differs otherwise."""
    assert summary.events_lost == 0, f"events lost: {summary}"
    assert summary.events_duplicated == 0, f"events duplicated: {summary}"
    assert summary.events_in is not None, "the summary has no source count"
    assert summary.events_accepted + summary.events_rejected + summary.events_invalid == summary.events_in
    expected_ids, expected = offline(topo, summary.events_in)
    got = recorded_ids(topo)
    assert len(np.unique(got)) == len(got), "an event was recorded twice"
    np.testing.assert_array_equal(got, expected_ids)
    assert summary.menu.counts.tolist() == expected.counts.tolist(), "the menu's counts differ from offline"
    assert summary.menu.events == expected.events


def recorded_ids(topo: Topology) -> np.ndarray:
    """The event numbers (sorted) in the run's ``events.h5``."""
    from darktrigger.replay.storage import NativeFile

    with NativeFile(topo.output / "events.h5") as f:
        return np.sort(f.read(0, len(f)).columns["event"]) if len(f) else np.zeros(0, np.uint64)


__all__ = ["TEST_MENU", "check_against_offline", "free_metrics_base", "free_port", "free_port_block", "free_ports", "make_setup",
           "offline", "recorded_ids", "write_metrics_topology", "write_topology"]
