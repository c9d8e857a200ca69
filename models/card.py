"""The model artifact: a directory holding a trained scorer and its ``card.json``.

==================  ==========================================================
file                content
==================  ==========================================================
``card.json``       the model card (:class:`ModelCard`), always
``weights.pt``      the network's torch state dict (neural scorers)
``preprocess.json`` the fitted feature scaling (neural scorers, :mod:`darktrigger.models.preprocess`)
``model.onnx``      raw ``[N, 57]`` float32 → score ``[N]``, dynamic batch axis,
                    preprocessing inside the graph; for a scorer with variants
                    (``vae``) the card's variant, and ``model-<variant>.onnx``
                    for every variant
==================  ==========================================================

The card records what made the model (scorer, variant, hyper-parameters, training
files with sha256 and event counts, seed, history), and is filled later by
``evaluate`` (``metrics``) and ``calibrate`` (``thresholds``).

    >>> card = ModelCard(scorer="ae")
    >>> ModelCard.from_dict(card.to_dict()).scorer
    'ae'
    >>> ModelCard.from_dict({"schema_version": 99, "scorer": "ae"}, "m/card.json")
    Traceback (most recent call last):
    ...
    darktrigger.models.card.ModelFileError: m/card.json: card schema_version 99 is newer than this darktrigger reads (up to 1); upgrade darktrigger to load this model
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar

import darktrigger
from darktrigger.replay.errors import DarkTriggerError, SchemaError

T = TypeVar("T")

log = logging.getLogger(__name__)

CARD_SCHEMA_VERSION = 1
CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"


class FitHistory(TypedDict, total=False):
    """What a scorer's ``fit`` returns and its card keeps (``training.history``); ``{}`` for
    a scorer with nothing to train (the baselines)."""

    #: mean training loss per epoch
    train_loss: list[float]
    #: mean validation loss per epoch (empty without validation events)
    validation_loss: list[float]
    #: which of the two chooses the kept epoch
    monitor: Literal["validation_loss", "train_loss"]
    #: the kept epoch (from 1), its loss, and how many epochs ran
    best_epoch: int
    best_loss: float
    epochs_run: int
    stopped_early: bool
    #: the fraction of weights held at zero per epoch (pruned quantised scorers)
    sparsity: list[float]
    #: wall time of the training, seconds
    seconds: float


class TrainingFile(TypedDict):
    """One event file a model was trained on (``training.files`` of the card)."""

    path: str
    #: hex sha256 of the file's content; None where hashing was not asked for
    sha256: str | None
    #: events taken from the file
    events: int
    #: ``"background"`` or ``"signal"`` (CWoLa's label-1 sample)
    role: str


class ModelFileError(DarkTriggerError, ValueError):
    """A model directory whose file is corrupt, of a newer schema, or does not fit its card."""


class MissingModelFileError(ModelFileError, FileNotFoundError):
    """A model directory (or a file it must hold) that is not there."""


def onnx_file(variant: str | None) -> str:
    """The ONNX file name of a variant (``model-mu2.onnx``); ``model.onnx`` for None."""
    return ONNX_FILE if variant is None else f"model-{variant}.onnx"


def net_file(variant: str | None) -> str:
    """The file of a variant's event-major network graph (``net-mu2.onnx``; ``net.onnx`` for
    None): features ``[N, 75]`` → ``score`` or ``recon``, what the ``onnxruntime`` backend
    runs after its compiled preprocessing (:mod:`darktrigger.models.neural.kernels`)."""
    return "net.onnx" if variant is None else f"net-{variant}.onnx"


def require_file(directory: str | Path, name: str, what: str = "") -> Path:
    """``directory/name``, or a :class:`MissingModelFileError` naming both."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingModelFileError(f"{directory}: no such model directory")
    path = directory / name
    if not path.is_file():
        present = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        extra = f" ({what})" if what else ""
        raise MissingModelFileError(f"{directory}: model file {name!r}{extra} is missing; "
                                    f"the directory holds {present}")
    return path


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (a model directory's small files)."""
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def read_json(path: Path) -> Any:
    """The content of a JSON file; a :class:`SchemaError` naming it when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None


def load_part(directory: str | Path, name: str, what: str, load: Callable[[Path], T]) -> T:
    """``load(directory)`` for the file ``name`` of a model directory (its preprocessing):
    a :class:`MissingModelFileError` when it is absent, a :class:`ModelFileError` naming it
    when it cannot be read or does not fit."""
    path = require_file(directory, name, what)
    try:
        return load(Path(directory))
    except SchemaError as exc:
        raise ModelFileError(str(exc)) from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc})") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _software() -> dict[str, str]:
    info = {"darktrigger": darktrigger.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


@dataclass
class ModelCard:
    """What a model is and how it was made; ``card.json`` in the model directory.

    ``training`` holds ``files`` (:class:`TrainingFile` each), event counts, the
    settings of ``fit`` and its ``history``; read those two through :attr:`training_files`
    and :attr:`history`. ``metrics`` is filled by ``darktrigger evaluate`` and
    ``thresholds`` by ``darktrigger calibrate``.

        >>> card = ModelCard(scorer="vae", variant="mu2")
        >>> card.spec, card.history, card.training_files
        ('vae:mu2', {}, [])
    """

    scorer: str
    variant: str | None = None
    variants: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    thresholds: list[Any] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    software: dict[str, str] = field(default_factory=_software)
    created: str = field(default_factory=_now)
    schema_version: int = CARD_SCHEMA_VERSION

    @property
    def spec(self) -> str:
        """``scorer`` or ``scorer:variant``, the name :func:`darktrigger.models.get_scorer` takes."""
        return self.scorer if self.variant is None else f"{self.scorer}:{self.variant}"

    @property
    def history(self) -> FitHistory:
        """The training's history (what ``fit`` returned); ``{}`` when nothing was trained."""
        history: FitHistory = self.training.get("history", {})
        return history

    @property
    def training_files(self) -> list[TrainingFile]:
        """The event files the model was trained on; ``[]`` when it was fitted in memory."""
        files: list[TrainingFile] = self.training.get("files", [])
        return files

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: Any, where: str = CARD_FILE) -> ModelCard:
        """Check and build a card; a :class:`ModelFileError` naming ``where`` if it does not fit."""
        if not isinstance(data, dict):
            raise ModelFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise ModelFileError(f"{where}: expected an integer 'schema_version', got {version!r}")
        if version > CARD_SCHEMA_VERSION:
            raise ModelFileError(
                f"{where}: card schema_version {version} is newer than this darktrigger reads "
                f"(up to {CARD_SCHEMA_VERSION}); upgrade darktrigger to load this model")
        if not isinstance(data.get("scorer"), str):
            raise ModelFileError(f"{where}: expected a string 'scorer', got {data.get('scorer')!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            log.warning("%s: ignoring unknown card field(s) %s", where, ", ".join(unknown))
        kwargs = {k: v for k, v in data.items() if k in known}
        types = {"hyperparameters": dict, "training": dict, "metrics": dict, "thresholds": list,
                 "files": list, "variants": list, "software": dict}
        for key, typ in types.items():
            if key in kwargs and not isinstance(kwargs[key], typ):
                raise ModelFileError(f"{where}: expected {key!r} to be a JSON "
                                     f"{'object' if typ is dict else 'list'}, got {kwargs[key]!r}")
        training = kwargs.get("training", {})
        for key, typ in {"history": dict, "files": list}.items():
            if key in training and not isinstance(training[key], typ):
                raise ModelFileError(f"{where}: expected 'training.{key}' to be a JSON "
                                     f"{'object' if typ is dict else 'list'}, got {training[key]!r}")
        return cls(**kwargs)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelCard:
        """Read ``directory/card.json``; clear errors for missing, corrupt or newer cards."""
        path = require_file(directory, CARD_FILE, "the model card")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{path}: the model card is not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))


def read_card(directory: str | Path) -> ModelCard:
    """The card of a model directory, after checking that every file it lists is there."""
    card = ModelCard.load(directory)
    for name in card.files:
        require_file(directory, name)
    return card
