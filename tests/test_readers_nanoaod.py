"""The NanoAOD reader against ROOT files written with uproot in NanoAOD's branch layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.events import SLOTS
from darktrigger.replay.readers import detect_format, open_events
from darktrigger.replay.readers.nanoaod import NanoAODReader
from darktrigger.replay.testing import nanoaod_collection, write_nanoaod
from darktrigger.replay.testing import nanoaod_collection as coll


def events(**overrides):
    """Three events: out-of-order muons, 5 electrons + 1 photon, 11 jets, one empty event."""
    branches = {
        "Muon": coll(pt=[[10, 30], [], [5]], eta=[[0.1, 0.2], [], [1]],
                     phi=[[0.3, 0.4], [], [0.5]]),
        "Electron": coll(pt=[[20], [1, 2, 3, 4, 5], []], eta=[[0.5], [0] * 5, []],
                         phi=[[-1], [0] * 5, []]),
        "Photon": coll(pt=[[25], [3.5], []], eta=[[-0.5], [0], []], phi=[[2], [0], []]),
        "Jet": coll(pt=[[100, 200], [float(i) for i in range(1, 12)], []],
                    eta=[[0, 1], [0] * 11, []], phi=[[0, 1], [0] * 11, []]),
        "MET_pt": np.array([50.0, 0.0, 10.0], np.float32),
        "MET_phi": np.array([1.0, 2.0, -3.0], np.float32),
        "run": np.array([1, 1, 2], np.uint32),
        "luminosityBlock": np.array([3, 3, 4], np.uint32),
        "event": np.array([7, 8, 2**40], np.uint64),
    }
    branches.update(overrides)
    return branches


@pytest.fixture
def nano(tmp_path):
    return write_nanoaod(tmp_path / "nano.root", events())


def test_slots_and_identity_are_exact(nano):
    reader = NanoAODReader(nano)
    assert reader.count() == 3
    b = reader.read_all()
    f32 = np.float32
    assert b.objects[0, 0].tolist() == [50, 0, 1]
    assert b.objects[0, SLOTS["muon"]][:2].tolist() == [[30, f32(0.2), f32(0.4)],
                                                       [10, f32(0.1), f32(0.3)]]
    assert b.objects[0, SLOTS["egamma"]][:2].tolist() == [[25, -0.5, 2], [20, 0.5, -1]]
    assert b.objects[0, SLOTS["jet"]][:2, 0].tolist() == [200, 100]
    assert b.objects[1, SLOTS["egamma"], 0].tolist() == [5, 4, 3.5, 3]  # photon among them
    assert b.objects[1, SLOTS["jet"], 0].tolist() == [float(i) for i in range(11, 1, -1)]
    assert b.objects[1, 0].tolist() == [0, 0, 0]               # no MET: φ 0 by convention
    assert (b.objects[2, 1:5] == 0).all()
    assert b["run"].tolist() == [1, 1, 2]
    assert b["lumi"].tolist() == [3, 3, 4]
    assert b["event"].tolist() == [7, 8, 2**40]
    assert (b["truth"] == -1).all()
    assert (b["weight"] == 1).all()
    assert reader.metadata()["dropped_objects"] == {"egamma": 2, "muon": 0, "jet": 1}


def test_chunks(nano):
    batches = list(NanoAODReader(nano, chunk_size=2))
    assert [len(b) for b in batches] == [2, 1]
    assert batches[1]["event"].tolist() == [2**40]


def test_branch_names_can_be_overridden(tmp_path):
    br = events()
    br["PuppiMET_pt"], br["PuppiMET_phi"] = br.pop("MET_pt") * 2, br.pop("MET_phi")
    path = write_nanoaod(tmp_path / "puppi.root", br)
    b = NanoAODReader(path, branches={"MET_pt": "PuppiMET_pt", "MET_phi": "PuppiMET_phi"},
                      truth="qcd").read_all()
    assert b.objects[:, 0, 0].tolist() == [100, 0, 20]
    assert (b["truth"] == 0).all()
    with pytest.raises(ConfigError, match="MET_pT"):
        NanoAODReader(path, branches={"MET_pT": "x"})


def test_missing_branch_names_file_tree_branch_and_nearest(tmp_path):
    br = events()
    br["PuppiMET_pt"] = br.pop("MET_pt")
    path = write_nanoaod(tmp_path / "nomet.root", br)
    with pytest.raises(InputFormatError) as err:
        NanoAODReader(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "tree 'Events'" in msg
    assert "branch 'MET_pt'" in msg
    assert "nearest: 'MET_phi', 'PuppiMET_pt'" in msg


def test_missing_tree(nano):
    with pytest.raises(InputFormatError, match=r"tree 'Event'.*nearest: 'Events'"):
        NanoAODReader(nano, tree="Event")


def test_bad_values_fail_or_are_skipped(tmp_path):
    br = events(Muon=coll(pt=[[10], [float("nan")], [5]], eta=[[0], [0], [0]],
                          phi=[[0], [0], [0]]))
    path = write_nanoaod(tmp_path / "nan.root", br)
    with pytest.raises(InputFormatError) as err:
        NanoAODReader(path).read_all()
    assert str(path) in str(err.value)
    assert "row 1:" in str(err.value)
    assert "finite Muon_pt/Muon_eta/Muon_phi" in str(err.value)
    reader = NanoAODReader(path, on_error="skip")
    b = reader.read_all()
    assert reader.skipped.count == 1
    assert b["event"].tolist() == [7, 2**40]


def test_detected_by_content_not_extension(tmp_path):
    path = write_nanoaod(tmp_path / "nano.h5", events())
    assert detect_format(path) == "nanoaod"
    assert len(open_events(path).read_all()) == 3


def test_truncated_file(nano, tmp_path):
    cut = tmp_path / "cut.root"
    data = nano.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError) as err:
        NanoAODReader(cut).read_all()
    assert str(cut) in str(err.value)
    assert "readable" in str(err.value)


# -- L1 objects (issue 16, items 4, 5, 7) ------------------------------------------------------
L1_SLOTS = {"L1EG": 4, "L1Mu": 4, "L1Jet": 10}


def _l1_events(n: int, seed: int, hardware: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Random L1 collections in bunch crossings −2…2 (and what bx 0 holds, per event)."""
    import awkward as ak

    rng = np.random.default_rng(seed)
    branches: dict[str, Any] = {"run": np.full(n, 1, np.uint32), "luminosityBlock": np.full(n, 3, np.uint32),
                                "event": np.arange(1, n + 1, dtype=np.uint64)}
    expected: dict[str, np.ndarray] = {}
    for name, most in L1_SLOTS.items():
        counts = rng.integers(0, most + 4, n)  # some events hold more than the slots
        total = int(counts.sum())
        hw_pt = rng.integers(2, 400, total)
        fields = {"bx": rng.integers(-2, 3, total), "pt": (hw_pt * 0.5).astype(np.float32)}
        if name == "L1Mu":
            hw_eta, hw_phi = rng.integers(-220, 221, total), rng.integers(0, 576, total)
            fields |= {"eta": (hw_eta * 0.010875).astype(np.float32), "phi": (hw_phi * 2 * np.pi / 576).astype(np.float32),
                       "etaAtVtx": (hw_eta * 0.010875).astype(np.float32),
                       "phiAtVtx": (hw_phi * 2 * np.pi / 576).astype(np.float32)}
            if hardware:
                fields |= {"hwPt": hw_pt, "hwEtaAtVtx": hw_eta, "hwPhiAtVtx": hw_phi}
        else:
            hw_eta, hw_phi = rng.integers(-57, 58, total), rng.integers(0, 144, total)
            fields |= {"eta": (hw_eta * 0.0435).astype(np.float32), "phi": (hw_phi * 2 * np.pi / 144).astype(np.float32)}
            if hardware:
                fields |= {"hwPt": hw_pt, "hwEta": hw_eta, "hwPhi": hw_phi}
        branches[name] = ak.zip({k: ak.unflatten(v, counts) for k, v in fields.items()})
        in_bx0 = np.bincount(np.repeat(np.arange(n), counts)[fields["bx"] == 0], minlength=n)
        expected[name] = np.minimum(in_bx0, most)
    # sums: types 0-3 in each of bx -2..2, so 20 a event; the MET is type 2 in bx 0
    types, bxs = np.tile(np.arange(4), 5), np.repeat(np.arange(-2, 3), 4)
    hw_pt, hw_phi = rng.integers(0, 600, (n, 20)), rng.integers(0, 144, (n, 20))
    sums = {"bx": np.tile(bxs, n), "etSumType": np.tile(types, n), "pt": (hw_pt * 0.5).ravel().astype(np.float32),
            "phi": (hw_phi * 2 * np.pi / 144).ravel().astype(np.float32)}
    if hardware:
        sums |= {"hwPt": hw_pt.ravel(), "hwPhi": hw_phi.ravel()}
    branches["L1EtSum"] = ak.zip({k: ak.unflatten(v, np.full(n, 20)) for k, v in sums.items()})
    met = (bxs == 0) & (types == 2)
    expected["met"] = (hw_pt[:, met] * 0.5).ravel()
    expected["met_phi"] = np.mod(hw_phi[:, met].ravel() * 2 * np.pi / 144 + np.pi, 2 * np.pi) - np.pi
    return branches, expected


