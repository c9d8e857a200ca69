"""Test helpers shipped with the package: toy events and small trained quantised models.

The model and firmware tests (and anyone checking a firmware flow) need a trained
quantised model in seconds: :func:`train_small` trains one on toy ``sm_mix`` events
(seeded, two epochs) and saves it.

    >>> batch = toy_batch("sm_mix", 100, seed=1)
    >>> batch.objects.shape
    (100, 19, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from darktrigger.models.base import get_scorer
from darktrigger.replay.events import EventBatch
from darktrigger.replay.generators import GENERATORS


def toy_batch(process: str, n: int, seed: int) -> EventBatch:
    """``n`` events of the toy generator's ``process`` (``sm_mix``, ``ato4l``, ...), seeded."""
    return next(GENERATORS.get("toy")().generate(process, n, seed=seed, batch_size=n))


def train_small(name: str, directory: str | Path, n: int = 4000, **hyperparameters: Any) -> Path:
    """Train the scorer ``name`` (``qvae``, ``qae``) with ``hyperparameters`` on ``n`` toy
    ``sm_mix`` events (seed 31; two epochs, batch 256, seed 4) and save it into ``directory``.

        >>> train_small("qvae", tmp_path / "qvae", n=600, hidden=[8], latent=2)
        PosixPath('.../qvae')
    """
    scorer = get_scorer(name, **hyperparameters)
    scorer.fit(toy_batch("sm_mix", n, seed=31), epochs=2, batch_size=256, seed=4)
    return scorer.save(directory)


def float_twin_small(scorer: Any) -> tuple[dict[str, Any], Any, Any]:
    """The float twin (``quantise=False``) of ``scorer`` trained 2 epochs on 3,000 toy
    ``sm_mix`` events (seeds fixed): (params, history, the 500 validation inputs)."""
    from darktrigger.models.base import FitOptions
    from darktrigger.models.quantised import training
    from darktrigger.models.quantised.preprocess import QPreprocessor

    train, val = toy_batch("sm_mix", 3000, seed=21), toy_batch("sm_mix", 500, seed=22)
    qpre = QPreprocessor.fit(train.flat)
    x, xv = qpre.transform(train.flat), qpre.transform(val.flat)
    options = FitOptions(epochs=2, batch_size=256, seed=3, threads=1, patience=None)
    params, history = training.train(scorer, x, xv, options, quantise=False)
    return params, history, xv
