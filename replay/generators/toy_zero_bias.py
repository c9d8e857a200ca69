"""The toy's ``zero_bias`` stream: one colliding bunch crossing per event, with pile-up.

A crossing holds Poisson(μ) inelastic pp interactions (μ from
:class:`~darktrigger.replay.lhc.LHCConditions`, ≈ 56 at 2.0e34). Its L1 objects come from
the sum of what they make, parametrised per interaction (:class:`ZeroBiasModel` holds every
number with its meaning; GeV throughout):

* **soft interactions** (hard scale p̂T < 30 GeV, nearly all of them): calorimeter ΣET
  (Gamma-distributed per interaction, summed over the crossing), the MET they leave — a
  Gaussian per component of σ² = s²·ΣET + n·δ², the towers' stochastic resolution and each
  interaction's own imbalance (particles past |η| = 5, tracks curling before the
  calorimeter, muons) — and the soft L1 objects: pile-up jets left by the pile-up
  subtraction, e/γ clusters of π⁰ photons, and L1 muon candidates from heavy-flavour decays,
  π/K decays in flight and punch-through. Each is a Poisson number per interaction with a
  falling pT spectrum, so counts grow with the number of interactions and the hardest
  soft object with it;
* **hard QCD**: the interactions with p̂T > 30 GeV, a Poisson number with mean
  n·σ(p̂T > 30)/σ_inel (≈ 0.12 per crossing at 2.0e34), p̂T from
  σ(p̂T > x) = σ₃₀·(x/30)^−(a + β·ln(x/30))·((1 − x_T)/(1 − x_T,₃₀))^b, x_T = 2x/√s, a fit to
  Pythia 8's HardQCD cross sections at 13.6 TeV (within 1 % from 15 GeV to 1 TeV). Each makes
  two jets (rapidities yb ± y*, back to back in φ, pT = p̂T × response) and a radiation jet;
  L1 jets are smeared by the calorimeter (100 %/√pT ⊕ 5 %) and by the pile-up left in the
  jet area, and the mismeasurement goes into the MET. A jet is a b or c jet with a small
  probability; its semileptonic decay gives a muon and a neutrino (genuine MET). Its hadrons
  make L1 muons by decay in flight and punch-through, and a jet whose energy is carried by a
  π⁰ makes an e/γ candidate (the dominant source of the SingleEG rate);
* **electroweak**: W → ℓν, γ*/Z → ℓℓ and tt̄ at σ·L (Pythia's cross sections), from the
  single-process recipes of :mod:`~darktrigger.replay.generators.toy`.

L1 measurement: muons have the L1 muon system's poor pT resolution (1/pT smeared by 20 %, 5 %
of them by 60 %, saturating at 255 GeV; efficiency turn-on at 4 GeV); e/γ clusters 15 %/√E ⊕
2 % with a turn-on at 5 GeV; jets as above, kept with pT ≥ 15 GeV and |η| < 4.7. The calorimeter
MET does not include muons.

Most crossings hold only the soft part, generated already ordered in pT (the k hardest of a
Poisson number of draws, by exponential spacings), so that no per-crossing sort is needed;
only the rarer crossings with hard objects are re-packed into slots.

    >>> import numpy as np
    >>> from darktrigger.replay.generators.toy_zero_bias import ZeroBiasModel, make_crossings
    >>> objects, truth = make_crossings(np.random.default_rng(1), 20_000, pileup=55.9)
    >>> objects.shape, objects.dtype
    ((20000, 19, 3), dtype('float32'))
    >>> 0.08 < float(np.mean(truth == 0)) < 0.16     # crossings with a p̂T > 30 GeV interaction
    True
    >>> round(ZeroBiasModel().sigma_qcd_pb(1000.0) / 12.65, 1)   # Pythia: 12.65 pb above 1 TeV
    1.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np

from darktrigger.replay.events import PROCESS_LABELS, SLOT_MET, SLOTS
from darktrigger.replay.objects import pack_slots

Rng = np.random.Generator
TWO_PI = 2.0 * math.pi
SQRT_S = 13_600.0
_MB_TO_PB = 1e9
_PI32_BELOW = np.nextafter(np.float32(math.pi), np.float32(0))


@dataclass(frozen=True)
class ZeroBiasModel:
    """The toy zero-bias parameters, each a physical quantity (GeV, pb, mb).

    Where a number comes from Pythia 8.317 at 13.6 TeV (process-level ``sigmaGen``, particle
    level or the L1 detector model of :mod:`darktrigger.replay.detector`), the comment says so.
    """

    # -- inelastic interactions ---------------------------------------------------------------
    #: σ_inel (mb) that turns μ into a rate per interaction (as LHCConditions)
    sigma_inel_mb: float = 80.0
    #: mean calorimeter ΣET (towers, |η| < 5) of one soft interaction
    soft_et_mean: float = 45.0
    #: Gamma shape of one interaction's ΣET (< 1: many nearly empty, diffractive, a long tail)
    soft_et_shape: float = 0.8
    #: σ(MET_x) per √ΣET: the towers' stochastic resolution (mostly hadronic, 100 %/√E),
    #: halved between x and y
    met_stochastic: float = 0.55
    #: rms per component of one interaction's own imbalance in the calorimeter
    soft_imbalance: float = 2.9
    # -- soft L1 objects per interaction (power laws dN/dpT ∝ pT^−(index+1) on [min, max]) ---
    #: pile-up jets per interaction above 15 GeV after the pile-up subtraction
    soft_jets: float = 0.03
    soft_jet_index: float = 3.6
    soft_jet_pt_max: float = 60.0
    #: e/γ clusters (π⁰ photons, with the pile-up energy around them) per interaction above 3 GeV
    soft_eg: float = 0.04
    soft_eg_index: float = 3.5
    soft_eg_pt_max: float = 40.0
    #: muon candidates per interaction reaching the muon system with true pT > 2 GeV
    #: (c, b decays, π/K decays in flight before the calorimeter, punch-through)
    soft_mu: float = 4e-3
    soft_mu_index: float = 3.0
    soft_mu_pt_max: float = 40.0
    # -- hard QCD: σ(p̂T > x) (fit to Pythia HardQCD:all, 15 GeV – 1 TeV) -----------------------
    #: σ(p̂T > 30 GeV), pb
    qcd_sigma30_pb: float = 1.745e8
    #: the integrated spectrum's power index at 30 GeV, and its growth per unit ln(p̂T/30)
    qcd_index: float = 3.71
    qcd_index_slope: float = 0.177
    #: the power of (1 − x_T): parton densities vanishing at x → 1
    qcd_pdf_power: float = 8.1
    #: p̂T (GeV) above which an interaction is hard (generated as jets)
    hard_pt_min: float = 30.0
    #: widths of the dijet's boost rapidity yb and half rapidity difference y*, per unit of
    #: ln(√s/p̂T) (the kinematic range shrinks as p̂T grows; Pythia's partons at 30, 100 GeV)
    boost_width: float = 0.32
    ystar_width: float = 0.205
    #: jet pT / p̂T: mean and spread (radiation out of the cone, ISR)
    jet_response: float = 0.87
    jet_response_spread: float = 0.2
    #: radiation jet pT / p̂T: P(> x) = (1 − x/max)^power (Pythia: 69 % > 0.2, 14 % > 0.5)
    radiation_max: float = 0.85
    radiation_power: float = 2.2
    # -- L1 jets ------------------------------------------------------------------------------
    jet_stochastic: float = 1.0
    jet_constant: float = 0.05
    #: rms pile-up ET one interaction leaves in a jet's area after the subtraction
    jet_pileup_noise: float = 0.9
    jet_pt_min: float = 15.0
    jet_eta_max: float = 4.7
    # -- heavy flavour in hard jets -----------------------------------------------------------
    #: fraction of hard jets with a b (c) hadron (hard process and gluon splitting)
    b_fraction: float = 0.03
    c_fraction: float = 0.06
    #: semileptonic branching fraction to a muon: b (with b → c → μ), c
    b_to_mu: float = 0.20
    c_to_mu: float = 0.10
    #: mean momentum fraction of the jet the b (c) hadron carries (fragmentation)
    b_hadron_z: float = 0.75
    c_hadron_z: float = 0.55
    # -- hadrons of hard jets faking L1 muons -------------------------------------------------
    #: L1 muon candidates per hard jet from π/K decays in flight and punch-through, per
    #: 100 GeV of jet pT (more hadrons, but each one harder and less likely to decay)
    fake_mu_per_jet: float = 0.01
    #: their pT as a fraction of the jet's: P(> x) = (1 − x)^power
    fake_mu_z_power: float = 6.0
    # -- hard jets faking e/γ -----------------------------------------------------------------
    #: probability that a hard jet passes as an e/γ cluster (a leading π⁰ with little
    #: hadronic energy next to it) ...
    fake_eg_per_jet: float = 0.05
    #: ... with the cluster carrying a fraction z of the jet, P(> x) = (1 − x)^power
    fake_eg_z_power: float = 3.0
    # -- L1 e/γ and muons ---------------------------------------------------------------------
    eg_stochastic: float = 0.15
    eg_constant: float = 0.02
    eg_eff_max: float = 0.90
    eg_eff_pt50: float = 5.0
    eg_eff_width: float = 1.5
    eg_pt_min: float = 3.0
    eg_eta_max: float = 2.5
    mu_eff_max: float = 0.95
    mu_eff_pt50: float = 4.0
    mu_eff_width: float = 1.0
    mu_resolution: float = 0.20
    mu_tail_fraction: float = 0.05
    mu_tail_resolution: float = 0.60
    mu_pt_max: float = 255.0
    mu_pt_min: float = 3.0
    mu_eta_max: float = 2.4
    # -- electroweak (Pythia sigmaGen, leptonic decays e, μ, τ) --------------------------------
    w_sigma_pb: float = 4.85e4
    z_sigma_pb: float = 4.78e3
    ttbar_sigma_pb: float = 563.0

    def sigma_qcd_pb(self, pt_hat: float | np.ndarray) -> Any:
        """σ(p̂T > pt_hat) in pb, the fitted hard-QCD spectrum."""
        x = np.asarray(pt_hat, dtype=np.float64)
        log_r = np.log(x / 30.0)
        pdf = np.log((1.0 - 2.0 * x / SQRT_S) / (1.0 - 60.0 / SQRT_S))
        out = self.qcd_sigma30_pb * np.exp(-(self.qcd_index + self.qcd_index_slope * log_r) * log_r
                                           + self.qcd_pdf_power * pdf)
        return float(out) if out.ndim == 0 else out

    def per_interaction(self, sigma_pb: float) -> float:
        """Probability per inelastic interaction of a process of cross section ``sigma_pb``."""
        return sigma_pb / (self.sigma_inel_mb * _MB_TO_PB)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@lru_cache(maxsize=8)
def _pt_hat_table(model: ZeroBiasModel) -> tuple[np.ndarray, np.ndarray]:
    """(ln F, ln p̂T), F = σ(> p̂T)/σ(> hard_pt_min) falling from 1, for inverse-CDF sampling."""
    x = np.geomspace(model.hard_pt_min, 0.45 * SQRT_S, 4096)
    log_f = np.log(model.sigma_qcd_pb(x) / model.sigma_qcd_pb(model.hard_pt_min))
    return log_f[::-1].copy(), np.log(x)[::-1].copy()


# -- ordered Poisson points ----------------------------------------------------------------------
def _ordered_points(rng: Rng, means: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``cap`` smallest of Poisson(means[i]) uniforms per row, ascending.

    Returns (row, rank, u): flat over the points, grouped by row, rank 0 the smallest. With
    k draws in a row, the order statistics are U₍ᵢ₎ = Sᵢ/S₍ₖ₊₁₎ (Sᵢ sums of i exponentials); of
    them only the first min(k, cap) are made, the remaining k + 1 − cap spacings as one Gamma
    variate. So a falling spectrum's inverse CDF turns u into pT in descending order.
    """
    k = rng.poisson(means)
    kept = np.minimum(k, cap)
    total = int(kept.sum())
    rows = np.repeat(np.arange(len(k)), kept)
    starts = np.cumsum(kept) - kept
    rank = np.arange(total) - starts[rows]
    s = np.cumsum(rng.standard_exponential(total))
    base = np.concatenate([[0.0], s])[starts]
    s -= base[rows]
    has = kept > 0
    rest = rng.standard_gamma((k - kept + 1)[has].astype(np.float64))
    denom = np.zeros(len(k))
    denom[has] = s[(starts + kept - 1)[has]] + rest
    return rows, rank, s / denom[rows]


