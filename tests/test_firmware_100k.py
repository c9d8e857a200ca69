"""The acceptance: default ``qae``, ``qvae`` and ``qaxo`` verified bit for bit on 100,000 events.

The ``qvae`` project is built with ``--emulator`` too (issue 16, item 2): ``firmware verify``
includes its hls4mlEmulator plugin, and the standalone CMSSW-style driver
(``firmware/cmssw/driver.cc``) loading the same ``.so`` equals the software scores on the
100,000 events; the project README's plugin blocks run as printed.

A file of its own so that, with ``make test``'s two pytest workers, it runs beside the
other firmware tests instead of after them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from darktrigger.firmware import emulator, project
from darktrigger.firmware.project import BuildOptions
from darktrigger.firmware.verify import verify
from darktrigger.models import load_model
from darktrigger.models.quantised.testing import toy_batch, train_small
from darktrigger.replay.l1units import hardware_counts
from darktrigger.replay.readers import open_events
from darktrigger.replay.storage import NativeWriter


# -- the acceptance: default models, 100,000 events ---------------------------------------
@pytest.fixture(scope="module")
def events_100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "bkg100k.h5"
    with NativeWriter(path) as w:
        for seed in (41, 42):
            w.write(toy_batch("sm_mix", 50_000, seed=seed))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qvae", "qae", "qaxo"])
def test_default_models_verify_on_100k_events(name: str, events_100k: Path, tmp_path: Path) -> None:
    """QKeras, the C simulation, the testbench and both RTL builds equal the reference on
    100,000 events; ``qvae`` and ``qaxo`` (issue 15: eight Dense layers deep, which needs
    :func:`darktrigger.firmware.rtl.trace`'s rescaling) within AXOL1TL's 50 ns."""
    model = train_small(name, tmp_path / name, n=20000)
    out = tmp_path / f"fw-{name}"
    project.build(model, out, BuildOptions(rtl=True, emulator=name == "qvae"))
    report = verify(out, events_100k, 100_000)
    assert report.events == 100_000
    assert report.all_equal == 1.0
    assert set(report.equal) >= {"QKeras", "hls4ml C sim (predict)", "testbench (g++)", "RTL (Verilator)"}
    assert all(v == 0 for v in report.max_lsb.values())
    assert all(v == 1.0 for v in report.decisions.values())
    assert report.rtl is not None
    assert report.rtl["measured_cycles"] == report.rtl["cycles"]
    if name in ("qvae", "qaxo"):  # AXOL1TL's budget
        assert report.rtl["measured_cycles"] * report.rtl["clock_ns"] <= 50
    if name == "qvae":
        assert report.emulator is not None
        assert report.equal["CMSSW plugin (hls4mlEmulator)"] == 1.0
        check_plugin(out, events_100k, tmp_path)


def check_plugin(out: Path, events: Path, tmp_path: Path) -> None:
    """The exported plugin, run by the standalone driver as CMSSW runs it, equals the software
    scores (as CMSSW reads them: floor(score * 2^m)) event by event; the README's blocks run."""
    record = project.read_manifest(out).emulator
    assert record is not None
    assert record["tb_equal"] == record["tb_events"] == project.TB_EVENTS
    batch = open_events(events).read_all()
    software = load_model(out, "onnxruntime").score(batch)
    driver = emulator.compile_driver(tmp_path / "driver")
    got = emulator.run_driver(driver, out / "emulator" / record["plugin"], hardware_counts(batch.objects), tmp_path)
    assert len(got) == 100_000
    np.testing.assert_array_equal(got, emulator.cmssw_score(software, record["score_shift"]))
    assert len(np.unique(got)) > 1000
    readme = (out / "README.md").read_text()
    section = readme.split("## hls4mlEmulator plugin for CMSSW")[1].split("\n## ")[0]
    commands = [b.split("\n", 1)[1] for b in section.split("```bash")[1:]]
    assert len(commands) == 2
    for block in commands:
        run = subprocess.run(["bash", "-ec", block.split("```")[0]], cwd=out, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
    assert f"the plugin equals the model on all {project.TB_EVENTS} test vectors" in run.stdout
