"""``darktrigger run`` as a user meets it: an output folder with an earlier run is refused
unless ``--force``, a run that fails on a missing input changes no file, and a paced run
reports its progress while it goes (issue 19, points 3 and 5)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from darktrigger.daq.summary import RunSummary
from darktrigger.daq.testing import free_metrics_base, make_setup, write_topology


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_setup(tmp_path_factory.mktemp("run-cli"), n_bkg=5_000, model=False)


def _run(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``darktrigger run`` from ``cwd`` with relative paths, as a user types it."""
    return subprocess.run([sys.executable, "-m", "darktrigger", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: (its bytes, its mtime in ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def previous_run(root: Path) -> Path:
    """A topology whose output folder holds a finished run's files."""
    config = write_topology(root, "again.yaml", source={"events": 20_000})
    done = _run(root, "--config", config.name)
    assert done.returncode == 0, done.stdout + done.stderr
    return config


def test_a_folder_with_a_previous_run_is_refused_without_force(root: Path, previous_run: Path) -> None:
    out = root / "out-again"
    before = _files(out)
    assert {"events.h5", "run_summary.json"} <= set(before)
    refused = _run(root, "--config", previous_run.name)
    assert refused.returncode != 0
    assert "is not empty" in refused.stderr
    assert "events.h5" in refused.stderr
    assert "run_summary.json" in refused.stderr
    assert "--force" in refused.stderr  # and what to do
    assert _files(out) == before


def test_force_replaces_the_previous_run(root: Path, previous_run: Path) -> None:
    config = write_topology(root, "forced.yaml", output="out-again", run=7, source={"events": 12_288})
    forced = _run(root, "--config", config.name, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    summary = RunSummary.from_json(root / "out-again" / "run_summary.json")
    assert (summary.run, summary.events_in) == (7, 12_288)


@pytest.mark.parametrize("force", [False, True])
def test_a_missing_source_file_changes_no_file(root: Path, previous_run: Path, force: bool) -> None:
    out = root / "out-again"
    before = _files(out)
    config = write_topology(root, "missing.yaml", output="out-again",
                            source={"mix": {"bkg.h5": 0.99, "nosuch.h5": 0.01}})
    failed = _run(root, "--config", config.name, *(["--force"] if force else []))
    assert failed.returncode != 0
    assert "nosuch.h5 does not exist" in failed.stderr
    assert _files(out) == before  # bytes and mtimes: not one file touched, not even with --force


def test_a_missing_model_or_keys_folder_changes_no_file(root: Path, previous_run: Path) -> None:
    out = root / "out-again"
    before = _files(out)
    config = write_topology(root, "nokeys.yaml", output="out-again", security={"keys": "nokeys"})
    failed = _run(root, "--config", config.name, "--force")
    assert failed.returncode != 0
    assert "CURVE key file(s)" in failed.stderr
    assert "darktrigger keys generate" in failed.stderr
    menu = yaml.safe_load((root / "menu.yaml").read_text())
    menu["models"] = {"vae": {"path": "models/nosuch", "variant": "mu2"}}
    (root / "menu-nomodel.yaml").write_text(yaml.safe_dump(menu))
    config = write_topology(root, "nomodel.yaml", output="out-again", menu="menu-nomodel.yaml")
    failed = _run(root, "--config", config.name, "--force")
    assert failed.returncode != 0
    assert "models/nosuch does not exist" in failed.stderr, failed.stderr
    assert _files(out) == before


def test_a_paced_run_reports_progress_every_few_seconds(root: Path) -> None:
    config = write_topology(root, "paced.yaml", source={"rate_hz": 100_000, "events": 400_000},
                            metrics={"enabled": True, "host": "127.0.0.1", "base_port": free_metrics_base(2),
                                     "live_page": False})
    done = _run(root, "--config", config.name, "--progress", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = re.findall(r"darktrigger run: \[\s*(\d+) s\] events in ([\d,]+)  accepted ([\d,]+)(.*)", done.stderr)
    assert len(lines) >= 2, done.stderr  # a ~4 s run: a line each second once the stages serve
    seconds = [int(s) for s, *_ in lines]
    events = [int(e.replace(",", "")) for _, e, *_ in lines]
    assert seconds == sorted(seconds)
    assert events == sorted(events)
    assert 0 < events[-1] <= 400_000
    assert any("events/s)" in rest for *_, rest in lines)
    assert "run summary:" in done.stdout  # the summary still ends the run, on stdout


def test_progress_zero_is_quiet(root: Path) -> None:
    config = write_topology(root, "quiet.yaml", source={"events": 20_000})
    done = _run(root, "--config", config.name, "--progress", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "events in" not in done.stderr
    assert os.path.exists(root / "out-quiet" / "run_summary.json")


def test_a_mixture_that_cannot_be_replayed_is_refused_before_anything_starts(root: Path) -> None:
    """An injected rate above the crossing rate: named at once, nothing written."""
    config = write_topology(root, "badmix.yaml", source={
        "mix": {"bkg.h5": "background", "sig.h5": {"rate_hz": 5e7, "fraction": 0.01}}})
    out = _run(root, "--config", config.name)
    assert out.returncode != 0
    assert ("source: mixture {bkg.h5: background, sig.h5: {rate_hz: 5e+07, fraction: 0.01}}: the injected "
            "rates sum to 50,000,000 Hz, not below the crossing rate 40,000,000 Hz") in out.stderr  # the menu's
    assert not (root / "out-badmix").exists()


def test_a_failed_run_exits_1_and_says_why(root: Path) -> None:
    """A run that does not end within --timeout failed: exit status 1 (never 0), the reason on
    stderr and in the summary's status (issue 17, point 3)."""
    config = write_topology(root, "slow.yaml", source={"rate_hz": 20_000, "events": 10_000_000})
    done = _run(root, "--config", config.name, "--timeout", "3", "--progress", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "did not end within 3 s" in done.stderr
    summary = RunSummary.from_json(root / "out-slow" / "run_summary.json")
    assert (summary.status, summary.stopped_by) == ("failed", "timeout")
