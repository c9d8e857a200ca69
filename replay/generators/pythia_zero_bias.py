"""Pythia zero bias: one colliding bunch crossing per event, weighted, with pile-up overlaid.

The ``zero_bias`` process of the Pythia generator (:class:`~darktrigger.replay.generators.pythia.PythiaGenerator`).
A crossing holds Poisson(μ) inelastic pp interactions, μ = L·σ_inel/(n_bunches·f_rev) from
:class:`~darktrigger.replay.lhc.LHCConditions` (≈ 55.9 at 2.0e34). Sampling crossings as they
come would spend almost all events on crossings no trigger seed fires on, so the stream is
split by the hardest interaction of the crossing and each part is generated on its own and
weighted by its rate:

* **Minimum-bias library.** ``SoftQCD:inelastic`` (non-diffractive, single-, double- and
  central-diffractive: every inelastic interaction is pile-up, and diffractive ones add
  forward energy to HF and the MET; Pythia's σ_inel ≈ 78.6 mb at 13.6 TeV against the 80 mb
  of :data:`~darktrigger.replay.lhc.SIGMA_INEL_MB`), ``library_events`` events (default
  100,000, about 4 minutes of one core) generated once and cached on disk
  (``~/.cache/darktrigger/minbias/``, or under ``$XDG_CACHE_HOME``, or the file the
  ``library`` option names), keyed by its settings and ``library_seed`` (default 1: one
  library for all seeds and all parts of a parallel run). Stored: the visible particles the
  detector can see (|η| < 5, charged ones below the calorimeter's reach dropped) as pT, η, φ,
  PDG id. Events whose hard scale p̂T (of the hardest multiparton interaction) exceeds
  :data:`PTHAT_CUT` = 20 GeV, or that hold a particle above 20 GeV (a hard scattering inside
  a high-mass diffractive system reports a low p̂T: a few in 10⁵), are removed and counted:
  their fraction is ``f_hard`` (≈ 1 %),
  the part of σ_inel the hard categories generate instead, fresh. The cut sits where a
  library event can no longer fire an object seed of the menu by itself: a library event is
  reused (≈ 56 × crossings / library size times), so one that fired would carry ≈ 56/100,000
  of the crossing rate, ≈ 16 kHz, and the rate would be library-limited.
* **Crossings**, each with ``n_interactions`` = the interactions in it. With μ_soft = μ·(1 − f)
  and μ_hard = μ·f (≈ 0.55 at 2.0e34):

  ========================  ====================================  ===============================
  category                  content                               weight (Hz, per event)
  ========================  ====================================  ===============================
  ``minbias`` (truth 4)     Poisson(μ_soft) library events (no     R_bx·exp(−μ_hard) / N
                            hard interaction)
  ``qcd_A_B`` (truth 0)     one ``HardQCD:all`` event with         L·σ(A < p̂T < B) / N / (1 + K)
                            A < p̂T < B (:data:`QCD_BINS`),
                            K ~ Poisson(μ_hard) more hard QCD
                            events (p̂T > 20, fresh, from one
                            Pythia run) and Poisson(μ_soft)
                            library events
  ``wjets``, ``zjets``,     one W → ℓν, γ*/Z → ℓℓ (m > 50),        L·σ / N / (1 + K)
  ``ttbar`` (their truth)   tt̄ event (PROCESS_SETTINGS) + the
                            same pile-up
  ========================  ====================================  ===============================

  R_bx = 28.6 MHz is the colliding-crossing rate, σ from Pythia (``sigmaGen`` of a
  process-level pre-run, as for the other processes), N the events of that category.
  Why 1/(1 + K): a crossing with hard interactions is reached once through each of them
  (its hard categories' weights add up over its 1 + K hard interactions), and the number of
  *other* hard interactions in a crossing reached through one of them is again
  Poisson(μ_hard) (a Poisson variable seen from one of its members); so each crossing is
  counted once in expectation, and the weights sum to R_bx·[exp(−μ_hard) + (1 − exp(−μ_hard))]
  = R_bx when L·σ_hard = μ_hard·R_bx (Pythia's σ(p̂T > 20) against f·σ_inel: equal to a few %,
  tests/test_pythia_zero_bias.py checks the sum). The weighted mean of ``n_interactions`` is μ.
  W, Z and tt̄ never appear as the additional hard interactions (their σ is 10⁻⁴ of QCD's);
  prompt photons, low-mass Drell–Yan and single top are left out (well below 1 % of any
  seed's rate).
* **Rates**: a seed's rate is Σ w(fired) in Hz, its error √Σw². Pile-up jets, the MET's
  growth with ΣET, the pile-up energy in e/γ clusters and soft muons from the 56 overlaid
  interactions come out of the detector model (:mod:`darktrigger.replay.detector`), not
  from a parametrisation of pile-up.

Allocation (option ``allocation``: category → fraction of the events, default
:data:`DEFAULT_ALLOCATION`): 14 % of the crossings are minimum bias (the low tails, MET from
pile-up), the rest in the hard categories, more at low p̂T where the object seeds' rates come
from (SingleMu22, SingleEG36 and DoubleEG from 20–120 GeV QCD; SingleJet180, DoubleJet150 and
HTT from above 120 GeV; DoubleMu from Z and QCD). The statistical error of each seed's rate
for the big sample is in BENCHMARKS.md (≤ 20 % for every object seed of the example menu with
≈ 300,000 crossings, an hour of one core).

Reproducibility: the hard events of category k come from one Pythia run seeded by
``(seed, k)``; each crossing's pile-up draws (how many, which) and its detector response are
seeded by ``(seed, event number)``; so the same arguments give the same crossings whatever the
batch size. Event numbers run over the categories in the order of the allocation.

    >>> from darktrigger.replay.generators.pythia_zero_bias import DEFAULT_ALLOCATION, allocate
    >>> allocate(1000, DEFAULT_ALLOCATION)["minbias"], allocate(1000, DEFAULT_ALLOCATION)["qcd_20_30"]
    (140, 140)
    >>> sum(allocate(1001, DEFAULT_ALLOCATION).values())
    1001
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from darktrigger.replay.detector import CHARGED_IDS, DetectorConfig, L1Detector, ParticleBatch
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import PROCESS_LABELS, EventBatch
from darktrigger.replay.generators.pythia_run import (
    COMMON_SETTINGS,
    MB_TO_PB,
    PROCESS_SETTINGS,
    PythiaRun,
    derived_seed,
)
from darktrigger.replay.lhc import LHCConditions


class PythiaOptions(Protocol):
    """What the zero-bias sampler reads of its :class:`~darktrigger.replay.generators.pythia.PythiaGenerator`."""

    options: dict[str, Any]
    settings: tuple[str, ...]
    detector_config: DetectorConfig
    sigma_events: int
    chunk: int
    run_number: int
    last_failures: int

    def _max_failures(self, n_events: int) -> int: ...


log = logging.getLogger(__name__)

#: hard scale (GeV) above which an interaction is generated by the hard categories, not the library
PTHAT_CUT = 20.0
#: the QCD p̂T bins (GeV; None: no upper edge)
QCD_BINS: tuple[tuple[float, float | None], ...] = (
    (20, 30), (30, 50), (50, 80), (80, 120), (120, 170), (170, 300), (300, None))
_LIBRARY_FORMAT = 1
_ROLE_ZB_MAIN, _ROLE_ZB_SIGMA, _ROLE_PILEUP, _ROLE_DETECTOR_ZB, _ROLE_EXTRA_HARD = 11, 12, 13, 14, 15


@dataclass(frozen=True)
class Category:
    """One part of the zero-bias stream: what its hard interaction is (None: minimum bias)."""

    name: str
    process: str | None
    settings: tuple[str, ...] = ()

    @property
    def truth(self) -> int:
        return PROCESS_LABELS["minbias" if self.process is None else self.process]


def _qcd_name(lo: float, hi: float | None) -> str:
    return f"qcd_{lo:g}_{hi:g}" if hi is not None else f"qcd_{lo:g}"


CATEGORIES: tuple[Category, ...] = (
    Category("minbias", None),
    *(Category(_qcd_name(lo, hi), "qcd", (f"PhaseSpace:pTHatMin = {lo:g}",
                                           *((f"PhaseSpace:pTHatMax = {hi:g}",) if hi is not None else ())))
      for lo, hi in QCD_BINS),
    Category("wjets", "wjets"),
    Category("zjets", "zjets"),
    Category("ttbar", "ttbar"),
)

DEFAULT_ALLOCATION: dict[str, float] = {
    "minbias": 0.14, "qcd_20_30": 0.14, "qcd_30_50": 0.16, "qcd_50_80": 0.12, "qcd_80_120": 0.09,
    "qcd_120_170": 0.07, "qcd_170_300": 0.07, "qcd_300": 0.05, "wjets": 0.07, "zjets": 0.05, "ttbar": 0.04,
}


def allocate(n_events: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Events per category: ``n_events`` split by ``fractions`` (largest remainders), in category order."""
    names = [c.name for c in CATEGORIES]
    unknown = set(fractions) - set(names)
    if unknown or any(float(v) < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ConfigError(f"zero_bias allocation must map some of {', '.join(names)} to non-negative "
                          f"fractions with a positive sum, got {dict(fractions)}")
    total = float(sum(fractions.values()))
    exact = np.array([n_events * float(fractions.get(k, 0.0)) / total for k in names])
    counts = np.floor(exact).astype(np.int64)
    rest = n_events - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return dict(zip(names, counts.tolist(), strict=True))


def cache_dir() -> Path:
    """Where minimum-bias libraries are cached."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "darktrigger" / "minbias"


#: libraries already read by this process, by (path, key)
_LOADED: dict[tuple[Path, str], MinBiasLibrary] = {}


class MinBiasLibrary:
    """Soft inelastic interactions (p̂T below the cut) as flat (pT, η, φ, id) arrays; see module docs.

    ``offsets[i]:offsets[i+1]`` are event i's particles; ``n_generated`` events were made, of
    which ``n_hard`` (above the cut) were removed.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self.pt = np.asarray(arrays["pt"], dtype=np.float32)
        self.eta = np.asarray(arrays["eta"], dtype=np.float32)
        self.phi = np.asarray(arrays["phi"], dtype=np.float32)
        self.pid = np.asarray(arrays["pid"], dtype=np.int32)
        self.counts = np.asarray(arrays["counts"], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.meta = dict(meta)

    @property
    def n_events(self) -> int:
        return len(self.counts)

    def without_hard_particles(self, pt_max: float) -> MinBiasLibrary:
        """The library without events that hold a particle of pT > ``pt_max`` (counted as hard).

        A soft-QCD event can be hard although its reported p̂T is below the cut (a hard
        scattering inside a high-mass diffractive system): it belongs to the hard part too.
        """
        ev = np.repeat(np.arange(self.n_events), self.counts)
        hard = np.zeros(self.n_events, dtype=bool)
        hard[ev[self.pt > pt_max]] = True
        if not hard.any():
            return self
        keep = np.repeat(~hard, self.counts)
        meta = self.meta | {"n_hard": int(self.meta["n_hard"]) + int(hard.sum()),
                            "n_hard_particles": int(hard.sum())}
        return MinBiasLibrary({"pt": self.pt[keep], "eta": self.eta[keep], "phi": self.phi[keep],
                               "pid": self.pid[keep], "counts": self.counts[~hard]}, meta)

    @property
    def f_hard(self) -> float:
        """Fraction of inelastic interactions above the p̂T cut (removed from the library)."""
        return float(self.meta["n_hard"]) / float(self.meta["n_generated"])

    @classmethod
    def key(cls, *, n_events: int, seed: int, pthat_cut: float, settings: tuple[str, ...],
            detector: DetectorConfig) -> str:
        blob = json.dumps({"format": _LIBRARY_FORMAT, "n": n_events, "seed": seed, "cut": pthat_cut,
                           "settings": list(settings), "eta_max": detector.calo_eta_max,
                           "charged_pt_min": detector.charged_calo_pt_min,
                           "hf_eta_min": detector.hf_eta_min}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    @classmethod
    def load_or_make(cls, path: Path | None, *, n_events: int, seed: int, pthat_cut: float,
                     extra: tuple[str, ...], detector: DetectorConfig) -> MinBiasLibrary:
        """The cached library, made (and saved) first if it is not there."""

        settings = (*COMMON_SETTINGS, *PROCESS_SETTINGS["minbias"], *extra)
        key = cls.key(n_events=n_events, seed=seed, pthat_cut=pthat_cut, settings=settings, detector=detector)
        path = Path(path) if path is not None else cache_dir() / f"minbias-{key}.npz"
        if (path, key) in _LOADED:
            return _LOADED[path, key]
        if path.exists():
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("key") != key:
                    raise ConfigError(f"minimum-bias library {path} was made with other settings (key "
                                      f"{meta.get('key')}, expected {key}); remove it or name another file")
                lib = cls({k: data[k] for k in ("pt", "eta", "phi", "pid", "counts")}, meta)
            lib = lib.without_hard_particles(pthat_cut)
            log.info("minimum-bias library %s: %d events, f_hard %.5f", path, lib.n_events, lib.f_hard)
            _LOADED[path, key] = lib
            return lib
        made = cls.make(n_events=n_events, seed=seed, pthat_cut=pthat_cut, extra=extra, detector=detector)
        made.meta["key"] = key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez(tmp, pt=made.pt, eta=made.eta, phi=made.phi, pid=made.pid, counts=made.counts,
                 meta=np.array(json.dumps(made.meta)))
        os.replace(tmp, path)  # atomic: parallel workers never see half a file
        log.info("minimum-bias library written to %s", path)
        lib = made.without_hard_particles(pthat_cut)
        _LOADED[path, key] = lib
        return lib

    @classmethod
    def make(cls, *, n_events: int, seed: int, pthat_cut: float, extra: tuple[str, ...],
             detector: DetectorConfig, chunk: int = 500) -> MinBiasLibrary:
        """Generate ``n_events`` soft-QCD events with Pythia (p̂T > cut ones removed and counted)."""

        run = PythiaRun("minbias", derived_seed(seed, _ROLE_ZB_MAIN, PROCESS_LABELS["minbias"]),
                        extra=extra, max_failures=max(10, n_events // 10))
        keep: list[ParticleBatch] = []
        n_hard = 0
        log.info("generating the minimum-bias library: %d SoftQCD:inelastic events", n_events)
        for start in range(0, n_events, chunk):
            batch, scale = run.next_with_scale(min(chunk, n_events - start))
            soft = scale <= pthat_cut
            n_hard += int((~soft).sum())
            keep.append(batch.take(np.flatnonzero(soft)))
        parts = ParticleBatch.concat(keep)
        ap = np.abs(parts.pid)
        seen = (np.abs(parts.eta) < detector.calo_eta_max) & ~(
            np.isin(ap, CHARGED_IDS) & (parts.pt < detector.charged_calo_pt_min)
            & (np.abs(parts.eta) < detector.hf_eta_min))
        counts = np.bincount(parts.event_index[seen], minlength=parts.n_events)
        meta = {"n_generated": n_events, "n_hard": n_hard, "pthat_cut": pthat_cut, "seed": seed,
                "sigma_inel_mb": run.sigma_pb() / MB_TO_PB, "failures": run.failures}
        return cls({"pt": parts.pt[seen], "eta": parts.eta[seen], "phi": parts.phi[seen],
                    "pid": parts.pid[seen], "counts": counts}, meta)

    def overlay_for(self, event_numbers: np.ndarray, mu: float, seed: int, mu_hard: float = 0.0
                    ) -> tuple[ParticleBatch, np.ndarray, np.ndarray]:
        """Each crossing's soft pile-up: Poisson(μ) library events drawn with replacement.

        Seeded per crossing by ``(seed, event number)``, which also draws the crossing's number
        of additional hard interactions, Poisson(``mu_hard``). Returns the particles (one event
        per crossing), the number of library interactions drawn and of hard ones, both ``[n]``.
        """
        draws = []
        n_hard = np.zeros(len(event_numbers), dtype=np.int64)
        for i, number in enumerate(event_numbers):
            rng = np.random.default_rng([seed, _ROLE_PILEUP, int(number)])
            draws.append(rng.integers(0, self.n_events, rng.poisson(mu)))
            n_hard[i] = rng.poisson(mu_hard)
        n_pu = np.array([len(d) for d in draws], dtype=np.int64)
        idx = np.concatenate(draws) if draws else np.zeros(0, np.int64)
        lens = self.counts[idx]
        flat = np.repeat(self.offsets[idx] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(
            int(lens.sum()))
        crossing = np.repeat(np.arange(len(event_numbers)), n_pu)
        counts = np.bincount(crossing, weights=lens, minlength=len(event_numbers)).astype(np.int64)
        return ParticleBatch.from_kinematics(pt=self.pt[flat], eta=self.eta[flat], phi=self.phi[flat],
                                             pid=self.pid[flat], counts=counts), n_pu, n_hard


def library_for(gen: PythiaOptions) -> MinBiasLibrary:
    """The minimum-bias library a generator's options name (``library``, ``library_events``,
    ``library_seed``), made once and cached; shared by ``zero_bias`` and the ``adc2021`` recipe."""
    opts = gen.options
    n_events = int(opts.get("library_events", 100_000))
    if n_events < 100:
        raise ConfigError(f"generator 'pythia': library_events must be >= 100, got {n_events}")
    path = opts.get("library")
    return MinBiasLibrary.load_or_make(
        Path(path) if path else None, n_events=n_events, seed=int(opts.get("library_seed", 1)),
        pthat_cut=PTHAT_CUT, extra=gen.settings, detector=gen.detector_config)


class ZeroBiasSampler:
    """Generates the weighted zero-bias crossings of one ``generate`` call (module docs)."""

    def __init__(self, gen: PythiaOptions) -> None:
        opts = gen.options
        self.gen = gen
        lumi = opts.get("luminosity")
        pileup = opts.get("pileup")
        if pileup is not None and lumi is None:
            self.lhc = LHCConditions.from_pileup(float(pileup))
        else:
            self.lhc = LHCConditions(luminosity=float(lumi) if lumi is not None else LHCConditions().luminosity)
        self.mu = float(pileup) if pileup is not None else self.lhc.pileup
        if not self.mu >= 0:
            raise ConfigError(f"generator 'pythia' zero_bias: pileup must be >= 0, got {pileup!r}")
        self.allocation = dict(opts.get("allocation") or DEFAULT_ALLOCATION)
        allocate(1, self.allocation)  # validate early
        self.library_events = int(opts.get("library_events", 100_000))
        self.library_seed = int(opts.get("library_seed", 1))
        if self.library_events < 100:
            raise ConfigError(f"generator 'pythia' zero_bias: library_events must be >= 100, "
                              f"got {self.library_events}")
        self.library_path = opts.get("library")
        self.info: dict[str, Any] = {}

    def library(self) -> MinBiasLibrary:
        return library_for(self.gen)

    def sigma_pb(self, k: int, category: Category, seed: int) -> float:

        assert category.process is not None
        run = PythiaRun(category.process, derived_seed(seed, _ROLE_ZB_SIGMA, k),
                        extra=(*category.settings, *self.gen.settings), process_level_only=True,
                        max_failures=self.gen.sigma_events)
        run.run_process_level(self.gen.sigma_events)
        return run.sigma_pb()

    def generate(self, n_events: int, seed: int, batch_size: int, progress: bool) -> Iterator[EventBatch]:
        from tqdm import tqdm


        lib = self.library()
        f_hard = lib.f_hard
        mu_soft = self.mu * (1.0 - f_hard)
        mu_hard = self.mu * f_hard
        counts = allocate(n_events, self.allocation)
        weights: dict[str, float] = {}
        sigmas: dict[str, float] = {}
        for k, cat in enumerate(CATEGORIES):
            if counts[cat.name] == 0:
                continue
            if cat.process is None:
                weights[cat.name] = self.lhc.crossing_rate_hz * math.exp(-self.mu * f_hard) / counts[cat.name]
            else:
                sigmas[cat.name] = self.sigma_pb(k, cat, seed)
                weights[cat.name] = self.lhc.rate_hz(sigmas[cat.name]) / counts[cat.name]
        self.info = {
            "luminosity": self.lhc.luminosity, "pileup": self.mu, "crossing_rate_hz": self.lhc.crossing_rate_hz,
            "pthat_cut_gev": PTHAT_CUT, "f_hard": f_hard, "library_events": lib.n_events,
            "library_generated": lib.meta["n_generated"], "library_seed": self.library_seed,
            "library_key": lib.meta.get("key"), "sigma_inel_pythia_mb": lib.meta.get("sigma_inel_mb"),
            "allocation": counts, "sigma_pb": sigmas, "weight_hz": weights,
            "settings": {c.name: list(c.settings) for c in CATEGORIES},
        }
        log.info("pythia zero_bias: mu %.2f, f_hard %.5f, categories %s", self.mu, f_hard, counts)
        detector = L1Detector(self.gen.detector_config, seed=derived_seed(seed, _ROLE_DETECTOR_ZB))
        pu_seed = derived_seed(seed, _ROLE_PILEUP)
        # the additional hard interactions of hard crossings: fresh QCD events above the cut, in order
        extra_run = PythiaRun("qcd", derived_seed(seed, _ROLE_EXTRA_HARD),
                              extra=(f"PhaseSpace:pTHatMin = {PTHAT_CUT:g}", *self.gen.settings),
                              max_failures=self.gen._max_failures(int(n_events * mu_hard) + 10))
        n_extra = 0
        start = 0
        failures = 0
        with tqdm(total=n_events, desc="pythia zero_bias", unit="bx", disable=not progress) as bar:
            for k, cat in enumerate(CATEGORIES):
                n_cat = counts[cat.name]
                if n_cat == 0:
                    continue
                run = None
                if cat.process is not None:
                    run = PythiaRun(cat.process, derived_seed(seed, _ROLE_ZB_MAIN, k),
                                    extra=(*cat.settings, *self.gen.settings),
                                    max_failures=self.gen._max_failures(n_cat))
                step = max(1, min(batch_size, self.gen.chunk))
                for a in range(0, n_cat, step):
                    m = min(step, n_cat - a)
                    numbers = np.arange(start + a, start + a + m, dtype=np.uint64)
                    pileup, n_pu, k_hard = lib.overlay_for(numbers, mu_soft, pu_seed, mu_hard)
                    weight = np.full(m, weights[cat.name])
                    if run is not None:
                        particles = run.next_particles(m).overlay(pileup)
                        if k_hard.sum():
                            extra = extra_run.next_particles(int(k_hard.sum()))
                            owner = np.repeat(np.arange(m), k_hard)
                            merged = ParticleBatch.from_arrays(
                                px=extra.px, py=extra.py, pz=extra.pz, e=extra.e, pid=extra.pid,
                                counts=np.bincount(owner, weights=extra.counts, minlength=m).astype(np.int64))
                            particles = particles.overlay(merged)
                            n_extra += int(k_hard.sum())
                        n_int = n_pu + 1 + k_hard
                        weight /= 1.0 + k_hard  # the crossing is reached through each of its hard interactions
                    else:
                        particles, n_int = pileup, n_pu
                    block = detector.simulate(particles, numbers)
                    bar.update(m)
                    yield EventBatch.from_objects(
                        block, truth=cat.truth, weight=weight, run=self.gen.run_number, lumi=1,
                        event=numbers, bx=0, extra={"n_interactions": n_int.astype(np.float32)})
                if run is not None:
                    failures += run.failures
                start += n_cat
        self.gen.last_failures = failures + extra_run.failures
        self.info["extra_hard_interactions"] = n_extra
