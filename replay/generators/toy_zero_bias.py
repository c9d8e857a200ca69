"""The toy's ``zero_bias`` stream: one colliding bunch crossing per event, with pile-up.

A crossing holds Poisson(μ) inelastic pp interactions (μ from
:class:`~darktrigger.replay.lhc.LHCConditions`, ≈ 56 at 2.0e34); its L1 objects are the sum of
what they make, parametrised per interaction. :class:`ZeroBiasModel` holds every number with
its meaning and where it comes from (GeV throughout): Pythia 8 at 13.6 TeV, through the L1
detector model of :mod:`darktrigger.replay.detector`, the physics the toy is validated against
(BENCHMARKS.md compares their rates seed by seed).

* **Soft interactions** (hard scale p̂T < 30 GeV, all but ≈ 0.2 % of them). ΣET: Gamma-
  distributed per interaction, summed over the crossing. MET: Gaussian per component with
  σ² = s²·ΣET + Σᵢ δᵢ², the towers' stochastic resolution and each interaction's own imbalance
  (whose spread from interaction to interaction gives the tail beyond the Gaussian), so it
  grows as √ΣET. Pile-up jets: what the ρ·area subtraction leaves are fluctuations of
  the pile-up energy in jet-sized regions, an exponential tail above 15 GeV whose slope grows
  as √n, so their number and pT grow with pile-up. Soft e/γ clusters (π⁰ photons) and muon
  candidates (c, b decays, π/K decays in flight, punch-through): a Poisson number per
  interaction each, with falling spectra.
* **Hard QCD**: the interactions with p̂T > 30 GeV, a Poisson number with mean
  n·σ(p̂T > 30)/σ_inel (≈ 0.12 per crossing at 2.0e34), p̂T from
  σ(p̂T > x) = σ₃₀·(x/30)^−(a + β·ln(x/30))·((1 − x_T)/(1 − x_T,₃₀))^b, x_T = 2x/√s, a fit to
  Pythia's HardQCD cross sections (within 1 % from 15 GeV to 1 TeV). Each makes two jets
  (rapidities yb ± y*, back to back in φ, pT = p̂T × response) and a Poisson number of
  radiation jets growing with ln p̂T; L1 jets are smeared by the calorimeter
  (100 %/√pT ⊕ 5 %) and the pile-up left in the jet area, and the mismeasurement is MET. A
  jet is a b or c jet with a small probability, whose semileptonic decay gives a muon and a
  neutrino (genuine MET: the calorimeter sees neither); its hadrons make L1 muons by decay in
  flight and punch-through, and a jet whose energy a π⁰ carries passes as an e/γ cluster
  (the dominant source of the SingleEG rate).
* **Electroweak**: W → ℓν, γ*/Z → ℓℓ and tt̄ at σ·L (Pythia's cross sections), from the
  single-process recipes of :mod:`~darktrigger.replay.generators.toy`.

L1 measurement, as the detector model: muons have the muon system's poor pT resolution
(:func:`l1_muon_pt`: 1/pT smeared by 20 %, 5 % of them by 60 %, saturating at 255 GeV;
efficiency turn-on at 4 GeV; 3 % ghosts), e/γ clusters 15 %/√E ⊕ 2 % with a turn-on at
5 GeV, jets as above, kept with pT ≥ 15 GeV and |η| < 4.7. The calorimeter MET leaves muons out.

Speed: most crossings hold only the soft part, and its objects are made already ordered in
pT (running sums of exponentials below the Poisson mean are the order statistics of a
Poisson number of uniforms), written straight into their slots; only crossings with hard
objects are merged, by one integer-key sort per crossing.

    >>> import numpy as np
    >>> from darktrigger.replay.generators.toy_zero_bias import ZeroBiasModel, make_crossings
    >>> objects, truth = make_crossings(np.random.default_rng(1), 20_000, pileup=55.9)
    >>> objects.shape, objects.dtype
    ((20000, 19, 3), dtype('float32'))
    >>> 0.09 < float(np.mean(truth == 0)) < 0.14     # crossings with a p̂T > 30 GeV interaction
    True
    >>> round(ZeroBiasModel().sigma_qcd_pb(1000.0) / 12.65, 1)   # Pythia: 12.65 pb above 1 TeV
    1.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from darktrigger.replay.events import PROCESS_LABELS, SLOT_MET, SLOTS
from darktrigger.replay.generators.toy_recipes import event_candidates
from darktrigger.replay.objects import pack_slots

Rng = np.random.Generator
TWO_PI = 2.0 * math.pi
SQRT_S = 13_600.0
_MB_TO_PB = 1e9
_PI32_BELOW = np.nextafter(np.float32(math.pi), np.float32(0))


@dataclass(frozen=True)
class ZeroBiasModel:
    """The toy zero-bias parameters, each a physical quantity (GeV, pb, mb).

    "Pythia" below means Pythia 8.317 at 13.6 TeV: process-level ``sigmaGen``, particle level,
    or its events through the L1 detector model (:mod:`darktrigger.replay.detector`) with
    the minimum-bias pile-up of :mod:`~darktrigger.replay.generators.pythia_zero_bias`.
    """

    # -- inelastic interactions ---------------------------------------------------------------
    #: σ_inel (mb) that turns a cross section into a probability per interaction (as LHCConditions)
    sigma_inel_mb: float = 80.0
    #: mean ΣET (GeV) a soft interaction leaves in the calorimeter (visible particles that
    #: reach it, |η| < 5, muons excluded; Pythia SoftQCD:inelastic: 47.4) ...
    soft_et_mean: float = 47.4
    #: ... Gamma-distributed with this shape (Pythia: 0.72; < 1: many nearly empty, diffractive
    #: interactions and a long tail)
    soft_et_shape: float = 0.72
    #: σ(MET_x) per √ΣET: the towers' stochastic resolution (reduced by the 0.5 GeV tower
    #: threshold, which keeps most soft particles out of the sum) ...
    met_stochastic: float = 0.14
    #: ... and the rms per component of one interaction's own imbalance in the calorimeter
    #: (particles beyond |η| = 5, tracks curling up before it, muons, neutrinos of decays),
    #: which dominates; σ(MET_x)² = s²·ΣET + Σᵢ δᵢ² over the interactions (Pythia pile-up
    #: through the detector: σ = 20.8 GeV at μ = 56, ∝ √n from μ = 30 to 100)
    soft_imbalance: float = 2.6
    #: Gamma shape of one interaction's imbalance variance: dominated by its few hardest
    #: particles, so widely spread (Pythia minimum bias at particle level: (px² + py²)/2 has
    #: mean 9.1 GeV² and shape 0.24; 0.3 gives the MET tail of Pythia crossings through the
    #: detector, P(MET > 70, 80, 90, 100 GeV) = 4.9·10⁻³, 1.4·10⁻³, 2.5·10⁻⁴, 7.7·10⁻⁵ at μ = 56)
    soft_imbalance_shape: float = 0.3
    # -- pile-up jets -------------------------------------------------------------------------
    #: L1 jets that pile-up leaves after the ρ·area subtraction are fluctuations of the
    #: pile-up energy in jet-sized regions: of ``pu_jet_regions`` independent regions, the
    #: number above 15 GeV is regions·exp(−15/λ), pT − 15 GeV exponential with slope
    #: λ = pu_jet_slope·√n (n interactions): count and pT grow with pile-up (Pythia: 1.1, 3.4,
    #: 6.5 jets above 15 GeV at μ = 30, 56, 100, slopes 4.1, 5.4, ~6 GeV)
    pu_jet_regions: float = 57.0
    pu_jet_slope: float = 0.715
    #: their |η| density falls linearly by this fraction from η = 0 to the jet acceptance edge
    #: (Pythia: 66 % of them have |η| < 2.4)
    pu_jet_eta_tilt: float = 0.6
    # -- soft e/γ and muons per interaction (dN/dpT ∝ pT^−(index+1) on [min, max]) --------------
    #: L1 e/γ clusters per soft interaction (π⁰ photons with the pile-up energy around them),
    #: as measured: above the turn-on's plateau (5 GeV) a power law of this index, ending
    #: where soft interactions run out of energy (Pythia crossings without a p̂T > 30 GeV
    #: interaction, μ = 56: 0.78, 0.060, 0.0091, 0.0028, 0.0009 per crossing above 5, 10, 15,
    #: 20, 25 GeV) ...
    soft_eg: float = 0.0141
    soft_eg_index: float = 4.0
    soft_eg_pt_max: float = 40.0
    #: ... and between the 3 GeV threshold and 5 GeV, on the turn-on, flat (0.59 per crossing)
    soft_eg_low: float = 0.0105
    #: muon candidates per soft interaction with true pT > 2 GeV reaching the muon system:
    #: c, b decays, π/K decays in flight before the calorimeter, punch-through (Pythia
    #: minimum bias (p̂T < 20 GeV) through the detector's muon model: 4.5·10⁻³, 1.1·10⁻³ above
    #: 3 GeV, 1.3·10⁻⁴ above 5 GeV; the 20–30 GeV interactions add harder ones: 0.030,
    #: 0.012, 0.0016 L1 muons per crossing above 3, 5, 10 GeV at μ = 56)
    soft_mu: float = 5.5e-3
    soft_mu_index: float = 3.6
    #: (soft interactions rarely make a muon above 10 GeV: none in 10⁵ of Pythia's below 20 GeV)
    soft_mu_pt_max: float = 12.0
    # -- hard QCD: σ(p̂T > x) (fit to Pythia HardQCD:all, 15 GeV – 1 TeV) -----------------------
    #: σ(p̂T > 30 GeV), pb
    qcd_sigma30_pb: float = 1.745e8
    #: the integrated spectrum's power index at 30 GeV, and its growth per unit ln(p̂T/30)
    qcd_index: float = 3.71
    qcd_index_slope: float = 0.177
    #: the power of (1 − x_T): parton densities vanishing at x → 1
    qcd_pdf_power: float = 8.1
    #: p̂T (GeV) above which an interaction is hard (generated as jets); below it is soft.
    #: The soft parameters were measured on Pythia crossings without a p̂T > 30 GeV
    #: interaction (its minimum bias below 20 GeV plus its 20–30 GeV QCD at their rate)
    hard_pt_min: float = 30.0
    #: widths of the dijet's boost rapidity yb and half rapidity difference y*, per unit of
    #: ln(√s/p̂T) (the kinematic range shrinks as p̂T grows; Pythia's partons at 30, 100 GeV)
    boost_width: float = 0.32
    ystar_width: float = 0.205
    #: L1 jet pT / p̂T of the two leading jets: mean at 60 GeV, its growth per unit ln(p̂T/60)
    #: (narrower jets at high pT), and spread (radiation out of the cone, ISR)
    jet_response: float = 0.85
    jet_response_slope: float = 0.045
    jet_response_spread: float = 0.2
    #: radiation jets (ISR/FSR): Poisson, mean at 100 GeV and growth per unit ln(p̂T/100);
    #: each with pT / p̂T: P(> x) = (1 − x/max)^power (Pythia at 100 GeV: 69 % > 0.2, 14 % > 0.5;
    #: jets above 30 GeV per event 2.5, 2.9, 3.4 at p̂T ≈ 95, 150, 260 GeV)
    radiation_jets: float = 1.0
    radiation_jets_slope: float = 0.9
    radiation_max: float = 0.85
    radiation_power: float = 2.2
    # -- L1 jets ------------------------------------------------------------------------------
    jet_stochastic: float = 1.0
    jet_constant: float = 0.05
    #: rms pile-up ET (GeV) per √interaction left in a hard jet's area after the subtraction
    jet_pileup_noise: float = 0.5
    jet_pt_min: float = 15.0
    jet_eta_max: float = 4.7
    # -- heavy flavour in hard jets -----------------------------------------------------------
    #: fraction of hard jets with a b (c) hadron (Pythia HardQCD: 1.4–2.4 % b, 2.6–2.9 % c
    #: partons from the hard process; gluon splitting adds softer ones)
    b_fraction: float = 0.018
    c_fraction: float = 0.035
    #: fraction of heavy-flavour jets whose partner jet (the interaction's other parton) has the
    #: same flavour: pair production (gg, qq̄ → QQ̄) against flavour excitation (Qg → Qg)
    hf_pair_fraction: float = 0.5
    #: semileptonic branching fraction to a muon: b (with b → c → μ), c; a semileptonic b decay
    #: leaves a charm hadron, which gives a second muon with the c fraction
    b_to_mu: float = 0.20
    c_to_mu: float = 0.10
    #: mean momentum fraction of the jet the b (c) hadron carries (fragmentation); μ, ν and
    #: the rest share the hadron's as massless three-body phase space
    b_hadron_z: float = 0.70
    c_hadron_z: float = 0.55
    # -- hadrons of hard jets faking L1 muons -------------------------------------------------
    #: L1 muon candidates per hard jet with true pT > 3 GeV from π/K decays in flight and
    #: punch-through, per 100 GeV of jet pT (more hadrons) ...
    fake_mu_per_jet: float = 0.04
    #: ... with a soft spectrum, dN/dpT ∝ pT^−(index+1) from 3 GeV up to the jet's pT: decays
    #: in flight come from the soft hadrons (P ∝ 1/p) (Pythia HardQCD through the detector's
    #: muon model: 0.03, 0.05, 0.07, 0.09, 0.12 candidates above 3 GeV per event at p̂T ≈ 38,
    #: 60, 95, 150, 260 GeV, but ≈ 0.015 above 0.1·p̂T at every p̂T, mostly heavy flavour)
    fake_mu_index: float = 2.0
    # -- hard jets faking e/γ -----------------------------------------------------------------
    #: probability that a hard jet passes as an e/γ cluster (a leading π⁰ with little hadronic
    #: energy beside it, H/E < 0.25) ...
    fake_eg_per_jet: float = 0.029
    #: ... with ET = z × the jet's pT, P(> z) = (1 − z/max)^power; max > 1 because the cluster
    #: is measured at the electromagnetic scale and the jet's hadrons below it (Pythia: per
    #: jet 1.7, 0.95, 0.45, 0.09 % above 0.3, 0.5, 0.7, 0.9 × p̂T, the same from 30 to 400 GeV)
    fake_eg_z_max: float = 1.15
    fake_eg_z_power: float = 1.55
    #: besides, softer π⁰ clusters: per jet of 50 GeV this many above 5 GeV, growing as
    #: (pT/50)^growth, with dN/dET ∝ ET^−(index+1) up to the jet's pT (Pythia: 0.22–0.39 e/γ
    #: clusters above 5 GeV per event from p̂T ≈ 38 to 260 GeV)
    soft_eg_per_jet: float = 0.15
    #: a jet that passes as e/γ is rich in π⁰s: this many more clusters above 4 GeV in it, from
    #: the same spectrum up to the energy the leading cluster left (Pythia: a second e/γ ≥ 12 GeV
    #: in 0.4–0.9 % of hard events, DoubleEG_25_12 from jets)
    fake_eg_companions: float = 0.6
    soft_eg_per_jet_growth: float = 0.35
    soft_eg_per_jet_index: float = 2.1
    # -- L1 e/γ and muons (as the detector model) ---------------------------------------------
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
    #: 1/pT resolution of the L1 muon system: core, and a tail fraction with its width
    #: (multiple scattering in the iron, few stations); saturation
    mu_resolution: float = 0.20
    mu_tail_fraction: float = 0.05
    mu_tail_resolution: float = 0.60
    mu_pt_max: float = 255.0
    mu_pt_min: float = 3.0
    #: probability that a found muon also gives a ghost (a second candidate at the same η, φ
    #: with its own pT measurement: two overlapping track finders, not cancelled)
    mu_ghost_prob: float = 0.03
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


@lru_cache(maxsize=8)
def _pt_hat_table(model: ZeroBiasModel) -> tuple[np.ndarray, np.ndarray]:
    """(ln F, ln p̂T), F = σ(> p̂T)/σ(> hard_pt_min) falling from 1, for inverse-CDF sampling."""
    x = np.geomspace(model.hard_pt_min, 0.45 * SQRT_S, 4096)
    log_f = np.log(model.sigma_qcd_pb(x) / model.sigma_qcd_pb(model.hard_pt_min))
    return log_f[::-1].copy(), np.log(x)[::-1].copy()


# -- Poisson numbers and ordered Poisson points ---------------------------------------------------
def _ordered_points(rng: Rng, means: np.ndarray, cap: int, *, by_row: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``cap`` points of a Poisson(means[i]) number of uniforms per row, ascending.

    Returns (row, rank, u): flat over the points (grouped by rank, or by row with ``by_row``),
    rank 0 the smallest in its row. The
    points of a unit-rate Poisson process on [0, mean] are the running sums of exponentials
    that stay below the mean; divided by it they are a Poisson(mean) number of uniforms, in
    order, with no count drawn and no sort. A falling spectrum's inverse CDF turns u into pT
    in descending order.
    """
    n = len(means)
    # rank-major, so that the running sums add contiguous rows; float32 for the many soft
    # points, float64 for the few hard ones (float32's smallest bucket, 6·10⁻⁸ wide, holds an
    # exact 0 that would map to the end of a spectrum: resolved below its width)
    level = rng.standard_exponential((cap, n), dtype=np.float64 if by_row else np.float32)
    zero = level == 0
    if zero.any():
        level[zero] = 6e-8 * rng.random(int(zero.sum()))
    for k in range(1, cap):
        level[k] += level[k - 1]
    means = means.astype(level.dtype)
    flat = np.flatnonzero(level <= means)
    rank, rows = np.divmod(flat, n)
    if by_row:
        order = np.argsort(rows, kind="stable")
        rows, rank, flat = rows[order], rank[order], flat[order]
    return rows, rank, level.ravel()[flat] / means[rows]


