"""The NanoAOD reader against ROOT files written with uproot in NanoAOD's branch layout."""

from __future__ import annotations

import numpy as np
import pytest

from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.events import SLOTS
from darktrigger.replay.readers import detect_format, open_events
from darktrigger.replay.readers.nanoaod import NanoAODReader
from darktrigger.replay.testing import nanoaod_collection as coll
from darktrigger.replay.testing import write_nanoaod


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
