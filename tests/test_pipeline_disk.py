"""The recorder on a disk that fills mid-run (issue 17, point 6): a small tmpfs as the
output. The run fails with a clear error naming the disk, the events committed so far are
readable by plain h5py, the summary says "failed" and why, and nothing segfaults. Mounting
needs root: skipped with that reason otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from darktrigger.daq.summary import RunSummary
from darktrigger.daq.supervisor import StageFailed, Supervisor
from darktrigger.daq.testing import make_setup, write_topology
from darktrigger.replay.errors import ConfigError

SIZE_MB = 24
MARGIN_MB = 6


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("needs the mount command")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_mid_run_fails_the_run_cleanly(tmp_path: Path, small_disk: Path) -> None:
    import h5py

    root = make_setup(tmp_path / "setup", n_bkg=20_000, model=False)
    out = small_disk / "run"
    path = write_topology(root, "disk.yaml", output=str(out), batch_size=8192,
                          source={"events": 3_000_000, "rate_hz": None},
                          reliability={"min_free_mb": MARGIN_MB})
    sup = Supervisor(path)
    with pytest.raises(StageFailed) as failed:
        sup.run(timeout_s=240, install_signals=False)
    message = str(failed.value)
    assert "stage recorder exited with code" in message
    assert f"disk full: the output disk holding {out}" in message  # named, even if its log is empty
    assert "code -11" not in message  # no segfault
    summary = RunSummary.from_json(out / "run_summary.json")
    assert summary.status == "failed"
    assert summary.stopped_by.startswith(f"disk full: the output disk holding {out} has ")
    assert f"below the margin of {MARGIN_MB} MB" in summary.stopped_by
    with h5py.File(out / "events.h5", "r") as f:  # plain h5py: no repair needed
        committed = int(f["committed"][0])
        assert committed > 10_000  # megabytes of events were written before it filled
        assert f["events"]["event"].shape[0] >= committed


def test_a_run_is_refused_before_it_starts_when_the_disk_is_already_full(tmp_path: Path,
                                                                          small_disk: Path) -> None:
    root = make_setup(tmp_path / "setup", n_bkg=2_000, model=False)
    path = write_topology(root, "full.yaml", output=str(small_disk / "run"),
                          reliability={"min_free_mb": 2 * SIZE_MB})
    with pytest.raises(ConfigError, match=f"disk holding the output {small_disk / 'run'} has .* MB free, less "
                                          f"than the {2 * SIZE_MB} MB a run keeps free"):
        Supervisor(path).preflight()
    assert not (small_disk / "run").exists()
