"""A parametrised L1 detector: visible final-state particles → the 19-slot object block.

Used by the Pythia generator (:mod:`darktrigger.replay.generators.pythia`) to turn generator-level
events (one pp interaction, or a bunch crossing with pile-up overlaid) into the ADC2021-style L1
objects of the event model (DESIGN.md): MET, up to 4 e/γ, 4 muons and 10 jets. It is a fast
parametrisation of what the CMS Level-1 trigger builds (calorimeter trigger towers, e/γ clusters,
tower jets with pile-up subtraction, standalone-muon-system muons), not a simulation.

    >>> import numpy as np
    >>> from darktrigger.replay.detector import L1Detector, ParticleBatch
    >>> parts = ParticleBatch.from_arrays(                     # one event: a muon, a pion
    ...     px=np.array([40.0, -20.0]), py=np.array([0.0, 1.0]), pz=np.array([5.0, 3.0]),
    ...     e=np.array([40.4, 20.3]), pid=np.array([13, 211]), counts=np.array([2]))
    >>> block = L1Detector(seed=1).simulate(parts, event_numbers=np.array([0]))
    >>> block.shape
    (1, 19, 3)
    >>> np.flatnonzero(block[0, :, 0]).tolist()   # filled slots: MET, the muon, the pion's jet
    [0, 5, 9]

The numbers (all in :class:`DetectorConfig`, GeV):

Calorimeter. Every visible particle with |η| < 5 except muons (minimum ionising: the L1
calorimeter sums and the L1 jets do not include them, as in CMS) deposits its pT in one
trigger tower: 72 in φ, 68 in η for |η| < 3 (Δη ≈ 0.088, ECAL+HCAL) and 12 per side in the
forward calorimeter (3 < |η| < 5, Δη ≈ 0.17). Charged particles with pT < 0.75 GeV and
|η| < 3 never reach it: in the 3.8 T solenoid they curl up inside the ECAL's inner radius
(1.29 m; pT_min = 0.3·B·R/2). Photons and electrons go to the electromagnetic part (|η| < 3),
everything else to the hadronic part. Hadrons deposit their pT times the calorimeter's
response to a hadron of energy E, π/e = 1 − (1 − h/e)·(E/GeV)^(m−1) (Groom's power law,
m = 0.85), with h/e = 0.5 for |η| < 3 (the CMS barrel's π response is ≈ 0.55 at 2 GeV and
≈ 0.8 at 300 GeV in test beams) and 0.2 in the forward calorimeter (quartz-fibre Cherenkov,
e/h ≈ 5); photons and electrons respond with 1. Each part of each hit tower is smeared on its
own with its energy resolution, σ(E)/E = a/√E ⊕ c, i.e. σ(ET) = a·√(ET/cosh η) ⊕ c·ET (a, c =
15 %, 2 % electromagnetic and 100 %, 5 % hadronic; ET ≥ 0), and a tower whose total ET is
below 0.5 GeV reads zero. So the calorimeter sums see pile-up, and their resolution grows
with ΣET by itself (√ΣET stochastic terms and threshold effects); the low response to soft
hadrons is what keeps the pile-up MET of a crossing (≈ 23 GeV median at μ = 56, from the
momentum that leaves beyond |η| = 5, in neutrinos and curling tracks) near L1's.

================  ==========================================================================
object            what the L1 trigger builds
================  ==========================================================================

e/γ (L1 EG)      clusters, not particles: a tower whose electromagnetic ET is the largest of its
                 3×3 neighbourhood and above 2 GeV (|η| < 2.5) seeds a cluster of the 3×3
                 electromagnetic ET; it is kept if the hadronic ET of the same 3×3 is below
                 25 % of it (H/E), with efficiency ε = 0.90·½[1+erf((ET−5)/(√2·1.5))] and
                 reco ET > 3. There is no isolation requirement: the object block has no
                 isolation bit, and the seeds it serves (SingleEG36er2p5, DoubleEG_25_12) are
                 the non-isolated ones, so π⁰ photons and electrons inside jets make L1 EG
                 candidates as in the real trigger and SingleEG rates are fake-dominated. (An
                 isolated-only collection would drop most of that rate, leaving mostly W/Z
                 electrons: SingleIsoEG-like, well below the non-isolated SingleEG rate.)
                 Position: the seed tower's centre.
μ (L1 muons)     |η| < 2.4; ε = 0.95·½[1+erf((pT−4)/(√2·1.0))]; pT measured from the
                 bending in the muon system: 1/pT smeared by 20 % (Gaussian), 5 % of candidates
                 by 60 % (the tails of the standalone measurement: multiple scattering in the
                 iron, few stations), saturating at 255 GeV; reco pT > 3. No isolation (L1
                 muons have none). 3 % of found muons also give a ghost: a second candidate
                 at the same η, φ with its own pT measurement (one muon found by two
                 overlapping track finders that the global muon trigger's cancel-out
                 missed), which is what makes a single muon fire DoubleMu seeds. Besides prompt and heavy-flavour muons, charged pions and
                 kaons (pT > 2, |η| < 2.4) make L1 muons by
                 * decay in flight before the calorimeter: P = BR·m·L/(p·cτ) with the flight
                   path L to the ECAL face (radius 1.29 m, half-length 3.0 m), i.e.
                   P = BR·m/(pT·cτ)·min(1.29 m, 3.0 m/|sinh η|) (π: BR 1, cτ 7.80 m;
                   K: BR(μν) 0.64, cτ 3.71 m), the muon carrying a fraction of the hadron's
                   momentum uniform in [(m_μ/m_h)², 1] (the two-body decay at high boost);
                 * punch-through, hadron showers leaking through calorimeter, coil and
                   return yoke into the muon stations: P = 2·10⁻³·(1 − exp(−(p − 5 GeV)/50
                   GeV)) for momentum p > 5 GeV, the candidate's pT a fraction of the
                   hadron's, uniform in [0.2, 1]. This stands for the few-per-mille
                   punch-through probability of multi-GeV pions to reach the muon stations
                   (CMS muon TDR, CERN/LHCC 97-32; ATLAS punch-through parametrisation,
                   ATL-SOFT-PUB-2018-002), not a fit.
jets (L1 jets)   anti-kT R = 0.4 (FastJet) of the non-zero towers (massless, at the tower
                 centres), clustered from 5 GeV raw; pile-up subtracted as ρ·πR², where ρ is
                 the event's median tower ET density over 48 patches of 17×6 towers
                 (|η| < 3) or 24 patches of 12×6 (forward), like CMS's chunky-donut estimate
                 without the ring geometry; calibrated by dividing by the mean jet response
                 (0.76 for |η| < 3, 0.61 forward, measured on Pythia QCD jets with this
                 model: the L1 jet energy calibration); kept with pT > 15 and |η| < 4.7.
                 The jet resolution is the towers' (stochastic and constant terms, the
                 response's fluctuation, pile-up).
MET (ETMHF)      minus the vector sum of all non-zero towers, |η| < 5 (HF included), muons
                 not included (as the L1 calorimeter sum).
================  ==========================================================================

η and φ of leptons are not smeared. "Visible" is Pythia's own ``isVisible`` (neutrinos and
other invisible particles are left out); the caller passes only visible final-state particles.

Randomness: every event draws from its own ``numpy`` Generator seeded by
``(seed, event_number)``, so an event's objects do not depend on how events are batched
(the detector also works in slices of :data:`SLICE_EVENTS` events to bound memory).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from darktrigger.replay.objects import empty_block, pack_slots, set_met

log = logging.getLogger(__name__)

_erf = np.vectorize(math.erf, otypes=[np.float64])

#: events simulated at once (the tower grids are dense: ~53 kB per event and grid)
SLICE_EVENTS = 256
#: PDG ids of the charged particles that reach the detector (cτ > 10 mm: e, μ, π, K, p, Σ±, Ξ, Ω)
CHARGED_IDS = np.array([11, 13, 211, 321, 2212, 3112, 3222, 3312, 3334])
_M_MU = 0.10566
#: decay in flight to a muon: |PDG id| → (mass GeV, cτ m, branching fraction to μν)
DECAY_IN_FLIGHT: dict[int, tuple[float, float, float]] = {211: (0.13957, 7.8045, 1.0),
                                                         321: (0.49368, 3.7110, 0.6356)}


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's numbers (GeV, metres, radians); see the module docs for what each means."""

    # calorimeter towers
    calo_eta_max: float = 5.0
    hf_eta_min: float = 3.0
    n_eta_central: int = 68
    n_eta_hf: int = 12
    n_phi: int = 72
    charged_calo_pt_min: float = 0.75
    tower_et_min: float = 0.5
    hf_tower_et_min: float = 0.5
    em_stochastic: float = 0.15
    em_constant: float = 0.02
    had_stochastic: float = 1.0
    had_constant: float = 0.05
    had_h_over_e: float = 0.5
    hf_h_over_e: float = 0.2
    had_groom_m: float = 0.85
    # e/γ clusters
    eg_eta_max: float = 2.5
    eg_seed_et: float = 2.0
    eg_hoe_max: float = 0.25
    eg_pt_min: float = 3.0
    eg_eff_max: float = 0.90
    eg_eff_pt50: float = 5.0
    eg_eff_width: float = 1.5
    # muons
    mu_eta_max: float = 2.4
    mu_pt_min: float = 3.0
    mu_eff_max: float = 0.95
    mu_eff_pt50: float = 4.0
    mu_eff_width: float = 1.0
    mu_resolution: float = 0.20
    mu_tail_fraction: float = 0.05
    mu_tail_resolution: float = 0.60
    mu_pt_max: float = 255.0
    mu_ghost_prob: float = 0.03
    # hadrons faking muons: decay in flight and punch-through
    fake_mu_hadron_pt_min: float = 2.0
    dif_radius_m: float = 1.29
    dif_half_length_m: float = 3.0
    punch_prob_max: float = 2e-3
    punch_p_min: float = 5.0
    punch_p_scale: float = 50.0
    punch_pt_fraction_min: float = 0.2
    # jets
    jet_r: float = 0.4
    jet_cluster_pt_min: float = 5.0
    jet_pt_min: float = 15.0
    jet_eta_max: float = 4.7
    jet_pu_subtraction: bool = True
    jet_response_central: float = 0.76
    jet_response_forward: float = 0.61
    rho_patch_eta: int = 17
    rho_patch_phi: int = 6

    def __post_init__(self) -> None:
        if self.n_eta_central % self.rho_patch_eta or self.n_phi % self.rho_patch_phi:
            raise ValueError(f"DetectorConfig: rho patches ({self.rho_patch_eta}×{self.rho_patch_phi}) must "
                             f"tile the {self.n_eta_central}×{self.n_phi} central towers")

    @cached_property
    def eta_edges(self) -> np.ndarray:
        """Tower η edges, ``[n_eta + 1]``: forward, central, forward."""
        fwd = np.linspace(self.hf_eta_min, self.calo_eta_max, self.n_eta_hf + 1)
        central = np.linspace(-self.hf_eta_min, self.hf_eta_min, self.n_eta_central + 1)
        return np.concatenate([-fwd[::-1][:-1], central, fwd[1:]])

    @property
    def n_eta(self) -> int:
        return self.n_eta_central + 2 * self.n_eta_hf