def _sparse_rows(rng: Rng, cum_weight: np.ndarray, rate: float) -> np.ndarray:
    """Rows of a rare Poisson process, Poisson(rate·wᵢ) points in row i, sorted (``cum_weight`` = cumsum w).

    One Poisson draw for the total and a multinomial split by wᵢ: the same distribution as a
    draw per row, at the cost of the few points instead of every row.
    """
    total = float(cum_weight[-1]) if len(cum_weight) else 0.0
    k = rng.poisson(rate * total)
    return np.sort(np.searchsorted(cum_weight, rng.random(k) * total, side="right"))


def _power_law(u: np.ndarray, lo: float, hi: float | np.ndarray, index: float) -> np.ndarray:
    """pT with P(> pT) = u for dN/dpT ∝ pT^−(index+1) on [lo, hi]: u → 0 is the hardest."""
    a, b = lo ** -index, hi ** -index
    return (b + u * (a - b)) ** (-1.0 / index)


def _turn_on(pt: np.ndarray, eff_max: float, pt50: float, width: float) -> np.ndarray:
    """ε_max·½[1 + erf((pT − pT50)/(√2·width))], vectorised through the logistic approximation
    of erf (|Δε| < 0.01, far below the turn-on's own uncertainty)."""
    return eff_max / (1.0 + np.exp(-1.702 * (pt - pt50) / width))


