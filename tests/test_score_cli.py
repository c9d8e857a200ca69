"""``darktrigger score`` (issue 16, item 3): the events written again, in order, with a
``score/<name>`` column per model equal to the model's own scores; any reader's input;
refuses to overwrite without ``--force``; clear errors. (On Dask: tests/test_dask.py.)

Real parts: toy zero-bias events in native files, a Dark Machines CSV, baseline and PCA
models saved to disk and scored by onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.models import get_scorer, load_model
from darktrigger.replay.events import EventBatch
from darktrigger.replay.generators.toy import ToyGenerator
from darktrigger.replay.readers import open_events
from darktrigger.replay.storage import write_events
from darktrigger.replay.testing import random_dm_lines, write_darkmachines


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("score")
    gen = ToyGenerator()
    write_events(root / "a.h5", gen.generate("zero_bias", 3_000, seed=1))
    write_events(root / "b.h5", gen.generate("zero_bias", 2_000, seed=2))
    pca = get_scorer("pca")
    pca.fit(next(gen.generate("zero_bias", 5_000, seed=9, batch_size=5_000)))
    pca.save(root / "pca")
    get_scorer("ht").save(root / "ht")
    write_darkmachines(root / "chan1.csv", random_dm_lines(400, seed=4))
    return root


def _read(path: Path) -> dict[str, np.ndarray]:
    batch = open_events(path).read_all()
    return {name: batch[name] for name in batch.names}


def test_scores_are_the_models_own_and_events_kept_in_order(setup: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = setup / "scored.h5"
    assert main(["score", "--model", str(setup / "pca"), "--model", f"sumpt={setup / 'ht'}",
                 "--events", str(setup / "a.h5"), str(setup / "b.h5"), "--out", str(out),
                 "--chunk-events", "1000", "--chunk-size", "700", "--no-progress"]) == 0
    assert "scored 5,000 events with 2 model(s)" in capsys.readouterr().out
    got = _read(out)
    events = EventBatch.concat([open_events(setup / f).read_all() for f in ("a.h5", "b.h5")])
    for name in events.names:  # every input column, every row, in order
        np.testing.assert_array_equal(got[name], events[name], err_msg=name)
    for column, model in (("score/pca", "pca"), ("score/sumpt", "ht")):
        expected = load_model(setup / model, "onnxruntime").score(events)
        np.testing.assert_array_equal(got[column], expected, err_msg=column)
    assert not list(setup.glob(".*.part"))


def test_another_readers_input_and_max_events(setup: Path) -> None:
    out = setup / "dm_scored.h5"
    assert main(["score", "--model", str(setup / "ht"), "--events", str(setup / "chan1.csv"),
                 "--out", str(out), "--max-events", "300", "--no-progress"]) == 0
    got = _read(out)
    events = open_events(setup / "chan1.csv").read_all()[:300]
    assert len(got["score/ht"]) == 300
    np.testing.assert_array_equal(got["score/ht"], load_model(setup / "ht", "onnxruntime").score(events))


def test_refuses_to_overwrite_without_force(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = setup / "exists.h5"
    out.write_bytes(b"keep me")
    args = ["score", "--model", str(setup / "ht"), "--events", str(setup / "b.h5"), "--out", str(out),
            "--no-progress"]
    assert main(args) != 0
    assert f"{out} exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main([*args, "--force"]) == 0
    assert len(_read(out)["score/ht"]) == 2_000


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: ["--model", str(r / "nowhere"), "--events", str(r / "a.h5")], "nowhere: no such model directory"),
    (lambda r: ["--model", str(r / "ht"), "--events", str(r / "missing.h5")], "missing.h5: no such file"),
    (lambda r: ["--model", str(r / "ht"), "--model", f"ht={r / 'pca'}", "--events", str(r / "a.h5")],
     "a second model named 'ht'"),
    (lambda r: ["--model", "=x", "--events", str(r / "a.h5")], "expected DIR or NAME=DIR"),
])
def test_bad_input_is_a_clear_error(setup: Path, capsys: pytest.CaptureFixture[str], change, message) -> None:
    out = setup / "never.h5"
    assert main(["score", *change(setup), "--out", str(out), "--no-progress"]) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_output_cannot_be_an_input(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--model", str(setup / "ht"), "--events", str(setup / "a.h5"),
                 "--out", str(setup / "a.h5"), "--force", "--no-progress"]) != 0
    assert "the output cannot be one of the inputs" in capsys.readouterr().err
    assert len(open_events(setup / "a.h5").read_all()) == 3_000
