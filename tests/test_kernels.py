"""The onnxruntime backend's compiled kernels against the numpy and torch references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darktrigger.models.neural.kernels import features, masked_mse
from darktrigger.models.neural.training import masked_mse as torch_masked_mse
from darktrigger.models.preprocess import Preprocessor
from darktrigger.replay.generators import GENERATORS


def _toy(n: int, seed: int) -> np.ndarray:
    batch = next(GENERATORS.get("toy")().generate("sm_mix", n, seed=seed, batch_size=n))
    return np.ascontiguousarray(batch.objects.reshape(n, 57))


@pytest.mark.parametrize(("turns", "tolerance"), [(0.5, 2e-7), (2.0, 4e-7)])
def test_sin_cos_match_float64(turns: float, tolerance: float) -> None:
    """Within ``turns`` turns of 0: |kernel − float64 sin/cos of the float32 φ| < tolerance."""
    phi = np.linspace(-turns * 2 * np.pi, turns * 2 * np.pi, 19 * 20_001, dtype=np.float32)
    phi = np.concatenate([phi, np.array([np.pi, -np.pi, np.pi / 2, -np.pi / 2, 0.0] * 19, np.float32)])
    flat = np.zeros((len(phi) // 19, 57), np.float32)
    flat[:, 0::3] = 1.0  # every slot filled, pT^¼ = 1
    flat[:, 2::3] = phi.reshape(-1, 19)
    feats, filled = features(flat, *_identity())
    assert filled.all()
    phi64 = flat[:, 2::3].astype(np.float64)
    assert np.abs(feats[:, 37:56] - np.cos(phi64)).max() < tolerance
    assert np.abs(feats[:, 56:75] - np.sin(phi64)).max() < tolerance


def test_any_finite_phi_gives_a_unit_vector() -> None:
    flat = np.zeros((3, 57), np.float32)
    flat[:, 0::3] = 10.0
    flat[:, 2::3] = np.array([[1e6], [-3e7], [3.4e38]], np.float32)
    feats, _ = features(flat, *_identity())
    norm = feats[:, 37:56] ** 2 + feats[:, 56:75] ** 2
    assert np.isfinite(feats).all()
    assert np.allclose(norm, 1.0, atol=1e-5)


def test_features_equal_the_numpy_preprocessing() -> None:
    flat = _toy(5000, seed=3)
    pre = Preprocessor.fit(_toy(5000, seed=4))
    feats, filled = features(flat, pre.shift, pre.scale)
    ref, mask = pre.transform(flat)
    np.testing.assert_allclose(feats, ref, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(filled, (flat[:, 0::3] > 0).astype(np.float32))
    np.testing.assert_array_equal(mask[:, :19], filled)
    # written into caller's buffers, larger than the batch
    buffers = (np.full((6000, 75), np.nan, np.float32), np.full((6000, 19), np.nan, np.float32))
    again, _ = features(flat, pre.shift, pre.scale, out=buffers)
    assert again.base is buffers[0]
    assert np.array_equal(again, feats)


def test_masked_mse_equals_the_training_loss() -> None:
    flat = _toy(3000, seed=5)
    pre = Preprocessor.fit(flat)
    feats, filled = features(flat, pre.shift, pre.scale)
    recon = np.random.default_rng(0).normal(size=feats.shape).astype(np.float32)
    _, mask = pre.transform(flat)
    ref = torch_masked_mse(torch.from_numpy(recon), torch.from_numpy(feats), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(masked_mse(recon, feats, filled), ref, rtol=2e-6)


def test_an_empty_event_has_zero_features_and_zero_error() -> None:
    flat = np.zeros((4, 57), np.float32)
    feats, filled = features(flat, *_identity())
    assert not feats.any()
    assert not filled.any()
    assert not masked_mse(np.ones_like(feats), feats, filled).any()


def _identity() -> tuple[np.ndarray, np.ndarray]:
    pre = Preprocessor.identity()
    return pre.shift, pre.scale
