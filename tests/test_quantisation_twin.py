"""Float twins of the quantised scorers (``darktrigger.models.quantised.training`` with ``quantise=False``)."""

from __future__ import annotations

import numpy as np
import pytest

from darktrigger.models import get_scorer
from darktrigger.models.quantised.fixedpoint import Dense, Quant, ReLU, SubInput, SumSquares
from darktrigger.models.quantised.scorers import QuantisedScorer
from darktrigger.models.quantised.testing import float_twin_small


def _float_forward(scorer: QuantisedScorer, params: dict[str, tuple[np.ndarray, np.ndarray]],
                   x: np.ndarray) -> np.ndarray:
    """The scorer's firmware network in float64, no rounding: what a float twin computes."""
    h = x.astype(np.float64)
    for layer in scorer.layers():
        if isinstance(layer, Dense):
            w, b = params[layer.name]
            h = h @ w + b
        elif isinstance(layer, ReLU):
            h = np.maximum(h, 0.0)
        elif isinstance(layer, SubInput):
            h = h - x
        elif isinstance(layer, SumSquares):
            h = (h * h).sum(axis=1)
        else:
            assert isinstance(layer, Quant)  # the rounding the twin leaves out
    return h


@pytest.mark.parametrize("name", ["qvae", "qae"])
def test_float_twin_is_the_same_network_without_rounding(name: str) -> None:
    from darktrigger.models.quantised import training as qkeras_train

    scorer = get_scorer(name, hidden=[16, 8])
    assert isinstance(scorer, QuantisedScorer)
    params, history, xv = float_twin_small(scorer)
    assert history["epochs_run"] == 2
    assert np.isfinite(history["best_loss"])
    assert set(params) == {layer.name for layer in scorer.layers() if isinstance(layer, Dense)}
    # float weights: most of the kept ones are off the grid a quantised model's weights lie
    # on; the pruned ones are 0 in the twin too (the same masks, ``sparsity`` of them)
    enc1 = scorer.layers()[0]
    assert isinstance(enc1, Dense)
    w = params["enc1"][0].astype(np.float64)
    kept = w[w != 0] * 2.0**enc1.weight.frac
    assert np.mean(kept != np.round(kept)) > 0.9
    assert np.mean(w == 0) >= float(scorer.hyperparameters["sparsity"]) - 0.5 / w.size
    net = qkeras_train.firmware_model(scorer, params, quantise=False)
    assert not any(type(layer).__name__.startswith("Q") for layer in net.layers)
    got = np.asarray(net(xv, training=False)).reshape(-1)
    want = _float_forward(scorer, params, xv)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # and unlike the firmware network, the score is not on any fixed-point grid
    assert np.mean(got * 2.0**12 != np.round(got * 2.0**12)) > 0.5
