"""Pythia 8 events at √s = 13.6 TeV through the parametrised L1 detector.

Generates the Standard-Model backgrounds, ADC2021-like signals and the CWoLa dijet
samples of the event model with ``pythia8mc`` (Pythia 8.317), turns the visible final
state into L1 objects with :class:`darktrigger.replay.detector.L1Detector`, and yields
:class:`~darktrigger.replay.events.EventBatch` es.

    >>> from darktrigger.replay.generators import GENERATORS
    >>> gen = GENERATORS.get("pythia")()
    >>> batch = next(gen.generate("ttbar", 20, seed=1, batch_size=20))
    >>> batch.validate().objects.shape
    (20, 19, 3)
    >>> round(float(batch["weight"].sum()) / gen.last_sigma_pb["ttbar"], 3)   # weights sum to σ
    1.0

Processes (settings in :data:`PROCESS_SETTINGS`):

``qcd``        ``HardQCD:all``, p̂T > 30 GeV: twice the 15 GeV L1 jet threshold, so nearly
               every event has jets while the hard scattering stays perturbative and the
               unweighted sample is not swamped by events with nothing above threshold
               (σ ≈ 1.7·10⁸ pb).
``wjets``      ``WeakSingleBoson:ffbar2W`` with W → eν, μν, τν (jets from the shower).
``zjets``      ``WeakSingleBoson:ffbar2gmZ``, m̂ > 50 GeV, γ*/Z → ee, μμ, ττ.
``ttbar``      ``Top:gg2ttbar`` + ``Top:qqbar2ttbar``, inclusive decays.
``sm_mix``     the four above, each event's sub-process drawn (seeded) with probability
               σᵢ/Σσ, σᵢ from Pythia (see below). With p̂T > 30 GeV QCD is ≈ 99.9 % of
               it; pass ``mix_fractions={"qcd": 0.34, "wjets": 0.59, ...}`` for an
               ADC2021-like composition without the filter, or use ``recipe="adc2021"``
               for the ADC2021 recipe (filtered, with pile-up; last paragraph).
``ato4l``      A⁰ (id 36, gg → A) of 50 GeV (Γ = 10 MeV forced) → e⁺e⁻μ⁺μ⁻ by isotropic
               4-body phase space (``oneChannel`` with meMode 100): no Z* line shape.
               Lepton-filtered by default (:data:`DEFAULT_LEPTON_FILTERS`, next section).
``lq_btau``    scalar leptoquark (id 42) of 80 GeV, pair-produced (gg, qq̄ → LQ LQbar),
               LQ → b τ⁺ (charge −1/3 + 1 = 2/3).
``h_tautau``   the SM-like Higgs (id 25) with m = 60 GeV, gg → h, h → τ⁺τ⁻ only.
``hpm_taunu``  H± (id 37) of 60 GeV from qq̄′ → H± (``HiggsBSM:ffbar2H+-``), H± → τν only.
``zero_bias``  one colliding bunch crossing per event at 2.0e34 (μ ≈ 56 pile-up), weighted
               in Hz: a minimum-bias library (``SoftQCD:inelastic``) overlaid with Poisson
               pile-up, QCD in p̂T bins from 20 GeV, W, Z and tt̄ (module
               :mod:`darktrigger.replay.generators.pythia_zero_bias`); extra column
               ``n_interactions``.
``qcd_dijet``  ``HardQCD:all``, p̂T > 1 TeV (R = 1 dijets with m_jj ≳ 2 TeV).
``wprime_xy``  W′⁺ (id 34, qq̄′ → W′) of 3.5 TeV (Γ = 35 GeV, mass window 3–4 TeV) → H⁰(35)
               H⁺(37) with m(H⁰) = 500 GeV (X), m(H⁺) = 100 GeV (Y); H⁰ → qq̄ (mostly bb̄),
               H⁺ → qq̄′ (mostly cs̄), as the LHC Olympics 2020 R&D signal.

``qcd_dijet`` and ``wprime_xy`` also carry ``mjj, mj1, mj2, tau21_j1, tau21_j2``
(:func:`darktrigger.replay.detector.dijet_features`).

Weights: ``weight`` = σ/N in pb (σ·ε/N with a lepton filter, below), so the weights of a
sample sum to its cross section.
σ comes from a short process-level pre-run (``PartonLevel:all = off``, ``sigma_events``
events, default 2000) with its own seed: ``Info::sigmaGen`` there is the same hard-process
cross section (including the branching fractions of the open decay channels), it is
known before the first batch, and is cheap (no shower, hadronisation or detector). For
``sm_mix`` every event gets Σσ/N.

Generator-level lepton filter (:class:`LeptonFilter`): the ADC2021 signal samples were made
with a lepton filter (``Ato4l_lepFilter_13TeV.h5``); ours keeps an event only if it has at
least ``min_leptons`` prompt electrons/muons with pT > ``pt_min`` and |η| < ``eta_max``
(optionally the leading one above ``lead_pt_min``). It is a Pythia ``UserHooks`` veto at the
end of the parton level (``doVetoPartonLevel``), so it sees the truth leptons of the hard
process and of resonance decays after ISR recoil and QED/QCD final-state radiation, before
hadronisation: every lepton there is prompt (hadron decays come later), and a rejected event
costs no hadronisation and no detector. τ-decay leptons are not counted (τ decays are
hadron-level). A rejected event is replaced by a new one (counted: ``last_filter_counts``).

``ato4l`` uses ``LeptonFilter(min_leptons=3, pt_min=6, eta_max=2.5)``: ≥ 3 of the four
leptons inside the L1 tracker/muon acceptance and above the L1 turn-ons (ε(e) is 45 % at
5 GeV, 88 % at 8 GeV), so that the sample is one a multi-lepton trigger study can see.
Without it most events do not reach ≥ 3 L1 leptons: the 4-body decay of a 50 GeV scalar
made at low pT gives soft leptons, many of them below the turn-ons or beyond |η| = 2.5.
With it most kept events have ≥ 3 filled e/γ + μ slots (tests/test_pythia.py holds the
floor); the rest is lost to the L1 isolation (ΣpT within ΔR < 0.3 below 25 % of a soft
lepton's pT; UE and FSR photons count) and the turn-ons. Those losses remain when all four
leptons are required, at a much lower filter efficiency, which is why we do not require four.
(The ADC2021 filter itself, as recalled, not verified here: one e or μ with pT > 23 GeV,
``LeptonFilter(min_leptons=1, pt_min=23, eta_max=3)``. Added to ≥ 3 leptons above 5 GeV it
would discard most of our ato4l and lower the fraction with ≥ 3 L1 leptons, so it is not
applied.)

The filtered cross section is σ·ε: ``weight`` = σ·ε/N, ``last_sigma_pb`` holds σ·ε,
``last_sigma_unfiltered_pb`` σ, ``last_filter_efficiency`` ε. ε must be known before the
first batch and must not depend on ``n_events`` or ``batch_size``, so it is measured on the
first ``filter_events`` (default 1000) accepted events of the main run itself, which are
generated ahead, buffered and then used as the sample's first events (nothing is wasted when
``n_events >= filter_events``): ε = accepted / tried there, binomial uncertainty
√(ε(1−ε)/tried). ``last_filter_counts`` gives tried/passed over the whole run as a
cross-check. A request for fewer than ``filter_events`` events still generates
``filter_events`` (same ε, same first events).

Reproducibility: Pythia is seeded (``Random:setSeed = on``) with a seed derived from
``(seed, process)``, the detector from another; the same arguments give bit-identical
batches, whatever ``batch_size`` is. A failed ``pythia.next()`` is retried and counted
(``self.last_failures``); more than ``max_failures`` (default 10 % of the events, at
least 10) raises :class:`~darktrigger.replay.errors.GenerationError`.

Options (``PythiaGenerator(**options)``): ``settings`` (extra Pythia lines, applied after
the process's), ``mix_fractions``, ``sigma_events``, ``max_failures``, ``run``,
``detector`` (a :class:`~darktrigger.replay.detector.DetectorConfig`), ``chunk`` (events per
``nextBatch`` call, default 100), ``lepton_filter`` (a :class:`LeptonFilter` or a dict of
its fields: applied to the process generated, replacing its default; ``None`` or ``False``:
no filter for any process; not given: :data:`DEFAULT_LEPTON_FILTERS`; not for ``sm_mix``),
``filter_events`` (accepted events the filter efficiency is measured on, default 1000);
``recipe`` (``"adc2021"``: the ADC2021 data paper's samples, :mod:`darktrigger.replay.generators.adc2021`:
``sm_mix`` is its lepton-filtered SM cocktail, the four signals as above, all through the
single-lepton filter on the L1 objects with pile-up μ = 20 (``pileup``); it takes ``pileup``,
``mix_fractions``, ``filter_events``, ``qcd_pthat_min`` (GeV, default: ``qcd``'s 30) and the
library options, and refuses ``lepton_filter``,
``luminosity``, ``allocation``);
for ``zero_bias``: ``luminosity`` (cm⁻²s⁻¹, default 2.0e34), ``pileup`` (μ, default from the
luminosity), ``allocation`` (category → fraction of the events), ``library`` (the minimum-bias
library's file), ``library_events`` (default 100,000), ``library_seed`` (default 1).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from darktrigger.replay.detector import DetectorConfig, L1Detector, ParticleBatch, dijet_features
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import (
    DIJET_PROCESSES,
    PROCESS_LABELS,
    SM_PROCESSES,
    ZERO_BIAS,
    EventBatch,
)
from darktrigger.replay.generators.adc2021 import ADC2021_PROCESSES, RECIPE, Adc2021Sampler
from darktrigger.replay.generators.base import EventGenerator, register_generator
from darktrigger.replay.generators.pythia_run import (  # noqa: F401 - MB_TO_PB: public here too
    _ROLE_DETECTOR,
    _ROLE_MAIN,
    _ROLE_MIX,
    _ROLE_SIGMA,
    COMMON_SETTINGS,
    DEFAULT_LEPTON_FILTERS,
    ECM_GEV,
    MB_TO_PB,
    PROCESS_SETTINGS,
    LeptonFilter,
    PythiaRun,
    derived_seed,
)
from darktrigger.replay.generators.pythia_zero_bias import CATEGORIES, ZeroBiasSampler, library_for

log = logging.getLogger(__name__)


@register_generator("pythia")
class PythiaGenerator(EventGenerator):
    """Pythia 8 at 13.6 TeV with the parametrised L1 detector (module docs).

        >>> gen = PythiaGenerator(settings=["PartonLevel:MPI = off"])
        >>> [len(b) for b in gen.generate("qcd", 250, seed=3, batch_size=100)]
        [100, 100, 50]
    """

    description = "Pythia 8 (pythia8mc) pp at 13.6 TeV with a parametrised L1 detector"
    #: ``darktrigger generate --jobs`` may make the events in independently seeded parts
    parallel_parts = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        known = {"settings", "mix_fractions", "sigma_events", "max_failures", "run", "detector", "chunk",
                 "lepton_filter", "filter_events", "recipe", "qcd_pthat_min",
                 # zero_bias (replay/generators/pythia_zero_bias.py)
                 "luminosity", "pileup", "allocation", "library", "library_events", "library_seed"}
        unknown = set(options) - known
        if unknown:
            raise ConfigError(f"generator 'pythia' has no option(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        self.settings: tuple[str, ...] = tuple(options.get("settings", ()))
        self.sigma_events = int(options.get("sigma_events", 2000))
        self.chunk = int(options.get("chunk", 100))
        self.detector_config: DetectorConfig = options.get("detector") or DetectorConfig()
        self.run_number = int(options.get("run", 1))
        self.filter_events = int(options.get("filter_events", 1000))
        if self.chunk < 1 or self.sigma_events < 1 or self.filter_events < 1:
            raise ConfigError(f"generator 'pythia': chunk, sigma_events and filter_events must be >= 1, "
                              f"got {self.chunk}, {self.sigma_events} and {self.filter_events}")
        if "lepton_filter" in options and options["lepton_filter"] not in (None, False):
            LeptonFilter.coerce(options["lepton_filter"])  # fail early on a bad one
        #: None, or "adc2021" (replay/generators/adc2021.py)
        self.recipe: str | None = options.get("recipe")
        if self.recipe not in (None, RECIPE):
            raise ConfigError(f"generator 'pythia': unknown recipe {self.recipe!r}; known: {RECIPE}")
        if self.recipe is not None:
            Adc2021Sampler(self)  # fail early on options the recipe does not take
        self.last_failures = 0
        #: cross sections of the last run in pb; with a lepton filter σ·ε (what the weights sum to)
        self.last_sigma_pb: dict[str, float] = {}
        self.last_sigma_unfiltered_pb: dict[str, float] = {}
        #: filter efficiency used in the weights (empty without a filter)
        self.last_filter_efficiency: dict[str, float] = {}
        #: filter (tried, passed) over the whole last run, rejected = tried - passed
        self.last_filter_counts: dict[str, tuple[int, int]] = {}
        self.last_fractions: dict[str, float] = {}
        #: the last zero_bias run: luminosity, pileup, f_hard, events, σ and weight per category
        self.last_zero_bias: dict[str, Any] = {}
        #: the last adc2021-recipe run: pile-up, filter, fractions, counts, σ, ε per process
        self.last_recipe: dict[str, Any] = {}

    def provenance(self, process: str, seed: int) -> dict[str, Any]:
        info = super().provenance(process, seed)
        if self.recipe is not None:
            info.update(pythia_version="8.317", ecm_gev=ECM_GEV, weight_unit="pb",
                        settings=self.last_recipe.get("settings", {}),
                        recipe=json.loads(json.dumps(self.last_recipe, default=float)))
            return info
        if process == ZERO_BIAS:
            base = {c.process or "minbias" for c in CATEGORIES}
            info.update(pythia_version="8.317", ecm_gev=ECM_GEV, weight_unit="Hz",
                        settings={p: [*COMMON_SETTINGS, *PROCESS_SETTINGS[p], *self.settings] for p in sorted(base)},
                        zero_bias=json.loads(json.dumps(self.last_zero_bias, default=float)))
            return info
        subs = SM_PROCESSES if process == "sm_mix" else (process,)
        flt = self.lepton_filter_for(process)
        info.update(
            pythia_version="8.317", ecm_gev=ECM_GEV,
            settings={p: [*COMMON_SETTINGS, *PROCESS_SETTINGS[p], *self.settings] for p in subs},
            sigma_pb=dict(self.last_sigma_pb), fractions=dict(self.last_fractions),
            lepton_filter=asdict(flt) if flt is not None else None,
            sigma_unfiltered_pb=dict(self.last_sigma_unfiltered_pb),
            filter_efficiency=dict(self.last_filter_efficiency),
            filter_counts={p: list(c) for p, c in self.last_filter_counts.items()},
        )
        return info

    def prepare(self, process: str) -> None:
        """Make what every part of a parallel run shares (zero_bias: the minimum-bias library)."""
        if process == ZERO_BIAS:
            ZeroBiasSampler(self).library()
        elif self.recipe is not None and Adc2021Sampler(self).mu > 0:
            library_for(self)

    def lepton_filter_for(self, process: str) -> LeptonFilter | None:
        """The generator-level lepton filter used for ``process`` (None: none)."""
        if "lepton_filter" not in self.options:
            return DEFAULT_LEPTON_FILTERS.get(process)
        given = self.options["lepton_filter"]
        if given is None or given is False:
            return None
        if process == "sm_mix":
            raise ConfigError("generator 'pythia': lepton_filter is not supported for sm_mix (its mix "
                              "fractions come from unfiltered cross sections); filter a single process")
        return LeptonFilter.coerce(given)

    # -- helpers ----------------------------------------------------------------------------
    def _max_failures(self, n_events: int) -> int:
        return int(self.options.get("max_failures", max(10, n_events // 10)))

    def _sigma(self, process: str, seed: int) -> float:
        run = PythiaRun(process, derived_seed(seed, _ROLE_SIGMA, PROCESS_LABELS[process]),
                        extra=self.settings, process_level_only=True, max_failures=self.sigma_events)
        run.run_process_level(self.sigma_events)
        sigma = run.sigma_pb()
        log.info("pythia %s: sigma = %.4g pb (%d process-level events)", process, sigma, self.sigma_events)
        return sigma

    def _fractions(self, sigmas: Mapping[str, float]) -> dict[str, float]:
        given = self.options.get("mix_fractions")
        if given is None:
            total = sum(sigmas.values())
            return {p: sigmas[p] / total for p in SM_PROCESSES}
        unknown = set(given) - set(SM_PROCESSES)
        if unknown or any(float(v) < 0 for v in given.values()) or sum(given.values()) <= 0:
            raise ConfigError(f"mix_fractions must map some of {', '.join(SM_PROCESSES)} to "
                              f"non-negative numbers with a positive sum, got {dict(given)}")
        total = float(sum(given.values()))
        return {p: float(given.get(p, 0.0)) / total for p in SM_PROCESSES}

    # -- the generator ----------------------------------------------------------------------
    def generate(self, process: str, n_events: int, seed: int, *,
                 batch_size: int = 10_000, progress: bool = False) -> Iterator[EventBatch]:
        """Yield ``n_events`` events of ``process`` in batches of at most ``batch_size``."""
        self.check_process(process)
        if n_events < 0 or batch_size < 1:
            raise ConfigError(f"generator 'pythia': need n_events >= 0 and batch_size >= 1, "
                              f"got {n_events} and {batch_size}")
        from tqdm import tqdm

        if self.recipe is not None:
            if process not in ADC2021_PROCESSES:
                raise ConfigError(f"generator 'pythia' recipe {self.recipe} makes {', '.join(ADC2021_PROCESSES)}; "
                                  f"not {process!r}")
            recipe = Adc2021Sampler(self)
            self.last_recipe = recipe.info
            yield from recipe.generate(process, n_events, seed, batch_size=batch_size, progress=progress)
            self.last_recipe = recipe.info
            self.last_sigma_pb = dict(recipe.info["sigma_pb"])
            self.last_sigma_unfiltered_pb = dict(recipe.info["sigma_unfiltered_pb"])
            self.last_filter_efficiency = dict(recipe.info["filter_efficiency"])
            self.last_filter_counts = {p: tuple(c) for p, c in recipe.info["filter_counts"].items()}
            self.last_fractions = dict(recipe.info["fractions"])
            return
        if process == ZERO_BIAS:
            sampler = ZeroBiasSampler(self)
            yield from sampler.generate(n_events, seed, batch_size, progress)
            self.last_zero_bias = sampler.info
            self.last_sigma_pb = dict(sampler.info["sigma_pb"])
            return
        subs = SM_PROCESSES if process == "sm_mix" else (process,)
        lepton_filter = self.lepton_filter_for(process)
        # with a filter at least filter_events are generated (prefetch)
        max_failures = self._max_failures(max(n_events, self.filter_events) if lepton_filter else n_events)
        runs: dict[str, PythiaRun] = {}
        self.last_sigma_pb = {p: self._sigma(p, seed) for p in subs}
        self.last_sigma_unfiltered_pb = dict(self.last_sigma_pb)
        self.last_filter_efficiency, self.last_filter_counts = {}, {}
        if lepton_filter is not None and n_events > 0:  # (no events asked: nothing measured)
            # ε from the first filter_events accepted events of the main run, kept as its first events
            runs[process] = PythiaRun(process, derived_seed(seed, _ROLE_MAIN, PROCESS_LABELS[process]),
                                      extra=self.settings, max_failures=max_failures,
                                      lepton_filter=lepton_filter)
            eff = runs[process].prefetch(self.filter_events, self.chunk)
            self.last_filter_efficiency = {process: eff}
            self.last_filter_counts = {process: runs[process].filter_counts}
            self.last_sigma_pb[process] *= eff
            log.info("pythia %s: %s, efficiency %.4f (%d of %d tried)", process, lepton_filter, eff,
                     *runs[process].filter_counts[::-1])
        if process == "sm_mix":
            self.last_fractions = self._fractions(self.last_sigma_pb)
            mix_rng = np.random.default_rng(derived_seed(seed, _ROLE_MIX))
            probs = np.array([self.last_fractions[p] for p in subs])
            labels_all = mix_rng.choice(len(subs), size=n_events, p=probs / probs.sum())
            counts = np.bincount(labels_all, minlength=len(subs))
            log.info("pythia sm_mix fractions %s; drawn %s", self.last_fractions,
                     dict(zip(subs, counts.tolist(), strict=True)))
            weight = sum(self.last_sigma_pb.values()) / max(n_events, 1)
        else:
            self.last_fractions = {process: 1.0}
            labels_all = np.zeros(n_events, dtype=np.int64)
            weight = self.last_sigma_pb[process] / max(n_events, 1)
        truth_of = np.array([PROCESS_LABELS[p] for p in subs], dtype=np.int16)

        detector = L1Detector(self.detector_config,
                              seed=derived_seed(seed, _ROLE_DETECTOR, PROCESS_LABELS.get(process, 99)))
        self.last_failures = 0
        with tqdm(total=n_events, desc=f"pythia {process}", unit="ev", disable=not progress) as bar:
            for start in range(0, n_events, batch_size):
                stop = min(start + batch_size, n_events)
                labels = labels_all[start:stop]
                pieces: list[ParticleBatch] = []
                origin: list[np.ndarray] = []
                for j, sub in enumerate(subs):
                    want = int((labels == j).sum())
                    if want == 0:
                        continue
                    if sub not in runs:  # lazily: a rare sub-process may never be needed
                        runs[sub] = PythiaRun(sub, derived_seed(seed, _ROLE_MAIN, PROCESS_LABELS[sub]),
                                              extra=self.settings, max_failures=max_failures)
                    for k in range(0, want, self.chunk):
                        pieces.append(runs[sub].next_particles(min(self.chunk, want - k)))
                        bar.update(pieces[-1].n_events)
                    origin.append(np.flatnonzero(labels == j))
                particles = ParticleBatch.concat(pieces)
                if len(origin) > 1:  # put the sub-processes' events back in the drawn order
                    position = np.concatenate(origin)
                    particles = particles.take(np.argsort(position, kind="stable"))
                event = np.arange(start, stop, dtype=np.uint64)
                block = detector.simulate(particles, event)
                extra = dijet_features(particles) if process in DIJET_PROCESSES else None
                self.last_failures = sum(r.failures for r in runs.values())
                if lepton_filter is not None:
                    self.last_filter_counts = {process: runs[process].filter_counts}
                yield EventBatch.from_objects(
                    block, truth=truth_of[labels], weight=weight, run=self.run_number,
                    lumi=1, event=event, bx=0, extra=extra,
                )
        if self.last_filter_counts:
            tried, passed = self.last_filter_counts[process]
            log.info("pythia %s: lepton filter rejected %d of %d events (regenerated)", process,
                     tried - passed, tried)
        if self.last_failures:
            log.warning("pythia %s: %d failed events were retried", process, self.last_failures)
