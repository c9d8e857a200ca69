"""The L1 hardware units and CMSSW's 57 AXOL1TL inputs (darktrigger.replay.l1units), on hand-computed events."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from darktrigger.replay import l1units
from darktrigger.replay.errors import SchemaError
from darktrigger.replay.l1units import (
    FORMATS,
    INPUT_MAX,
    INPUT_MIN,
    cmssw_inputs,
    from_counts,
    hardware_counts,
    input_table,
    input_table_markdown,
)
from darktrigger.replay.readers import nanoaod

MET, EG, MU, JET = 0, 1, 5, 9  # first slot of each kind


def _event(**slots: tuple[float, float, float]) -> np.ndarray:
    """One event ``[1, 19, 3]`` with objects at the named slots (``s5=(pt, eta, phi)``)."""
    obj = np.zeros((1, 19, 3), np.float32)
    for name, value in slots.items():
        obj[0, int(name[1:])] = value
    return obj


def test_hand_computed_event() -> None:
    obj = _event(s0=(45.3, 0.7, 2.0), s1=(30.0, -1.2, -0.3), s2=(12.25, 0.05, 3.0),
                 s5=(25.0, 2.1, -2.5), s9=(100.0, 3.5, 1.0), s10=(60.6, -4.1, -3.1))
    hw = hardware_counts(obj)[0]
    assert hw.dtype == np.int32
    # MET: floor(90.6) = 90, η forced 0, φ 2.0 / (2π/144) = 45.84 → 46
    assert hw[MET].tolist() == [90, 0, 46]
    # e/γ: −1.2 / 0.0435 = −27.59 → −28; −0.3 · 144/2π = −6.88 → −7 → 137
    assert hw[EG].tolist() == [60, -28, 137]
    assert hw[EG + 1].tolist() == [24, 1, 69]  # 0.05/0.0435 = 1.15; 3.0 · 22.918 = 68.75
    # μ: 2.1 / 0.010875 = 193.1 → 193; −2.5 · 576/2π = −229.18 → −229 → 347
    assert hw[MU].tolist() == [50, 193, 347]
    # jets: 3.5/0.0435 = 80.46; −4.1/0.0435 = −94.25; −3.1 · 22.918 = −71.05 → −71 → 73
    assert hw[JET].tolist() == [200, 80, 23]
    assert hw[JET + 1].tolist() == [121, -94, 73]
    assert not hw[[3, 4, 6, 7, 8, *range(11, 19)]].any()  # empty slots all zeros
    x = cmssw_inputs(obj)[0]
    assert x.dtype == np.int32
    assert x.shape == (57,)
    assert x[:9].tolist() == [45, 0, 46, 30, -28, 137, 12, 1, 69]
    assert x[15:18].tolist() == [25, 193, 347]
    assert x[27:33].tolist() == [100, 80, 23, 60, -94, 73]
    np.testing.assert_array_equal(cmssw_inputs(obj.reshape(1, 57)), cmssw_inputs(obj))


def test_muons_use_the_muon_lsbs_and_calo_objects_the_calorimeter_lsbs() -> None:
    value = (20.0, 1.0, 1.0)
    hw = hardware_counts(_event(s1=value, s5=value, s9=value))[0]
    assert hw[EG].tolist() == hw[JET].tolist() == [40, round(1 / 0.0435), round(1 / (2 * math.pi / 144))]
    assert hw[MU].tolist() == [40, round(1 / 0.010875), round(1 / (2 * math.pi / 576))]
    assert hw[MU].tolist() == [40, 92, 92]
    assert hw[EG].tolist() == [40, 23, 23]


@pytest.mark.parametrize(("slot", "bins"), [(MET, 144), (EG, 144), (MU, 576), (JET, 144)])
def test_phi_wraps_into_the_unsigned_range(slot: int, bins: int) -> None:
    phis = [np.pi, -np.pi, 0.0, -1e-4, 0.5, 0.5 + 2 * np.pi, 0.5 - 2 * np.pi, 2 * np.pi - 1e-4]
    obj = np.zeros((len(phis), 19, 3), np.float32)
    obj[:, slot] = [(10.0, 0.0, p) for p in phis]
    phi = hardware_counts(obj)[:, slot, 2].tolist()
    half, at_half = bins // 2, round(0.5 / (2 * math.pi / bins))
    assert phi == [half, half, 0, 0, at_half, at_half, at_half, 0]
    assert all(0 <= p < bins for p in phi)


def test_saturation_at_the_hardware_word_widths() -> None:
    obj = _event(s0=(5000.0, 0.0, 0.0), s1=(1000.0, 10.0, 0.0), s2=(300.0, -10.0, 0.0),
                 s5=(1000.0, 3.0, 0.0), s6=(900.0, -3.0, 0.0), s9=(2000.0, 6.0, 0.0))
    hw = hardware_counts(obj)[0]
    assert hw[MET, 0] == 4095  # 12 bits
    assert hw[EG].tolist()[:2] == [511, 127]
    assert hw[EG + 1].tolist()[:2] == [511, -128]
    assert hw[MU].tolist()[:2] == [511, 255]
    assert hw[MU + 1].tolist()[:2] == [511, -256]
    assert hw[JET].tolist()[:2] == [2047, 127]  # 11 bits
    assert [FORMATS[k].pt_max for k in ("met", "egamma", "muon", "jet")] == [4095, 511, 511, 2047]
    x = cmssw_inputs(obj)
    assert INPUT_MIN <= x.min()
    assert x.max() <= INPUT_MAX
    assert x[0, 0] == 2047
    assert x[0, 27] == 1023


def test_odd_hwpt_halves_with_integer_division_and_pt_floors_to_half_gev() -> None:
    obj = _event(s1=(3.5, 0.3, 0.3), s2=(3.99, 0.3, 0.3), s5=(0.5, 0.3, 0.3), s9=(0.49, 0.3, 0.3))
    hw = hardware_counts(obj)[0]
    assert hw[[EG, EG + 1, MU, JET], 0].tolist() == [7, 7, 1, 0]
    x = cmssw_inputs(obj)[0]
    assert x[3] == 3
    assert x[6] == 3
    assert x[15:18].tolist() == [0, 28, 28]  # hwPt 1 → 0, the muon's η, φ stay (CMSSW fills them)
    assert x[27:30].tolist() == [0, 0, 0]  # pT 0.49 GeV: hwPt 0, an empty slot


def test_met_eta_is_always_zero() -> None:
    assert hardware_counts(_event(s0=(50.0, 2.0, 1.0)))[0, MET].tolist() == [100, 0, 23]


def test_counts_round_trip_through_floats_on_the_grids() -> None:
    rng = np.random.default_rng(16)
    n = 2000
    counts = np.zeros((n, 19, 3), np.int64)
    for kind, sl in l1units.SLOTS.items():
        fmt = FORMATS[kind]
        k = sl.stop - sl.start
        counts[:, sl, 0] = rng.integers(1, fmt.pt_max + 1, (n, k))
        lo, hi = fmt.eta_range
        counts[:, sl, 1] = rng.integers(lo, hi + 1, (n, k))
        counts[:, sl, 2] = rng.integers(0, fmt.phi_bins, (n, k))
    counts[rng.random((n, 19)) < 0.3] = 0  # empty slots
    objects = from_counts(counts)
    assert objects.dtype == np.float32
    assert np.all(np.abs(objects[..., 2]) <= np.float32(np.pi))
    np.testing.assert_array_equal(hardware_counts(objects), counts)
    np.testing.assert_array_equal(cmssw_inputs(objects).reshape(n, 19, 3)[..., 0], counts[..., 0] // 2)


@pytest.mark.parametrize("shape", [(3, 56), (3, 19, 2), (57,)])
def test_bad_shapes_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(SchemaError, match=r"expected features \[N, 57\] or \[N, 19, 3\]"):
        hardware_counts(np.zeros(shape, np.float32))


def test_input_table() -> None:
    rows = input_table()
    assert [r["index"] for r in rows] == list(range(57))
    assert [r["slot"] for r in rows[:6]] == ["met"] * 3 + ["egamma0"] * 3
    assert rows[56]["slot"] == "jet9"
    mu = {r["quantity"]: r for r in rows if r["slot"] == "muon2"}
    assert mu["hwEtaAtVtx"]["lsb"] == 0.010875
    assert mu["hwEtaAtVtx"]["range"] == "-256..255"
    assert mu["hwPhiAtVtx"]["lsb"] == 2 * math.pi / 576
    assert mu["hwPhiAtVtx"]["range"] == "0..575"
    assert rows[4]["lsb"] == 0.0435
    assert rows[4]["range"] == "-128..127"
    assert rows[0]["quantity"] == "hwPt/2"
    assert rows[0]["lsb"] == 1.0
    assert rows[0]["range"] == "0..2047"
    text = input_table_markdown()
    assert text.count("\n") == 59
    assert "| 17 | muon0 | hwPhiAtVtx | rad | 2π/576 | 0..575 |" in text


def test_the_nanoaod_reader_uses_these_lsbs() -> None:
    for name in ("PT_LSB", "CALO_ETA_LSB", "CALO_PHI_LSB", "MUON_ETA_LSB", "MUON_PHI_LSB"):
        assert getattr(nanoaod, name) is getattr(l1units, name)


@pytest.mark.parametrize("hardware", [True, False], ids=["hw-branches", "floats"])
def test_l1_nanoaod_objects_give_back_their_hardware_values(tmp_path, hardware: bool) -> None:
    """L1 objects read from NanoAOD (bx 0, pT-ordered) → CMSSW's inputs are the hardware values
    the file holds: muons on their LSBs, φ near 2π back at 575, odd hwPt halved."""
    from darktrigger.replay.readers.base import open_events
    from darktrigger.replay.testing import nanoaod_collection, write_nanoaod

    def collection(rows: list[tuple[int, int, int, int]], eta_lsb: float, phi_lsb: float, muon: bool = False):
        hw_pt, hw_eta, hw_phi, bx = (list(c) for c in zip(*rows, strict=True))
        eta = [np.float32(e * eta_lsb) for e in hw_eta]
        phi = [np.float32(p * phi_lsb) for p in hw_phi]
        fields = {"pt": [[p * 0.5 for p in hw_pt]], "eta": [eta], "phi": [phi], "bx": [bx]}
        names = ("hwEtaAtVtx", "hwPhiAtVtx") if muon else ("hwEta", "hwPhi")
        if muon:
            fields |= {"etaAtVtx": [eta], "phiAtVtx": [phi]}
        if hardware:
            fields |= {"hwPt": [hw_pt], names[0]: [hw_eta], names[1]: [hw_phi]}
        return nanoaod_collection(**fields)

    calo_eta, calo_phi = l1units.CALO_ETA_LSB, l1units.CALO_PHI_LSB
    sums: dict[str, Any] = {"pt": [[499.5, 38.5, 10.0]], "phi": [[0.0, np.float32(100 * calo_phi), 0.0]], "bx": [[0, 0, -1]],
            "etSumType": [[0, 2, 2]]}
    if hardware:
        sums |= {"hwPt": [[999, 77, 20]], "hwPhi": [[0, 100, 0]]}
    branches = {
        "run": np.ones(1, np.uint32), "luminosityBlock": np.ones(1, np.uint32), "event": np.ones(1, np.uint64),
        "L1Mu": collection([(41, -220, 575, 0), (61, 100, 288, 0), (30, 5, 3, -1)],
                           l1units.MUON_ETA_LSB, l1units.MUON_PHI_LSB, muon=True),
        "L1EG": collection([(25, -57, 0, 0)], calo_eta, calo_phi),
        "L1Jet": collection([(301, 57, 143, 0), (80, -3, 72, 0), (500, 0, 0, 1)], calo_eta, calo_phi),
        "L1EtSum": nanoaod_collection(**sums),
    }
    batch = open_events(write_nanoaod(tmp_path / "l1.root", branches)).read_all()
    want = np.zeros(57, np.int32)
    want[0:3] = (38, 0, 100)  # MET: the type-2 sum of bx 0, hwPt 77 / 2
    want[3:6] = (12, -57, 0)
    want[15:21] = (30, 100, 288, 20, -220, 575)  # pT-ordered: hwPt 61, then 41
    want[27:33] = (150, 57, 143, 40, -3, 72)
    np.testing.assert_array_equal(cmssw_inputs(batch.objects)[0], want)
