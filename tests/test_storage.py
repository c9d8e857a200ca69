from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from darktrigger.replay.errors import InputFormatError, SchemaError
from darktrigger.replay.readers import detect_format, open_events
from darktrigger.replay.storage import COMPRESSIONS, NativeFile, NativeWriter, write_events
from darktrigger.replay.testing import random_batch


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip_is_exact_in_chunks(tmp_path, compression):
    b = random_batch(2500, extra=True).with_columns(**{"score/ae": np.linspace(0, 1, 2500)})
    path = tmp_path / "ev.h5"
    n = write_events(path, [b[:1000], b[1000:]], provenance={"generator": "test", "seed": 3},
                     compression=compression, chunk_events=700)
    assert n == 2500
    reader = open_events(path, chunk_size=600)
    sizes = []
    got = []
    for part in reader:
        sizes.append(len(part))
        got.append(part)
    assert sizes == [600, 600, 600, 600, 100]
    back = got[0].concat(got)
    for name in b.columns:
        np.testing.assert_array_equal(back[name], b[name])
    assert reader.count() == 2500
    assert reader.metadata()["provenance"]["generator"] == "test"
    assert reader.metadata()["provenance"]["seed"] == 3
    assert "software_version" in reader.metadata()["provenance"]


def test_file_is_chunked_compressed_and_carries_provenance(tmp_path):
    path = tmp_path / "ev.h5"
    write_events(path, random_batch(5000), provenance={"generator": "toy", "process": "qcd", "seed": 9},
                 chunk_events=1024, compression="gzip")
    with h5py.File(path, "r") as f:
        ds = f["events/objects"]
        assert ds.chunks[0] == 1024
        assert ds.compression == "gzip"
        assert f.attrs["generator"] == "toy"
        assert f.attrs["process"] == "qcd"
        assert f.attrs["seed"] == 9
        assert f.attrs["schema_version"] == 1
        assert json.loads(f.attrs["columns"])[0] == "objects"


def test_append_continues_the_file_and_checks_columns(tmp_path):
    path = tmp_path / "ev.h5"
    a, b = random_batch(300, seed=1), random_batch(200, seed=2)
    write_events(path, a, provenance={"generator": "test"})
    with NativeWriter(path, mode="a") as w:
        w.write(b)
    with NativeFile(path) as f:
        assert len(f) == 500
        np.testing.assert_array_equal(f.read(300, 500).objects, b.objects)
    with NativeWriter(path, mode="a") as w, pytest.raises(SchemaError, match="columns"):
        w.write(random_batch(10, extra=True))


