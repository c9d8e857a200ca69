"""A parametrised L1 detector: visible final-state particles → the 19-slot object block.

Used by the Pythia generator (:mod:`darktrigger.replay.generators.pythia`) to turn generator-level
events into the ADC2021-style L1 objects of the event model (DESIGN.md): MET, up to
4 e/γ, 4 muons and 10 jets. It is a fast, Delphes-like parametrisation, not a
simulation: acceptance, efficiency, isolation and Gaussian resolutions per object type.

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

================  ==========================================================================
object            acceptance, efficiency ε(pT), resolution
================  ==========================================================================
e/γ (11, 22)      |η| < 2.5, reco pT > 3; ε = 0.90·½[1+erf((pT−5)/(√2·1.5))] (≈ 90 % above
                  ~8 GeV); relative isolation < 0.25 in ΔR < 0.3; σ(E)/E = 10 %/√E ⊕ 1 %
μ (13)            |η| < 2.4, reco pT > 3; ε = 0.95·½[1+erf((pT−4)/(√2·1.0))]; isolation as
                  e/γ; σ(pT)/pT = 1 % ⊕ 0.01 %·pT
jets              anti-kT R = 0.4 (FastJet) of the visible particles with |η| < 5 that were
                  not selected as e/γ/μ objects; σ(pT)/pT = 100 %/√pT ⊕ 5 %; reco pT > 15,
                  |η| < 4.7 (clustered from 5 GeV so that upward fluctuations are kept)
MET               −Σ pT of the visible particles with |η| < 5, corrected by (reco − true)
                  of every selected lepton/photon and every clustered jet (so the object
                  smearing propagates consistently), plus Gaussian noise per component of
                  σ = 0.5·√(Σ pT of the unclustered visible particles)
================  ==========================================================================

η and φ are not smeared. "Visible" is Pythia's own ``isVisible`` (neutrinos and other
invisible particles are left out); the caller passes only visible final-state particles.

Randomness: every event draws from its own ``numpy`` Generator seeded by
``(seed, event_number)``, so an event's objects do not depend on how events are batched.
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

from darktrigger.replay.objects import empty_block, pack_slots, set_met, wrap_phi

log = logging.getLogger(__name__)

_erf = np.vectorize(math.erf, otypes=[np.float64])


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's numbers (GeV, radians); see the module docs for what each means."""

    calo_eta_max: float = 5.0
    iso_cone: float = 0.3
    iso_max: float = 0.25
    # e/γ
    eg_eta_max: float = 2.5
    eg_pt_min: float = 3.0
    eg_eff_max: float = 0.90
    eg_eff_pt50: float = 5.0
    eg_eff_width: float = 1.5
    eg_stochastic: float = 0.10
    eg_constant: float = 0.01
    # muons
    mu_eta_max: float = 2.4
    mu_pt_min: float = 3.0
    mu_eff_max: float = 0.95
    mu_eff_pt50: float = 4.0
    mu_eff_width: float = 1.0
    mu_constant: float = 0.01
    mu_slope: float = 1e-4
    # jets
    jet_r: float = 0.4
    jet_cluster_pt_min: float = 5.0
    jet_pt_min: float = 15.0
    jet_eta_max: float = 4.7
    jet_stochastic: float = 1.0
    jet_constant: float = 0.05
    # MET
    met_unclustered_stochastic: float = 0.5


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


def _delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    return np.hypot(eta1 - eta2, wrap_phi(phi1 - phi2))


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


