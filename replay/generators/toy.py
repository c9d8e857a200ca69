"""A fast parametric *toy* generator of every process name the Pythia generator knows.

For large replays and for tests: fully vectorised numpy, no physics library, fast
(BENCHMARKS.md has its rate per process). It is **not physics-accurate**. Each process
is a short recipe of resonances, two-body decays and falling spectra chosen so that its
L1 signature (object multiplicities, pT scales, η acceptance, MET) resembles the real
process; the numbers are round guesses, not fits.

    >>> from darktrigger.replay.generators.toy import ToyGenerator
    >>> batches = list(ToyGenerator().generate("ato4l", 25_000, seed=7, batch_size=10_000))
    >>> [len(b) for b in batches], int(batches[0]["truth"][0])
    ([10000, 10000, 5000], 10)

How events are made (all momenta in GeV, massless daughters unless said):

* Particles are 4-vectors. A parent is produced with pT ~ exponential, φ uniform,
  rapidity ~ normal; two-body decays are isotropic in the parent frame and boosted.
  A *recoil jet* (ISR) carries minus the hard system's transverse momentum, so the
  event balances; τ's decay collinearly: 17.8 % e, 17.4 % μ (visible fraction
  z = 1 − √u, mean 1/3), else a τ-jet (z uniform in [0.2, 1)); the rest is a neutrino.
* L1 objects are the visible particles inside acceptance: e/γ pT ≥ 3, |η| < 2.5;
  μ pT ≥ 3, |η| < 2.4; jets pT ≥ 15, |η| < 4.7; sorted by pT within a type, the
  highest kept when there are more than the slots. Pile-up jets: Poisson(``pileup_jets``),
  pT = 15 + exp(8), η uniform in ±4.7.
* MET = −Σ(visible hard objects in acceptance), i.e. the neutrinos plus whatever was
  lost, plus a Gaussian resolution of σ = 2 + 0.6 √ΣET per component (ΣET over all
  objects, pile-up included); pile-up jets are taken to be balanced by unseen soft
  activity and are left out of the vector sum. MET η = 0.

Processes (one event each, except ``zero_bias``):

==============  ========================================================================
process         recipe
==============  ========================================================================
``qcd``         2→2 of mass 40 GeV × Pareto(α = 3), a 20 % chance of a semileptonic
                heavy-flavour jet (a soft e or μ and a ν)
``wjets``       W(80.4) → eν, μν, τν
``zjets``       Z(91.2) → ee, μμ, ττ
``ttbar``       tt̄ → bW bW, each W leptonic (e, μ, τ) with 32.4 % or else two jets
``sm_mix``      each event's process drawn with the ADC2021 background fractions
                :data:`SM_MIX_FRACTIONS` (W 59.2 %, QCD 33.8 %, Z 6.7 %, tt̄ 0.3 %; that
                sample had a one-lepton filter, which this toy does not apply); ``truth``
                holds each event's own label
``zero_bias``   one colliding bunch crossing per event at the ``luminosity`` (μ ≈ 56 at
                2.0e34): Poisson pile-up, soft ΣET and MET, pile-up jets, soft e/γ and
                muon candidates, hard QCD above p̂T = 30 GeV, W, Z, tt̄ at σ·L, with L1
                muon and calorimeter resolutions (:mod:`~darktrigger.replay.generators.toy_zero_bias`,
                whose :class:`~darktrigger.replay.generators.toy_zero_bias.ZeroBiasModel` holds
                every parameter with its meaning); weight 1 (one event = one crossing), ``truth``
                the process of the crossing's hardest interaction (``minbias``, ``qcd``,
                ``wjets``, ``zjets``, ``ttbar``); rates are fractions × 28.6 MHz
``ato4l``       A(50) → X X, X → ℓℓ (same flavour, e or μ), m_X uniform in [15, 24]
``lq_btau``     LQ(80) → b τ
``h_tautau``    h(60) → ττ
``hpm_taunu``   H±(60) → τν
``qcd_dijet``   LHC-Olympics-like dijets with float32 columns ``mjj``, ``mj1`` (the heavier
                jet), ``mj2``, ``tau21_j1``, ``tau21_j2`` (see :func:`_dijet`); jet masses and
                τ21's drawn independently of mjj, so uncorrelated with it
``wprime_xy``   W′(3.5 TeV) → X(500) Y(100), the same columns
==============  ========================================================================

The single-process recipes (all but ``zero_bias``) add Poisson(``pileup_jets``) pile-up
jets to each event, the conditions of the ADC2021 samples (μ = 20) roughly; ``zero_bias``
makes its pile-up from μ.

Reproducibility: events are made in chunks of :data:`CHUNK` seeded by
(seed, process, chunk number), so the same seed gives bit-identical events whatever
``batch_size`` and ``n_events`` (the first k events of a longer run are the k-event run).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import PROCESS_LABELS, ZERO_BIAS, EventBatch
from darktrigger.replay.generators.base import EventGenerator, register_generator
from darktrigger.replay.generators.toy_recipes import (  # noqa: F401 - DIJET_*, event_candidates: public here too
    CHUNK,
    DIJET_COLUMNS,
    DIJET_MJJ_RANGE,
    DIJET_PARAMS,
    LUMI_EVENTS,
    SM_MIX_FRACTIONS,
    _make,
    event_candidates,
)
from darktrigger.replay.generators.toy_zero_bias import ZeroBiasModel, make_crossings
from darktrigger.replay.lhc import RUN3_LUMINOSITY, LHCConditions

log = logging.getLogger(__name__)


# -- the generator ------------------------------------------------------------------------
@register_generator("toy")
class ToyGenerator(EventGenerator):
    """Fast parametric toy events (not physics-accurate; see the module docs).

    Options:

    * ``run`` (int, default 1): the ``run`` column;
    * ``luminosity`` (cm⁻²s⁻¹, default 2.0e34) and ``pileup`` (μ, the mean number of
      inelastic interactions per crossing; default: from the luminosity, ≈ 55.9; given, it
      overrides the luminosity): the LHC conditions of ``zero_bias`` crossings
      (:class:`~darktrigger.replay.lhc.LHCConditions`, 2544 colliding bunches, σ_inel = 80 mb);
    * ``pileup_jets`` (float, default 0.7): the mean number of pile-up jets added to each event
      of the single-process recipes (roughly their ADC2021 conditions, μ = 20).

        >>> gen = ToyGenerator(pileup_jets=1.0)
        >>> b = next(gen.generate("wprime_xy", 1000, seed=3))
        >>> round(float(np.median(b["mjj"])), -2)
        3500.0
        >>> round(ToyGenerator(luminosity=1.0e34).provenance("zero_bias", 1)["pileup"], 1)
        28.0
    """

    description = "fast parametric toy of every process (not physics-accurate)"
    OPTIONS: dict[str, Any] = {"run": 1, "luminosity": RUN3_LUMINOSITY, "pileup": None, "pileup_jets": 0.7}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise ConfigError(f"generator 'toy' has no option(s) {', '.join(unknown)}; "
                              f"it takes {', '.join(self.OPTIONS)}")
        super().__init__(**(self.OPTIONS | options))
        run, lumi = self.options["run"], self.options["luminosity"]
        pileup, jets = self.options["pileup"], self.options["pileup_jets"]
        if not (isinstance(run, int) and 0 <= run < 2**32):
            raise ConfigError(f"generator 'toy': run must be an integer in [0, 2**32), got {run!r}")
        if not (_is_number(jets) and 0 <= jets <= 20):
            raise ConfigError(f"generator 'toy': pileup_jets must be a number in [0, 20], got {jets!r}")
        if not (_is_number(lumi) and 0 < lumi < 1e37):
            raise ConfigError(f"generator 'toy': luminosity must be a number of cm^-2 s^-1 in (0, 1e37), "
                              f"e.g. 2.0e34; got {lumi!r}")
        if pileup is not None and not (_is_number(pileup) and 0 < pileup <= 1000):
            raise ConfigError(f"generator 'toy': pileup (mean interactions per crossing) must be a number "
                              f"in (0, 1000], e.g. 60; got {pileup!r}")
        self.run, self.pileup_jets = int(run), float(jets)
        #: the zero-bias crossings' conditions (a given pile-up fixes the luminosity)
        self.conditions = (LHCConditions.from_pileup(float(pileup)) if pileup is not None
                           else LHCConditions(luminosity=float(lumi)))
        self.zero_bias_model = ZeroBiasModel()

    def generate(self, process: str, n_events: int, seed: int, *,
                 batch_size: int = 10_000, progress: bool = False) -> Iterator[EventBatch]:
        """Yield ``n_events`` events of ``process`` in batches of ``batch_size`` (last shorter)."""
        self.check_process(process)
        if n_events < 0 or batch_size < 1 or seed < 0:
            raise ConfigError(
                f"generator 'toy', process {process!r}: need n_events >= 0, batch_size >= 1 "
                f"and seed >= 0; got {n_events}, {batch_size}, {seed}")
        log.debug("toy %s: %d events, seed %d, batch %d", process, n_events, seed, batch_size)
        cached: tuple[int, dict[str, np.ndarray]] | None = None
        with tqdm(total=n_events, disable=not progress, unit="ev", desc=f"toy {process}") as bar:
            for start in range(0, n_events, batch_size):
                stop = min(start + batch_size, n_events)
                pieces = []
                for c in range(start // CHUNK, (stop - 1) // CHUNK + 1):
                    if cached is None or cached[0] != c:
                        cached = (c, self._chunk(process, seed, c))
                    lo, hi = max(start - c * CHUNK, 0), min(stop - c * CHUNK, CHUNK)
                    pieces.append({k: v[lo:hi] for k, v in cached[1].items()})
                cols = pieces[0] if len(pieces) == 1 else {
                    k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
                event = np.arange(start, stop, dtype=np.uint64)
                yield EventBatch.from_objects(
                    cols.pop("objects"), truth=cols.pop("truth"), bx=cols.pop("bx"),
                    run=self.run, lumi=1 + event // LUMI_EVENTS, event=event, extra=cols)
                bar.update(stop - start)

    def _chunk(self, process: str, seed: int, index: int) -> dict[str, np.ndarray]:
        """Columns of chunk ``index`` (``CHUNK`` events), a pure function of its arguments."""
        seq = np.random.SeedSequence([seed, zlib.crc32(process.encode()), index])
        rng = np.random.default_rng(seq)
        extra: dict[str, np.ndarray] = {}
        if process == ZERO_BIAS:
            objects, truth = make_crossings(rng, CHUNK, self.conditions.pileup, self.zero_bias_model)
        elif process == "sm_mix":
            names = tuple(SM_MIX_FRACTIONS)
            which = rng.choice(len(names), CHUNK, p=list(SM_MIX_FRACTIONS.values()))
            objects = np.empty((CHUNK, 19, 3), dtype=np.float32)
            truth = np.empty(CHUNK, dtype=np.int16)
            for i, (name, child) in enumerate(zip(names, seq.spawn(len(names)), strict=True)):
                rows = np.flatnonzero(which == i)
                if len(rows):
                    objects[rows] = _make(name, np.random.default_rng(child), len(rows), self.pileup_jets)[0]
                truth[rows] = PROCESS_LABELS[name]
        else:
            objects, extra = _make(process, rng, CHUNK, self.pileup_jets)
            truth = np.full(CHUNK, PROCESS_LABELS[process], dtype=np.int16)
        bx = rng.integers(1, 3565, CHUNK).astype(np.uint16)
        return {"objects": objects, "truth": truth, "bx": bx, **extra}

    def provenance(self, process: str, seed: int) -> dict[str, Any]:
        info = super().provenance(process, seed)
        info.update(run=self.run, chunk=CHUNK, toy=True)
        if process == ZERO_BIAS:
            # one event = one colliding crossing (weight 1): the rate of a seed is its
            # fraction of events × crossing_rate_hz
            info.update(self.conditions.to_dict(), unit="bunch crossing",
                        zero_bias_model=self.zero_bias_model.to_dict())
        else:
            info["pileup_jets"] = self.pileup_jets
        if process == "sm_mix":
            info["sm_mix_fractions"] = dict(SM_MIX_FRACTIONS)
        return info


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
