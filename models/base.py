"""What every scorer is: registered by name, fitted on event batches, scoring ``float32[N]``.

A scorer maps each event to one number, higher = more anomalous (pyod's convention);
thresholds live apart from it (:mod:`darktrigger.models.thresholds`). Scorers with several outputs
name them as variants, ``name:variant`` (``vae:mu2``).

    >>> from darktrigger.models import get_scorer
    >>> from darktrigger.replay.generators import GENERATORS
    >>> bkg = next(GENERATORS.get("toy")().generate("sm_mix", 2000, seed=1))
    >>> st = get_scorer("st")
    >>> st.fit(bkg)
    {}
    >>> scores = st.score(bkg)
    >>> scores.dtype, scores.shape
    (dtype('float32'), (2000,))

A scorer takes an :class:`~darktrigger.replay.events.EventBatch`, a mapping of columns with
``objects``, or a float array ``[N, 19, 3]`` or ``[N, 57]``; anything else is a
:class:`~darktrigger.replay.errors.SchemaError` naming the scorer and what arrived.
"""

from __future__ import annotations

import copy
import logging
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypedDict, Unpack, cast

import numpy as np

from darktrigger.models.card import FitHistory, ModelCard, ModelFileError, read_card
from darktrigger.replay.errors import ConfigError, SchemaError, UnknownNameError
from darktrigger.replay.events import N_FEATURES, N_SLOTS, EventBatch
from darktrigger.replay.registry import Registry, unknown_name

log = logging.getLogger(__name__)


class FitKeywords(TypedDict, total=False):
    """The training settings :meth:`Scorer.fit` takes as keywords (see :class:`FitOptions`)."""

    epochs: int
    batch_size: int
    seed: int
    threads: int
    progress: bool
    patience: int | None


@dataclass(frozen=True)
class FitOptions:
    """The training settings of every scorer's ``fit`` (and of ``darktrigger train``), checked.

        >>> FitOptions(epochs=3).batch_size
        512
        >>> FitOptions(epochs=0)
        Traceback (most recent call last):
        ...
        darktrigger.replay.errors.ConfigError: fit: need epochs >= 1, got 0
    """

    epochs: int = 20
    batch_size: int = 512
    seed: int = 0
    threads: int = 1
    progress: bool = False
    #: epochs without a better validation loss before stopping; None: never stop early
    patience: int | None = 5

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "threads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"fit: need {key} >= 1, got {getattr(self, key)}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"fit: patience must be >= 1 or None, got {self.patience}")

    @classmethod
    def from_keywords(cls, where: str, keywords: Mapping[str, Any]) -> FitOptions:
        """The options from ``fit``'s keywords; an unknown one is named with the nearest."""
        for key in keywords:
            if key not in cls.__dataclass_fields__:
                raise ConfigError(f"{where}: fit() {unknown_name('keyword', key, cls.__dataclass_fields__)}")
        return cls(**keywords)

    def record(self, events: int, validation_events: int, history: FitHistory,
               **extra: Any) -> dict[str, Any]:
        """What a model card keeps of a training (its ``training`` entry)."""
        return {"events": events, "validation_events": validation_events, "epochs": self.epochs,
                "batch_size": self.batch_size, "patience": self.patience, "threads": self.threads,
                "history": history, **extra}


def new_history(validation: bool, **lists: list[float]) -> FitHistory:
    """An empty history that monitors the validation loss when there is validation data;
    ``lists`` start further per-epoch lists of :class:`FitHistory` (``sparsity=[]``).

        >>> new_history(False, sparsity=[])
        {'train_loss': [], 'validation_loss': [], 'monitor': 'train_loss', 'sparsity': []}
    """
    unknown = sorted(set(lists) - set(FitHistory.__annotations__))
    if unknown:
        raise ConfigError(f"new_history: FitHistory has no {', '.join(unknown)}")
    history = FitHistory(train_loss=[], validation_loss=[],
                         monitor="validation_loss" if validation else "train_loss")
    history.update(cast(FitHistory, lists))
    return history


BatchLike = EventBatch | Mapping[str, np.ndarray] | np.ndarray


