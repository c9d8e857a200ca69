"""Bad rows in the source's file (issue 17, point 7): with ``source.on_error: skip`` the run
goes on and the summary names the rows skipped, file by file; with ``fail`` (the default)
the first bad row ends the source with an error naming the file and the row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darktrigger.daq.local import run_threads
from darktrigger.daq.summary import RunSummary, format_summary
from darktrigger.daq.testing import make_setup, write_topology
from darktrigger.daq.topology import Topology
from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.storage import write_events
from darktrigger.replay.testing import random_batch

N = 20_000
BAD_ROWS = (17, 12_345)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_setup(tmp_path_factory.mktemp("bad-rows"), n_bkg=2_000, model=False)
    batch = random_batch(N, seed=3)
    objects = batch.columns["objects"].copy()
    objects[BAD_ROWS[0], 0, 0] = np.nan  # a NaN pT
    objects[BAD_ROWS[1], 1, 1] = np.inf
    write_events(root / "bad.h5", batch.with_columns(objects=objects))
    return root


def test_with_skip_the_run_goes_on_and_the_summary_names_the_rows(root: Path) -> None:
    path = write_topology(root, "skip.yaml", source={"mix": None, "files": ["bad.h5"], "loop": False,
                                                     "events": None, "on_error": "skip"})
    summary = run_threads(Topology.from_yaml(path), timeout_s=120)
    assert summary.status == "complete", summary.stopped_by
    assert (summary.events_in, summary.events_lost, summary.events_duplicated) == (N - len(BAD_ROWS), 0, 0)
    report = summary.rows_skipped["bad.h5"]
    assert report["count"] == len(BAD_ROWS)
    assert [e.split(":")[0] for e in report["examples"]] == [f"row {r}" for r in BAD_ROWS]
    back = RunSummary.from_json(Path(summary.events_file).parent / "run_summary.json")
    assert back.rows_skipped == summary.rows_skipped  # written and read back
    assert "skipped 2 bad row(s) of bad.h5: row 17: " in format_summary(back)


def test_with_fail_the_first_bad_row_ends_the_run_naming_it(root: Path) -> None:
    path = write_topology(root, "fail.yaml", source={"mix": None, "files": ["bad.h5"], "loop": False,
                                                     "events": None})
    assert Topology.from_yaml(path).source.on_error == "fail"  # the default
    with pytest.raises(InputFormatError, match=f"bad.h5, row {BAD_ROWS[0]}: "):
        run_threads(Topology.from_yaml(path), timeout_s=120)


def test_on_error_must_be_fail_or_skip(root: Path) -> None:
    with pytest.raises(ConfigError, match="source.on_error must be 'fail' .* or 'skip' .* got 'ignore'"):
        Topology.from_yaml(write_topology(root, "bad-on-error.yaml", source={"on_error": "ignore"}))
