"""Issue 15, item 5 and the generator warning of item 4: ``train`` and ``evaluate`` on bad or
mismatched input name the file or model and what was expected."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.daq.cli.models import origin, warn_on_mixed_origins
from darktrigger.replay.readers import open_events
from darktrigger.replay.storage import write_events
from darktrigger.replay.testing import random_adc_particles, write_adc2021


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    for name, proc, n, seed in [("bkg", "sm_mix", 3000, 1), ("ato4l", "ato4l", 500, 3)]:
        assert main(["generate", "--generator", "toy", "--process", proc, "--events", str(n),
                     "--seed", str(seed), "--out", str(d / f"{name}.h5"), "--no-progress"]) == 0
    write_adc2021(d / "adc_signal.h5", random_adc_particles(500, seed=4))
    assert main(["train", "--model", "ae", "--background", str(d / "bkg.h5"), "--out", str(d / "ae"),
                 "--epochs", "1", "--no-progress"]) == 0
    return d


def test_a_signal_from_another_generator_is_warned_of(d: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert origin(d / "bkg.h5") == "toy"
    assert origin(d / "adc_signal.h5") == "adc2021 file"
    assert warn_on_mixed_origins(d / "bkg.h5", {"ato4l": d / "ato4l.h5"}) == []
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", "--model", str(d / "ae"), "--background", str(d / "bkg.h5"),
                     "--signal", f"ato4l={d / 'ato4l.h5'}", "--signal", f"adc={d / 'adc_signal.h5'}",
                     "--no-progress"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert warned[0].startswith(f"signal adc ({d / 'adc_signal.h5'}) comes from adc2021 file, "
                                f"the background ({d / 'bkg.h5'}) from toy")


def test_nan_scores_name_the_model_and_the_file(d: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    broken = tmp_path / "ae_nan"
    shutil.copytree(d / "ae", broken)
    state = torch.load(broken / "weights.pt")
    first = next(iter(state))
    state[first] = state[first] * float("nan")
    torch.save(state, broken / "weights.pt")
    assert main(["evaluate", "--model", str(broken), "--backend", "torch", "--background", str(d / "bkg.h5"),
                 "--signal", f"ato4l={d / 'ato4l.h5'}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (f"model ae ({broken}), scores of the background {d / 'bkg.h5'}: expected finite scores, "
            "got 3000 NaN/inf value(s)") in err


def test_training_on_no_events_names_the_file(d: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.h5"
    write_events(empty, open_events(d / "bkg.h5").read_all()[:0])
    assert main(["train", "--model", "ae", "--background", str(empty), "--out", str(tmp_path / "m"),
                 "--no-progress"]) == 2
    assert f"no background events in {empty}" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_nan_in_an_input_names_the_file_and_row(d: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = open_events(d / "bkg.h5").read_all()
    objects = batch["objects"].copy()
    objects[7, 3, 0] = np.nan
    bad = tmp_path / "nan.h5"
    write_events(bad, batch.with_columns(objects=objects))
    assert main(["evaluate", "--model", str(d / "ae"), "--background", str(bad),
                 "--signal", f"ato4l={d / 'ato4l.h5'}", "--no-progress"]) == 2
    assert f"{bad}, row 7: expected a finite number" in capsys.readouterr().err
