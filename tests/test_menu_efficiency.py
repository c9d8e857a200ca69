"""A signal's efficiency per seed, unique efficiency and what the anomaly seeds add:
``SignalEfficiency`` on hand-made decisions, and ``darktrigger menu efficiency`` on files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.daq.trigger.decision import Decision
from darktrigger.daq.trigger.efficiency import (
    SignalEfficiency,
    format_efficiency,
    signal_efficiency,
)
from darktrigger.daq.trigger.menu import Menu, add_scores, load_scorers
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.generators import GENERATORS
from darktrigger.replay.readers import open_events
from darktrigger.replay.storage import write_events

NAMES = ("SingleMu22", "HTT280er", "AXO_Loose", "AXO_Tight")
ANOMALY = [False, False, True, True]


def _decision(kept: np.ndarray) -> Decision:
    bits = (kept.astype(np.uint64) << np.arange(kept.shape[1], dtype=np.uint64)).sum(axis=1).astype(np.uint64)
    return Decision(raw=bits, bits=bits, names=NAMES)


def test_efficiencies_of_hand_made_decisions() -> None:
    kept = np.array([  # SingleMu22, HTT280er, AXO_Loose, AXO_Tight
        [1, 0, 0, 0],   # the muon seed alone
        [1, 1, 0, 0],   # two conventional seeds: unique for neither
        [0, 0, 1, 1],   # only anomaly seeds: what they add
        [0, 0, 1, 0],   # only anomaly seeds
        [1, 0, 1, 0],   # the anomaly seed and a conventional one: not added
        [0, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ], bool)
    eff = SignalEfficiency(NAMES, ANOMALY, "ato4l").add(_decision(kept))
    e, err = eff.efficiencies()
    assert e.tolist() == [3 / 8, 2 / 8, 3 / 8, 1 / 8]
    assert err.tolist() == pytest.approx([math.sqrt(p * (1 - p) / 8) for p in e])
    u, _ = eff.unique_efficiencies()
    # SingleMu22 alone once (and with AXO once: anomaly bits do not count against it);
    # an anomaly seed's unique efficiency is where no conventional seed fired
    assert u.tolist() == [2 / 8, 1 / 8, 2 / 8, 1 / 8]
    together = eff.anomaly_efficiency()
    assert together["efficiency"] == 3 / 8
    assert together["adds"] == 2 / 8
    assert together["adds_err"] == pytest.approx(math.sqrt(0.25 * 0.75 / 8))
    table = format_efficiency({"ato4l": eff})
    assert "signal ato4l: 8 events" in table
    assert "anomaly seeds together: efficiency 37.500" in table
    assert "they add 25.000" in table


def test_weighted_efficiencies_are_weight_fractions_with_the_per_event_error() -> None:
    rng = np.random.default_rng(4)
    kept = rng.random((5000, 4)) < [0.3, 0.2, 0.05, 0.02]
    w = rng.exponential(1.0, 5000)
    eff = SignalEfficiency(NAMES, ANOMALY)
    for lo in range(0, 5000, 1300):  # in batches: the sums add up
        eff.add(_decision(kept[lo:lo + 1300]), weights=w[lo:lo + 1300])
    e, err = eff.efficiencies()
    for i in range(4):
        x = kept[:, i].astype(float)
        p = (w @ x) / w.sum()
        assert e[i] == pytest.approx(p, rel=1e-12)
        assert err[i] == pytest.approx(math.sqrt(np.sum(w**2 * (x - p) ** 2)) / w.sum(), rel=1e-9)
    adds = kept[:, 2:].any(axis=1) & ~kept[:, :2].any(axis=1)
    assert eff.anomaly_efficiency()["adds"] == pytest.approx((w @ adds) / w.sum(), rel=1e-12)
    again = SignalEfficiency.from_dict(json.loads(json.dumps(eff.to_dict())))
    assert again.to_dict() == eff.to_dict()
    with pytest.raises(ConfigError, match="finite and >= 0"):
        eff.add(_decision(kept[:2]), weights=np.array([1.0, np.nan]))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small AE, a menu with object and anomaly seeds beside it, a signal and zero bias."""
    from darktrigger.models import get_scorer

    d = tmp_path_factory.mktemp("efficiency")
    gen = GENERATORS.get("toy")()
    for name, process, n, seed in [("zb", "zero_bias", 20_000, 1), ("ato4l", "ato4l", 3000, 2)]:
        write_events(d / f"{name}.h5", next(gen.generate(process, n, seed=seed, batch_size=n)),
                     provenance=gen.provenance(process, seed))
    ae = get_scorer("ae", hidden=[8], latent=2)
    ae.fit(open_events(d / "zb.h5").read_all()[:4000], epochs=1, batch_size=256, seed=0)
    ae.save(d / "models" / "ae")
    menu = {"budget_khz": 110, "models": {"ae": {"path": "models/ae"}}, "seeds": [
        {"name": "SingleMu22", "type": "single_mu", "pt_min": 22, "eta_max": 2.4},
        {"name": "DoubleMu_15_7", "type": "double_mu", "pt_min": [15, 7], "eta_max": 2.4},
        {"name": "SingleEG36er2p5", "type": "single_eg", "pt_min": 36, "eta_max": 2.5},
        {"name": "AD_Loose", "type": "anomaly", "model": "ae", "rate_khz": 200},
        {"name": "AD_Tight", "type": "anomaly", "model": "ae", "rate_khz": 50},
    ]}
    (d / "menu.yaml").write_text(json.dumps(menu))
    assert main(["menu", "calibrate", "--menu", str(d / "menu.yaml"), "--zero-bias", str(d / "zb.h5"),
                 "--out", str(d / "cal.yaml")]) == 0
    return d


