"""The Dark Machines CSV reader against lines written straight from the published format."""

from __future__ import annotations

import numpy as np
import pytest

from replay.errors import InputFormatError
from replay.events import PROCESS_LABELS, SLOTS
from replay.readers import detect_format, open_events
from replay.readers.darkmachines import DarkMachinesReader
from tests.spec_files import dm_line, random_dm_lines, write_darkmachines


def gev(mev: float) -> np.float32:
    return np.float32(mev / 1000.0)


LINES = [
    # out-of-pT-order jets, a b-jet, a photon and an electron (both e/γ), a muon
    dm_line(11, "ttbar", 0.5, 45000.0, 1.25, [
        ("j", 90000, 60000.0, 0.5, 0.1), ("b", 130000, 123456.7, -1.5, -2.0),
        ("g", 20000, 20000.0, 0.0, 3.0), ("e-", 50000, 35000.0, 1.0, 1.0),
        ("m+", 30000, 29000.0, 2.0, -1.0)]),
    dm_line(12, "njets", 1.0, 10000.0, -0.5, [], trailing=False),   # no objects, no ';'
    "",                                                                   # blank line
    dm_line(13, "w_jets", 2.0, 0.0, 0.0, [                              # 6 e/γ: 4 kept
        ("e+", 1, 5000.0 * (i + 1), 0.1 * i, 0.2) for i in range(5)] + [
        ("g", 1, 1000.0, 0.0, 0.0)]),
    dm_line("evt-x", "glgl1400_neutralino1100", 1.0, 1.0, 0.0, [
        ("m-", 9, 7000.0, 0.3, 0.4)]),
]


def test_slots_units_and_identity_are_exact(tmp_path):
    path = write_darkmachines(tmp_path / "chan1.csv", LINES)
    reader = DarkMachinesReader(path)
    b = reader.read_all()
    assert len(b) == 4
    ev = b.objects
    assert ev[0, 0].tolist() == [45.0, 0.0, np.float32(1.25)]
    jets = ev[0, SLOTS["jet"]]
    assert jets[0].tolist() == [gev(123456.7), -1.5, -2.0]     # b-jet, highest pT first
    assert jets[1].tolist() == [60.0, 0.5, np.float32(0.1)]
    assert (jets[2:] == 0).all()
    eg = ev[0, SLOTS["egamma"]]
    assert eg[:2, 0].tolist() == [35.0, 20.0]                   # electron and photon
    assert ev[0, SLOTS["muon"]][0].tolist() == [29.0, 2.0, -1.0]
    assert (ev[1, 1:] == 0).all() and ev[1, 0, 0] == 10.0       # an event with no objects
    assert ev[2, SLOTS["egamma"], 0].tolist() == [25.0, 20.0, 15.0, 10.0]  # 4 of 6 kept
    assert ev[2, 0].tolist() == [0, 0, 0]
    assert b["event"].tolist() == [11, 12, 13, 5]               # non-integer id: line 5
    assert b["weight"].tolist() == [0.5, 1.0, 2.0, 1.0]
    assert b["truth"].tolist() == [PROCESS_LABELS["ttbar"], PROCESS_LABELS["qcd"],
                                   PROCESS_LABELS["wjets"], -1]
    meta = reader.metadata()
    assert meta["processes"] == {"ttbar": 1, "njets": 1, "w_jets": 1,
                                 "glgl1400_neutralino1100": 1}
    assert meta["dropped_objects"]["egamma"] == 2 and meta["lines_read"] == 5
    assert reader.skipped.count == 0


def test_chunks_give_the_same_events(tmp_path):
    path = write_darkmachines(tmp_path / "many.csv", random_dm_lines(500, seed=4))
    whole = DarkMachinesReader(path).read_all()
    batches = list(DarkMachinesReader(path, chunk_size=7))
    assert all(len(b) <= 7 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.objects for b in batches]), whole.objects)
    assert whole["event"].tolist() == list(range(500))


def test_truth_option_overrides_process(tmp_path):
    path = write_darkmachines(tmp_path / "sig.csv", LINES)
    assert (DarkMachinesReader(path, truth="ato4l").read_all()["truth"] == 10).all()


BAD = [
    (dm_line(1, "ttbar", 1.0, 100.0, 0.5), None, None),
    ("2;ttbar;1;abc;0.5;j,1,2,3,0.1;", "a number for MET", "'abc'"),
    ("3;ttbar;1;100;0.5;x,1,2,3,0.1", "code one of", "'x'"),
    ("4;ttbar;1;100;0.5;j,1,2,3", "code,E,pt,eta,phi (5 fields)", "4 field(s)"),
    ("5;ttbar;1;100", "at least 5", "4 field(s)"),
    ("6;ttbar;1;100;0.5;m+,1,nan,3,0.1", "a finite number for object 0 pt", "'nan'"),
    ("7;ttbar;1;inf;0.5", "a finite number for MET", "'inf'"),
    ("8;ttbar;1;100;0.5;e-,1,2,3,9.5", "phi in [-pi, pi]", "phi = 9.5"),
    (dm_line(9, "ttbar", 1.0, 200.0, 0.5, [("j", 1, 30000.0, 0.0, 0.0)]), None, None),
]


@pytest.mark.parametrize("k", range(1, 8))
def test_bad_line_fails_naming_file_line_and_expectation(tmp_path, k):
    lines = [BAD[0][0], BAD[k][0], BAD[-1][0]]
    path = write_darkmachines(tmp_path / "bad.csv", lines)
    with pytest.raises(InputFormatError) as err:
        DarkMachinesReader(path).read_all()
    msg = str(err.value)
    assert str(path) in msg and "line 2:" in msg
    assert BAD[k][1] in msg and BAD[k][2] in msg
    assert isinstance(err.value, ValueError)


def test_skip_mode_counts_bad_lines_and_keeps_the_rest(tmp_path):
    path = write_darkmachines(tmp_path / "bad.csv", [line for line, *_ in BAD])
    reader = DarkMachinesReader(path, on_error="skip", chunk_size=4)
    b = reader.read_all()
    assert reader.skipped.count == 7
    assert b["event"].tolist() == [1, 9]
    assert b.objects[1, 9].tolist() == [30.0, 0.0, 0.0]
    assert "line 3" in reader.skipped.summary()


def test_nan_found_by_the_fast_parser_names_the_line(tmp_path):
    lines = random_dm_lines(20, seed=1)
    lines[13] = dm_line(13, "ttbar", 1.0, 5.0, 0.1, [("j", 1.0, float("nan"), 0.0, 0.0)])
    path = write_darkmachines(tmp_path / "nan.csv", lines)
    with pytest.raises(InputFormatError, match=r"line 14: expected a finite number for object 0 pt, got .nan."):
        DarkMachinesReader(path).read_all()
    reader = DarkMachinesReader(path, on_error="skip")
    assert len(reader.read_all()) == 19 and reader.skipped.count == 1


def test_detected_by_content_not_extension(tmp_path):
    path = write_darkmachines(tmp_path / "looks_like.h5", LINES)
    assert detect_format(path) == "darkmachines"
    header_only = write_darkmachines(tmp_path / "x.root", ["1;ttbar;1;100;0.5"])
    assert detect_format(header_only) == "darkmachines"
    assert len(open_events(header_only).read_all()) == 1
    prose = tmp_path / "notes.csv"
    prose.write_text("a;b;c;d;e;f\n")
    assert not DarkMachinesReader.sniff(prose, prose.read_bytes())
