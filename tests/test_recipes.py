"""The "how to add" recipes of docs/ARCHITECTURE.md, followed once each.

A reader, a scorer, a trigger seed and a scoring backend are added here through their
registries alone — no other file of darktrigger is touched — and then reached the way a
user reaches the shipped ones: a file opened by content, a model trained, saved and
loaded by name, a menu that names the new seed type and model, a backend by name.
Each is removed from its registry again when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from darktrigger.daq.trigger.menu import Menu, add_scores, load_scorers
from darktrigger.daq.trigger.seeds import SEEDS, Seed, objects_of, register_seed
from darktrigger.models import BACKENDS, SCORERS, load_model, register_backend, register_scorer
from darktrigger.models.base import BatchLike, FitHistory, FitOptions, Scorer, as_flat, get_scorer
from darktrigger.models.card import ModelCard
from darktrigger.replay.events import SLOTS, EventBatch
from darktrigger.replay.readers import READERS, EventReader, open_events, register_reader
from darktrigger.replay.testing import random_batch


# -- a reader: one module, one decorator ----------------------------------------------
class METTextReader(EventReader):
    """MET-only text files: a ``# met-text`` line, then ``pt,phi`` (GeV, rad) a line."""

    description = "MET-only text: '# met-text', then 'pt,phi' a line"
    unit = "line"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return head.startswith(b"# met-text")

    def __iter__(self) -> Iterator[EventBatch]:
        rows = np.loadtxt(self.path, delimiter=",", comments="#", ndmin=2, dtype=np.float32)
        for start in range(0, len(rows), self.chunk_size):
            chunk = rows[start:start + self.chunk_size]
            objects = np.zeros((len(chunk), 19, 3), np.float32)
            objects[:, 0, 0], objects[:, 0, 2] = chunk[:, 0], chunk[:, 1]
            yield self.screen(EventBatch.from_objects(objects), first_row=start + 2)


# -- a scorer -------------------------------------------------------------------------
class NObjectsScorer(Scorer):
    """Number of filled object slots. Higher = more anomalous."""

    description = "number of filled object slots (no training)"
    trainable = False

    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        as_flat(train, f"{self.where}, training batch")
        return {}

    def score(self, batch: BatchLike) -> np.ndarray:
        return (as_flat(batch, self.where)[:, ::3] > 0).sum(axis=1).astype(np.float32)

    def _save_files(self, directory: Path) -> list[str]:
        return []

    def _load_files(self, directory: Path, card: ModelCard) -> None:
        return None


# -- a trigger seed -------------------------------------------------------------------
def _count(where: str, key: str, value: Any) -> int:
    return int(value)


class NMuonSeed(Seed):
    """At least ``n_min`` muons above ``pt_min``: ``{type: n_muons, n_min: 3, pt_min: 5}``."""

    keys = {"n_min": (_count, 2), "pt_min": (lambda where, key, value: float(value), 3.0)}

    def fires(self, columns: Any) -> np.ndarray:
        pt = objects_of(columns, self.where)[:, SLOTS["muon"], 0]
        return np.asarray((pt >= self.params["pt_min"]).sum(axis=1) >= self.params["n_min"])


@pytest.fixture
def registered() -> Iterator[None]:
    """The recipes' entries in their registries for one test, then gone again."""
    register_reader("met_text")(METTextReader)
    register_scorer("n_objects")(NObjectsScorer)
    register_seed("n_muons")(NMuonSeed)

    @register_backend("numpy-recipe", "the scorer's own class (a backend added by a recipe)")
    def _load(directory: Path, variant: str | None, *, threads: int) -> Scorer:
        return load_model(directory, "torch", variant=variant)

    try:
        yield
    finally:
        READERS.unregister("met_text")
        SCORERS.unregister("n_objects")
        SEEDS.unregister("n_muons")
        BACKENDS.unregister("numpy-recipe")


def test_a_reader_added_through_the_registry_alone(registered: None, tmp_path: Path) -> None:
    path = tmp_path / "met.txt"
    path.write_text("# met-text\n30.5,0.25\n120,-1.5\nnan,0\n")
    reader = open_events(path, on_error="skip")  # chosen by content
    assert reader.name == "met_text"
    batch = reader.read_all()
    assert batch.objects[:, 0, 0].tolist() == [30.5, 120.0]
    assert reader.skipped.count == 1
    assert "line 4" in reader.skipped.summary()


def test_a_scorer_added_through_the_registry_alone(registered: None, tmp_path: Path) -> None:
    events = random_batch(500, seed=3)
    scorer = get_scorer("n_objects")
    assert scorer.fit(events) == {}
    saved = scorer.save(tmp_path / "n_objects")
    back = load_model(saved)  # the torch backend finds the class by the card's scorer name
    assert isinstance(back, NObjectsScorer)
    np.testing.assert_array_equal(back.score(events), scorer.score(events))
    np.testing.assert_array_equal(load_model(saved, "numpy-recipe").score(events), scorer.score(events))


def test_a_seed_added_through_the_registry_alone(registered: None, tmp_path: Path) -> None:
    get_scorer("n_objects").save(tmp_path / "models" / "n_objects")
    menu = Menu.from_dict({
        "models": {"nobj": {"path": "models/n_objects", "backend": "numpy-recipe"}},
        "seeds": [{"name": "TripleMu3", "type": "n_muons", "n_min": 3},
                  {"name": "ManyObjects", "type": "anomaly", "model": "nobj", "threshold": 12}],
    }, base_dir=tmp_path)
    objects = np.zeros((3, 19, 3), np.float32)
    objects[0, 5:8, 0] = (20, 10, 5)      # three muons
    objects[1, :, 0] = 10.0
    objects[1, 5:9, 0] = 0.0              # every slot but the muons': 15 objects
    batch = EventBatch.from_objects(objects)
    decision = menu.decide(add_scores(batch, load_scorers(menu)))
    assert decision.fired("TripleMu3").tolist() == [True, False, False]
    assert decision.fired("ManyObjects").tolist() == [False, True, False]
