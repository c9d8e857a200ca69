"""Shared fixtures: small, seeded event batches made without any generator."""

from __future__ import annotations

import pytest

from darktrigger.replay.events import EventBatch
from darktrigger.replay.testing import random_batch


@pytest.fixture
def batch() -> EventBatch:
    return random_batch(1000, seed=42)
