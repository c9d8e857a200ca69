"""The acceptance: default ``qae`` and ``qvae`` verified bit for bit on 100,000 events.

A file of its own so that, with ``make test``'s two pytest workers, it runs beside the
other firmware tests instead of after them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from darktrigger.firmware import project
from darktrigger.firmware.project import BuildOptions
from darktrigger.firmware.verify import verify
from darktrigger.models.quantised.testing import toy_batch, train_small
from darktrigger.replay.storage import NativeWriter


# -- the acceptance: default models, 100,000 events ---------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["qvae", "qae"])
def test_default_models_verify_on_100k_events(name: str, tmp_path: Path) -> None:
    model = train_small(name, tmp_path / name, n=20000)
    out = tmp_path / f"fw-{name}"
    project.build(model, out, BuildOptions(rtl=True))
    path = tmp_path / "bkg100k.h5"
    with NativeWriter(path) as w:
        for seed in (41, 42):
            w.write(toy_batch("sm_mix", 50_000, seed=seed))
    report = verify(out, path, 100_000)
    assert report.events == 100_000
    assert report.all_equal == 1.0
    assert all(v == 0 for v in report.max_lsb.values())
    assert all(v == 1.0 for v in report.decisions.values())
    assert report.rtl is not None
    assert report.rtl["measured_cycles"] == report.rtl["cycles"]
    if name == "qvae":  # AXOL1TL's budget
        assert report.rtl["measured_cycles"] * report.rtl["clock_ns"] <= 50
