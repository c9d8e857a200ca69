"""The LHC Olympics 2020 reader, against files written from the published layout.

pandas writes the R&D set and the black boxes with ``DataFrame.to_hdf(path, "df")``
(PyTables "fixed" format): a group ``df`` with ``pandas_type = "frame"``, the column
labels in ``axis0``, the row index in ``axis1``, and one float block ``block0_values``
stored transposed, i.e. as ``(N, 2101)`` rows: 700 hadrons × (pT, η, φ), zero padded,
then the label. :func:`~darktrigger.replay.testing.write_lhco` writes that layout with h5py,
and a test reads it back with ``pd.read_hdf``.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from darktrigger.replay.errors import InputFormatError
from darktrigger.replay.events import PROCESS_LABELS, SLOTS
from darktrigger.replay.readers import detect_format, open_events
from darktrigger.replay.testing import dijet_events, write_lhco


def _p4(h: np.ndarray) -> np.ndarray:
    pt, eta, phi = h[:, 0], h[:, 1], h[:, 2]
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], 1).sum(0)


def _mass(p: np.ndarray) -> float:
    return math.sqrt(max(p[3] ** 2 - (p[:3] ** 2).sum(), 0.0))


def test_rnd_file_gives_jets_met_dijet_columns_and_truth(tmp_path: Path) -> None:
    rows, cones = dijet_events(12, seed=1, label=-1)  # labels 0, 1, 0, 1, ...
    path = write_lhco(tmp_path / "events_anomalydetection.h5", rows,
                      index=np.arange(100, 112, dtype=np.int64))
    assert detect_format(path) == "lhco"
    reader = open_events(path)
    assert reader.name == "lhco"
    assert reader.count() == 12
    batch = reader.read_all().validate()
    assert len(batch) == 12
    assert set(batch.extra_names) >= {"mjj", "mj1", "mj2", "tau21_j1", "tau21_j2"}
    assert batch["event"].tolist() == list(range(100, 112))
    assert batch["truth"].tolist() == [PROCESS_LABELS["qcd_dijet"], PROCESS_LABELS["wprime_xy"]] * 6
    jets = batch.objects[:, SLOTS["jet"]]
    for i, (a, b) in enumerate(cones):
        pa, pb = _p4(a), _p4(b)
        # two narrow cones far apart are exactly two R = 1 jets
        assert batch["mjj"][i] == pytest.approx(_mass(pa + pb), rel=1e-4)
        masses = sorted([_mass(pa), _mass(pb)], reverse=True)
        assert [batch["mj1"][i], batch["mj2"][i]] == pytest.approx(masses, rel=1e-3)
        lead = max(np.hypot(pa[0], pa[1]), np.hypot(pb[0], pb[1]))
        assert jets[i, 0, 0] == pytest.approx(lead, rel=1e-4)
        assert (jets[i, 2:, 0] == 0).all()
        assert jets[i, 1, 0] > 0
        miss = -(pa + pb)[:2]
        assert batch.objects[i, 0, 0] == pytest.approx(np.hypot(*miss), abs=1e-2)
    assert (batch.objects[:, 1:9] == 0).all()  # no e/γ or μ identity in the files
    assert ((batch["tau21_j1"] >= 0) & (batch["tau21_j1"] <= 1)).all()
    assert (batch["mj1"] >= batch["mj2"]).all()


def test_black_box_without_label_is_data_unless_told(tmp_path: Path) -> None:
    rows, _ = dijet_events(5, seed=2, label=None)
    path = write_lhco(tmp_path / "events_LHCO2020_BlackBox1.h5", rows, compression="gzip")
    batch = open_events(path).read_all()
    assert batch["truth"].tolist() == [-1] * 5
    assert open_events(path, truth="qcd_dijet").read_all()["truth"].tolist() == [20] * 5
    assert open_events(path).metadata()["label_column"] is False


def test_chunks_give_the_same_events(tmp_path: Path) -> None:
    rows, _ = dijet_events(9, seed=3)
    path = write_lhco(tmp_path / "rnd.h5", rows)
    whole = open_events(path).read_all()
    parts = list(open_events(path, chunk_size=4))
    assert [len(p) for p in parts] == [4, 4, 1]
    for name in ("objects", "mjj", "tau21_j2", "event"):
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), whole[name])


def test_bad_rows_fail_with_file_and_row_or_are_skipped(tmp_path: Path) -> None:
    rows, _ = dijet_events(6, seed=4)
    rows[2, 4] = np.nan
    rows[4, -1] = 2.0  # a label that is neither 0 nor 1
    path = write_lhco(tmp_path / "bad.h5", rows)
    with pytest.raises(InputFormatError, match=r"bad\.h5, row 2: expected finite numbers, got nan in column 4"):
        open_events(path).read_all()
    reader = open_events(path, on_error="skip")
    batch = reader.read_all()
    assert len(batch) == 4
    assert batch["event"].tolist() == [0, 1, 3, 5]
    assert reader.skipped.count == 2
    assert "row 4: expected a truth label of 0 or 1" in reader.skipped.summary()


def test_wrong_layouts_are_clear_errors(tmp_path: Path) -> None:
    path = write_lhco(tmp_path / "narrow.h5", np.zeros((3, 2000)))
    assert not _sniffs_as_lhco(path)
    with pytest.raises(InputFormatError, match=r"narrow\.h5, key 'df', dataset 'block0_values': "
                                               r"expected shape \(N, 2100\) or \(N, 2101\)"):
        open_events(path, format="lhco")
    two = tmp_path / "two.h5"
    write_lhco(two, np.zeros((2, 2101)))
    with h5py.File(two, "a") as f:
        f.copy(f["df"], "other")
    with pytest.raises(InputFormatError, match="one pandas DataFrame.*pass key="):
        open_events(two, format="lhco")
    assert open_events(two, format="lhco", key="other").count() == 2


def _sniffs_as_lhco(path: Path) -> bool:
    try:
        return detect_format(path) == "lhco"
    except InputFormatError:
        return False


def test_pandas_reads_the_written_layout(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    rows, _ = dijet_events(3, seed=5)
    path = write_lhco(tmp_path / "rnd.h5", rows)
    frame = pd.read_hdf(path, "df")
    assert frame.shape == (3, 2101)
    np.testing.assert_array_equal(frame.to_numpy(), rows)


def test_truncated_file_names_it(tmp_path: Path) -> None:
    rows, _ = dijet_events(40, seed=2, label=-1)
    path = write_lhco(tmp_path / "cut.h5", rows)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputFormatError, match="complete, readable HDF5 file.*truncated or corrupt") as err:
        list(open_events(path, format="lhco"))
    assert str(path) in str(err.value)
