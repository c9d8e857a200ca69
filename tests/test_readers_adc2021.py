"""The ADC2021 HDF5 reader against files written straight from the published format."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from darktrigger.replay.errors import InputFormatError
from darktrigger.replay.events import PROCESS_LABELS
from darktrigger.replay.readers import detect_format, open_events
from darktrigger.replay.readers.adc2021 import ADC2021Reader
from darktrigger.replay.testing import adc_event, random_adc_particles, write_adc2021


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reads_every_event_exactly_in_chunks(tmp_path, dtype):
    particles = random_adc_particles(1000, seed=3)
    path = write_adc2021(tmp_path / "bkg.h5", particles, dtype=dtype)
    reader = ADC2021Reader(path, chunk_size=64)
    batches = list(reader)
    assert all(len(b) <= 64 for b in batches)
    assert len(batches) == 16
    got = ADC2021Reader(path, chunk_size=64).read_all()
    expected = particles.astype(dtype)[:, :, :3].astype(np.float32)
    np.testing.assert_array_equal(got.objects, expected)
    assert got.objects.flags.c_contiguous
    np.testing.assert_array_equal(got["event"], np.arange(1000, dtype=np.uint64))
    assert (got["truth"] == -1).all()
    assert (got["weight"] == 1).all()
    assert reader.count() == 1000
    assert reader.skipped.count == 0


def test_classes_and_evtid(tmp_path):
    particles = np.stack([adc_event(met=(30, 0.5), muon=[(20, 0.1, 0.2)]),
                          adc_event(jet=[(50, -1, 3.0), (40, 2, -3.0)])])
    ids = np.array([123456789012, 5], dtype=np.int64)
    path = write_adc2021(tmp_path / "bb.h5", particles, with_classes=True, evtid=ids)
    reader = open_events(path, truth="ttbar")
    meta = reader.metadata()
    assert meta["classes"] == ["MET_class_1", "Four_Ele_class_2", "Four_Mu_class_3",
                               "Ten_Jet_class_4"]
    assert meta["has_evtid"]
    batch = reader.read_all()
    assert batch["event"].dtype == np.uint64
    assert batch["event"].tolist() == [123456789012, 5]
    assert (batch["truth"] == PROCESS_LABELS["ttbar"]).all()
    assert batch.objects[0, 0].tolist() == [30, 0, 0.5]
    assert batch.objects[0, 5].tolist() == [20, np.float32(0.1), np.float32(0.2)]
    assert batch.objects[1, 10].tolist() == [40, 2, -3]


def test_without_classes_dataset(tmp_path):
    path = write_adc2021(tmp_path / "x.h5", random_adc_particles(5), with_classes=False)
    reader = ADC2021Reader(path)
    assert reader.metadata()["classes"] is None
    assert len(reader.read_all()) == 5


def test_wrong_particles_shape_is_fatal_and_says_why(tmp_path):
    path = tmp_path / "wrong.h5"
    with h5py.File(path, "w") as f:
        f["Particles"] = np.zeros((10, 19, 3), np.float32)
    with pytest.raises(InputFormatError) as err:
        ADC2021Reader(path, on_error="skip")
    msg = str(err.value)
    assert str(path) in msg
    assert "Particles" in msg
    assert "(N, 19, 4)" in msg
    assert "(10, 19, 3)" in msg
    assert isinstance(err.value, ValueError)


def test_truncated_file(tmp_path):
    path = write_adc2021(tmp_path / "cut.h5", random_adc_particles(2000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError) as err:
        list(open_events(path, format="adc2021"))
    assert str(path) in str(err.value)
    assert "HDF5" in str(err.value)
    with pytest.raises(InputFormatError, match="none of them recognises"):
        detect_format(path)


def test_corrupt_chunk_names_the_rows(tmp_path):
    path = write_adc2021(tmp_path / "bad_chunk.h5", random_adc_particles(400, seed=1),
                         compression="gzip", chunks=(100, 19, 4))
    with h5py.File(path, "r") as f:
        info = f["Particles"].id.get_chunk_info(2)  # rows 200-299
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    reader = ADC2021Reader(path, chunk_size=100)
    it = iter(reader)
    assert len(next(it)) == 100
    assert len(next(it)) == 100
    with pytest.raises(InputFormatError) as err:
        next(it)
    assert str(path) in str(err.value)
    assert "rows 200-299" in str(err.value)


def _bad_rows_file(tmp_path):
    particles = random_adc_particles(50, seed=7)
    particles[:, 5:9] = 0
    particles[:, 5] = (25, 0.5, 1.0, 3)  # every event has a muon
    particles[:, 10] = (33, 0.2, 0.3, 4)
    particles[3, 5, 3] = 4              # a jet class in a muon slot
    particles[8, 12, 3] = 0             # class 0 with pT > 0
    particles[8, 12, 0] = 12.5
    particles[11, 6, 0] = np.nan        # NaN pT
    particles[20, 9, 1] = np.inf        # inf η
    particles[30, 10, 0] = -5           # negative pT
    particles[40, 5, 2] = 4.0           # φ out of range
    return write_adc2021(tmp_path / "bad.h5", particles, dtype=np.float64), particles


@pytest.mark.parametrize(("row", "what"), [(3, "class 3 (muon) in slot 5")])
def test_class_mismatch_fails_naming_the_row(tmp_path, row, what):
    path, _ = _bad_rows_file(tmp_path)
    with pytest.raises(InputFormatError) as err:
        ADC2021Reader(path).read_all()
    msg = str(err.value)
    assert str(path) in msg
    assert f"row {row}:" in msg
    assert what in msg
    assert "got class 4" in msg


def test_nonfinite_value_fails_naming_the_row(tmp_path):
    particles = random_adc_particles(20, seed=2)
    particles[:, 5] = (25, 0.5, 1.0, 3)
    particles[13, 5, 0] = np.inf
    path = write_adc2021(tmp_path / "inf.h5", particles)
    with pytest.raises(InputFormatError) as err:
        ADC2021Reader(path, chunk_size=8).read_all()
    assert str(path) in str(err.value)
    assert "row 13:" in str(err.value)
    assert "expected a finite number" in str(err.value)


def test_skip_mode_drops_exactly_the_bad_rows(tmp_path):
    path, particles = _bad_rows_file(tmp_path)
    reader = ADC2021Reader(path, on_error="skip", chunk_size=16)
    batch = reader.read_all()
    bad = [3, 8, 11, 20, 30, 40]
    assert reader.skipped.count == len(bad)
    good = np.setdiff1d(np.arange(50), bad)
    np.testing.assert_array_equal(batch["event"], good.astype(np.uint64))
    np.testing.assert_array_equal(batch.objects, particles[good, :, :3].astype(np.float32))
    assert any("row 40" in e for e in reader.skipped.examples)


def test_detected_by_content_not_extension(tmp_path):
    path = write_adc2021(tmp_path / "events.dat", random_adc_particles(3))
    assert detect_format(path) == "adc2021"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["Jets"] = np.zeros((3, 4))
    assert not ADC2021Reader.sniff(other, other.read_bytes()[:4096])
