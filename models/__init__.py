"""models: preprocessing, scorers (AE, VAE, CWoLa, baselines), training, model artifacts.

The scorers register themselves when their modules are imported, which the registry does
before its first look-up: importing the package does not import torch or TensorFlow, so
commands and pipeline stages that score nothing start without them.

    >>> from darktrigger.models import SCORERS, get_scorer, load_model, train_model
    >>> SCORERS.names()
    ['ae', 'axo', 'cwola', 'cwola_columns', 'ht', 'pca', 'qae', 'qaxo', 'qvae', 'st', 'vae']
    >>> get_scorer("vae").spec
    'vae:mu2'
"""

from __future__ import annotations

from typing import Any

from darktrigger.models.backends import BACKENDS, load_model, register_backend
from darktrigger.models.base import (
    SCORERS,
    Scorer,
    as_flat,
    get_scorer,
    parse_spec,
    register_scorer,
)
from darktrigger.models.card import (
    CARD_SCHEMA_VERSION,
    MissingModelFileError,
    ModelCard,
    ModelFileError,
    read_card,
)


def _import_scorers() -> None:
    from darktrigger.models import baselines, neural, quantised  # noqa: F401  (they register)
    from darktrigger.models.cwola import classifier, columns  # noqa: F401


SCORERS.load_with(_import_scorers)

#: names this package offers from modules that import torch, imported on first use
_LAZY = {
    "OnnxScorer": "darktrigger.models.neural.onnx_backend",
    "TorchScorer": "darktrigger.models.neural.training",
    "run_training": "darktrigger.models.neural.training",
    "train_model": "darktrigger.models.neural.training",
    "MODEL_FEATURE_NAMES": "darktrigger.models.preprocess",
    "N_MODEL_FEATURES": "darktrigger.models.preprocess",
    "Preprocessor": "darktrigger.models.preprocess",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'darktrigger.models' has no attribute {name!r}")

__all__ = [
    "BACKENDS",
    "CARD_SCHEMA_VERSION",
    "MODEL_FEATURE_NAMES",
    "N_MODEL_FEATURES",
    "SCORERS",
    "MissingModelFileError",
    "ModelCard",
    "ModelFileError",
    "OnnxScorer",
    "Preprocessor",
    "Scorer",
    "TorchScorer",
    "as_flat",
    "get_scorer",
    "load_model",
    "parse_spec",
    "read_card",
    "register_backend",
    "register_scorer",
    "run_training",
    "train_model",
]