def _power_law(u: np.ndarray, lo: float, hi: float, index: float) -> np.ndarray:
    """pT with P(> pT) = u for dN/dpT ∝ pT^−(index+1) on [lo, hi]: u → 0 is the hardest."""
    a, b = lo ** -index, hi ** -index
    return (b + u * (a - b)) ** (-1.0 / index)


def _turn_on(pt: np.ndarray, eff_max: float, pt50: float, width: float) -> np.ndarray:
    """ε_max·½[1 + erf((pT − pT50)/(√2·width))], vectorised through the logistic approximation
    of erf (|error| < 0.01 in ε, far below the turn-on's own uncertainty)."""
    x = (pt - pt50) / width
    return eff_max / (1.0 + np.exp(-1.702 * x))


class _Candidates:
    """Flat L1 object candidates of one kind: (row, pT, η, φ), appended in pieces."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, rows: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> None:
        if len(rows):
            self.parts.append((rows, pt, eta, phi))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.parts:
            return tuple(np.zeros(0) for _ in range(4))
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(4))


def _uniform_phi(rng: Rng, n: int) -> np.ndarray:
    return rng.random(n) * TWO_PI - math.pi


def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + math.pi) % TWO_PI - math.pi


# -- the crossing ----------------------------------------------------------------------------
def make_crossings(rng: Rng, n: int, pileup: float, model: ZeroBiasModel | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` bunch crossings at mean pile-up ``pileup``: (objects ``float32[n, 19, 3]``, truth ``int16[n]``).

    Truth is the process of the crossing's hardest interaction: ``minbias``, ``qcd``
    (p̂T > 30 GeV), or ``wjets``/``zjets``/``ttbar``.
    """
    m = model or ZeroBiasModel()
    out = np.zeros((n, 19, 3), dtype=np.float32)
    truth = np.full(n, PROCESS_LABELS["minbias"], dtype=np.int16)
    n_int = rng.poisson(pileup, n)
    n_f = n_int.astype(np.float64)

    # soft interactions: ΣET and the MET it leaves
    sum_et = rng.standard_gamma(np.maximum(n_f * m.soft_et_shape, 1e-12)) * (m.soft_et_mean / m.soft_et_shape)
    sigma = np.sqrt(m.met_stochastic ** 2 * sum_et + n_f * m.soft_imbalance ** 2)
    mx = sigma * rng.standard_normal(n)
    my = sigma * rng.standard_normal(n)

    # soft jets and e/γ: ordered, written straight into their slots
    _soft_ordered(rng, out, "jet", n_f * m.soft_jets, m.jet_pt_min, m.soft_jet_pt_max, m.soft_jet_index,
                  m.jet_eta_max)
    _soft_ordered(rng, out, "egamma", n_f * m.soft_eg, m.eg_pt_min, m.soft_eg_pt_max, m.soft_eg_index,
                  m.eg_eta_max)

    jets, egs, mus = _Candidates(), _Candidates(), _Candidates()
    # soft muon candidates (true pT, before the L1 measurement)
    k_mu = rng.poisson(n_f * m.soft_mu)
    rows = np.repeat(np.arange(n), k_mu)
    mus.add(rows, _power_law(rng.random(len(rows)), 2.0, m.soft_mu_pt_max, m.soft_mu_index),
            (rng.random(len(rows)) * 2.0 - 1.0) * m.mu_eta_max, _uniform_phi(rng, len(rows)))

    # hard QCD
    met_rows, met_x, met_y = _hard_qcd(rng, m, n_f, jets, egs, mus)
    truth[met_rows] = PROCESS_LABELS["qcd"]
    mx += np.bincount(met_rows, weights=met_x, minlength=n)
    my += np.bincount(met_rows, weights=met_y, minlength=n)

    # electroweak, hardest last so that its label wins
    for process, sigma_pb in (("wjets", m.w_sigma_pb), ("zjets", m.z_sigma_pb), ("ttbar", m.ttbar_sigma_pb)):
        k = rng.poisson(n_f * m.per_interaction(sigma_pb))
        rows = np.flatnonzero(k)
        if len(rows):
            ex, ey = _electroweak(rng, process, rows, jets, egs, mus)
            mx[rows] += ex
            my[rows] += ey
            truth[rows] = PROCESS_LABELS[process]

    jx, jy = _measure_and_pack(rng, out, m, n_f, jets, egs, mus)
    mx += jx
    my += jy
    out[:, SLOT_MET, 0] = np.hypot(mx, my)
    out[:, SLOT_MET, 2] = np.arctan2(my, mx)
    np.clip(out[:, :, 2], -_PI32_BELOW, _PI32_BELOW, out=out[:, :, 2])
    return out, truth


