"""The quantised scorers: L1 integer inputs, QKeras training, exact fixed-point scoring."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from darktrigger.daq.cli import main
from darktrigger.models import get_scorer, load_model
from darktrigger.models.card import ModelFileError
from darktrigger.models.quantised.fixedpoint import Fmt
from darktrigger.models.quantised.preprocess import QPREPROCESS_KIND, QPreprocessor
from darktrigger.models.quantised.scorers import QuantisedScorer
from darktrigger.models.quantised.testing import toy_batch
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.l1units import cmssw_inputs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    train = toy_batch("sm_mix", 4000, seed=21)
    out = {}
    for name in ("qvae", "qae"):
        scorer = get_scorer(name, hidden=[16, 8])
        history = scorer.fit(train, validation=toy_batch("sm_mix", 1000, seed=22), epochs=2,
                             batch_size=256, seed=3)
        assert history["epochs_run"] == 2
        assert len(history["validation_loss"]) == 2
        out[name] = scorer.save(tmp_path_factory.mktemp(name))
    return out


def test_import_models_does_not_import_tensorflow() -> None:
    code = ("import sys, darktrigger.models, darktrigger.models.quantised.training; "
            "print('tensorflow' in sys.modules, 'qkeras' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "False"]


def test_inputs_are_cmssws_with_muons_on_the_muon_lsbs() -> None:
    obj = np.zeros((4, 19, 3), np.float32)
    obj[0, 9] = (40.0, 1.0, np.pi)
    obj[1, 9] = (40.0, 1.0, -np.pi)
    obj[2, 9] = (40.0, 1.0, np.float32(0.3 + 2 * np.pi))
    obj[3, 9] = (0.0, 2.0, 1.0)  # an empty slot with junk η, φ
    obj[:, 5] = (20.7, 1.0, -np.pi)  # a muon: η / 0.010875, φ in 576 counts
    x = QPreprocessor.cmssw_inputs(obj.reshape(4, 57))
    assert x[0, 27:30].tolist() == x[1, 27:30].tolist() == [40, 23, 72]  # hwPt 80 / 2; φ = ±π: 72
    assert x[2, 29] == round(0.3 / (2 * np.pi / 144))
    assert np.all(x[3, 27:30] == 0)
    assert x[:, 15:18].tolist() == [[20, 92, 288]] * 4  # hwPt 41 / 2 = 20
    np.testing.assert_array_equal(x, cmssw_inputs(obj).astype(np.float32))


def test_numpy_torch_and_onnxruntime_put_floats_on_the_same_inputs(tmp_path: Path) -> None:
    """Floats on and next to the rounding boundaries of every slot's LSBs (the float32
    neighbours of (k + ½)·LSB), out of range and wrapped: the three backends agree bit for bit."""
    import onnxruntime as ort

    from darktrigger.models.quantised.scorers import QInputs
    from darktrigger.replay.l1units import SLOT_ETA_LSB, SLOT_PHI_LSB

    rng = np.random.default_rng(16)
    n = 20_000
    edges = np.stack([(rng.integers(0, 5000, (n, 19)) + 0.5) * 0.5,
                      (rng.integers(-300, 300, (n, 19)) + 0.5) * SLOT_ETA_LSB,
                      (rng.integers(-700, 700, (n, 19)) + 0.5) * SLOT_PHI_LSB], axis=-1).astype(np.float32)
    step = rng.integers(-2, 3, edges.shape).astype(np.float32)
    obj = np.nextafter(edges, edges + step)  # on the edge or one float32 either side
    obj[rng.random((n, 19)) < 0.2, 0] = 0.0
    flat = obj.reshape(n, 57)
    qp = QPreprocessor.fit(toy_batch("sm_mix", 2000, seed=1).flat)
    want = qp.transform(flat)
    module = QInputs(qp).eval()
    np.testing.assert_array_equal(module(torch.from_numpy(flat)).numpy(), want)
    path = tmp_path / "inputs.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's notice; the scorers export the same way
        torch.onnx.export(module, (torch.zeros(2, 57),), str(path), dynamo=False, opset_version=17,
                          input_names=["objects"], output_names=["x"],
                          dynamic_axes={"objects": {0: "n"}, "x": {0: "n"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"objects": flat})[0], want)
    assert np.unique(want).size > 100  # the check saw many different inputs


def test_inputs_are_on_the_grid_and_saturate() -> None:
    bkg = toy_batch("sm_mix", 3000, seed=1)
    qp = QPreprocessor.fit(bkg.flat)
    assert all(0 <= s <= 24 for s in qp.shifts)
    assert max(qp.shifts) >= 4
    x = qp.transform(bkg.flat)
    assert np.array_equal(x * 64, np.round(x * 64))  # 6 fractional bits
    assert x.min() >= -32
    assert x.max() <= 32 - 1 / 64
    big = np.zeros((1, 57), np.float32)
    big[0, 0] = 1e5
    assert qp.transform(big)[0, 0] == 32 - 1 / 64
    assert QPreprocessor.from_dict(qp.to_dict()) == QPreprocessor(qp.shifts, n_fit=qp.n_fit)


def test_fmt_rounds_half_to_even_and_saturates() -> None:
    f = Fmt(4, 2)  # ap_fixed<4,2>: step 0.25, range [-2, 1.75]
    vals = np.array([0.125, 0.375, -0.125, 5.0, -5.0, 1.8])
    assert f.quantize(vals).tolist() == [0.0, 0.5, -0.0, 1.75, -2.0, 1.75]
    assert Fmt.covering(-3.0, 100.0, 4).ap == "ap_fixed<12,8>"


@pytest.mark.parametrize("name", ["qvae", "qae"])
def test_qkeras_torch_onnx_and_reference_agree_exactly(name: str, trained: dict[str, Path]) -> None:
    events = toy_batch("sm_mix", 5000, seed=23)
    scorer = load_model(trained[name])
    assert isinstance(scorer, QuantisedScorer)
    x = scorer.inputs(events)
    ref = scorer.fixed_outputs(x)["score"][:, 0]
    keras = scorer.keras_model().predict(x, batch_size=4096, verbose=0)[:, 0]
    np.testing.assert_array_equal(keras.astype(np.float64), ref)
    np.testing.assert_array_equal(scorer.score(events), ref.astype(np.float32))
    np.testing.assert_array_equal(load_model(trained[name], "onnxruntime").score(events),
                                  ref.astype(np.float32))


def test_model_directory_holds_the_input_table_and_old_inputs_are_refused(
        trained: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    src = trained["qvae"]
    card = json.loads((src / "card.json").read_text())
    assert "inputs.md" in card["files"]
    table = (src / "inputs.md").read_text()
    assert "| 17 | muon0 | hwPhiAtVtx | rad | 2π/576 | 0..575 |" in table
    pre = json.loads((src / "preprocess.json").read_text())
    assert pre["kind"] == QPREPROCESS_KIND
    assert [row["shift"] for row in pre["inputs"]] == pre["shifts"]
    assert pre["inputs"][16]["quantity"] == "hwEtaAtVtx"
    old = shutil.copytree(src, tmp_path / "old")
    (old / "preprocess.json").write_text(json.dumps({**pre, "kind": "l1_hw_units_shift_v1"}))
    with pytest.raises(ModelFileError, match=r"preprocess.json.*'cmssw_inputs_shift_v2', got 'l1_hw_units_shift_v1'.*"
                                          r"train it again"):
        load_model(old)


def test_signal_scores_above_background(trained: dict[str, Path]) -> None:
    bkg, sig = toy_batch("sm_mix", 4000, seed=24), toy_batch("ato4l", 4000, seed=25)
    for name in ("qvae", "qae"):
        scorer = load_model(trained[name])
        assert np.median(scorer.score(sig)) > np.median(scorer.score(bkg)), name


def test_widths_that_float32_cannot_hold_are_refused() -> None:
    with pytest.raises(ConfigError, match="integer"):
        get_scorer("qvae", act_bits=8.5)
    scorer = get_scorer("qvae", input_bits=20, input_integer=10, weight_bits=12, hidden=[8])
    with pytest.raises(ConfigError, match="float32"):
        scorer.fit(toy_batch("sm_mix", 500, seed=1), epochs=1, batch_size=256)


def test_train_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from darktrigger.replay.storage import NativeWriter

    with NativeWriter(tmp_path / "bkg.h5") as w:
        w.write(toy_batch("sm_mix", 2000, seed=5))
    assert main(["train", "--model", "qvae", "--background", str(tmp_path / "bkg.h5"),
                 "--out", str(tmp_path / "m"), "--epochs", "1", "--no-progress",
                 "--set", "sparsity=0.5", "--set", "hidden=[8]"]) == 0
    model = load_model(tmp_path / "m")
    assert model.spec == "qvae"
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["hyperparameters"]["sparsity"] == 0.5
    assert card["hyperparameters"]["hidden"] == [8]
    assert all(z >= 0.5 for z in card["training"]["zero_weights"].values())
    for bad, match in ((["--set", "sparsity"], "KEY=VALUE"), (["--set", "sparsty=0.5"], r"did you mean 'sparsity'\? Known: .*hidden"),
                       (["--set", "sparsity=1.5"], r"sparsity must be a fraction in \[0, 1\)")):
        assert main(["train", "--model", "qvae", "--background", str(tmp_path / "bkg.h5"),
                     "--out", str(tmp_path / "bad"), "--epochs", "1", "--no-progress", *bad]) == 2
        assert re.search(match, capsys.readouterr().err), bad
    assert not (tmp_path / "bad").exists()


def test_sparsity_schedule_and_masks() -> None:
    from darktrigger.models.quantised.training import prune_mask, sparsity_schedule

    assert sparsity_schedule(4, 0.0) == [0.0] * 4
    s = sparsity_schedule(20, 0.8)
    assert s[:4] == [0.0] * 4
    assert s[11:] == [0.8] * 9
    assert all(a <= b for a, b in zip(s, s[1:], strict=False))
    assert sparsity_schedule(1, 0.6) == [0.6]
    with pytest.raises(ConfigError, match="sparsity"):
        sparsity_schedule(5, 1.0)
    w = np.array([[0.5, -0.1], [0.1, -0.7], [0.0, 0.2]], np.float32)
    m = prune_mask(w, 0.5)  # the 3 smallest |w|: 0.0, then the tie 0.1 / -0.1 in order, ...
    assert m.dtype == np.float32
    assert m.tolist() == [[1, 0], [0, 1], [0, 1]]
    assert prune_mask(w, 0.0).all()
    assert not prune_mask(w, 0.99).any()


def test_pruning_trains_the_kept_weights_only() -> None:
    train = toy_batch("sm_mix", 3000, seed=23)
    scorer = get_scorer("qvae", hidden=[16, 8], sparsity=0.75)
    assert isinstance(scorer, QuantisedScorer)
    history = scorer.fit(train, validation=toy_batch("sm_mix", 500, seed=24), epochs=5, batch_size=256, seed=3)
    assert history["sparsity"] == [0.0, 0.65625, 0.75, 0.75, 0.75]
    assert history["best_epoch"] >= 3  # an epoch at the full sparsity
    for name, (w, _) in scorer.network().params().items():
        assert np.mean(w == 0) >= 0.75 - 0.5 / w.size, name  # round(0.75 n) pruned, maybe more rounded to 0
    dense = get_scorer("qvae", hidden=[16, 8], sparsity=0.0)
    dense.fit(train, epochs=1, batch_size=256, seed=3)
    assert dense.training["history"]["sparsity"] == [0.0]


def test_qvae_reconstruction_weights() -> None:
    from darktrigger.models.quantised.scorers import QVAEScorer

    scorer = get_scorer("qvae")
    assert isinstance(scorer, QVAEScorer)
    w = scorer.reco_weight_vector()
    assert w.shape == (57,)
    assert w.dtype == np.float32
    assert w[0] == 8
    assert np.all(w[2::3] == 0)
    assert w[3] == 8 * 64
    assert w[4] == 64
    assert w[27] == 8
    assert w[28] == 1
    flat = get_scorer("qvae", reco_weights={"pt": 1, "eta": 1, "phi": 1},
                      reco_object_weights={"met": 1, "egamma": 1, "muon": 1, "jet": 1})
    assert np.all(flat.reco_weight_vector() == 1)  # type: ignore[attr-defined]
    for bad in ({"pt": 1, "eta": 1}, {"pt": -1, "eta": 1, "phi": 0}, {"pt": 0, "eta": 0, "phi": 0}):
        with pytest.raises(ConfigError, match="reco_weights|all 0"):
            get_scorer("qvae", reco_weights=bad)


def test_encoder_inputs_leave_quantities_out_of_the_network(tmp_path: Path) -> None:
    from darktrigger.models.card import ModelFileError

    scorer = get_scorer("qvae", hidden=[8], encoder_inputs=["pt", "eta"], sparsity=0.5)
    assert isinstance(scorer, QuantisedScorer)
    scorer.fit(toy_batch("sm_mix", 2000, seed=25), epochs=2, batch_size=256, seed=3)
    w = scorer.network().params()["enc1"][0]
    assert not w[2::3].any()  # every φ row held at 0
    kept = np.concatenate([w[0::3], w[1::3]])
    assert np.mean(kept == 0) >= 0.5 - 0.5 / kept.size  # the sparsity counts the kept connections
    saved = scorer.save(tmp_path / "m")
    assert np.array_equal(load_model(saved).score(toy_batch("sm_mix", 300, seed=26)),
                          scorer.score(toy_batch("sm_mix", 300, seed=26)))
    state = torch.load(saved / "weights.pt")
    state["enc1_w"][2, 0] = 0.5  # a φ weight in a model whose card leaves φ out
    torch.save(state, saved / "weights.pt")
    with pytest.raises(ModelFileError, match="encoder_inputs"):
        load_model(saved)
    for bad in (["pt", "pt"], [], ["pt", "mass"], "pt"):
        with pytest.raises(ConfigError, match="encoder_inputs"):
            get_scorer("qvae", encoder_inputs=bad)


def test_the_training_loop_asks_the_scorer_for_its_graph() -> None:
    from darktrigger.models.quantised.scorers import QAEScorer
    from darktrigger.models.quantised.training import LossFn

    calls = []

    class CountingQAE(QAEScorer):  # a quantised scorer the training loop has never heard of
        name = "counting_qae"

        def training_graph(self, *, quantise: bool = True) -> tuple[object, LossFn]:
            calls.append(quantise)
            return super().training_graph(quantise=quantise)

    scorer = CountingQAE(hidden=[8])
    history = scorer.fit(toy_batch("sm_mix", 600, seed=1), epochs=1, batch_size=256)
    assert calls == [True]
    assert history["epochs_run"] == 1
