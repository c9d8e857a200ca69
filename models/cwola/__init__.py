"""Weak supervision: the CWoLa classifiers and the CWoLa bump hunt in m_jj.

- :mod:`~darktrigger.models.cwola.classifier`: ``cwola``, a classifier of two mixed
  samples on the 57 L1 numbers;
- :mod:`~darktrigger.models.cwola.columns`: ``cwola_columns``, a k-fold ensemble on named
  analysis columns (jet masses, τ21), the hunt's classifier;
- :mod:`~darktrigger.models.cwola.config`: the hunt's settings (no torch: the CLI reads them);
- :mod:`~darktrigger.models.cwola.hunt`: the hunt (signal-region windows and sidebands,
  k-fold training, efficiency cuts);
- :mod:`~darktrigger.models.cwola.dijet_fit`: the dijet-function fit and local significances;
- :mod:`~darktrigger.models.cwola.global_significance`: the look-elsewhere effect (null toys);
- :mod:`~darktrigger.models.cwola.report`: the hunt's table, JSON, plots and chosen model.

    >>> from darktrigger.models import SCORERS
    >>> from darktrigger.models.cwola import ColumnCWoLaScorer, CWoLaScorer
    >>> SCORERS.get("cwola") is CWoLaScorer, SCORERS.get("cwola_columns") is ColumnCWoLaScorer
    (True, True)
"""

from __future__ import annotations

from typing import Any

from darktrigger.models.cwola.config import DEFAULT_FEATURES, HuntConfig


def __getattr__(name: str) -> Any:  # the scorers import torch: only on first use
    if name == "CWoLaScorer":
        from darktrigger.models.cwola.classifier import CWoLaScorer

        return CWoLaScorer
    if name == "ColumnCWoLaScorer":
        from darktrigger.models.cwola.columns import ColumnCWoLaScorer

        return ColumnCWoLaScorer
    raise AttributeError(f"module 'darktrigger.models.cwola' has no attribute {name!r}")

__all__ = ["DEFAULT_FEATURES", "ColumnCWoLaScorer", "CWoLaScorer", "HuntConfig"]
