"""The shipped Run-3-like example menu: CMS's seeds at CMS's thresholds, the AXO working
points, counted at the colliding-bunch rate against the Run-3 budget."""

from __future__ import annotations

import pytest

from darktrigger.daq.trigger.menu import Menu
from darktrigger.daq.trigger.menus import example_menu
from darktrigger.daq.trigger.seeds import AnomalySeed

#: (name, type, keys) of every seed, as cms-l1-dpg/L1MenuRun3's 2024 menu names them
SEEDS = [
    ("SingleMu22", "single_mu", {"pt_min": 22, "eta_max": 2.4}),
    ("DoubleMu_15_7", "double_mu", {"pt_min": [15, 7], "eta_max": 2.4}),
    ("SingleEG36er2p5", "single_eg", {"pt_min": 36, "eta_max": 2.5}),
    ("SingleIsoEG30er2p1", "single_eg", {"pt_min": 30, "eta_max": 2.1}),
    ("DoubleEG_25_12_er2p5", "double_eg", {"pt_min": [25, 12], "eta_max": 2.5}),
    ("SingleJet180", "single_jet", {"pt_min": 180}),
    ("DoubleJet150er2p5", "double_jet", {"pt_min": [150, 150], "eta_max": 2.5}),
    ("HTT280er", "ht", {"ht_min": 280, "jet_pt_min": 30, "jet_eta_max": 2.4}),
    ("HTT360er", "ht", {"ht_min": 360, "jet_pt_min": 30, "jet_eta_max": 2.4}),
    ("ETMHF90", "met", {"met_min": 90}),
    ("ETMHF100", "met", {"met_min": 100}),
    ("AXO_VLoose", "anomaly", {"model": "vae", "rate_khz": 3.8}),
    ("AXO_Loose", "anomaly", {"model": "vae", "rate_khz": 2.2}),
    ("AXO_Nominal", "anomaly", {"model": "vae", "rate_khz": 1.5}),
    ("AXO_Tight", "anomaly", {"model": "vae", "rate_khz": 1.1}),
    ("AXO_VTight", "anomaly", {"model": "vae", "rate_khz": 0.45}),
    ("ZeroBias", "zero_bias", {}),
]


@pytest.fixture(scope="module")
def menu() -> Menu:
    return Menu.from_yaml(example_menu())


def test_the_menu_has_the_listed_seeds_in_order(menu: Menu) -> None:
    assert [(s.name, s.seed_type, s.config()) for s in menu.seeds] == SEEDS


def test_only_zero_bias_is_prescaled(menu: Menu) -> None:
    prescales = dict(zip(menu.names, menu.prescales, strict=True))
    assert prescales.pop("ZeroBias") == 17581  # the 2p0E34 column's ZeroBias prescale
    assert set(prescales.values()) == {1}


def test_crossing_rate_budget_and_one_anomaly_model(menu: Menu) -> None:
    assert menu.colliding_bunches == 2544
    assert menu.bx_rate_mhz == pytest.approx(2544 * 11.2455e-3, rel=1e-9)  # colliding bunches × f_rev
    assert menu.budget_khz == 110
    assert list(menu.models) == ["vae"]
    assert menu.models["vae"].variant == "mu2"
    assert all(isinstance(s, AnomalySeed) and s.model == "vae" for s in menu.anomaly_seeds)
    assert menu.uncalibrated == ["AXO_VLoose", "AXO_Loose", "AXO_Nominal", "AXO_Tight", "AXO_VTight"]


def test_the_header_says_what_is_cms_and_what_is_not() -> None:
    header = "\n".join(line for line in example_menu().read_text().splitlines() if line.startswith("#"))
    for phrase in ("cms-l1-dpg/L1MenuRun3", "2p0E34", "no isolation bit", "SingleTau120er2p1",
                   "no taus", "Placeholders", "28.61 MHz", "110 kHz"):
        assert phrase in header, phrase


def test_menu_example_writes_the_shipped_menu_and_never_overwrites(tmp_path, capsys) -> None:
    from darktrigger.daq.cli import main

    out = tmp_path / "menu.yaml"
    assert main(["menu", "example", "--out", str(out)]) == 0
    assert out.read_text() == example_menu().read_text()
    assert Menu.from_yaml(out).seeds[0].name == "SingleMu22"
    out.write_text("# mine\n")
    capsys.readouterr()
    assert main(["menu", "example", "--out", str(out)]) == 2
    assert "menu.yaml: exists; give --force to replace it" in capsys.readouterr().err
    assert out.read_text() == "# mine\n"
    assert main(["menu", "example", "--out", str(out), "--force"]) == 0
    capsys.readouterr()
    assert main(["menu", "example"]) == 0  # stdout: the YAML only
    assert capsys.readouterr().out == example_menu().read_text()