@dataclass
class ParticleBatch:
    """Visible final-state particles of N events as flat arrays plus per-event counts.

    ``px, py, pz, e`` in GeV (float64, ``[M]``), ``pid`` the PDG id (int32, ``[M]``),
    ``counts`` (int64, ``[N]``): particles of event 0 come first, then event 1, ...

        >>> b = ParticleBatch.from_arrays(px=np.ones(3), py=np.zeros(3), pz=np.zeros(3),
        ...                               e=np.ones(3), pid=np.full(3, 211), counts=np.array([1, 2]))
        >>> b.n_events, b.event_index.tolist()
        (2, [0, 1, 1])
    """

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    pid: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_arrays(cls, *, px: Any, py: Any, pz: Any, e: Any, pid: Any, counts: Any) -> ParticleBatch:
        counts = np.asarray(counts, dtype=np.int64)
        f64 = [np.ascontiguousarray(a, dtype=np.float64) for a in (px, py, pz, e)]
        out = cls(px=f64[0], py=f64[1], pz=f64[2], e=f64[3],
                  pid=np.asarray(pid, dtype=np.int32), counts=counts)
        if not len(out.px) == len(out.py) == len(out.pz) == len(out.e) == len(out.pid) == int(counts.sum()):
            raise ValueError(
                f"particle arrays have lengths {[len(a) for a in (out.px, out.py, out.pz, out.e, out.pid)]}, "
                f"expected all equal to sum(counts) = {int(counts.sum())}"
            )
        return out

    @classmethod
    def concat(cls, batches: list[ParticleBatch]) -> ParticleBatch:
        """Events of all batches, in order."""
        return cls.from_arrays(**{k: np.concatenate([getattr(b, k) for b in batches])
                                  for k in ("px", "py", "pz", "e", "pid", "counts")})

    def take(self, order: np.ndarray) -> ParticleBatch:
        """The events ``order`` (indices into this batch), in that order."""
        order = np.asarray(order, dtype=np.int64)
        starts = self.offsets[:-1][order]
        counts = self.counts[order]
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return ParticleBatch.from_arrays(px=self.px[idx], py=self.py[idx], pz=self.pz[idx],
                                         e=self.e[idx], pid=self.pid[idx], counts=counts)

    @classmethod
    def from_kinematics(cls, *, pt: Any, eta: Any, phi: Any, pid: Any, counts: Any) -> ParticleBatch:
        """Massless particles from (pT, η, φ) (how the minimum-bias library stores them)."""
        pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
        pz = pt * np.sinh(eta)
        return cls.from_arrays(px=pt * np.cos(phi), py=pt * np.sin(phi), pz=pz, e=np.hypot(pt, pz),
                               pid=pid, counts=counts)

    def slice(self, start: int, stop: int) -> ParticleBatch:
        """Events ``start .. stop-1`` (contiguous: views, no copy)."""
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return ParticleBatch(px=self.px[lo:hi], py=self.py[lo:hi], pz=self.pz[lo:hi], e=self.e[lo:hi],
                             pid=self.pid[lo:hi], counts=self.counts[start:stop])

    def overlay(self, other: ParticleBatch) -> ParticleBatch:
        """Event i of the result holds the particles of event i of both batches (this one's first).

            >>> a = ParticleBatch.from_kinematics(pt=[1.0, 2.0], eta=[0, 0], phi=[0, 0], pid=[22, 22],
            ...                                   counts=[1, 1])
            >>> a.overlay(a).counts.tolist(), a.overlay(a).pt.round(1).tolist()
            ([2, 2], [1.0, 1.0, 2.0, 2.0])
        """
        if other.n_events != self.n_events:
            raise ValueError(f"overlay needs batches of the same number of events, got {self.n_events} "
                             f"and {other.n_events}")
        both = ParticleBatch.concat([self, other])
        n = self.n_events
        owner = np.concatenate([self.event_index, other.event_index])
        order = np.argsort(owner, kind="stable")  # each event: this batch's particles, then the other's
        return ParticleBatch.from_arrays(px=both.px[order], py=both.py[order], pz=both.pz[order],
                                         e=both.e[order], pid=both.pid[order],
                                         counts=self.counts + other.counts if n else self.counts)

    @property
    def n_events(self) -> int:
        return len(self.counts)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)])

    # computed once per batch, on first use (the arrays are never modified in place)
    @cached_property
    def event_index(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_events), self.counts)

    @cached_property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)

    @cached_property
    def eta(self) -> np.ndarray:
        # arcsinh(pz/pT); a particle along the beam (pT = 0) gets a huge, finite η
        return np.arcsinh(self.pz / np.maximum(self.pt, 1e-9))

    @cached_property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)