def _soft_ordered(rng: Rng, out: np.ndarray, kind: str, means: np.ndarray, lo: float, hi: float,
                  index: float, eta_max: float) -> None:
    sl = SLOTS[kind]
    rows, rank, u = _ordered_points(rng, means, sl.stop - sl.start)
    cols = sl.start + rank
    out[rows, cols, 0] = _power_law(u, lo, hi, index)
    out[rows, cols, 1] = (rng.random(len(rows), dtype=np.float32) * 2.0 - 1.0) * np.float32(eta_max)
    out[rows, cols, 2] = _uniform_phi(rng, len(rows))


def _hard_qcd(rng: Rng, m: ZeroBiasModel, n_f: np.ndarray, jets: _Candidates, egs: _Candidates,
              mus: _Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The p̂T > 30 GeV interactions: true jets (smeared later), HF muons, fakes; MET terms."""
    mean = n_f * m.per_interaction(m.sigma_qcd_pb(m.hard_pt_min))
    rows, _, u = _ordered_points(rng, mean, 2)
    h = len(rows)
    log_f, log_x = _pt_hat_table(m)
    pt_hat = np.exp(np.interp(np.log(u), log_f, log_x))
    y_range = np.log(SQRT_S / pt_hat)
    yb = m.boost_width * y_range * rng.standard_normal(h)
    ys = m.ystar_width * y_range * rng.standard_normal(h)
    phi = _uniform_phi(rng, h)
    response = m.jet_response + m.jet_response_spread * rng.standard_normal((2, h))
    radiation = m.radiation_max * (1.0 - rng.random(h) ** (1.0 / m.radiation_power))
    j_pt = np.concatenate([pt_hat * np.clip(response, 0.05, None), [pt_hat * radiation]]).ravel()
    j_eta = np.concatenate([yb + ys, yb - ys, yb + 1.5 * rng.standard_normal(h)])
    j_phi = np.concatenate([phi, _wrap(phi + math.pi), _uniform_phi(rng, h)])
    j_row = np.tile(rows, 3)
    jets.add(j_row, j_pt, j_eta, j_phi)
    # the two leading (parton) jets: heavy flavour, fake muons and e/γ
    two = slice(0, 2 * h)
    nu_x, nu_y = _jet_products(rng, m, j_row[two], j_pt[two], j_eta[two], j_phi[two], egs, mus)
    return j_row[two], nu_x, nu_y


def _jet_products(rng: Rng, m: ZeroBiasModel, rows: np.ndarray, pt: np.ndarray, eta: np.ndarray,
                  phi: np.ndarray, egs: _Candidates, mus: _Candidates) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-flavour muons (and their neutrinos: returned as MET terms), fake muons and fake e/γ."""
    j = len(rows)
    c, s = np.cos(phi), np.sin(phi)
    u = rng.random((4, j))
    # semileptonic b/c decays: the hadron carries z of the jet, shared by μ, ν and the rest
    is_b = u[0] < m.b_fraction * m.b_to_mu
    is_c = ~is_b & (u[0] < m.b_fraction * m.b_to_mu + m.c_fraction * m.c_to_mu)
    hf = np.flatnonzero(is_b | is_c)
    z_had = np.where(is_b[hf], rng.beta(3.0 * m.b_hadron_z / (1 - m.b_hadron_z), 3.0, len(hf)),
                     rng.beta(3.0 * m.c_hadron_z / (1 - m.c_hadron_z), 3.0, len(hf)))
    a, b = np.sort(rng.random((2, len(hf))), axis=0)  # massless three-body shares: a, b − a, 1 − b
    mu_pt, nu_pt = pt[hf] * z_had * a, pt[hf] * z_had * (b - a)
    mus.add(rows[hf], mu_pt, eta[hf], phi[hf])
    # muons are not in the calorimeter either: with the neutrino they are the MET of the decay
    lost = np.zeros(j)
    lost[hf] = mu_pt + nu_pt
    # π/K decays in flight and punch-through
    fake = np.flatnonzero(u[1] < m.fake_mu_per_jet * pt / 100.0)
    z = 1.0 - rng.random(len(fake)) ** (1.0 / m.fake_mu_z_power)
    mus.add(rows[fake], pt[fake] * z, eta[fake], phi[fake])
    # a π⁰-dominated jet core passing as an e/γ cluster
    eg = np.flatnonzero(u[2] < m.fake_eg_per_jet)
    z = 1.0 - rng.random(len(eg)) ** (1.0 / m.fake_eg_z_power)
    egs.add(rows[eg], pt[eg] * z, eta[eg], phi[eg])
    return lost * c, lost * s


def _electroweak(rng: Rng, process: str, rows: np.ndarray, jets: _Candidates, egs: _Candidates,
                 mus: _Candidates) -> tuple[np.ndarray, np.ndarray]:
    """One W, Z or tt̄ event in each of ``rows``, from the single-process toy recipes."""
    from darktrigger.replay.generators.toy import event_candidates  # the recipes live there

    cands, met_x, met_y = event_candidates(process, rng, len(rows))
    for kind, target in (("jet", jets), ("egamma", egs), ("muon", mus)):
        local, pt, eta, phi = cands[kind]
        target.add(rows[local], pt, eta, phi)
    return met_x, met_y


def _measure_and_pack(rng: Rng, out: np.ndarray, m: ZeroBiasModel, n_f: np.ndarray, jets: _Candidates,
                      egs: _Candidates, mus: _Candidates) -> tuple[np.ndarray, np.ndarray]:
    """Apply the L1 measurement to the hard candidates and merge them into the slots.

    Returns the MET terms of the jets' mismeasurement (x, y per crossing).
    """
    n = len(out)
    # jets: calorimeter resolution and pile-up left in the jet area; the mismeasurement is MET
    rows, pt, eta, phi = jets.arrays()
    noise = np.sqrt(m.jet_stochastic ** 2 * pt + (m.jet_constant * pt) ** 2 + n_f[rows] * m.jet_pileup_noise ** 2)
    reco = np.maximum(pt + noise * rng.standard_normal(len(pt)), 0.0)
    dx = (reco - pt) * np.cos(phi)
    dy = (reco - pt) * np.sin(phi)
    mx = -np.bincount(rows, weights=dx, minlength=n)
    my = -np.bincount(rows, weights=dy, minlength=n)
    keep = (reco >= m.jet_pt_min) & (np.abs(eta) < m.jet_eta_max)
    _merge(out, "jet", rows[keep], reco[keep], eta[keep], phi[keep])
    # e/γ clusters
    rows, pt, eta, phi = egs.arrays()
    u = rng.random(len(pt))
    reco = pt + np.hypot(m.eg_stochastic * np.sqrt(pt), m.eg_constant * pt) * rng.standard_normal(len(pt))
    keep = ((u < _turn_on(pt, m.eg_eff_max, m.eg_eff_pt50, m.eg_eff_width)) & (reco > m.eg_pt_min)
            & (np.abs(eta) < m.eg_eta_max))
    _merge(out, "egamma", rows[keep], reco[keep], eta[keep], phi[keep])
    # muons: the L1 measures the bending, 1/pT
    rows, pt, eta, phi = mus.arrays()
    u = rng.random((2, len(pt)))
    width = np.where(u[1] < m.mu_tail_fraction, m.mu_tail_resolution, m.mu_resolution)
    inv = (1.0 + width * rng.standard_normal(len(pt))) / np.maximum(pt, 1e-9)
    reco = np.where(inv > 1.0 / m.mu_pt_max, 1.0 / np.maximum(inv, 1e-12), m.mu_pt_max)
    keep = ((u[0] < _turn_on(pt, m.mu_eff_max, m.mu_eff_pt50, m.mu_eff_width)) & (reco > m.mu_pt_min)
            & (np.abs(eta) < m.mu_eta_max))
    _merge(out, "muon", rows[keep], reco[keep], eta[keep], phi[keep])
    return mx, my


def _merge(out: np.ndarray, kind: str, rows: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> None:
    """Merge candidates into the slots of ``kind`` (already holding the ordered soft objects)."""
    if len(rows) == 0:
        return
    sl = SLOTS[kind]
    touched = np.zeros(len(out), dtype=bool)
    touched[rows] = True
    which = np.flatnonzero(touched)
    held = out[which, sl, :]
    r, c = np.nonzero(held[:, :, 0])
    out[which, sl, :] = 0.0
    pack_slots(out, kind, np.concatenate([which[r], rows]), np.concatenate([held[r, c, 0], pt]),
               np.concatenate([held[r, c, 1], eta]), np.concatenate([held[r, c, 2], phi]))