def _tilted_abs_eta(u: np.ndarray, edge: float, tilt: float) -> np.ndarray:
    """|η| on [0, edge] with density ∝ 1 − tilt·|η|/edge, by inverting its CDF at u."""
    if tilt == 0:
        return u * edge
    a = tilt / (2.0 * edge)
    c = u * edge * (1.0 - tilt / 2.0)
    return (1.0 - np.sqrt(1.0 - 4.0 * a * c)) / (2.0 * a)


def _uniform_phi(rng: Rng, n: int) -> np.ndarray:
    return rng.random(n) * TWO_PI - math.pi


def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + math.pi) % TWO_PI - math.pi


class _Candidates:
    """Flat L1 object candidates of one kind: (row, pT, η, φ), appended in pieces."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, rows: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> None:
        if len(rows):
            self.parts.append((rows, pt, eta, phi))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.parts:
            return (np.zeros(0, np.int64), *(np.zeros(0) for _ in range(3)))
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(4))


# -- the crossing ----------------------------------------------------------------------------
def make_crossings(rng: Rng, n: int, pileup: float, model: ZeroBiasModel | None = None, *,
                   pt_hat: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` bunch crossings at mean pile-up ``pileup``: (objects ``float32[n, 19, 3]``, truth ``int16[n]``).

    Truth is the process of the crossing's hardest interaction: ``minbias``, ``qcd``
    (p̂T above ``hard_pt_min``), or ``wjets``/``zjets``/``ttbar``. With ``pt_hat`` (GeV,
    ``[n]``) each crossing holds exactly one hard QCD interaction of that p̂T and no
    electroweak one: the crossings of a p̂T bin, to compare with Pythia's bin by bin.
    """
    m = model or ZeroBiasModel()
    out = np.zeros((n, 19, 3), dtype=np.float32)
    truth = np.full(n, PROCESS_LABELS["minbias"], dtype=np.int16)
    n_max = int(pileup + 12.0 * math.sqrt(pileup) + 25.0)
    n_values = np.arange(n_max + 1, dtype=np.float64)
    n_int = np.minimum(rng.poisson(pileup, n), n_max)
    n_f = n_int.astype(np.float64)

    # soft interactions: ΣET and the MET it leaves
    sum_et = rng.standard_gamma(np.maximum(n_f * m.soft_et_shape, 1e-12)) * (m.soft_et_mean / m.soft_et_shape)
    imbalance = rng.standard_gamma(np.maximum(n_f * m.soft_imbalance_shape, 1e-12)) * (
        m.soft_imbalance ** 2 / m.soft_imbalance_shape)
    sigma = np.sqrt(m.met_stochastic ** 2 * sum_et + imbalance)
    mx = sigma * rng.standard_normal(n)
    my = sigma * rng.standard_normal(n)

    # pile-up jets and soft e/γ: ordered, written straight into their slots
    _pileup_jets(rng, out, m, n_int, n_values)
    _soft_eg(rng, out, m, n_f)

    egs, mus, ew_jets = _Candidates(), _Candidates(), _Candidates()
    cum_int = np.cumsum(n_f)
    rows = _sparse_rows(rng, cum_int, m.soft_mu)
    mus.add(rows, _power_law(rng.random(len(rows)), 2.0, m.soft_mu_pt_max, m.soft_mu_index),
            (rng.random(len(rows)) * 2.0 - 1.0) * m.mu_eta_max, _uniform_phi(rng, len(rows)))

    # hard QCD: up to three hardest interactions per crossing, in descending p̂T
    if pt_hat is None:
        mean = n_f * m.per_interaction(m.sigma_qcd_pb(m.hard_pt_min))
        rows, rank, u = _ordered_points(rng, mean, HARD_PER_CROSSING, by_row=True)
        log_f, log_x = _pt_hat_table(m)
        hard_pt = np.exp(np.interp(np.log(u), log_f, log_x))
    else:
        rows, rank, hard_pt = np.arange(n), np.zeros(n, np.int64), np.asarray(pt_hat, dtype=np.float64)
    if len(rows):
        ex, ey = _hard_qcd(rng, out, m, n_f, rows, rank, hard_pt, egs, mus)
        truth[rows] = PROCESS_LABELS["qcd"]
        mx += ex
        my += ey

    # electroweak: one W, Z or tt̄ in a crossing (two in one crossing: ~10⁻⁹)
    if pt_hat is None:
        sigmas = {"wjets": m.w_sigma_pb, "zjets": m.z_sigma_pb, "ttbar": m.ttbar_sigma_pb}
        rows = np.unique(_sparse_rows(rng, cum_int, m.per_interaction(sum(sigmas.values()))))
        which = rng.choice(len(sigmas), len(rows), p=np.array(list(sigmas.values())) / sum(sigmas.values()))
        for i, process in enumerate(sigmas):
            these = rows[which == i]
            if len(these):
                ex, ey = _electroweak(rng, process, these, ew_jets, egs, mus)
                mx[these] += ex
                my[these] += ey
                truth[these] = PROCESS_LABELS[process]

    ex, ey = _measure_and_merge(rng, out, m, n_f, ew_jets, egs, mus)
    mx += ex
    my += ey
    out[:, SLOT_MET, 0] = np.hypot(mx, my)
    out[:, SLOT_MET, 2] = np.arctan2(my, mx)
    np.clip(out[:, :, 2], -_PI32_BELOW, _PI32_BELOW, out=out[:, :, 2])
    return out, truth