def test_the_command_prints_what_the_library_counts(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = setup
    capsys.readouterr()
    assert main(["menu", "efficiency", "--menu", str(d / "cal.yaml"), "--signal", f"ato4l={d / 'ato4l.h5'}",
                 "--zero-bias", str(d / "zb.h5"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # JSON only on stdout
    # by hand: score, decide, count the signal's events kept by each seed
    menu = Menu.from_yaml(d / "cal.yaml")
    batch = add_scores(open_events(d / "ato4l.h5").read_all(), load_scorers(menu))
    decision = menu.decide(batch)
    kept = np.stack([decision.fired(i) for i in range(len(menu))], axis=1)
    n = len(batch)
    seeds = report["signals"]["ato4l"]["seeds"]
    assert [s["name"] for s in seeds] == list(menu.names)
    assert [s["efficiency"] for s in seeds] == (kept.sum(axis=0) / n).tolist()
    conventional = kept[:, :3]
    for i, s in enumerate(seeds):
        others = np.delete(conventional, i, axis=1) if i < 3 else conventional
        assert s["unique_efficiency"] == np.count_nonzero(kept[:, i] & ~others.any(axis=1)) / n
    adds = kept[:, 3:].any(axis=1) & ~conventional.any(axis=1)
    assert report["signals"]["ato4l"]["anomaly_seeds"]["adds"] == np.count_nonzero(adds) / n
    assert 0 < report["signals"]["ato4l"]["anomaly_seeds"]["efficiency"] <= 1
    assert max(s["efficiency"] for s in seeds[:3]) > 0.1  # ato4l has muons: the muon seeds keep it
    assert report["zero_bias"]["events"] == 20_000
    assert report["bx_rate_mhz"] == pytest.approx(28.6086, abs=1e-4)
    # the same, as a table
    assert main(["menu", "efficiency", "--menu", str(d / "cal.yaml"), "--signal", f"ato4l={d / 'ato4l.h5'}",
                 "--signal", f"again={d / 'ato4l.h5'}"]) == 0
    out = capsys.readouterr().out
    assert "signal ato4l: 3,000 events" in out
    assert "signal again: 3,000 events" in out
    assert "anomaly seeds together: efficiency" in out
    direct = signal_efficiency(menu, d / "ato4l.h5", signal="ato4l")
    assert direct.to_dict()["seeds"] == [{k: v for k, v in s.items() if k != "file"} for s in seeds]


def test_the_command_names_bad_arguments(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = setup
    base = ["menu", "efficiency", "--menu", str(d / "cal.yaml")]
    assert main(base) == 2
    assert "at least one --signal NAME=FILE" in capsys.readouterr().err
    assert main([*base, "--signal", "ato4l"]) == 2
    assert "NAME=FILE" in capsys.readouterr().err
    assert main([*base, "--signal", f"s={d / 'missing.h5'}"]) == 2
    assert "missing.h5: no such file" in capsys.readouterr().err
    assert main(["menu", "efficiency", "--menu", str(d / "menu.yaml"), "--signal", f"s={d / 'ato4l.h5'}"]) == 2
    assert "menu calibrate" in capsys.readouterr().err  # uncalibrated anomaly seeds
