"""Weak supervision: the CWoLa classifiers and the CWoLa bump hunt in m_jj.

- :mod:`~darktrigger.models.cwola.classifier`: ``cwola``, a classifier of two mixed
  samples on the 57 L1 numbers;
- :mod:`~darktrigger.models.cwola.columns`: ``cwola_columns``, a k-fold ensemble on named
  analysis columns (jet masses, τ21), the hunt's classifier;
- :mod:`~darktrigger.models.cwola.hunt`: the hunt (signal-region windows and sidebands,
  k-fold training, efficiency cuts);
- :mod:`~darktrigger.models.cwola.dijet_fit`: the dijet-function fit and local significances;
- :mod:`~darktrigger.models.cwola.report`: the hunt's table, JSON, plots and chosen model.

    >>> from darktrigger.models import SCORERS
    >>> from darktrigger.models.cwola import ColumnCWoLaScorer, CWoLaScorer
    >>> SCORERS.get("cwola") is CWoLaScorer, SCORERS.get("cwola_columns") is ColumnCWoLaScorer
    (True, True)
"""

from __future__ import annotations

from darktrigger.models.cwola.classifier import CWoLaScorer
from darktrigger.models.cwola.columns import ColumnCWoLaScorer

__all__ = ["ColumnCWoLaScorer", "CWoLaScorer"]
