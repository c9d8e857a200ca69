"""Shared fixtures: small, seeded event batches made without any generator; the order
the test files run in under ``make test``'s two workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from darktrigger.replay.events import EventBatch
from darktrigger.replay.testing import random_batch


@pytest.fixture
def batch() -> EventBatch:
    return random_batch(1000, seed=42)


#: the longest test files (minutes each on the 2-core machine), longest first: ``make test``
#: hands whole files to its two workers in collection order, so these start first and the
#: many short files fill in around them, rather than one long file running alone at the end
LONG_FILES = ("test_readme_commands.py", "test_firmware_100k.py", "test_firmware.py",
              "test_pipeline_processes.py", "test_hunt.py", "test_pythia.py", "test_progress.py",
              "test_pythia_zero_bias.py", "test_pipeline_restarts.py", "test_emulator.py",
              "test_monitoring_integration.py", "test_dask.py", "test_demo.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(LONG_FILES)))  # stable