WRITER = textwrap.dedent("""
    import os, signal
    from darktrigger.replay.testing import random_batch
    from darktrigger.replay.storage import NativeWriter
    w = NativeWriter({path!r}, chunk_events=1000, provenance={{"generator": "test"}})
    b = random_batch(5500, seed=5)
    w.write(b)                       # five full chunks are flushed, 500 events wait in memory
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_killed_writer_leaves_a_file_readable_to_its_last_flushed_chunk(tmp_path):
    path = tmp_path / "crash.h5"
    proc = subprocess.run([sys.executable, "-c", WRITER.format(path=str(path))], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert detect_format(path) == "native"
    back = open_events(path).read_all()
    assert len(back) == 5000
    np.testing.assert_array_equal(back.objects, random_batch(5500, seed=5).objects[:5000])
    with pytest.raises(InputFormatError, match="crash.h5.*h5clear"):
        NativeWriter(path, mode="a")


def test_bad_native_files_give_clear_errors(tmp_path):
    path = tmp_path / "ev.h5"
    write_events(path, random_batch(3000), provenance={"generator": "test"}, compression="none")
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError, match="cut.h5"):
        open_events(cut, format="native").read_all()
    newer = tmp_path / "newer.h5"
    newer.write_bytes(data)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(InputFormatError, match="newer.h5.*schema version 99"):
        open_events(newer)


def test_nan_in_a_native_file_fails_or_is_skipped(tmp_path):
    b = random_batch(100)
    b.objects[17, 10, 1] = np.nan
    b.objects[60, 0, 0] = -1.0
    path = tmp_path / "ev.h5"
    write_events(path, b)
    with pytest.raises(InputFormatError, match=r"ev.h5, row 17: .*eta = nan"):
        open_events(path).read_all()
    reader = open_events(path, on_error="skip", chunk_size=40)
    back = reader.read_all()
    assert len(back) == 98
    assert reader.skipped.count == 2
    assert "row 17" in reader.skipped.examples[0]
    assert "row 60" in reader.skipped.examples[1]


def test_a_second_pass_counts_skips_afresh(tmp_path):
    b = random_batch(50)
    b.objects[7, 0, 2] = 9.0
    path = tmp_path / "ev.h5"
    write_events(path, b)
    reader = open_events(path, on_error="skip")
    assert len(reader.read_all()) == 49
    assert reader.skipped.count == 1
    assert len(reader.read_all()) == 49
    assert reader.skipped.count == 1


def _corrupt_chunk(path: Path, dataset: str, index: int) -> int:
    """Overwrite the stored bytes of one HDF5 chunk of ``dataset`` with garbage; its first row."""
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        info = ds.id.get_chunk_info(index)
        first_row = int(info.chunk_offset[0])
        offset, size = int(info.byte_offset), int(info.size)
    with path.open("r+b") as raw:
        raw.seek(offset)
        raw.write(bytes(range(256)) * (size // 256) + b"\xff" * (size % 256))
    return first_row


def test_a_corrupt_chunk_is_skipped_and_counted_or_fatal(tmp_path: Path) -> None:
    """A native file with one unreadable chunk: on_error="fail" names the file and rows;
    "skip" reads every other row and counts the chunk's rows as skipped."""
    from darktrigger.replay.errors import InputFormatError
    from darktrigger.replay.readers import open_events
    from darktrigger.replay.testing import random_batch

    path = tmp_path / "ev.h5"
    batch = random_batch(5000, seed=3)
    with NativeWriter(path, chunk_events=1000) as w:
        w.write(batch)
    with h5py.File(path, "r") as f:
        rows = f["events/objects"].chunks[0]
    first = _corrupt_chunk(path, "events/objects", 2)
    with pytest.raises(InputFormatError, match=f"ev.h5, rows {first}-"):
        open_events(path, chunk_size=rows).read_all()
    reader = open_events(path, chunk_size=rows, on_error="skip")
    got = reader.read_all()
    assert len(got) == 5000 - rows
    keep = np.r_[0:first, first + rows:5000]
    np.testing.assert_array_equal(got.objects, batch.objects[keep])
    assert reader.skipped.count == rows
    assert f"rows {first}-{first + rows - 1}" in reader.skipped.summary()


def test_inspect_names_a_recipe_and_its_filter_efficiency(tmp_path) -> None:
    """A file made by a generator recipe (the ADC2021 one) says so in inspect's text, with the
    filter's efficiency per process from its provenance."""
    from darktrigger.replay.readers import open_events
    from darktrigger.replay.storage import write_events
    from darktrigger.replay.summary import format_summary, summarize
    from darktrigger.replay.testing import random_batch

    recipe = {"recipe": "adc2021", "pileup": 20.0, "filter_level": "L1 objects after pile-up and detector",
              "filter_efficiency": {"ato4l": 0.3219}, "filter_efficiency_error": {"ato4l": 0.0084}}
    write_events(tmp_path / "r.h5", random_batch(10, seed=1), provenance={"recipe": recipe})
    text = format_summary(summarize(open_events(tmp_path / "r.h5")))
    assert ("recipe    adc2021: pile-up μ 20.0, filter on L1 objects after pile-up and detector, "
            "efficiency ato4l 0.3219 ± 0.0084") in text
