"""The quantised scorers ``qae``, ``qvae`` and ``qaxo`` (:mod:`~darktrigger.models.quantised.axo`): QKeras models on the inputs as L1 hardware
sees them, scored in exact fixed point, and the source of the firmware.

- :mod:`~darktrigger.models.quantised.scorers`: the scorers (:class:`QuantisedScorer` and
  its subclasses, each bringing its own training graph and loss);
- :mod:`~darktrigger.models.quantised.preprocess`: CMSSW's 57 AXOL1TL inputs (darktrigger.replay.l1units.cmssw_inputs: hwPt/2, hwEta, hwPhi, muons on the muon LSBs),
  normalised by shifts;
- :mod:`~darktrigger.models.quantised.fixedpoint`: the network as exact fixed-point layers
  (what hls4ml and da4ml turn into firmware);
- :mod:`~darktrigger.models.quantised.training`: the QKeras training loop and models
  (TensorFlow is imported when they are built, so only training and firmware builds load it);
- :mod:`~darktrigger.models.quantised.testing`: small trained models and toy events for tests.

    >>> from darktrigger.models import SCORERS
    >>> from darktrigger.models.quantised import QVAEScorer
    >>> SCORERS.get("qvae") is QVAEScorer
    True
"""

from __future__ import annotations

from darktrigger.models.quantised.axo import QAXOScorer
from darktrigger.models.quantised.scorers import QAEScorer, QuantisedScorer, QVAEScorer

__all__ = ["QAEScorer", "QAXOScorer", "QVAEScorer", "QuantisedScorer"]
