"""Every registered scorer (and every variant) passes the same checks.

Fit on a small seeded toy sample, then: save/load gives identical scores; scores are
finite float32 for empty and extreme events; an obvious outlier beats the bulk;
torch and onnxruntime agree; φ + 2π and π → −π leave the score unchanged; bad input
and damaged model directories give clear errors.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import darktrigger
from darktrigger.models import SCORERS, get_scorer, load_model, parse_spec
from darktrigger.models.base import Scorer
from darktrigger.models.card import (
    CARD_FILE,
    CARD_SCHEMA_VERSION,
    MissingModelFileError,
    ModelFileError,
)
from darktrigger.models.neural.onnx_backend import OnnxScorer
from darktrigger.models.neural.training import TorchScorer
from darktrigger.replay.errors import ConfigError, DarkTriggerError, SchemaError, UnknownNameError
from darktrigger.replay.events import SLOTS, EventBatch
from darktrigger.replay.generators import GENERATORS

# scorers of the 57-number object block; those of named feature columns (input_columns,
# e.g. the CWoLa hunt's export) have their own tests in tests/test_hunt.py
OBJECT_SCORERS = {name: cls for name, cls in SCORERS.items() if not getattr(cls, "input_columns", False)}
SPECS = [f"{name}:{v}" for name, cls in OBJECT_SCORERS.items() for v in cls.variants] + [
    name for name, cls in OBJECT_SCORERS.items() if not cls.variants]
NEURAL = [s for s in SPECS if issubclass(SCORERS.get(parse_spec(s)[0]), TorchScorer)]


def _toy(process: str, n: int, seed: int) -> EventBatch:
    return next(GENERATORS.get("toy")().generate(process, n, seed=seed, batch_size=n))


@pytest.fixture(scope="module")
def bulk() -> EventBatch:
    return _toy("sm_mix", 5000, seed=12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """name → a model directory trained once per module (3000 toy events, 3 epochs)."""
    train = _toy("sm_mix", 3000, seed=11)
    # the CWoLa scorer's label-1 sample: toy ato4l with every pT ×10, so that "like the
    # outlier" (four hard leptons) is what it learns to find
    ato4l = _toy("ato4l", 1500, seed=13).objects.copy()
    ato4l[:, :, 0] *= 10
    signal = EventBatch.from_objects(ato4l)
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            scorer = get_scorer(name)
            if scorer.needs_labels:  # CWoLa: a signal-like sample (1) against background (0)
                both = EventBatch.concat([signal, EventBatch.from_objects(train.objects)])
                labels = np.r_[np.ones(len(signal)), np.zeros(len(train))]
                history = scorer.fit(both, labels=labels, epochs=3, batch_size=256, seed=1)
            else:
                history = scorer.fit(train, epochs=3, batch_size=256, seed=1)
            if scorer.trainable:
                assert len(history["train_loss"]) == history["epochs_run"] >= 1
            else:
                assert history == {}
            cache[name] = scorer.save(tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _load(trained: Callable[[str], Path], spec: str, backend: str = "torch") -> Scorer:
    name, variant = parse_spec(spec)
    return load_model(trained(name), backend, variant=variant)


def _edge_events() -> EventBatch:
    """Empty events, every slot at 1e4 GeV with η = ±5, single extreme objects."""
    obj = np.zeros((8, 19, 3), np.float32)
    obj[2:4, :, 0] = 1e4
    obj[2, 1:, 1], obj[3, 1:, 1] = 5.0, -5.0
    obj[2:4, :, 2] = np.linspace(-np.pi, np.pi, 19)
    obj[4, SLOTS["jet"].start] = (1e4, 5.0, 3.0)
    obj[5, SLOTS["muon"].start] = (1e4, -5.0, -3.0)
    obj[6, 0] = (1e4, 0.0, 1.0)
    obj[7, SLOTS["egamma"].start] = (1e-3, 0.0, 0.0)  # a tiny pT
    return EventBatch.from_objects(obj)


def _outlier() -> np.ndarray:
    """Four 300 GeV leptons, two 600 GeV jets and 300 GeV MET: nothing in sm_mix looks like it."""
    obj = np.zeros((1, 19, 3), np.float32)
    obj[0, 0] = (300.0, 0.0, 0.5)
    e, mu, jet = SLOTS["egamma"].start, SLOTS["muon"].start, SLOTS["jet"].start
    obj[0, e:e + 2] = [(300.0, 0.3, 1.0), (300.0, -0.5, -2.0)]
    obj[0, mu:mu + 2] = [(300.0, 1.0, 2.5), (300.0, -1.2, -0.5)]
    obj[0, jet:jet + 2] = [(600.0, 0.2, -2.8), (600.0, -0.8, 0.1)]
    return obj


# -- registry and specs ------------------------------------------------------------------
def test_registry_has_the_issue_scorers() -> None:
    assert {"ae", "vae", "cwola", "ht", "st"} <= set(SCORERS.names())
    assert get_scorer("vae").spec == "vae:mu2"
    assert SCORERS.get("vae").variants == ("mu2", "kl", "reco")


def test_unknown_names_and_variants() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'vae'"):
        get_scorer("vea")
    with pytest.raises(UnknownNameError, match="mu2, kl, reco"):
        get_scorer("vae:mu3")
    with pytest.raises(UnknownNameError, match="no variants"):
        get_scorer("ae:kl")
    with pytest.raises(ConfigError, match="latentt"):
        get_scorer("ae", latentt=3)


# -- the contract -------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS)
def test_save_load_gives_identical_scores(spec: str, trained: Callable[[str], Path],
                                          bulk: EventBatch) -> None:
    name, variant = parse_spec(spec)
    first = _load(trained, spec)
    again = _load(trained, spec)
    assert first.spec == again.spec == get_scorer(spec).spec
    np.testing.assert_array_equal(first.score(bulk), again.score(bulk))
    resaved = first.save(trained(name).parent / f"{name}-{variant}-resaved")
    np.testing.assert_array_equal(load_model(resaved, variant=variant).score(bulk), first.score(bulk))


@pytest.mark.parametrize("spec", SPECS)
def test_scores_are_finite_float32_for_every_event(spec: str, trained: Callable[[str], Path],
                                                   bulk: EventBatch) -> None:
    scorer = _load(trained, spec)
    for batch in (bulk, _edge_events(), EventBatch.empty()):
        scores = scorer.score(batch)
        assert scores.dtype == np.float32
        assert scores.shape == (len(batch),)
        assert np.isfinite(scores).all(), scores
    empty = scorer.score(np.zeros((3, 19, 3), np.float32))
    assert np.isfinite(empty).all()
    assert len(set(empty.tolist())) == 1


@pytest.mark.parametrize("spec", SPECS)
def test_an_obvious_outlier_scores_above_the_bulk(spec: str, trained: Callable[[str], Path],
                                                  bulk: EventBatch) -> None:
    scorer = _load(trained, spec)
    assert scorer.score(_outlier())[0] > np.percentile(scorer.score(bulk), 99)


@pytest.mark.parametrize("spec", SPECS)
def test_torch_and_onnxruntime_agree(spec: str, trained: Callable[[str], Path],
                                     bulk: EventBatch) -> None:
    t_scorer, o_scorer = _load(trained, spec), _load(trained, spec, "onnxruntime")
    assert o_scorer.spec == t_scorer.spec
    for batch in (bulk, _edge_events()):
        t, o = t_scorer.score(batch), o_scorer.score(batch)
        # 1e-5 relative; a score near 0 (a logit, a KL) is compared relative to the sample's scale
        np.testing.assert_allclose(o, t, rtol=1e-5, atol=1e-5 * float(np.abs(t).mean()))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("spec", SPECS)
def test_phi_shift_by_2pi_and_pi_to_minus_pi(spec: str, backend: str, trained: Callable[[str], Path],
                                             bulk: EventBatch) -> None:
    scorer = _load(trained, spec, backend)
    events = bulk[:500]
    base = scorer.score(events)
    shifted = events.objects.copy()
    shifted[:, :, 2] += np.float32(2 * np.pi)  # unwrapped on purpose: EventBatch() does not validate
    np.testing.assert_allclose(scorer.score(EventBatch.from_objects(shifted)), base,
                               rtol=2e-5, atol=1e-6 * float(np.abs(base).mean()))
    at_pi = events.objects.copy()
    at_pi[:, :, 2] = np.where(at_pi[:, :, 0] > 0, np.float32(np.pi), 0)
    at_minus_pi = at_pi.copy()
    at_minus_pi[:, :, 2] *= -1
    np.testing.assert_allclose(scorer.score(at_minus_pi), scorer.score(at_pi), rtol=1e-5,
                               atol=1e-6 * float(np.abs(base).mean()))


@pytest.mark.parametrize("spec", SPECS)
def test_wrong_batch_schema_is_a_clear_error(spec: str, trained: Callable[[str], Path]) -> None:
    for backend in ("torch", "onnxruntime"):
        scorer = _load(trained, spec, backend)
        with pytest.raises(SchemaError, match=r"expected objects of shape \(N, 19, 3\).*\(5, 19, 4\)") as info:
            scorer.score(np.zeros((5, 19, 4), np.float32))
        assert spec.split(":")[0] in str(info.value)
        with pytest.raises(SchemaError, match="no 'objects' column"):
            scorer.score({"run": np.zeros(3, np.uint32)})
        with pytest.raises(SchemaError, match="float"):
            scorer.score(np.zeros((2, 57), np.int64))


@pytest.mark.parametrize("spec", NEURAL)
def test_untrained_neural_scorer_says_so(spec: str) -> None:
    with pytest.raises(ConfigError, match="not trained"):
        get_scorer(spec).score(np.zeros((2, 57), np.float32))


# -- the artifact ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OBJECT_SCORERS))
def test_card_contents(name: str, trained: Callable[[str], Path]) -> None:
    directory = trained(name)
    card = json.loads((directory / CARD_FILE).read_text())
    assert card["schema_version"] == CARD_SCHEMA_VERSION
    assert card["scorer"] == name
    assert card["metrics"] == {}
    assert card["thresholds"] == []
    assert card["software"]["darktrigger"] == darktrigger.__version__
    assert card["created"]
    assert card["variant"] == SCORERS.get(name).default_variant
    assert "model.onnx" in card["files"]
    assert all((directory / f).is_file() for f in card["files"])
    if SCORERS.get(name).trainable:
        assert card["seed"] == 1
        assert card["training"]["events"] > 0
        assert {"weights.pt", "preprocess.json"} <= set(card["files"])
        assert card["hyperparameters"] == json.loads(json.dumps(SCORERS.get(name).hyperparameter_defaults))
    for variant in SCORERS.get(name).variants:
        assert f"model-{variant}.onnx" in card["files"]
    if issubclass(SCORERS.get(name), TorchScorer):  # the onnxruntime backend's networks
        assert "net.onnx" in card["files"]
        assert all(f"net-{v}.onnx" in card["files"] for v in SCORERS.get(name).variants)


def _copy(trained: Callable[[str], Path], tmp_path: Path, name: str = "ae") -> Path:
    return Path(shutil.copytree(trained(name), tmp_path / "model"))


@pytest.mark.parametrize("missing", ["card.json", "weights.pt", "preprocess.json", "net.onnx"])
def test_missing_model_file(missing: str, trained: Callable[[str], Path], tmp_path: Path) -> None:
    directory = _copy(trained, tmp_path)
    (directory / missing).unlink()
    backend = "onnxruntime" if missing == "net.onnx" else "torch"
    with pytest.raises(MissingModelFileError, match=missing) as info:
        load_model(directory, backend)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, DarkTriggerError)
    assert str(directory) in str(info.value)


def test_missing_model_directory(tmp_path: Path) -> None:
    with pytest.raises(MissingModelFileError, match="no such model directory"):
        load_model(tmp_path / "nope")


@pytest.mark.parametrize(("damaged", "backend", "match"), [
    ("weights.pt", "torch", "not a readable torch state dict"),
    ("net.onnx", "onnxruntime", "onnxruntime cannot load"),
    ("card.json", "torch", "not valid JSON"),
    ("preprocess.json", "torch", "not valid JSON"),
])
def test_corrupt_model_file(damaged: str, backend: str, match: str,
                            trained: Callable[[str], Path], tmp_path: Path) -> None:
    directory = _copy(trained, tmp_path)
    data = (directory / damaged).read_bytes()
    (directory / damaged).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(directory, backend)
    assert damaged in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("spec", ["ae", "vae:mu2"])
def test_model_without_net_graph_is_scored_with_model_onnx(
        spec: str, trained: Callable[[str], Path], tmp_path: Path, bulk: EventBatch) -> None:
    """A card that lists no ``net.onnx`` (as the baselines' and the quantised scorers' do):
    onnxruntime runs its self-contained ``model.onnx``, with the same scores."""
    name, _, variant = spec.partition(":")
    directory = _copy(trained, tmp_path, name)
    fast = load_model(directory, "onnxruntime", variant=variant or None)
    card = json.loads((directory / CARD_FILE).read_text())
    card["files"] = [f for f in card["files"] if not f.startswith("net")]
    (directory / CARD_FILE).write_text(json.dumps(card))
    for f in directory.glob("net*.onnx"):
        f.unlink()
    old = load_model(directory, "onnxruntime", variant=variant or None)
    assert isinstance(fast, OnnxScorer)
    assert isinstance(old, OnnxScorer)
    assert fast.pre is not None
    assert old.pre is None
    t = fast.score(bulk)
    np.testing.assert_allclose(old.score(bulk), t, rtol=1e-5, atol=1e-5 * float(np.abs(t).mean()))
    onnx = directory / "model.onnx"  # the default variant's (mu2 is the VAE's default)
    onnx.write_bytes(onnx.read_bytes()[:100])
    with pytest.raises(ModelFileError, match=f"{onnx.name}.*onnxruntime cannot load"):
        load_model(directory, "onnxruntime", variant=variant or None)


def test_weights_that_do_not_fit_the_card(trained: Callable[[str], Path], tmp_path: Path) -> None:
    directory = _copy(trained, tmp_path)
    card = json.loads((directory / CARD_FILE).read_text())
    card["hyperparameters"]["latent"] = 5
    (directory / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(directory)
    torch.save({"nonsense": torch.zeros(1)}, directory / "weights.pt")
    with pytest.raises(ModelFileError, match="weights.pt"):
        load_model(directory)


def test_card_from_a_newer_schema(trained: Callable[[str], Path], tmp_path: Path) -> None:
    directory = _copy(trained, tmp_path)
    card = json.loads((directory / CARD_FILE).read_text())
    card["schema_version"] = CARD_SCHEMA_VERSION + 1
    (directory / CARD_FILE).write_text(json.dumps(card))
    for backend in ("torch", "onnxruntime"):
        with pytest.raises(ModelFileError, match=r"newer than this darktrigger reads.*upgrade"):
            load_model(directory, backend)


def test_card_of_an_unknown_scorer(trained: Callable[[str], Path], tmp_path: Path) -> None:
    directory = _copy(trained, tmp_path)
    card = json.loads((directory / CARD_FILE).read_text())
    card["scorer"] = "axolotl"
    (directory / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="no scorer named 'axolotl'"):
        load_model(directory)


def test_unknown_backend_and_onnx_cannot_train(trained: Callable[[str], Path], bulk: EventBatch) -> None:
    with pytest.raises(ConfigError, match="onnxruntime"):
        load_model(trained("ae"), "tensorflow")
    with pytest.raises(ConfigError, match="only scores"):
        load_model(trained("ae"), "onnxruntime").fit(bulk)
    with pytest.raises(UnknownNameError, match="mu2, kl, reco"):
        load_model(trained("vae"), "onnxruntime", variant="nope")