#: hard interactions made per crossing (the hardest ones; a fourth above 20 GeV is rarer than 2·10⁻³)
HARD_PER_CROSSING = 3
#: jets per hard interaction: the two partons' and up to this many radiation jets
_RADIATION_SLOTS = 3


def _write(out: np.ndarray, rows: np.ndarray, cols: np.ndarray, pt: np.ndarray, eta: np.ndarray,
           phi: np.ndarray) -> None:
    """Write objects into ``out`` at (rows, cols): one (pT, η, φ) triple per fancy-indexed item."""
    triples = np.empty((len(rows), 3), dtype=np.float32)
    triples[:, 0], triples[:, 1], triples[:, 2] = pt, eta, phi
    out.reshape(-1, 3)[rows * out.shape[1] + cols] = triples


def _pileup_jets(rng: Rng, out: np.ndarray, m: ZeroBiasModel, n_int: np.ndarray, n_values: np.ndarray) -> None:
    sl = SLOTS["jet"]
    slope = m.pu_jet_slope * np.sqrt(n_values)
    mean = np.zeros_like(slope)
    mean[1:] = m.pu_jet_regions * np.exp(-m.jet_pt_min / slope[1:])  # none without pile-up
    rows, rank, u = _ordered_points(rng, mean[n_int], sl.stop - sl.start)
    k = len(rows)
    sign = np.where(rng.random(k, dtype=np.float32) < 0.5, np.float32(-1), np.float32(1))
    _write(out, rows, sl.start + rank, np.float32(m.jet_pt_min) - slope.astype(np.float32)[n_int[rows]] * np.log(u),
           sign * _tilted_abs_eta(rng.random(k, dtype=np.float32), m.jet_eta_max, m.pu_jet_eta_tilt),
           rng.random(k, dtype=np.float32) * np.float32(TWO_PI) - np.float32(math.pi))