def import_fastjet() -> Any:
    """The ``fastjet`` module, its licence banner already shown on stderr.

    FastJet prints the banner on standard output at its first clustering, which would
    break output meant for pipes (``darktrigger inspect --json``): it is printed once here,
    with the process's standard output pointed at standard error.
    """
    import fastjet
    import fastjet._swig

    global _BANNER_SHOWN
    if not _BANNER_SHOWN:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            fastjet._swig.ClusterSequence.print_banner()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SHOWN = True
    return fastjet


_BANNER_SHOWN = False


def _turn_on(pt: np.ndarray, eff_max: float, pt50: float, width: float) -> np.ndarray:
    """Efficiency ε_max·½[1 + erf((pT − pT50)/(√2·width))]."""
    if len(pt) == 0:
        return np.zeros(0)
    return eff_max * 0.5 * (1.0 + _erf((pt - pt50) / (math.sqrt(2.0) * width)))


def _cluster(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray, counts: np.ndarray,
             radius: float, pt_min: float) -> tuple[np.ndarray, np.ndarray, Any]:
    """Anti-kT jets of every event (FastJet's multi-event interface, one C++ call per batch).

    Returns the jets' ``[J, 4]`` (px, py, pz, E), their per-event counts ``[N]`` and the
    ClusterSequence (for constituents).
    """
    import awkward as ak

    fastjet = import_fastjet()
    parts = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}, with_name="Momentum4D"),
                         counts)
    seq = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, radius))
    jets = seq.inclusive_jets(pt_min)
    n_jets = ak.to_numpy(ak.num(jets)).astype(np.int64)
    flat = ak.flatten(jets)
    p4 = np.stack([ak.to_numpy(flat[k]).astype(np.float64) for k in ("px", "py", "pz", "E")], axis=1)
    return p4.reshape(-1, 4), n_jets, seq


