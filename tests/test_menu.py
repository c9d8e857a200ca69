"""The trigger menu: seeds on a hand-built batch, prescales, counts, calibration, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from darktrigger.daq.trigger.menu import Menu, calibrate_menu
from darktrigger.daq.trigger.menus import example_menu
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.daq.trigger.seeds import SEEDS, event_hash, prescale_pass, scalar_ht
from darktrigger.replay.errors import ConfigError, SchemaError
from darktrigger.replay.events import EventBatch

HAND_MENU = {
    "bx_rate_mhz": 40,
    "budget_khz": 100,
    "models": {"m": {"path": "m"}},
    "seeds": [
        {"name": "SingleMu22", "type": "single_mu", "pt_min": 22, "eta_max": 2.4},
        {"name": "DoubleMu_15_7", "type": "double_mu", "pt_min": [15, 7]},
        {"name": "SingleEG36", "type": "single_eg", "pt_min": 36, "eta_max": 2.5},
        {"name": "DoubleEG_25_12", "type": "double_eg", "pt_min": [25, 12], "eta_max": 2.5},
        {"name": "SingleJet180", "type": "single_jet", "pt_min": 180},
        {"name": "HT360", "type": "ht", "ht_min": 360},
        {"name": "MET90", "type": "met", "met_min": 90},
        {"name": "AD", "type": "anomaly", "model": "m", "threshold": 5.0},
    ],
}
MU, EG, JET = 5, 1, 9  # first slot of each object type


def hand_batch() -> EventBatch:
    """Ten events, each built to fire a known set of seeds (comments: the bits expected)."""
    obj = np.zeros((10, 19, 3), np.float32)
    score = np.zeros(10, np.float32)
    obj[0, MU] = (25, 0.5, 0)                                   # {SingleMu22}
    obj[1, MU:MU + 2] = [(16, 0, 0), (8, 1, 0)]                 # {DoubleMu}: 16 < 22
    obj[2, MU:MU + 2] = [(30, 0, 0), (10, -1, 0)]               # {SingleMu22, DoubleMu}
    obj[3, EG:EG + 3] = [(40, 3.0, 0), (26, 0, 0), (13, 0, 0)]  # {DoubleEG}: 40 GeV is at |eta| 3
    obj[4, JET:JET + 4] = [(200, 0.1, 0), (100, 1, 0), (70, 3, 0), (25, 0, 0)]  # {SingleJet}: HT 300
    obj[5, JET:JET + 3] = [(150, 0, 0), (150, 1, 0), (70, -2, 0)]  # HT 370 ...
    obj[5, 0] = (95, 0, 1)                                      # ... and MET: {HT360, MET90}
    score[6] = 6.0                                              # {AD}
    score[7] = 5.0                                              # {}: the threshold is strict
    obj[8, 0] = (90, 0, 0)                                      # MET exactly 90 ...
    obj[8, MU] = (22, 2.0, 0)                                   # ... muon exactly 22: {SingleMu22, MET90}
    obj[9, EG] = (40, 1.0, 0)                                   # {SingleEG36}
    return EventBatch.from_objects(obj, extra={"score/m": score})


EXPECTED_BITS = [{0}, {1}, {0, 1}, {3}, {4}, {5, 6}, {7}, set(), {0, 6}, {2}]


def test_hand_built_batch_counts_pure_and_overlaps_exactly():
    menu = Menu.from_dict(HAND_MENU)
    batch = hand_batch()
    decision = menu.decide(batch)
    assert decision.raw.dtype == np.uint64
    assert decision.bits.dtype == np.uint64
    assert decision.bits.tolist() == [sum(1 << i for i in s) for s in EXPECTED_BITS]
    assert np.array_equal(decision.raw, decision.bits)  # no prescales
    assert decision.accepted.tolist() == [bool(s) for s in EXPECTED_BITS]
    assert np.array_equal(menu.decide(dict(batch.columns)).bits, decision.bits)  # a plain mapping
    counts = MenuCounts.for_menu(menu).add(decision)
    assert counts.counts.tolist() == [3, 2, 1, 1, 1, 1, 2, 1]
    assert counts.raw.tolist() == counts.counts.tolist()
    assert counts.pure.tolist() == [1, 1, 1, 1, 1, 0, 0, 1]
    overlap = np.diag(counts.counts)
    for i, j in [(0, 1), (0, 6), (5, 6)]:
        overlap[i, j] = overlap[j, i] = 1
    assert counts.overlap.tolist() == overlap.tolist()
    assert counts.events == 10
    assert counts.accepted == 9
    assert counts.rates_hz.tolist() == [c * 4e6 for c in [3, 2, 1, 1, 1, 1, 2, 1]]
    assert counts.pure_rates_hz[0] == 4e6
    assert counts.total_rate_hz == 36e6
    assert counts.over_budget is True
    assert counts.rate_uncertainties_hz[0] == pytest.approx(40e6 * math.sqrt(0.3 * 0.7 / 10))
    table = counts.format_table()
    assert "SingleMu22" in table
    assert "OVER BUDGET" in table
    assert "pure Hz" in table
    assert "#0 SingleMu22" in counts.format_overlap()


def test_seed_helpers_match_the_definitions():
    batch = hand_batch()
    assert scalar_ht(batch.objects)[[4, 5]].tolist() == [300.0, 370.0]
    assert scalar_ht(batch.objects, jet_pt_min=20, jet_eta_max=5)[4] == 395.0
    assert {"single_mu", "double_mu", "single_eg", "double_eg", "single_jet", "ht", "met",
            "anomaly", "zero_bias"} <= set(SEEDS.names())


def test_counts_merge_and_json_round_trip():
    menu = Menu.from_dict(HAND_MENU)
    batch = hand_batch()
    whole = MenuCounts.for_menu(menu).add(menu.decide(batch))
    a = MenuCounts.for_menu(menu).add(menu.decide(batch[:4]))
    b = MenuCounts.for_menu(menu).add(menu.decide(batch[4:]))
    merged = a.merge(b)
    assert merged.to_dict() == whole.to_dict()
    again = MenuCounts.from_dict(json.loads(json.dumps(whole.to_dict())))
    assert again.to_dict() == whole.to_dict()
    other = Menu.from_dict({"seeds": [{"name": "Z", "type": "zero_bias"}]})
    with pytest.raises(ConfigError, match="cannot merge"):
        whole.merge(MenuCounts.for_menu(other))


def test_missing_columns_and_uncalibrated_seeds_are_named():
    menu = Menu.from_dict(HAND_MENU)
    with pytest.raises(SchemaError, match=r"seed 'AD'.*'score/m'"):
        menu.decide(hand_batch().without("score/m"))
    assert menu.required_columns == ["objects", "score/m"]
    prescaled = Menu.from_dict({"seeds": [{"name": "ZB", "type": "zero_bias", "prescale": 3}]})
    assert prescaled.required_columns == ["run", "lumi", "event"]
    with pytest.raises(SchemaError, match=r"seed 'ZB'.*'run'"):
        prescaled.decide({"objects": np.zeros((3, 19, 3), np.float32)})
    rate = Menu.from_dict({"models": {"m": {"path": "m"}},
                           "seeds": [{"name": "AD", "type": "anomaly", "model": "m", "rate_khz": 5}]})
    assert rate.uncalibrated == ["AD"]
    with pytest.raises(ConfigError, match="menu calibrate"):
        rate.decide({"score/m": np.zeros(3, np.float32)})


# -- prescales ------------------------------------------------------------------------
def identity(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"run": np.full(n, 7, np.uint32), "lumi": (1 + np.arange(n) // 1000).astype(np.uint32),
            "event": rng.permutation(np.arange(10**6, 10**6 + n)).astype(np.uint64)}


PRESCALED = {"seeds": [
    {"name": "ZB_7", "type": "zero_bias", "prescale": 7},
    {"name": "ZB_2a", "type": "zero_bias", "prescale": 2},
    {"name": "ZB_2b", "type": "zero_bias", "prescale": 2},
    {"name": "ZB_1p5", "type": "zero_bias", "prescale": 1.5},
    {"name": "ZB_off", "type": "zero_bias", "prescale": 0},
    {"name": "ZB_1", "type": "zero_bias"},
]}


def test_prescale_is_a_function_of_the_event_not_of_the_batch():
    menu = Menu.from_dict(PRESCALED)
    n = 60_000
    cols = identity(n)
    whole = menu.decide(cols).bits
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(np.arange(1, n), 40, replace=False))
    pieces = list(zip(np.r_[0, cuts], np.r_[cuts, n], strict=True))
    rng.shuffle(pieces)  # batches arrive out of order, from several workers
    bits = np.zeros(n, np.uint64)
    counts = MenuCounts.for_menu(menu)
    for lo, hi in pieces:
        decision = menu.decide({k: v[lo:hi] for k, v in cols.items()})
        bits[lo:hi] = decision.bits
        counts.add(decision)
    assert np.array_equal(bits, whole)
    assert counts.to_dict() == MenuCounts.for_menu(menu).add(menu.decide(cols)).to_dict()
    # the same event alone in a batch of its own
    one = {k: v[123:124] for k, v in cols.items()}
    assert menu.decide(one).bits[0] == whole[123]


def test_prescale_keeps_about_one_in_p_independently_per_seed():
    menu = Menu.from_dict(PRESCALED)
    n = 60_000
    counts = MenuCounts.for_menu(menu).add(menu.decide(identity(n, seed=1)))
    for i, p in enumerate([7, 2, 2, 1.5]):
        expected = n / p
        sigma = math.sqrt(n * (1 / p) * (1 - 1 / p))
        assert abs(counts.counts[i] - expected) < 5 * sigma, (i, counts.counts[i], expected)
    assert counts.counts[4] == 0
    assert counts.counts[5] == n
    assert counts.raw.tolist() == [n] * 6
    both = counts.overlap[1, 2]  # two prescale-2 seeds are independent: about n/4 together
    assert abs(both - n / 4) < 5 * math.sqrt(n * 0.25 * 0.75)
    # ZB_1 fires alone where no prescaled seed kept the event: (6/7)(1/2)(1/2)(1/3) of them
    alone = n * (6 / 7) * (1 / 2) * (1 / 2) * (1 / 3)
    assert counts.pure[:5].tolist() == [0] * 5
    assert abs(counts.pure[5] - alone) < 5 * math.sqrt(alone)


def test_prescale_hash_is_pinned():
    """A change of these values changes which events every prescaled seed keeps: the
    pipeline and offline rates would still agree, but earlier runs would not."""
    h = event_hash(np.array([1], np.uint32), np.array([2], np.uint32), np.array([3], np.uint64))
    assert h.dtype == np.uint64
    assert int(h[0]) == 0x16BCD815F36C35E2
    h = event_hash(np.ones(20, np.uint32), np.ones(20, np.uint32), np.arange(20, dtype=np.uint64))
    assert np.flatnonzero(prescale_pass(h, "ZeroBias", 4)).tolist() == [2, 4, 7, 10]
    assert prescale_pass(h, "X", 1).all()
    assert not prescale_pass(h, "X", 0).any()


# -- calibration ------------------------------------------------------------------------
def toy_zero_bias(n: int, seed: int) -> EventBatch:
    from darktrigger.replay.generators import GENERATORS

    batch = next(GENERATORS.get("toy")().generate("sm_mix", n, seed=seed, batch_size=n))
    st = batch.objects[:, :, 0].sum(axis=1, dtype=np.float32)  # a stand-in anomaly score
    return batch.with_columns(**{"score/st": st})


def test_calibration_gives_the_target_rate_within_the_binomial_uncertainty():
    menu = Menu.from_dict({"models": {"st": {"path": "unused"}}, "seeds": [
        {"name": "AD_100", "type": "anomaly", "model": "st", "rate_khz": 100},
        {"name": "AD_400", "type": "anomaly", "model": "st", "rate_khz": 400, "prescale": 2},
        {"name": "Fixed", "type": "anomaly", "model": "st", "threshold": 1e9},
    ]})
    calib, test = toy_zero_bias(50_000, seed=11), toy_zero_bias(50_000, seed=12)
    cal = calibrate_menu(menu, calib, source="toy")
    assert cal.uncalibrated == []
    assert cal.seed("Fixed").params["threshold"] == 1e9
    record = cal.seed("AD_100").params["calibration"]
    assert record["zero_bias"] == "toy"
    assert record["events"] == 50_000
    assert record["resolved"]
    bx_hz = menu.bx_rate_mhz * 1e6  # the colliding-bunch rate, 28.61 MHz
    allowed = [math.floor(rate / bx_hz * 50_000) for rate in (100e3, 400e3)]
    assert allowed == [174, 699]  # 50,000 x 100 kHz / 28.61 MHz = 174.8, and 699.1
    assert record["n_above"] == allowed[0]
    assert record["uncertainty"] > 0
    on_calib = MenuCounts.for_menu(cal).add(cal.decide(calib))
    assert on_calib.raw[:2].tolist() == allowed  # exactly the target on its own sample
    counts = MenuCounts.for_menu(cal).add(cal.decide(test))  # an independent sample
    for i, rate in enumerate([100e3, 400e3]):
        p = rate / bx_hz
        sigma = bx_hz * math.sqrt(p * (1 - p) * (1 / len(calib) + 1 / len(test)))
        assert abs(counts.raw_rates_hz[i] - rate) < 3 * sigma, (i, counts.raw_rates_hz[i])
    assert abs(counts.counts[1] - counts.raw[1] / 2) < 5 * math.sqrt(counts.raw[1] / 4)


# -- validation -------------------------------------------------------------------------
GOOD_SEED = "  - {name: SingleMu22, type: single_mu, pt_min: 22}\n"
MODELS = "models:\n  vae: {path: models/vae, variant: mu2}\n"
BAD_MENUS = {
    "unknown_type": ("seeds:\n  - {name: SM, type: single_muon, pt_min: 22}\n",
                     ["seed 'SM'", "'single_muon'", "did you mean 'single_mu'"]),
    "missing_threshold": ("seeds:\n  - {name: SM, type: single_mu}\n", ["seed 'SM'", "'pt_min'"]),
    "typo_key": ("seeds:\n  - {name: SM, type: single_mu, pt_mn: 22}\n",
                 ["seed 'SM'", "'pt_mn'", "did you mean 'pt_min'"]),
    "negative": ("seeds:\n  - {name: SM, type: single_mu, pt_min: -3}\n", ["seed 'SM'", "pt_min", "positive"]),
    "double_three": ("seeds:\n  - {name: DM, type: double_mu, pt_min: [1, 2, 3]}\n", ["seed 'DM'", "two thresholds"]),
    "too_many": ("seeds:\n" + "".join(f"  - {{name: S{i}, type: met, met_min: 50}}\n" for i in range(65)),
                 ["65 seeds", "at most 64"]),
    "duplicate": ("seeds:\n" + GOOD_SEED * 2, ["seed 'SingleMu22'", "duplicate"]),
    "undeclared_model": (MODELS + "seeds:\n  - {name: AXO, type: anomaly, model: vea, rate_khz: 5}\n",
                         ["seed 'AXO'", "'vea'", "not declared", "did you mean 'vae'"]),
    "anomaly_no_threshold": (MODELS + "seeds:\n  - {name: AXO, type: anomaly, model: vae}\n",
                             ["seed 'AXO'", "'threshold'", "'rate_khz'"]),
    "prescale": ("seeds:\n  - {name: SM, type: single_mu, pt_min: 22, prescale: 0.5}\n",
                 ["seed 'SM'", "prescale", ">= 1"]),
    "top_key": ("seed:\n" + GOOD_SEED, ["unknown key 'seed'", "did you mean 'seeds'"]),
    "no_seeds": ("bx_rate_mhz: 40\n", ["seeds must be a non-empty list"]),
    "bx_rate": ("bx_rate_mhz: fast\nseeds:\n" + GOOD_SEED, ["bx_rate_mhz", "positive"]),
    "both_rates": ("bx_rate_mhz: 40\ncolliding_bunches: 2544\nseeds:\n" + GOOD_SEED,
                   ["bx_rate_mhz", "colliding_bunches", "not both"]),
    "bunches": ("colliding_bunches: 4000\nseeds:\n" + GOOD_SEED, ["colliding_bunches", "3564", "4000"]),
    "backend": ("models:\n  vae: {path: v, backend: tensorflow}\nseeds:\n" + GOOD_SEED,
                ["model 'vae'", "backend", "onnxruntime"]),
    "model_path": ("models:\n  vae: {variant: mu2}\nseeds:\n" + GOOD_SEED, ["model 'vae'", "'path'"]),
    "no_name": ("seeds:\n  - {type: met, met_min: 50}\n", ["seed #1", "'name'"]),
    "not_yaml": ("seeds: [\n", ["not valid YAML"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MENUS))
def test_bad_menus_are_named_clearly(tmp_path, case):
    text, expected = BAD_MENUS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Menu.from_yaml(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, (part, message)


def test_the_crossing_rate_defaults_to_the_colliding_bunches():
    """2544 colliding bunch pairs × f_rev, not the 40 MHz of every bunch slot."""
    from darktrigger.replay.lhc import COLLIDING_BUNCHES, F_REV_HZ

    seeds = [{"name": "MET90", "type": "met", "met_min": 90}]
    default = Menu.from_dict({"seeds": seeds})
    assert default.bx_rate_mhz == COLLIDING_BUNCHES * F_REV_HZ / 1e6
    assert 28.60 < default.bx_rate_mhz < 28.61
    assert "28.61 MHz (2544 colliding bunches)" in default.describe()
    by_bunches = Menu.from_dict({"colliding_bunches": 1200, "seeds": seeds})
    assert by_bunches.bx_rate_mhz == 1200 * F_REV_HZ / 1e6
    assert by_bunches.to_dict()["colliding_bunches"] == 1200
    assert "bx_rate_mhz" not in by_bunches.to_dict()
    assert MenuCounts.for_menu(by_bunches).bx_rate_mhz == by_bunches.bx_rate_mhz
    assert "13.49 MHz (1200 colliding bunches)" in by_bunches.describe()
    in_mhz = Menu.from_dict({"bx_rate_mhz": 40, "seeds": seeds})
    assert in_mhz.describe().startswith("menu: 1 seeds at the crossing rate 40 MHz\n")
    table = MenuCounts.for_menu(default).format_table()
    assert "crossing rate 28.61 MHz" in table


def test_example_menu_is_shipped_and_valid():
    """Its seeds and rates are tests/test_example_menu.py's; here: it loads, resolves model
    paths beside itself, and is package data."""
    path = example_menu()
    menu = Menu.from_yaml(path)
    assert menu.anomaly_seeds
    assert all(m.path == path.parent / "models" / m.path.name for m in menu.models.values())
    assert menu.budget_khz is not None
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["darktrigger.daq.trigger.menus"]


def test_to_yaml_round_trip_keeps_seeds_and_rewrites_model_paths(tmp_path):
    menu = Menu.from_yaml(example_menu())
    out = menu.to_yaml(tmp_path / "sub" / "copy.yaml", header="a copy")
    assert out.read_text().startswith("# a copy\n")
    again = Menu.from_yaml(out)
    assert again.to_dict() == menu.to_dict()  # model paths resolve to the same directory
    assert again.prescales == menu.prescales
    assert again.names == menu.names


# -- command line -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_setup(tmp_path_factory):
    """Toy zero-bias files and a tiny VAE trained for a few seconds, beside a menu."""
    from darktrigger.daq.cli import main
    from darktrigger.models import get_scorer

    d = tmp_path_factory.mktemp("menu")
    for name, n, seed in [("zb", 20_000, 21), ("test", 20_000, 22)]:
        assert main(["generate", "--generator", "toy", "--process", "sm_mix", "--events", str(n),
                     "--seed", str(seed), "--out", str(d / f"{name}.h5"), "--no-progress"]) == 0
    from darktrigger.replay.readers import open_events

    train = open_events(d / "zb.h5").read_all()[:2000]
    vae = get_scorer("vae", hidden=[16, 8], latent=3)
    vae.fit(train, epochs=1, batch_size=256, seed=0)
    vae.save(d / "models" / "vae")
    menu = {
        "bx_rate_mhz": 40, "budget_khz": 5000,
        "models": {"vae": {"path": "models/vae", "variant": "mu2", "backend": "onnxruntime"}},
        "seeds": [
            {"name": "SingleMu22", "type": "single_mu", "pt_min": 22},
            {"name": "SingleMu7", "type": "single_mu", "pt_min": 7, "prescale": 20},
            {"name": "SingleEG36", "type": "single_eg", "pt_min": 36, "eta_max": 2.5},
            {"name": "HT200", "type": "ht", "ht_min": 200},
            {"name": "MET50", "type": "met", "met_min": 50, "prescale": 3},
            {"name": "AXO_Loose", "type": "anomaly", "model": "vae", "rate_khz": 400},
            {"name": "AXO_Tight", "type": "anomaly", "model": "vae", "rate_khz": 100},
        ],
    }
    import yaml

    (d / "menu.yaml").write_text(yaml.safe_dump(menu, sort_keys=False))
    return d


def test_cli_calibrate_then_rates_equals_decide_count_for_count(toy_setup, capsys):
    from darktrigger.daq.cli import main
    from darktrigger.models import load_model
    from darktrigger.replay.readers import open_events

    d = toy_setup
    assert main(["menu", "rates", "--menu", str(d / "menu.yaml"), "--events", str(d / "test.h5")]) == 2
    assert "menu calibrate" in capsys.readouterr().err
    assert main(["menu", "calibrate", "--menu", str(d / "menu.yaml"), "--zero-bias", str(d / "zb.h5"),
                 "--out", str(d / "cal" / "menu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "AXO_Tight" in out
    assert "calibrated menu written" in out
    cal = Menu.from_yaml(d / "cal" / "menu.yaml")
    assert cal.models["vae"].path.resolve() == (d / "models" / "vae").resolve()
    loose, tight = cal.seed("AXO_Loose"), cal.seed("AXO_Tight")
    assert loose.params["threshold"] < tight.params["threshold"]
    assert loose.params["rate_khz"] == 400
    assert loose.params["calibration"]["n_above"] == 200  # 1 % of 20,000 zero-bias events
    assert main(["menu", "rates", "--menu", str(d / "cal" / "menu.yaml"), "--events", str(d / "test.h5"),
                 "--overlaps", "--json", str(d / "rates.json")]) == 0
    out = capsys.readouterr().out
    assert "AXO_Loose" in out
    assert "total" in out
    assert "overlap" in out
    report = json.loads((d / "rates.json").read_text())

    # offline by hand: score once, then decide on batches split another way, in another order
    batch = open_events(d / "test.h5").read_all()
    scores = load_model(d / "models" / "vae", "onnxruntime", variant="mu2").score(batch)
    batch = batch.with_columns(**{"score/vae": scores})
    rng = np.random.default_rng(5)
    cuts = np.r_[0, np.sort(rng.choice(np.arange(2, len(batch) - 2), 9, replace=False)), len(batch)]
    pieces = [batch[lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
    counts = MenuCounts.for_menu(cal)
    for i in rng.permutation(len(pieces)):
        counts.add(cal.decide(pieces[i]))
    expected = counts.to_dict()
    assert report["events"] == expected["events"] == 20_000
    assert report["accepted"] == expected["accepted"]
    assert report["seeds"] == expected["seeds"]
    assert report["overlap"] == expected["overlap"]
    assert all(s["count"] > 0 for s in report["seeds"])  # every seed took part
    assert report["menu"] == str(d / "cal" / "menu.yaml")


def test_cli_help_has_examples(capsys):
    from darktrigger.daq.cli import main

    for action in ("calibrate", "rates", "check"):
        with pytest.raises(SystemExit) as info:
            main(["menu", action, "--help"])
        assert info.value.code == 0
        assert "darktrigger menu " + action in capsys.readouterr().out
    assert main(["menu", "check", "--menu", str(example_menu())]) == 0
    assert "AXO_VTight" in capsys.readouterr().out