def _soft_eg(rng: Rng, out: np.ndarray, m: ZeroBiasModel, n_f: np.ndarray) -> None:
    """Soft e/γ clusters, ordered: the power law above the plateau, then the flat part below."""
    sl = SLOTS["egamma"]
    plateau = m.eg_eff_pt50
    rows, rank, u = _ordered_points(rng, n_f * (m.soft_eg + m.soft_eg_low), sl.stop - sl.start)
    high = m.soft_eg / (m.soft_eg + m.soft_eg_low)  # the share above the plateau
    et = np.where(u < high, _power_law(np.minimum(u / high, 1.0), plateau, m.soft_eg_pt_max, m.soft_eg_index),
                  plateau - (u - high) / (1.0 - high) * (plateau - m.eg_pt_min))
    n_eg = len(rows)
    _write(out, rows, sl.start + rank, et,
           (rng.random(n_eg, dtype=np.float32) * np.float32(2) - np.float32(1)) * np.float32(m.eg_eta_max),
           rng.random(n_eg, dtype=np.float32) * np.float32(TWO_PI) - np.float32(math.pi))


def _hard_qcd(rng: Rng, out: np.ndarray, m: ZeroBiasModel, n_f: np.ndarray, rows: np.ndarray, rank: np.ndarray,
              pt_hat: np.ndarray, egs: _Candidates, mus: _Candidates) -> tuple[np.ndarray, np.ndarray]:
    """Hard interactions of ``pt_hat`` (the ``rank``-th hardest of crossing ``rows``).

    Their L1 jets are merged into the slots here; heavy-flavour muons, fake muons and e/γ go to
    the candidates. Returns the MET terms (x, y per crossing): the jets' mismeasurement and the
    muons and neutrinos of semileptonic decays.
    """
    n, h = len(out), len(rows)
    y_range = np.log(SQRT_S / pt_hat)
    yb = m.boost_width * y_range * rng.standard_normal(h)
    ys = m.ystar_width * y_range * rng.standard_normal(h)
    phi = _uniform_phi(rng, h)
    # jets: the two partons', then the radiation jets (j = 0, 1, 2, ...)
    mean_r = m.jet_response + m.jet_response_slope * np.log(pt_hat / 60.0)
    response = np.maximum(mean_r + m.jet_response_spread * rng.standard_normal((2, h)), 0.05)
    n_rad = np.minimum(rng.poisson(np.maximum(
        m.radiation_jets + m.radiation_jets_slope * np.log(pt_hat / 100.0), 0.1)), _RADIATION_SLOTS)
    per = 2 + _RADIATION_SLOTS
    true_pt = np.zeros((per, h))
    true_pt[:2] = pt_hat * response
    rad = m.radiation_max * (1.0 - rng.random((_RADIATION_SLOTS, h)) ** (1.0 / m.radiation_power))
    true_pt[2:] = np.where(np.arange(_RADIATION_SLOTS)[:, None] < n_rad, pt_hat * rad, 0.0)
    eta = np.empty((per, h))
    eta[0], eta[1] = yb + ys, yb - ys
    eta[2:] = yb + 1.5 * rng.standard_normal((_RADIATION_SLOTS, h))
    jphi = np.empty((per, h))
    jphi[0], jphi[1] = phi, _wrap(phi + math.pi)
    jphi[2:] = _uniform_phi(rng, _RADIATION_SLOTS * h).reshape(_RADIATION_SLOTS, h)
    # the L1 measurement: calorimeter resolution and pile-up left in the jet area
    noise = np.sqrt(m.jet_stochastic ** 2 * true_pt + (m.jet_constant * true_pt) ** 2
                    + n_f[rows] * m.jet_pileup_noise ** 2)
    reco = np.where(true_pt > 0, np.maximum(true_pt + noise * rng.standard_normal((per, h)), 0.0), 0.0)
    c, s = np.cos(jphi), np.sin(jphi)
    mx = -np.bincount(rows, weights=((reco - true_pt) * c).sum(0), minlength=n)
    my = -np.bincount(rows, weights=((reco - true_pt) * s).sum(0), minlength=n)
    seen = (reco >= m.jet_pt_min) & (np.abs(eta) < m.jet_eta_max)
    reco = np.where(seen, reco, 0.0)
    # dense per crossing: column = rank × jets-per-interaction + j (rows come grouped, ascending)
    first = rank == 0
    touched = rows[first]
    local = np.cumsum(first) - 1
    width = HARD_PER_CROSSING * per
    cols = rank * per
    dense = np.zeros((3, len(touched), width))
    for j in range(per):
        dense[0, local, cols + j] = reco[j]
        dense[1, local, cols + j] = np.where(seen[j], eta[j], 0.0)
        dense[2, local, cols + j] = np.where(seen[j], jphi[j], 0.0)
    _merge_sorted(out, SLOTS["jet"], touched, dense)
    # the two parton jets: heavy flavour, fake muons and e/γ
    lost = _jet_products(rng, m, np.tile(rows, 2), true_pt[:2].ravel(), eta[:2].ravel(), jphi[:2].ravel(),
                         egs, mus)
    mx += np.bincount(np.tile(rows, 2), weights=lost * c[:2].ravel(), minlength=n)
    my += np.bincount(np.tile(rows, 2), weights=lost * s[:2].ravel(), minlength=n)
    return mx, my