def _draw(rngs: list[np.random.Generator], counts: np.ndarray, kind: str, width: int = 1) -> np.ndarray:
    """``counts[i]`` draws (× ``width``) from event i's generator, concatenated in event order."""
    parts = [getattr(rng, kind)((int(k), width)) for rng, k in zip(rngs, counts, strict=True)]
    return np.concatenate(parts) if parts else np.zeros((0, width))


def _window3(grid: np.ndarray, reduce: Any) -> np.ndarray:
    """3×3 (η × φ, φ wrapping) neighbourhood sum or max of ``[N, n_eta, n_phi]``."""
    phi = reduce(reduce(grid, np.roll(grid, 1, axis=2)), np.roll(grid, -1, axis=2))
    padded = np.pad(phi, ((0, 0), (1, 1), (0, 0)))
    return reduce(reduce(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])


class L1Detector:
    """The parametrised detector (module docs); ``simulate`` fills one ``[N, 19, 3]`` block.

        >>> muon = ParticleBatch.from_arrays(px=[40.0], py=[0.0], pz=[5.0], e=[40.3], pid=[13],
        ...                                  counts=[1])
        >>> det = L1Detector(seed=7)
        >>> block = det.simulate(ParticleBatch.concat([muon, muon]), event_numbers=np.array([0, 1]))
        >>> bool(block[0, 5, 0] != block[1, 5, 0])   # each event smeared on its own
        True
        >>> bool((det.simulate(muon, event_numbers=np.array([1])) == block[1:]).all())
        True
    """

    def __init__(self, config: DetectorConfig | None = None, *, seed: int = 0) -> None:
        self.config = config or DetectorConfig()
        self.seed = int(seed)
        cfg = self.config
        edges = cfg.eta_edges
        self._eta_centre = 0.5 * (edges[:-1] + edges[1:])
        self._phi_centre = -np.pi + (np.arange(cfg.n_phi) + 0.5) * (2 * np.pi / cfg.n_phi)
        #: per-batch counters of the last call (objects that did not fit their slots, ...)
        self.last_stats: dict[str, int] = {}

    def _rngs(self, event_numbers: np.ndarray) -> list[np.random.Generator]:
        return [np.random.default_rng([self.seed, int(n)]) for n in event_numbers]

    def simulate(self, particles: ParticleBatch, event_numbers: np.ndarray) -> np.ndarray:
        """The L1 object block ``float32[N, 19, 3]`` of these events (pT GeV, η, φ)."""
        n = particles.n_events
        event_numbers = np.asarray(event_numbers)
        if len(event_numbers) != n:
            raise ValueError(f"event_numbers has {len(event_numbers)} entries, particles has {n} events")
        block = empty_block(n)
        stats: dict[str, int] = {}
        for a in range(0, n, SLICE_EVENTS):
            b = min(a + SLICE_EVENTS, n)
            part = self._simulate(particles.slice(a, b), event_numbers[a:b], block[a:b])
            for k, v in part.items():
                stats[k] = stats.get(k, 0) + v
        self.last_stats = stats
        return block

    # -- one slice ----------------------------------------------------------------------------
    def _simulate(self, particles: ParticleBatch, event_numbers: np.ndarray, block: np.ndarray) -> dict[str, int]:
        cfg = self.config
        n = particles.n_events
        rngs = self._rngs(event_numbers)
        pt, eta, phi, ev = particles.pt, particles.eta, particles.phi, particles.event_index
        apid = np.abs(particles.pid)
        abs_eta = np.abs(eta)

        # -- calorimeter towers -----------------------------------------------------------------
        curls = np.isin(apid, CHARGED_IDS) & (pt < cfg.charged_calo_pt_min) & (abs_eta < cfg.hf_eta_min)
        in_calo = (abs_eta < cfg.calo_eta_max) & (apid != 13) & ~curls
        is_em = in_calo & ((apid == 11) | (apid == 22)) & (abs_eta < cfg.hf_eta_min)
        is_had = in_calo & ~is_em
        n_eta, n_phi = cfg.n_eta, cfg.n_phi
        ieta = np.clip(np.searchsorted(cfg.eta_edges, eta, side="right") - 1, 0, n_eta - 1)
        iphi = ((phi + np.pi) * (n_phi / (2 * np.pi))).astype(np.int64) % n_phi
        cell = (ev * n_eta + ieta) * n_phi + iphi
        size = n * n_eta * n_phi
        em = np.bincount(cell[is_em], weights=pt[is_em], minlength=size)
        had_et = pt[is_had] * self.hadron_response(pt[is_had] * np.cosh(eta[is_had]), abs_eta[is_had])
        had = np.bincount(cell[is_had], weights=had_et, minlength=size)
        self._smear(em, rngs, cfg.em_stochastic, cfg.em_constant)
        self._smear(had, rngs, cfg.had_stochastic, cfg.had_constant)
        threshold = np.where(np.abs(self._eta_centre) < cfg.hf_eta_min, cfg.tower_et_min, cfg.hf_tower_et_min)
        below = (em + had) < np.tile(np.repeat(threshold, n_phi), n)
        em[below] = 0.0
        had[below] = 0.0
        em_grid = em.reshape(n, n_eta, n_phi)
        had_grid = had.reshape(n, n_eta, n_phi)
        total = em_grid + had_grid

        # -- e/γ clusters -----------------------------------------------------------------------
        em3 = _window3(em_grid, np.add)
        had3 = _window3(had_grid, np.add)
        seed_eta = np.abs(self._eta_centre) < cfg.eg_eta_max
        seeds = (em_grid >= _window3(em_grid, np.maximum)) & (em_grid > cfg.eg_seed_et) & seed_eta[None, :, None]
        seeds &= had3 < cfg.eg_hoe_max * em3
        s_ev, s_eta, s_phi = np.nonzero(seeds)  # C order: grouped by event
        s_et = em3[s_ev, s_eta, s_phi]
        u = _draw(rngs, np.bincount(s_ev, minlength=n), "random")[:, 0]
        keep = (u < _turn_on(s_et, cfg.eg_eff_max, cfg.eg_eff_pt50, cfg.eg_eff_width)) & (s_et > cfg.eg_pt_min)
        dropped_eg = pack_slots(block, "egamma", s_ev[keep], s_et[keep], self._eta_centre[s_eta[keep]],
                                self._phi_centre[s_phi[keep]])

        # -- muons: prompt and heavy-flavour muons, hadrons decaying in flight or punching through
        mu_pt, mu_eta, mu_phi, mu_ev = self._muon_candidates(particles, rngs)
        k = np.bincount(mu_ev, minlength=n)
        u = _draw(rngs, k, "random", 4)  # efficiency, tail, ghost, ghost's tail
        z = _draw(rngs, k, "standard_normal", 2)  # the candidate's and its ghost's 1/pT error
        found = u[:, 0] < _turn_on(mu_pt, cfg.mu_eff_max, cfg.mu_eff_pt50, cfg.mu_eff_width)
        ghost = found & (u[:, 2] < cfg.mu_ghost_prob)
        reco = self._muon_pt(mu_pt, u[:, 1], z[:, 0])
        reco_ghost = self._muon_pt(mu_pt, u[:, 3], z[:, 1])
        keep = found & (reco > cfg.mu_pt_min)
        keep_ghost = ghost & (reco_ghost > cfg.mu_pt_min)
        dropped_mu = pack_slots(block, "muon", np.concatenate([mu_ev[keep], mu_ev[keep_ghost]]),
                                np.concatenate([reco[keep], reco_ghost[keep_ghost]]),
                                np.concatenate([mu_eta[keep], mu_eta[keep_ghost]]),
                                np.concatenate([mu_phi[keep], mu_phi[keep_ghost]]))

        # -- jets from the towers, pile-up subtracted ----------------------------------------------
        t_ev, t_eta, t_phi = np.nonzero(total)
        t_et = total[t_ev, t_eta, t_phi]
        t_eta_c = self._eta_centre[t_eta]
        t_phi_c = self._phi_centre[t_phi]
        t_pz = t_et * np.sinh(t_eta_c)
        p4, n_jets, _ = _cluster(t_et * np.cos(t_phi_c), t_et * np.sin(t_phi_c), t_pz, np.hypot(t_et, t_pz),
                                 np.bincount(t_ev, minlength=n), cfg.jet_r, cfg.jet_cluster_pt_min)
        jet_ev = np.repeat(np.arange(n), n_jets)
        jpt = np.hypot(p4[:, 0], p4[:, 1])
        jeta = np.arcsinh(p4[:, 2] / np.maximum(jpt, 1e-9))
        jphi = np.arctan2(p4[:, 1], p4[:, 0])
        forward = np.abs(jeta) >= cfg.hf_eta_min
        if cfg.jet_pu_subtraction:
            rho_central, rho_forward = self._rho(total)
            rho = np.where(forward, rho_forward[jet_ev], rho_central[jet_ev])
            jpt = jpt - rho * np.pi * cfg.jet_r ** 2
        jpt = jpt / np.where(forward, cfg.jet_response_forward, cfg.jet_response_central)  # L1 jet calibration
        keep = (jpt > cfg.jet_pt_min) & (np.abs(jeta) < cfg.jet_eta_max)
        dropped_jet = pack_slots(block, "jet", jet_ev[keep], jpt[keep], jeta[keep], jphi[keep])

        # -- MET: the calorimeter towers' vector sum, |η| < 5 -----------------------------------
        flat = total.reshape(n, n_eta * n_phi)
        cos_c = np.tile(np.cos(self._phi_centre), n_eta)
        sin_c = np.tile(np.sin(self._phi_centre), n_eta)
        met_x, met_y = -(flat @ cos_c), -(flat @ sin_c)
        set_met(block, np.hypot(met_x, met_y), np.arctan2(met_y, met_x))
        return {"egamma_over_slots": int(dropped_eg.sum()), "muon_over_slots": int(dropped_mu.sum()),
                "jet_over_slots": int(dropped_jet.sum())}

    def _muon_pt(self, pt: np.ndarray, u_tail: np.ndarray, z: np.ndarray) -> np.ndarray:
        """L1 muon pT from the bending: 1/pT smeared (core or tail), saturating at mu_pt_max."""
        cfg = self.config
        sigma = np.where(u_tail < cfg.mu_tail_fraction, cfg.mu_tail_resolution, cfg.mu_resolution)
        inv = (1.0 + sigma * z) / np.maximum(pt, 1e-9)
        return np.where(inv > 1.0 / cfg.mu_pt_max, 1.0 / np.maximum(inv, 1e-12), cfg.mu_pt_max)

    def hadron_response(self, energy: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
        """Calorimeter response to hadrons of energy E (GeV): 1 − (1 − h/e)·E^(m−1), at most 1."""
        cfg = self.config
        h = np.where(abs_eta < cfg.hf_eta_min, cfg.had_h_over_e, cfg.hf_h_over_e)
        return np.clip(1.0 - (1.0 - h) * np.maximum(energy, 1e-3) ** (cfg.had_groom_m - 1.0), h, 1.0)

    def _smear(self, flat: np.ndarray, rngs: list[np.random.Generator], stochastic: float,
               constant: float) -> None:
        """Smear the hit cells of ``flat`` (``[N·cells]``, in place), ET ≥ 0.

        The resolution is the energy's, σ(E)/E = a/√E ⊕ c, so σ(ET) = a·√(ET/cosh η) ⊕ c·ET.
        """
        cells = len(flat) // max(len(rngs), 1)
        hit = np.flatnonzero(flat)
        per_event = np.bincount(hit // cells, minlength=len(rngs))
        z = _draw(rngs, per_event, "standard_normal")[:, 0]
        et = flat[hit]
        cosh = np.cosh(self._eta_centre)[(hit % cells) // self.config.n_phi]
        flat[hit] = np.maximum(et + np.hypot(stochastic * np.sqrt(et / cosh), constant * et) * z, 0.0)

    def _muon_candidates(self, particles: ParticleBatch, rngs: list[np.random.Generator]
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """True pT, η, φ, event of the muons reaching the muon system (prompt, decays, punch-through).

        Grouped by event (each event's muons, then its hadron-made ones).
        """
        cfg = self.config
        n = particles.n_events
        pt, eta, phi, ev = particles.pt, particles.eta, particles.phi, particles.event_index
        apid = np.abs(particles.pid)
        central = np.abs(eta) < cfg.mu_eta_max
        real = np.flatnonzero((apid == 13) & central & (pt > 0.5 * cfg.mu_pt_min))
        had = np.flatnonzero(((apid == 211) | (apid == 321)) & central & (pt > cfg.fake_mu_hadron_pt_min))
        h_pt, h_eta, h_pid = pt[had], eta[had], apid[had]
        mass = np.where(h_pid == 211, DECAY_IN_FLIGHT[211][0], DECAY_IN_FLIGHT[321][0])
        ctau = np.where(h_pid == 211, DECAY_IN_FLIGHT[211][1], DECAY_IN_FLIGHT[321][1])
        br = np.where(h_pid == 211, DECAY_IN_FLIGHT[211][2], DECAY_IN_FLIGHT[321][2])
        path = np.minimum(cfg.dif_radius_m, cfg.dif_half_length_m / np.maximum(np.abs(np.sinh(h_eta)), 1e-9))
        p_dif = np.clip(br * mass * path / (h_pt * ctau), 0.0, 1.0)
        momentum = h_pt * np.cosh(h_eta)
        p_punch = cfg.punch_prob_max * np.clip(1.0 - np.exp(-(momentum - cfg.punch_p_min) / cfg.punch_p_scale),
                                               0.0, None)
        u = _draw(rngs, np.bincount(ev[had], minlength=n), "random", 2)
        dif = u[:, 0] < p_dif
        punch = ~dif & (u[:, 0] < p_dif + p_punch)
        low = np.where(dif, (_M_MU / mass) ** 2, cfg.punch_pt_fraction_min)
        fake_pt = h_pt * (low + (1.0 - low) * u[:, 1])
        fake = dif | punch
        idx = np.concatenate([real, had[fake]])
        cand_pt = np.concatenate([pt[real], fake_pt[fake]])
        order = np.argsort(ev[idx], kind="stable")
        idx, cand_pt = idx[order], cand_pt[order]
        return cand_pt, eta[idx], phi[idx], ev[idx]

    def _rho(self, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Median tower-ET density (GeV per unit η·φ) per event: central (|η| < 3) and forward."""
        cfg = self.config
        n = total.shape[0]
        hf, nc, pe, pp = cfg.n_eta_hf, cfg.n_eta_central, cfg.rho_patch_eta, cfg.rho_patch_phi
        d_phi = 2 * np.pi / cfg.n_phi
        central = total[:, hf:hf + nc].reshape(n, nc // pe, pe, cfg.n_phi // pp, pp).sum(axis=(2, 4))
        rho_c = np.median(central.reshape(n, -1), axis=1) / (pe * (2 * cfg.hf_eta_min / nc) * pp * d_phi)
        fwd = np.concatenate([total[:, :hf], total[:, hf + nc:]], axis=1)
        fwd = fwd.reshape(n, 2, hf, cfg.n_phi // pp, pp).sum(axis=(2, 4))
        d_eta_f = (cfg.calo_eta_max - cfg.hf_eta_min) / hf
        rho_f = np.median(fwd.reshape(n, -1), axis=1) / (hf * d_eta_f * pp * d_phi)
        return rho_c, rho_f


def dijet_features(particles: ParticleBatch, *, radius: float = 1.0, pt_min: float = 20.0) -> dict[str, np.ndarray]:
    """CWoLa analysis columns from anti-kT R = 1.0 jets of all visible particles (|η| < 5).

    Of the two highest-pT jets: ``mjj`` their invariant mass, ``mj1``/``mj2`` the larger
    and smaller jet mass, ``tau21_j1``/``tau21_j2`` their N-subjettiness ratio τ2/τ1
    (β = 1, exclusive-kT axes, FastJet contrib's Nsubjettiness via fastjet's ``njettiness``),
    in the same mass order. Particle level (no smearing). Events with fewer than two jets
    get 0 for the missing jet; τ21 is 0 where τ1 = 0. All float32 ``[N]``.

        >>> pions = ParticleBatch.from_arrays(px=[1000.0, -1000.0], py=[0.0, 0.0], pz=[0.0, 0.0],
        ...                                   e=[1000.0, 1000.0], pid=[211, -211], counts=[2])
        >>> cols = dijet_features(pions)
        >>> sorted(cols), float(cols["mjj"][0])
        (['mj1', 'mj2', 'mjj', 'tau21_j1', 'tau21_j2'], 2000.0)
    """
    import awkward as ak

    fastjet = import_fastjet()
    n = particles.n_events
    in_calo = np.abs(particles.eta) < 5.0
    counts = np.bincount(particles.event_index[in_calo], minlength=n)
    p4, n_jets, seq = _cluster(particles.px[in_calo], particles.py[in_calo], particles.pz[in_calo],
                               particles.e[in_calo], counts, radius, pt_min)
    starts = np.concatenate([[0], np.cumsum(n_jets)[:-1]])
    jpt = np.hypot(p4[:, 0], p4[:, 1])
    jet_ev = np.repeat(np.arange(n), n_jets)
    order = np.lexsort((-jpt, jet_ev))  # by event, then pT descending
    rank = np.arange(len(order)) - starts[jet_ev[order]]
    lead = order[rank < 2]  # global indices of the (up to) two leading jets, by event
    lead_ev = jet_ev[lead]
    mass = np.sqrt(np.maximum(p4[:, 3] ** 2 - (p4[:, :3] ** 2).sum(axis=1), 0.0))

    out = {k: np.zeros(n, dtype=np.float32) for k in ("mjj", "mj1", "mj2", "tau21_j1", "tau21_j2")}
    tau21 = np.zeros(len(p4))
    if len(lead):
        cons = ak.flatten(seq.constituents(pt_min), axis=1)[lead]
        taus = fastjet.ClusterSequence(
            cons, fastjet.JetDefinition(fastjet.kt_algorithm, radius)
        ).njettiness(measure_definition="UnnormalizedMeasure", axes_definition="KT_Axes",
                     njets=[1, 2], R0=radius)
        taus = ak.to_numpy(taus).reshape(len(lead), 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            tau21[lead] = np.where(taus[:, 0] > 0, taus[:, 1] / taus[:, 0], 0.0)
    two = np.flatnonzero(np.bincount(lead_ev, minlength=n) == 2)
    first = np.full(n, -1)
    second = np.full(n, -1)
    lead_rank = rank[rank < 2]
    first[lead_ev[lead_rank == 0]] = lead[lead_rank == 0]
    second[lead_ev[lead_rank == 1]] = lead[lead_rank == 1]
    if len(two):
        s = p4[first[two]] + p4[second[two]]
        out["mjj"][two] = np.sqrt(np.maximum(s[:, 3] ** 2 - (s[:, :3] ** 2).sum(axis=1), 0.0))
    has1 = first >= 0
    m_a = np.where(has1, mass[np.maximum(first, 0)], 0.0)
    m_b = np.where(second >= 0, mass[np.maximum(second, 0)], 0.0)
    t_a = np.where(has1, tau21[np.maximum(first, 0)], 0.0)
    t_b = np.where(second >= 0, tau21[np.maximum(second, 0)], 0.0)
    swap = m_b > m_a
    out["mj1"][:] = np.where(swap, m_b, m_a)
    out["mj2"][:] = np.where(swap, m_a, m_b)
    out["tau21_j1"][:] = np.where(swap, t_b, t_a)
    out["tau21_j2"][:] = np.where(swap, t_a, t_b)
    return out
