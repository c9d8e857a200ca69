"""models: preprocessing, scorers (AE, VAE, CWoLa, baselines), training, model artifacts.

Importing the package registers every scorer.

    >>> from darktrigger.models import SCORERS, get_scorer, load_model, train_model
    >>> SCORERS.names()
    ['ae', 'cwola', 'cwola_columns', 'ht', 'qae', 'qvae', 'st', 'vae']
    >>> get_scorer("vae").spec
    'vae:mu2'
"""

from __future__ import annotations

from darktrigger.models import baselines, cwola, neural, quantised  # noqa: F401  (register the scorers)
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
from darktrigger.models.neural.onnx_backend import OnnxScorer
from darktrigger.models.neural.training import TorchScorer, run_training, train_model
from darktrigger.models.preprocess import MODEL_FEATURE_NAMES, N_MODEL_FEATURES, Preprocessor

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
