"""Bad rows in the source's file (issue 17, point 7): a NaN row, an infinite row and a corrupt
chunk. With ``source.on_error: skip`` the run goes on and the summary names the rows
skipped, file by file; with ``fail`` (the default)
the first bad row ends the source with an error naming the file and the row."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from darktrigger.daq.local import run_threads
from darktrigger.daq.summary import RunSummary, format_summary
from darktrigger.daq.testing import make_setup, write_topology
from darktrigger.daq.topology import Topology
from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.storage import write_events
from darktrigger.replay.testing import random_batch

N = 150_000
BAD_ROWS = (17, 12_345)
#: the source's reader reads this many rows at a time: a corrupt HDF5 chunk costs it one block
READ_ROWS = 65_536


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_setup(tmp_path_factory.mktemp("bad-rows"), n_bkg=2_000, model=False)
    batch = random_batch(N, seed=3)
    objects = batch.columns["objects"].copy()
    objects[BAD_ROWS[0], 0, 0] = np.nan  # a NaN pT
    objects[BAD_ROWS[1], 1, 1] = np.inf
    write_events(root / "bad.h5", batch.with_columns(objects=objects))
    with h5py.File(root / "bad.h5", "r") as f:  # garbage over the stored bytes of a chunk in block 2
        ds = f["events/objects"]
        index = next(i for i in range(ds.id.get_num_chunks())
                     if READ_ROWS < ds.id.get_chunk_info(i).chunk_offset[0] < 2 * READ_ROWS - ds.chunks[0])
        info = ds.id.get_chunk_info(index)
    with (root / "bad.h5").open("r+b") as raw:
        raw.seek(int(info.byte_offset))
        raw.write(b"\xa5" * int(info.size))
    return root


def test_with_skip_the_run_goes_on_and_the_summary_names_the_rows(root: Path) -> None:
    path = write_topology(root, "skip.yaml", source={"mix": None, "files": ["bad.h5"], "loop": False,
                                                     "events": None, "on_error": "skip"})
    summary = run_threads(Topology.from_yaml(path), timeout_s=120)
    assert summary.status == "complete", summary.stopped_by
    skipped = len(BAD_ROWS) + READ_ROWS  # two bad rows, and the block holding the corrupt chunk
    assert (summary.events_in, summary.events_lost, summary.events_duplicated) == (N - skipped, 0, 0)
    report = summary.rows_skipped["bad.h5"]
    assert report["count"] == skipped
    assert [e.split(":")[0] for e in report["examples"]] == [
        *(f"row {r}" for r in BAD_ROWS), f"rows {READ_ROWS}-{2 * READ_ROWS - 1}"]
    back = RunSummary.from_json(Path(summary.events_file).parent / "run_summary.json")
    assert back.rows_skipped == summary.rows_skipped  # written and read back
    assert f"skipped {skipped} bad row(s) of bad.h5: row 17: " in format_summary(back)


def test_with_fail_the_first_bad_row_ends_the_run_naming_it(root: Path) -> None:
    path = write_topology(root, "fail.yaml", source={"mix": None, "files": ["bad.h5"], "loop": False,
                                                     "events": None})
    assert Topology.from_yaml(path).source.on_error == "fail"  # the default
    with pytest.raises(InputFormatError, match=f"bad.h5, row {BAD_ROWS[0]}: "):
        run_threads(Topology.from_yaml(path), timeout_s=120)


def test_on_error_must_be_fail_or_skip(root: Path) -> None:
    with pytest.raises(ConfigError, match="source.on_error must be 'fail' .* or 'skip' .* got 'ignore'"):
        Topology.from_yaml(write_topology(root, "bad-on-error.yaml", source={"on_error": "ignore"}))
