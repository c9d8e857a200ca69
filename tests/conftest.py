"""Shared fixtures: small, seeded event batches made without any generator."""

from __future__ import annotations

import numpy as np
import pytest

from darktrigger.replay.events import SLOTS, EventBatch


def random_batch(n: int, seed: int = 0, truth: int = 0, extra: bool = False) -> EventBatch:
    """``n`` valid events with a few objects of each type, pT-ordered within a type."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((n, 19, 3), np.float32)
    for kind, sl in SLOTS.items():
        width = sl.stop - sl.start
        pt = rng.exponential(30.0, (n, width)) * (rng.random((n, width)) < 0.5)
        pt = -np.sort(-pt, axis=1)
        filled = pt > 0
        obj[:, sl, 0] = pt
        obj[:, sl, 1] = np.where(filled, rng.normal(0, 1.5, (n, width)), 0) * (kind != "met")
        obj[:, sl, 2] = np.where(filled, rng.uniform(-np.pi, np.pi, (n, width)), 0)
    cols = {"mjj": rng.uniform(1000, 5000, n).astype(np.float32)} if extra else None
    return EventBatch.from_objects(obj, truth=truth, weight=rng.random(n).astype(np.float32),
                                   extra=cols)


@pytest.fixture
def batch() -> EventBatch:
    return random_batch(1000, seed=42)