def _jet_products(rng: Rng, m: ZeroBiasModel, rows: np.ndarray, pt: np.ndarray, eta: np.ndarray,
                  phi: np.ndarray, egs: _Candidates, mus: _Candidates) -> np.ndarray:
    """Heavy-flavour muons, fake muons and fake e/γ of jets; returns the pT (along each jet)
    the calorimeter misses: muon and neutrino of a semileptonic decay."""
    j = len(rows)
    u = rng.random((4, j))
    # flavour: the second half of the jets are the partners of the first (one interaction's two
    # partons), and heavy quarks come in pairs (gg → bb̄) as often as alone (bg → bg)
    half = j // 2
    paired = rng.random(half) < m.hf_pair_fraction
    u[0, half:] = np.where(paired, u[0, :half], u[0, half:])
    is_b = u[0] < m.b_fraction
    is_c = ~is_b & (u[0] < m.b_fraction + m.c_fraction)
    # semileptonic b/c decays: the hadron carries z of the jet, shared by μ, ν and the rest
    hf = np.flatnonzero((is_b & (u[3] < m.b_to_mu)) | (is_c & (u[3] < m.c_to_mu)))
    mean_z = np.where(is_b[hf], m.b_hadron_z, m.c_hadron_z)
    z_had = rng.beta(3.0 * mean_z / (1.0 - mean_z), 3.0)
    a, b = np.sort(rng.random((2, len(hf))), axis=0)  # massless three-body shares: a, b − a, 1 − b
    mu_pt, nu_pt = pt[hf] * z_had * a, pt[hf] * z_had * (b - a)
    mus.add(rows[hf], mu_pt, eta[hf], phi[hf])
    lost = np.zeros(j)
    lost[hf] = mu_pt + nu_pt  # the calorimeter sees neither
    # b → c μ ν, then c → s μ ν: a second muon from the charm the b decay left (1 − b of it)
    twice = np.flatnonzero(is_b[hf] & (rng.random(len(hf)) < m.c_to_mu))
    a2, b2 = np.sort(rng.random((2, len(twice))), axis=0)
    charm = pt[hf[twice]] * z_had[twice] * (1.0 - b[twice])
    mus.add(rows[hf[twice]], charm * a2, eta[hf[twice]], phi[hf[twice]])
    lost[hf[twice]] += charm * b2
    # π/K decays in flight and punch-through: soft muons, more of them in harder jets
    fake = np.repeat(np.arange(j), rng.poisson(m.fake_mu_per_jet * pt / 100.0))
    mus.add(rows[fake], _power_law(rng.random(len(fake)), 3.0, np.maximum(pt[fake], 3.5), m.fake_mu_index),
            eta[fake], phi[fake])
    # a π⁰-dominated jet core passing as an e/γ cluster
    eg = np.flatnonzero(u[2] < m.fake_eg_per_jet)
    z = m.fake_eg_z_max * (1.0 - rng.random(len(eg)) ** (1.0 / m.fake_eg_z_power))
    egs.add(rows[eg], pt[eg] * z, eta[eg], phi[eg])
    # softer π⁰ clusters, from 4 GeV (the turn-on is applied with the measurement), more in a
    # jet that passed as e/γ
    mean = m.soft_eg_per_jet * (5.0 / 4.0) ** m.soft_eg_per_jet_index * (
        np.maximum(pt, 1.0) / 50.0) ** m.soft_eg_per_jet_growth
    mean[eg] += m.fake_eg_companions
    k = rng.poisson(np.where(pt > 4.5, mean, 0.0))
    idx = np.repeat(np.arange(j), k)
    spread = 0.1 * rng.standard_normal((2, len(idx)))  # inside the jet
    egs.add(rows[idx], _power_law(rng.random(len(idx)), 4.0, pt[idx], m.soft_eg_per_jet_index),
            eta[idx] + spread[0], _wrap(phi[idx] + spread[1]))
    return lost


