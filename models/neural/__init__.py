"""The float neural scorers, in torch: ``ae``, ``vae`` and ``axo``, their training loop, and the
lean scoring graphs they run on (torch, or onnxruntime with compiled preprocessing).

- :mod:`~darktrigger.models.neural.ae`, :mod:`~darktrigger.models.neural.vae`,
  :mod:`~darktrigger.models.neural.axo`: the scorers;
- :mod:`~darktrigger.models.neural.training`: :class:`TorchScorer` (the base of every torch
  scorer) and the training loop;
- :mod:`~darktrigger.models.neural.inference`: the folded scoring graph, shared by torch
  scoring and the ONNX export;
- :mod:`~darktrigger.models.neural.onnx_backend` and :mod:`~darktrigger.models.neural.kernels`:
  the ``onnxruntime`` scoring backend and its numba kernels.

Their quantised siblings are in :mod:`darktrigger.models.quantised`; the CWoLa classifiers
(also torch) in :mod:`darktrigger.models.cwola`.

    >>> from darktrigger.models import SCORERS
    >>> from darktrigger.models.neural import AEScorer, VAEScorer
    >>> SCORERS.get("ae") is AEScorer and SCORERS.get("vae") is VAEScorer
    True
"""

from __future__ import annotations

from darktrigger.models.neural.ae import AEScorer
from darktrigger.models.neural.axo import AXOScorer
from darktrigger.models.neural.training import TorchScorer
from darktrigger.models.neural.vae import VAEScorer

__all__ = ["AEScorer", "AXOScorer", "TorchScorer", "VAEScorer"]
