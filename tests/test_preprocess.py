"""Preprocessing: φ as an angle, masks from pT, scaling fitted on filled slots, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from darktrigger.models.neural.inference import ColumnPreprocess
from darktrigger.models.preprocess import (
    MIN_STD,
    MODEL_FEATURE_NAMES,
    N_MODEL_FEATURES,
    PREPROCESS_FILE,
    PreprocessModule,
    Preprocessor,
)
from darktrigger.replay.errors import DarkTriggerError, SchemaError
from darktrigger.replay.events import SLOTS
from darktrigger.replay.testing import random_batch


@pytest.fixture(scope="module")
def fitted() -> tuple[Preprocessor, np.ndarray]:
    flat = random_batch(3000, seed=5).flat.copy()
    return Preprocessor.fit(flat), flat


def test_feature_layout() -> None:
    assert N_MODEL_FEATURES == 75 == len(MODEL_FEATURE_NAMES) == len(set(MODEL_FEATURE_NAMES))
    assert "eta:met" not in MODEL_FEATURE_NAMES  # MET has no η
    assert MODEL_FEATURE_NAMES[:2] == ("pt:met", "pt:egamma0")
    assert "sin:jet9" in MODEL_FEATURE_NAMES


def test_phi_is_an_angle(fitted: tuple[Preprocessor, np.ndarray]) -> None:
    pre, flat = fitted
    shifted = flat.copy()
    shifted[:, 2::3] += 2 * np.pi
    feats, mask = pre.transform(flat)
    feats2, mask2 = pre.transform(shifted)
    np.testing.assert_array_equal(mask, mask2)
    np.testing.assert_allclose(feats2, feats, rtol=0, atol=2e-6)
    at_pi, at_minus_pi = flat[:1].copy(), flat[:1].copy()
    at_pi[0, 2::3] = np.float32(np.pi)
    at_minus_pi[0, 2::3] = -np.float32(np.pi)
    np.testing.assert_allclose(pre.transform(at_pi)[0], pre.transform(at_minus_pi)[0], atol=1e-6)


def test_empty_slots_are_masked_and_zero(fitted: tuple[Preprocessor, np.ndarray]) -> None:
    pre, flat = fitted
    feats, mask = pre.transform(flat)
    pt = flat[:, 0::3]
    filled = pt > 0
    expected_mask = np.concatenate([filled, filled[:, 1:], filled, filled], axis=1)
    np.testing.assert_array_equal(mask, expected_mask.astype(np.float32))
    assert (feats[mask == 0] == 0).all()
    empty_feats, empty_mask = pre.transform(np.zeros((3, 57), np.float32))
    assert not empty_feats.any()
    assert not empty_mask.any()


def test_met_eta_is_ignored(fitted: tuple[Preprocessor, np.ndarray]) -> None:
    pre, flat = fitted
    other = flat[:10].copy()
    other[:, 1] = 3.0  # MET η, which the event model keeps at 0
    np.testing.assert_array_equal(pre.transform(other)[0], pre.transform(flat[:10])[0])


def test_scaling_uses_filled_slots_only() -> None:
    rng = np.random.default_rng(3)
    obj = np.zeros((1000, 19, 3), np.float32)
    jet0 = SLOTS["jet"].start
    obj[:, jet0, 0] = rng.uniform(20, 200, 1000)
    obj[:500, jet0, 0] = 0  # half the events have no jet: must not pull the mean to 0
    obj[:, jet0, 1] = np.where(obj[:, jet0, 0] > 0, rng.normal(1.0, 0.5, 1000), 0)
    pre = Preprocessor.fit(obj.reshape(-1, 57))
    rootpt = np.sqrt(np.sqrt(obj[500:, jet0, 0].astype(np.float64)))
    i_pt = MODEL_FEATURE_NAMES.index("pt:jet0")
    assert pre.shift[i_pt] == pytest.approx(rootpt.mean(), rel=1e-5)
    assert 1 / pre.scale[i_pt] == pytest.approx(rootpt.std(), rel=1e-4)
    feats, mask = pre.transform(obj.reshape(-1, 57))
    filled = mask[:, i_pt] > 0
    assert abs(feats[filled, i_pt].mean()) < 1e-4
    assert feats[filled, i_pt].std() == pytest.approx(1, rel=1e-3)
    i_eta = MODEL_FEATURE_NAMES.index("eta:jet0")
    assert pre.shift[i_eta] == pytest.approx(obj[500:, jet0, 1].mean(), rel=1e-4)


def test_sparse_slots_borrow_type_statistics_and_std_is_floored() -> None:
    obj = np.zeros((500, 19, 3), np.float32)
    jets = SLOTS["jet"]
    obj[:, jets.start, 0] = 100.0  # constant pT in jet0: std 0 → floored
    obj[:5, jets.start + 1, 0] = 50.0  # 5 events in jet1: too few for its own statistics
    pre = Preprocessor.fit(obj.reshape(-1, 57))
    i0, i1 = MODEL_FEATURE_NAMES.index("pt:jet0"), MODEL_FEATURE_NAMES.index("pt:jet1")
    assert 1 / pre.scale[i0] == pytest.approx(MIN_STD)
    pooled = np.sqrt(np.sqrt(np.r_[np.full(500, 100.0), np.full(5, 50.0)]))
    assert pre.shift[i1] == pytest.approx(pooled.mean(), rel=1e-6)
    i9 = MODEL_FEATURE_NAMES.index("pt:jet9")  # never filled: the pooled jet statistics
    assert pre.shift[i9] == pytest.approx(pooled.mean(), rel=1e-6)
    i_mu = MODEL_FEATURE_NAMES.index("pt:muon0")  # no muon at all: left unscaled
    assert (pre.shift[i_mu], pre.scale[i_mu]) == (0.0, 1.0)
    assert np.isfinite(pre.scale).all()
    assert np.isfinite(pre.shift).all()


def test_save_load_roundtrip_is_exact(tmp_path, fitted: tuple[Preprocessor, np.ndarray]) -> None:
    pre, _ = fitted
    pre.save(tmp_path)
    back = Preprocessor.load(tmp_path)
    np.testing.assert_array_equal(back.shift, pre.shift)
    np.testing.assert_array_equal(back.scale, pre.scale)
    assert json.loads((tmp_path / PREPROCESS_FILE).read_text())["features"] == list(MODEL_FEATURE_NAMES)


@pytest.mark.parametrize("damage", ["kind", "length", "json"])
def test_bad_preprocess_file(tmp_path, fitted: tuple[Preprocessor, np.ndarray], damage: str) -> None:
    pre, _ = fitted
    path = pre.save(tmp_path)
    data = pre.to_dict()
    if damage == "kind":
        data["kind"] = "something_else"
        path.write_text(json.dumps(data))
    elif damage == "length":
        data["scale"] = data["scale"][:10]
        path.write_text(json.dumps(data))
    else:
        path.write_text("{not json")
    with pytest.raises(SchemaError, match=PREPROCESS_FILE) as info:
        Preprocessor.load(tmp_path)
    assert isinstance(info.value, DarkTriggerError)
    assert isinstance(info.value, ValueError)


def test_torch_modules_match_numpy(fitted: tuple[Preprocessor, np.ndarray]) -> None:
    pre, flat = fitted
    feats, mask = pre.transform(flat)
    with torch.no_grad():
        t_feats, t_mask = PreprocessModule(pre)(torch.from_numpy(flat))
        c_feats, c_mask = ColumnPreprocess(pre)(torch.from_numpy(flat))
    np.testing.assert_allclose(t_feats.numpy(), feats, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t_mask.numpy(), mask)
    np.testing.assert_array_equal(c_feats.numpy().T, t_feats.numpy())
    filled = c_mask.numpy().T  # the scoring graph carries the 19 per-slot rows
    np.testing.assert_array_equal(np.concatenate([filled, filled[:, 1:], filled, filled], axis=1), mask)


def test_other_preprocessing_kind_says_retrain(tmp_path, fitted: tuple[Preprocessor, np.ndarray]) -> None:
    pre, _ = fitted
    data = pre.to_dict()
    data["kind"] = "log1p_pt_eta_cossin_v1"
    (tmp_path / PREPROCESS_FILE).write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"log1p_pt_eta_cossin_v1.*retrain"):
        Preprocessor.load(tmp_path)