def _electroweak(rng: Rng, process: str, rows: np.ndarray, jets: _Candidates, egs: _Candidates,
                 mus: _Candidates) -> tuple[np.ndarray, np.ndarray]:
    """One W, Z or tt̄ event in each of ``rows``, from the single-process toy recipes."""
    cands, met_x, met_y = event_candidates(process, rng, len(rows))
    for kind, target in (("jet", jets), ("egamma", egs), ("muon", mus)):
        local, pt, eta, phi = cands[kind]
        target.add(rows[local], pt, eta, phi)
    return met_x, met_y


def _measure_and_merge(rng: Rng, out: np.ndarray, m: ZeroBiasModel, n_f: np.ndarray, jets: _Candidates,
                       egs: _Candidates, mus: _Candidates) -> tuple[np.ndarray, np.ndarray]:
    """The L1 measurement of the remaining candidates, merged into the slots; the jets' MET terms."""
    n = len(out)
    rows, pt, eta, phi = jets.arrays()
    noise = np.sqrt(m.jet_stochastic ** 2 * pt + (m.jet_constant * pt) ** 2 + n_f[rows] * m.jet_pileup_noise ** 2)
    reco = np.maximum(pt + noise * rng.standard_normal(len(pt)), 0.0)
    mx = -np.bincount(rows, weights=(reco - pt) * np.cos(phi), minlength=n)
    my = -np.bincount(rows, weights=(reco - pt) * np.sin(phi), minlength=n)
    keep = (reco >= m.jet_pt_min) & (np.abs(eta) < m.jet_eta_max)
    _merge(out, "jet", rows[keep], reco[keep], eta[keep], phi[keep])
    rows, pt, eta, phi = egs.arrays()
    u = rng.random(len(pt))
    reco = pt + np.hypot(m.eg_stochastic * np.sqrt(pt), m.eg_constant * pt) * rng.standard_normal(len(pt))
    keep = ((u < _turn_on(pt, m.eg_eff_max, m.eg_eff_pt50, m.eg_eff_width)) & (reco > m.eg_pt_min)
            & (np.abs(eta) < m.eg_eta_max))
    _merge(out, "egamma", rows[keep], reco[keep], eta[keep], phi[keep])
    # muons: found with the turn-on's efficiency, some twice (ghosts); pT from the bending, 1/pT
    rows, pt, eta, phi = mus.arrays()
    found = (rng.random(len(pt)) < _turn_on(pt, m.mu_eff_max, m.mu_eff_pt50, m.mu_eff_width)) & (
        np.abs(eta) < m.mu_eta_max)
    found = np.flatnonzero(found)
    ghost = found[rng.random(len(found)) < m.mu_ghost_prob]
    both = np.concatenate([found, ghost])
    rows, pt, eta, phi = rows[both], pt[both], eta[both], phi[both]
    reco = l1_muon_pt(rng, pt, m)
    keep = reco > m.mu_pt_min
    _merge(out, "muon", rows[keep], reco[keep], eta[keep], phi[keep])
    return mx, my


