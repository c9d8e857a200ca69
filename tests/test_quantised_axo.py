"""``qaxo`` (issue 15, item 3): the firmware network with the features carried through the
autoencoder computes exactly the narrow autoencoder as trained; its float twin is that
network without rounding; it saves, loads and runs in onnxruntime bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darktrigger.models import get_scorer, load_model
from darktrigger.models.quantised.axo import QAXOScorer
from darktrigger.models.quantised.fixedpoint import Dense, Quant
from darktrigger.models.quantised.testing import float_twin_small, toy_batch
from darktrigger.replay.errors import ConfigError

pytest.importorskip("qkeras")


@pytest.fixture(scope="module")
def trained() -> QAXOScorer:
    scorer = get_scorer("qaxo")
    assert isinstance(scorer, QAXOScorer)
    scorer.fit(toy_batch("sm_mix", 4000, seed=1), validation=toy_batch("sm_mix", 800, seed=2), epochs=3, seed=0)
    return scorer


def test_the_pass_through_is_the_narrow_autoencoder_exactly(trained: QAXOScorer) -> None:
    x = trained.inputs(toy_batch("sm_mix", 3000, seed=5))
    out = trained.fixed_outputs(x)
    params = trained.network().params()
    f = out["feat_q"]
    n = f.shape[1]
    assert n == 10
    assert np.abs(f).max() > 0  # features carry something
    # every autoencoder layer carries g = f + c unchanged behind its own units
    c = trained.offset
    assert c == 4.0
    for name in ("arelu1", "arelu2", "latent_q", "drelu1", "drelu2"):
        np.testing.assert_array_equal(out[name][:, -n:], f + c, err_msg=name)
    # the last layer is the narrow decoder output minus the features, rounded once
    w, b = params["recon"]
    narrow = out["drelu2"][:, :-n] @ w[:-n] + (b - c)
    diff_q = next(layer for layer in trained.layers() if layer.name == "diff_q")
    assert isinstance(diff_q, Quant)
    np.testing.assert_array_equal(out["diff_q"], diff_q.fmt.quantize(narrow - f))
    np.testing.assert_array_equal(out["score"][:, 0], np.sum(out["diff_q"] ** 2, axis=1))
    # the pass-through weights are fixed: 1, −1 and 0 only
    np.testing.assert_array_equal(params["ae1"][0][:, -n:], np.eye(n))
    np.testing.assert_array_equal(params["recon"][0][-n:], -np.eye(n))


def test_qkeras_torch_onnxruntime_and_a_reload_agree_bit_for_bit(trained: QAXOScorer, tmp_path: Path) -> None:
    batch = toy_batch("sm_mix", 2000, seed=7)
    x = trained.inputs(batch)
    score = trained.score(batch)
    keras = np.asarray(trained.keras_model()(x, training=False)).reshape(-1)
    np.testing.assert_array_equal(keras, score)
    trained.save(tmp_path / "qaxo")
    for backend in ("torch", "onnxruntime"):
        np.testing.assert_array_equal(load_model(tmp_path / "qaxo", backend=backend).score(batch), score)


def test_the_float_twin_is_the_same_network_without_rounding() -> None:
    from darktrigger.models.quantised import training as qkeras_train

    scorer = get_scorer("qaxo", sparsity=0.0)
    assert isinstance(scorer, QAXOScorer)
    params, _, xv = float_twin_small(scorer)
    net = qkeras_train.firmware_model(scorer, scorer.firmware_params(params), quantise=False)
    got = np.asarray(net(xv, training=False)).reshape(-1)
    # the narrow float forward pass: extractor, features, autoencoder, squared error
    h = xv.astype(np.float64)
    for name in ("ext1",):
        h = np.maximum(h @ params[name][0] + params[name][1], 0)
    f = h @ params["feat"][0] + params["feat"][1]
    h = f
    for name, relu in (("ae1", True), ("ae2", True), ("latent", False), ("dec1", True), ("dec2", True)):
        h = h @ params[name][0] + params[name][1]
        h = np.maximum(h, 0) if relu else h
    want = np.sum((h @ params["recon"][0] + params["recon"][1] - f) ** 2, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert sorted(params) == sorted(layer.name for layer in scorer.layers() if isinstance(layer, Dense))


def test_types_that_cannot_carry_the_features_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot carry the features"):
        get_scorer("qaxo", latent_bits=8, latent_integer=2)
    with pytest.raises(ConfigError, match="cannot carry the features"):
        get_scorer("qaxo", feature_bits=10, feature_integer=2)