class L1Detector:
    """The parametrised detector (module docs); ``simulate`` fills one ``[N, 19, 3]`` block.

        >>> muon = ParticleBatch.from_arrays(px=[40.0], py=[0.0], pz=[5.0], e=[40.3], pid=[13],
        ...                                  counts=[1])
        >>> det = L1Detector(seed=7)
        >>> block = det.simulate(ParticleBatch.concat([muon, muon]), event_numbers=np.array([0, 1]))
        >>> block[:, 5, 0].astype(float).round(1).tolist()   # each event smeared on its own
        [40.1, 39.0]
        >>> bool((det.simulate(muon, event_numbers=np.array([1])) == block[1:]).all())
        True
    """

    def __init__(self, config: DetectorConfig | None = None, *, seed: int = 0) -> None:
        self.config = config or DetectorConfig()
        self.seed = int(seed)
        #: per-batch counters of the last call (objects that did not fit their slots, ...)
        self.last_stats: dict[str, int] = {}

    def _rngs(self, event_numbers: np.ndarray) -> list[np.random.Generator]:
        return [np.random.default_rng([self.seed, int(n)]) for n in event_numbers]

    def simulate(self, particles: ParticleBatch, event_numbers: np.ndarray) -> np.ndarray:
        """The L1 object block ``float32[N, 19, 3]`` of these events (pT GeV, η, φ)."""
        cfg = self.config
        n = particles.n_events
        event_numbers = np.asarray(event_numbers)
        if len(event_numbers) != n:
            raise ValueError(f"event_numbers has {len(event_numbers)} entries, particles has {n} events")
        rngs = self._rngs(event_numbers)
        block = empty_block(n)
        pt, eta, phi, ev = particles.pt, particles.eta, particles.phi, particles.event_index
        apid = np.abs(particles.pid)
        in_calo = np.abs(eta) < cfg.calo_eta_max

        # -- leptons and photons: acceptance, isolation, efficiency, smearing -----------------
        is_eg = ((apid == 11) | (apid == 22)) & (np.abs(eta) < cfg.eg_eta_max) & (pt > 0.5 * cfg.eg_pt_min)
        is_mu = (apid == 13) & (np.abs(eta) < cfg.mu_eta_max) & (pt > 0.5 * cfg.mu_pt_min)
        cand = np.flatnonzero(is_eg | is_mu)  # sorted, so grouped by event
        iso = self._isolation(particles, cand, in_calo)
        cand_ev = ev[cand]
        cand_mu = is_mu[cand]
        cpt = pt[cand]
        # per event, in candidate order: one uniform (efficiency) and one normal (resolution)
        u = np.empty(len(cand))
        z = np.empty(len(cand))
        bounds = np.searchsorted(cand_ev, np.arange(n + 1))
        for i in range(n):
            a, b = bounds[i], bounds[i + 1]
            if b > a:
                u[a:b] = rngs[i].random(b - a)
                z[a:b] = rngs[i].standard_normal(b - a)
        eff = np.where(cand_mu, _turn_on(cpt, cfg.mu_eff_max, cfg.mu_eff_pt50, cfg.mu_eff_width),
                       _turn_on(cpt, cfg.eg_eff_max, cfg.eg_eff_pt50, cfg.eg_eff_width))
        energy = particles.e[cand]
        sigma = np.where(
            cand_mu,
            np.hypot(cfg.mu_constant, cfg.mu_slope * cpt),
            np.hypot(cfg.eg_stochastic / np.sqrt(np.maximum(energy, 1e-9)), cfg.eg_constant),
        )
        reco_pt = np.maximum(cpt * (1.0 + sigma * z), 0.0)
        selected = (iso < cfg.iso_max) & (u < eff) & (
            reco_pt > np.where(cand_mu, cfg.mu_pt_min, cfg.eg_pt_min))
        sel = cand[selected]
        sel_reco = reco_pt[selected]
        sel_mu = cand_mu[selected]
        dropped_eg = pack_slots(block, "egamma", ev[sel[~sel_mu]], sel_reco[~sel_mu],
                                eta[sel[~sel_mu]], phi[sel[~sel_mu]])
        dropped_mu = pack_slots(block, "muon", ev[sel[sel_mu]], sel_reco[sel_mu],
                                eta[sel[sel_mu]], phi[sel[sel_mu]])

        # -- jets from the rest of the visible particles in the calorimeter -------------------
        jet_input = in_calo.copy()
        jet_input[sel] = False
        jet_counts_in = np.bincount(ev[jet_input], minlength=n)
        p4, n_jets, _ = _cluster(particles.px[jet_input], particles.py[jet_input],
                                 particles.pz[jet_input], particles.e[jet_input], jet_counts_in,
                                 cfg.jet_r, cfg.jet_cluster_pt_min)
        jet_ev = np.repeat(np.arange(n), n_jets)
        jpt = np.hypot(p4[:, 0], p4[:, 1])
        jeta = np.arcsinh(p4[:, 2] / np.maximum(jpt, 1e-9))
        jphi = np.arctan2(p4[:, 1], p4[:, 0])
        jz = np.empty(len(jpt))
        met_z = np.empty((n, 2))
        jbounds = np.concatenate([[0], np.cumsum(n_jets)])
        for i in range(n):  # continue each event's own stream: jets, then MET noise
            a, b = jbounds[i], jbounds[i + 1]
            jz[a:b] = rngs[i].standard_normal(b - a)
            met_z[i] = rngs[i].standard_normal(2)
        jsigma = np.hypot(cfg.jet_stochastic / np.sqrt(np.maximum(jpt, 1e-9)), cfg.jet_constant)
        jreco = np.maximum(jpt * (1.0 + jsigma * jz), 0.0)
        keep = (jreco > cfg.jet_pt_min) & (np.abs(jeta) < cfg.jet_eta_max)
        dropped_jet = pack_slots(block, "jet", jet_ev[keep], jreco[keep], jeta[keep], jphi[keep])

        # -- MET: visible sum, object smearing propagated, unclustered noise ------------------
        def per_event(values: np.ndarray, index: np.ndarray) -> np.ndarray:
            return np.bincount(index, weights=values, minlength=n)

        cal_ev = ev[in_calo]
        met_x = -per_event(particles.px[in_calo], cal_ev)
        met_y = -per_event(particles.py[in_calo], cal_ev)
        d_obj = sel_reco - pt[sel]
        met_x -= per_event(d_obj * np.cos(phi[sel]), ev[sel])
        met_y -= per_event(d_obj * np.sin(phi[sel]), ev[sel])
        d_jet = jreco - jpt
        met_x -= per_event(d_jet * np.cos(jphi), jet_ev)
        met_y -= per_event(d_jet * np.sin(jphi), jet_ev)
        unclustered = np.maximum(
            per_event(pt[in_calo], cal_ev) - per_event(pt[sel], ev[sel]) - per_event(jpt, jet_ev), 0.0)
        noise = cfg.met_unclustered_stochastic * np.sqrt(unclustered)
        met_x += noise * met_z[:, 0]
        met_y += noise * met_z[:, 1]
        set_met(block, np.hypot(met_x, met_y), np.arctan2(met_y, met_x))

        self.last_stats = {
            "egamma_over_slots": int(dropped_eg.sum()),
            "muon_over_slots": int(dropped_mu.sum()),
            "jet_over_slots": int(dropped_jet.sum()),
        }
        return block

    def _isolation(self, particles: ParticleBatch, cand: np.ndarray, in_calo: np.ndarray) -> np.ndarray:
        """Relative isolation Σ pT(others within ΔR < cone, |η| < 5) / pT of each candidate."""
        cfg = self.config
        iso = np.zeros(len(cand))
        if len(cand) == 0:
            return iso
        pt, eta, phi = particles.pt, particles.eta, particles.phi
        offsets = particles.offsets
        cand_ev = particles.event_index[cand]
        starts = np.searchsorted(cand_ev, np.unique(cand_ev), side="left")
        stops = np.append(starts[1:], len(cand))
        for a, b in zip(starts, stops, strict=True):  # one small [candidates × particles] matrix per event
            e = cand_ev[a]
            lo, hi = offsets[e], offsets[e + 1]
            mask = in_calo[lo:hi]
            c = cand[a:b]
            dr = _delta_r(eta[c][:, None], phi[c][:, None], eta[lo:hi][None, :], phi[lo:hi][None, :])
            near = (dr < cfg.iso_cone) & mask[None, :]
            near[np.arange(b - a), c - lo] = False  # not the candidate itself
            iso[a:b] = (near * pt[lo:hi][None, :]).sum(axis=1) / np.maximum(pt[c], 1e-9)
        return iso


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