def l1_muon_pt(rng: Rng, pt: np.ndarray, model: ZeroBiasModel | None = None) -> np.ndarray:
    """The L1 muon system's pT for muons of true ``pt`` (GeV): it measures the bending, 1/pT,
    smeared by ``mu_resolution`` (a ``mu_tail_fraction`` by ``mu_tail_resolution``); a bend
    too small to measure (or of the wrong sign) reads ``mu_pt_max``.

        >>> reco = l1_muon_pt(np.random.default_rng(1), np.full(100_000, 20.0))
        >>> round(float(np.median(reco)), 0), float(reco.max())
        (20.0, 255.0)
    """
    m = model or ZeroBiasModel()
    pt = np.asarray(pt, dtype=np.float64)
    width = np.where(rng.random(len(pt)) < m.mu_tail_fraction, m.mu_tail_resolution, m.mu_resolution)
    inv = (1.0 + width * rng.standard_normal(len(pt))) / np.maximum(pt, 1e-9)
    return np.where(inv > 1.0 / m.mu_pt_max, 1.0 / np.maximum(inv, 1e-12), m.mu_pt_max)


def _merge(out: np.ndarray, kind: str, rows: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> None:
    """Merge candidates (any order) into the slots of ``kind``, which hold pT-ordered objects."""
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


def _merge_sorted(out: np.ndarray, sl: slice, rows: np.ndarray, new: np.ndarray) -> None:
    """Merge ``new`` (``[3, len(rows), C]``: pT, η, φ; pT 0 is none) into the pT-ordered slots ``sl``
    of ``rows`` (unique), keeping the highest.

    One sort per row of integer keys: a non-negative float32's bits order like the float, so
    (bits << 5 | column) sorts by pT, ties by column, and the column says where to gather η, φ.
    """
    width = sl.stop - sl.start
    held = out[rows, sl, :]
    pt = np.concatenate([held[:, :, 0], new[0].astype(np.float32)], axis=1)
    eta = np.concatenate([held[:, :, 1], new[1].astype(np.float32)], axis=1)
    phi = np.concatenate([held[:, :, 2], new[2].astype(np.float32)], axis=1)
    assert pt.shape[1] <= 32
    key = (pt.view(np.int32).astype(np.int64) << 5) | np.arange(pt.shape[1])
    col = (np.sort(key, axis=1)[:, ::-1][:, :width] & 31).astype(np.intp)
    out[rows, sl, 0] = np.take_along_axis(pt, col, axis=1)
    out[rows, sl, 1] = np.take_along_axis(eta, col, axis=1)
    out[rows, sl, 2] = np.take_along_axis(phi, col, axis=1)