def as_flat(batch: BatchLike, where: str = "scorer") -> np.ndarray:
    """The ``[N, 57]`` float32 C-contiguous view of a batch, or a :class:`SchemaError`.

        >>> as_flat(np.zeros((2, 19, 3), np.float32)).shape
        (2, 57)
        >>> as_flat(np.zeros((2, 19, 4)), "scorer 'ae'")
        Traceback (most recent call last):
        ...
        darktrigger.replay.errors.SchemaError: scorer 'ae': expected objects of shape (N, 19, 3) or a flat (N, 57) array, got shape (2, 19, 4)
    """
    if isinstance(batch, EventBatch):
        arr = batch.objects
    elif isinstance(batch, Mapping):
        if "objects" not in batch:
            raise SchemaError(f"{where}: the batch has no 'objects' column (it has "
                              f"{', '.join(map(str, batch)) or 'no columns'}); scorers need "
                              f"objects float32 [N, {N_SLOTS}, 3]")
        arr = batch["objects"]
    elif isinstance(batch, np.ndarray):
        arr = batch
    else:
        raise SchemaError(f"{where}: expected an EventBatch or a float array [N, {N_SLOTS}, 3], "
                          f"got {type(batch).__name__}")
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[1:] == (N_SLOTS, 3):
        arr = arr.reshape(len(arr), N_FEATURES)
    if arr.ndim != 2 or arr.shape[1] != N_FEATURES:
        raise SchemaError(f"{where}: expected objects of shape (N, {N_SLOTS}, 3) or a flat "
                          f"(N, {N_FEATURES}) array, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise SchemaError(f"{where}: expected float objects, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


class Scorer(ABC):
    """Base of every scorer: ``fit``, ``score`` (higher = more anomalous), ``save``/``load``.

    Subclasses set ``description``, ``variants``/``default_variant`` when they have
    several outputs, ``hyperparameter_defaults``, and implement :meth:`_fit` (which
    :meth:`fit` calls with checked :class:`FitOptions`), :meth:`score`,
    :meth:`_save_files` and :meth:`_load_files`.

        >>> from darktrigger.models import get_scorer
        >>> get_scorer("vae").spec
        'vae:mu2'
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = ()
    default_variant: ClassVar[str | None] = None
    #: False for the baselines, whose ``fit`` does nothing
    trainable: ClassVar[bool] = True
    #: True when ``fit`` needs ``labels`` (CWoLa)
    needs_labels: ClassVar[bool] = False
    hyperparameter_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, variant: str | None = None, **hyperparameters: Any) -> None:
        if variant is None:
            variant = self.default_variant
        if self.variants and variant not in self.variants:
            raise UnknownNameError(f"scorer {self.name!r}: "
                                   + unknown_name("variant", str(variant), self.variants, keep_order=True))
        if not self.variants and variant is not None:
            raise UnknownNameError(f"scorer {self.name!r} has no variants, got {variant!r}.")
        unknown = sorted(set(hyperparameters) - set(self.hyperparameter_defaults))
        if unknown:
            raise ConfigError(f"scorer {self.name!r}: " + "; ".join(
                unknown_name("hyper-parameter", k, self.hyperparameter_defaults) for k in unknown))
        self.variant = variant
        self.hyperparameters: dict[str, Any] = {**self.hyperparameter_defaults, **hyperparameters}
        #: what fit recorded (history, event counts, settings); train_model adds files
        self.training: dict[str, Any] = {}
        self.seed: int | None = None
        #: the card this scorer was loaded from (kept so metrics/thresholds survive a re-save)
        self.card: ModelCard | None = None

    @property
    def spec(self) -> str:
        """``name`` or ``name:variant``, as :func:`get_scorer` takes it."""
        return self.name if self.variant is None else f"{self.name}:{self.variant}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    @property
    def where(self) -> str:
        return f"scorer {self.spec!r}"

    def with_variant(self, variant: str | None) -> Scorer:
        """The same (trained) scorer giving another of its outputs; weights are shared.

            >>> get_scorer("vae").with_variant("kl").spec
            'vae:kl'
        """
        if variant not in (self.variants or (None,)):
            raise UnknownNameError(f"{self.where}: " + unknown_name("variant", str(variant), self.variants, keep_order=True))
        other = copy.copy(self)
        other.variant = variant
        return other

    # -- the interface -----------------------------------------------------------------
    def fit(self, train: BatchLike, *, validation: BatchLike | None = None,
            labels: np.ndarray | None = None, validation_labels: np.ndarray | None = None,
            **options: Unpack[FitKeywords]) -> FitHistory:
        """Train on ``train`` (background, or two samples with ``labels``); the history.

        ``options`` are the keywords of :class:`FitOptions` (``epochs``, ``batch_size``,
        ``seed``, ``threads``, ``progress``, ``patience``). The history
        (:class:`FitHistory`) has ``train_loss`` and ``validation_loss`` per epoch (the
        latter empty without ``validation``), ``best_epoch``, ``epochs_run`` and
        ``stopped_early``; the baselines return ``{}``.
        """
        return self._fit(train, validation, labels, validation_labels,
                         FitOptions.from_keywords(self.where, options))

    @abstractmethod
    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        """Train with checked options (see :meth:`fit`)."""

    @abstractmethod
    def score(self, batch: BatchLike) -> np.ndarray:
        """float32 ``[N]``, higher = more anomalous."""

    @abstractmethod
    def _save_files(self, directory: Path) -> list[str]:
        """Write the scorer's own files (weights, preprocessing, ONNX); their names."""

    @abstractmethod
    def _load_files(self, directory: Path, card: ModelCard) -> None:
        """Read what :meth:`_save_files` wrote (raising :class:`ModelFileError` when bad)."""

    # -- persistence -------------------------------------------------------------------
    def make_card(self, files: list[str]) -> ModelCard:
        """The card to save: a fresh one, keeping metrics/thresholds of a loaded card."""
        card = ModelCard(scorer=self.name, variant=self.variant, variants=list(self.variants),
                         hyperparameters=dict(self.hyperparameters), training=dict(self.training),
                         seed=self.seed, files=files)
        if self.card is not None:
            card.metrics, card.thresholds = self.card.metrics, self.card.thresholds
            card.created = self.card.created
        return card

    def save(self, directory: str | Path) -> Path:
        """Write the model directory (see :mod:`darktrigger.models.card`); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = self._save_files(directory)
        self.make_card(files).save(directory)
        log.info("saved %s to %s", self.spec, directory)
        return directory

    @classmethod
    def from_card(cls, card: ModelCard, variant: str | None = None) -> Scorer:
        """An untrained scorer with a card's hyper-parameters; ``variant`` overrides the card's.

            >>> card = ModelCard(scorer="vae", variant="mu2", hyperparameters={"latent": 6})
            >>> scorer = SCORERS.get("vae").from_card(card, "kl")
            >>> scorer.spec, scorer.hyperparameters["latent"]
            ('vae:kl', 6)
        """
        return cls(variant or card.variant, **card.hyperparameters)

    @classmethod
    def load(cls, directory: str | Path, variant: str | None = None) -> Scorer:
        """The scorer saved in ``directory`` (``variant`` overrides the card's)."""
        card = read_card(directory)
        if card.scorer != cls.name:
            raise ModelFileError(f"{Path(directory) / 'card.json'}: a {card.scorer!r} model, "
                                 f"not a {cls.name!r} one")
        try:
            obj = cls.from_card(card, variant)
        except ConfigError as exc:
            raise ModelFileError(f"{directory}: card.json does not fit scorer "
                                 f"{cls.name!r}: {exc}") from None
        obj.training, obj.seed, obj.card = card.training, card.seed, card
        obj._load_files(Path(directory), card)
        return obj


SCORERS: Registry[type[Scorer]] = Registry("scorer")
register_scorer = SCORERS.register


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"vae:mu2"`` → ``("vae", "mu2")``; ``"ae"`` → ``("ae", None)``."""
    name, _, variant = spec.partition(":")
    return name, (variant or None)


def get_scorer(spec: str, **hyperparameters: Any) -> Scorer:
    """A new, untrained scorer from a ``name[:variant]`` spec.

        >>> get_scorer("vae:kl", latent=4).hyperparameters["latent"]
        4
    """
    name, variant = parse_spec(spec)
    return SCORERS.get(name)(variant, **hyperparameters)


class ScoreOnlyScorer(Scorer):
    """Base of the backends that score a saved model directory but cannot train it
    (onnxruntime, firmware): ``fit`` is refused, ``save`` copies the directory."""

    trainable = False
    directory: Path
    backend: ClassVar[str]
    #: what ``fit`` tells the user to do instead
    retrain_hint: ClassVar[str] = "train with the torch backend (get_scorer(...).fit)"

    def _fit(self, train: BatchLike, validation: BatchLike | None, labels: np.ndarray | None,
             validation_labels: np.ndarray | None, options: FitOptions) -> FitHistory:
        raise ConfigError(f"{self.where}: the {self.backend} backend only scores; {self.retrain_hint}")

    def save(self, directory: str | Path) -> Path:
        """Copy the model directory (this backend holds no weights of its own)."""
        return copy_artifact(self.directory, directory)

    def _save_files(self, directory: Path) -> list[str]:  # pragma: no cover - save() is overridden
        raise NotImplementedError

    def _load_files(self, directory: Path, card: ModelCard) -> None:  # pragma: no cover
        raise NotImplementedError


def copy_artifact(src: str | Path, dst: str | Path) -> Path:
    """Copy a model directory's files (those its card lists, and the card)."""
    card = read_card(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in [*card.files, "card.json"]:
        shutil.copy2(Path(src) / name, dst / name)
    return dst