@pytest.mark.parametrize("rntuple", [False, True], ids=["ttree", "rntuple"])
@pytest.mark.parametrize("hardware", [True, False], ids=["hw", "floats"])
def test_l1_objects_of_bunch_crossing_0(tmp_path: Path, rntuple: bool, hardware: bool,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from darktrigger.daq.cli import main

    branches, expected = _l1_events(500, seed=11 + rntuple + 2 * hardware, hardware=hardware)
    path = write_nanoaod(tmp_path / "l1nano.root", branches, rntuple=rntuple)
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nanoaod"
    assert info["metadata"]["objects"] == "l1"
    assert info["metadata"]["collections"] == ["L1EG", "L1EtSum", "L1Jet", "L1Mu"]
    assert info["metadata"]["hardware_values"] == (["L1EG", "L1EtSum", "L1Jet", "L1Mu"] if hardware else [])
    for name, kind in (("L1EG", "egamma"), ("L1Mu", "muon"), ("L1Jet", "jet")):
        assert round(info["pt"][kind]["objects_per_event"] * 500) == int(expected[name].sum()), name
    batch = open_events(path).read_all()
    for name, (first, width) in {"L1EG": (1, 4), "L1Mu": (5, 4), "L1Jet": (9, 10)}.items():
        np.testing.assert_array_equal((batch.objects[:, first:first + width, 0] > 0).sum(axis=1), expected[name])
    np.testing.assert_allclose(batch.objects[:, 0, 0], expected["met"], rtol=1e-6)
    filled = expected["met"] > 0
    np.testing.assert_allclose(batch.objects[filled, 0, 2], expected["met_phi"][filled], atol=1e-5)
    # on the hardware grids: muons on theirs, e/γ and jets on the calorimeter's
    mu_eta = batch.objects[:, 5:9, 1][batch.objects[:, 5:9, 0] > 0]
    np.testing.assert_allclose(mu_eta / 0.010875, np.round(mu_eta / 0.010875), atol=1e-3)
    jet_eta = batch.objects[:, 9:19, 1][batch.objects[:, 9:19, 0] > 0]
    np.testing.assert_allclose(jet_eta / 0.0435, np.round(jet_eta / 0.0435), atol=1e-3)


def test_offline_objects_on_request_and_bad_l1_files(tmp_path: Path) -> None:
    branches, _ = _l1_events(20, seed=3, hardware=True)
    both = dict(branches)
    both["Muon"] = nanoaod_collection(pt=[[30.0]] * 20, eta=[[0.5]] * 20, phi=[[1.0]] * 20)
    for name in ("Electron", "Photon", "Jet"):
        both[name] = nanoaod_collection(pt=[[]] * 20, eta=[[]] * 20, phi=[[]] * 20)
    both["MET_pt"], both["MET_phi"] = np.full(20, 12.0, np.float32), np.zeros(20, np.float32)
    path = write_nanoaod(tmp_path / "both.root", both)
    assert open_events(path).metadata()["objects"] == "l1"
    offline = open_events(path, objects="offline")
    assert offline.metadata()["objects"] == "offline"
    assert offline.read_all().objects[:, 5, 0].tolist() == [30.0] * 20
    with pytest.raises(ConfigError, match="objects must be one of l1, offline"):
        open_events(path, objects="hlt")
    # neither collection set
    none = write_nanoaod(tmp_path / "none.root", {"run": np.ones(3, np.uint32), "Tau": nanoaod_collection(
        pt=[[1.0]] * 3, eta=[[0.0]] * 3, phi=[[0.0]] * 3)})
    with pytest.raises(InputFormatError, match=r"none.root.*offline collections .* or the L1 ones"):
        open_events(none)
    # an L1 collection without its bx branch
    import awkward as ak

    no_bx = dict(branches)
    no_bx["L1Jet"] = ak.zip({k: no_bx["L1Jet"][k] for k in no_bx["L1Jet"].fields if k != "bx"})
    bad = write_nanoaod(tmp_path / "nobx.root", no_bx)
    with pytest.raises(InputFormatError, match=r"nobx.root.*a branch 'L1Jet_bx'.*only bx 0 is the event's"):
        open_events(bad)
