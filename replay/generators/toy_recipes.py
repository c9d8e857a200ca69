"""The single-process recipes of the toy generator: kinematics, particles, the L1 block.

Each recipe fills an ``_Event`` (particles of one kind — e/γ, μ, jet, τ, ν — with their
acceptance and efficiency) for ``n`` events; :func:`event_candidates` gives their true-level
objects without pile-up (the zero-bias toy, :mod:`darktrigger.replay.generators.toy_zero_bias`,
overlays them on crossings), and ``_make`` the ``[n, 19, 3]`` L1 block that
:class:`~darktrigger.replay.generators.toy.ToyGenerator` writes. The physics of each process
is described in :mod:`darktrigger.replay.generators.toy`.

    >>> import numpy as np
    >>> block, extra = _make("zjets", np.random.default_rng(1), 1000, pileup=0.7)
    >>> block.shape, extra
    ((1000, 19, 3), {})
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from darktrigger.replay.events import SLOT_MET, SLOTS

CHUNK = 16_384  #: events made per seeded chunk (the unit of reproducibility)
LUMI_EVENTS = 100_000  #: events per luminosity section in the ``lumi`` column
SQRT_S = 13_600.0  #: GeV, the x = mjj/√s of the dijet function
#: Fractions of ``sm_mix`` (the ADC2021 background composition), by sub-process.
SM_MIX_FRACTIONS: dict[str, float] = {"wjets": 0.592, "qcd": 0.338, "zjets": 0.067, "ttbar": 0.003}
#: Parameters (p1, p2, p3) of f(x) = (1−x)^p1 / x^(p2 + p3 ln x) for ``qcd_dijet`` mjj.
DIJET_PARAMS = (10.0, 5.0, 0.1)
DIJET_MJJ_RANGE = (2_000.0, 9_000.0)  #: GeV, support of the ``qcd_dijet`` mjj spectrum
DIJET_COLUMNS = ("mjj", "mj1", "mj2", "tau21_j1", "tau21_j2")

# particle kinds
E, MU, JET, NU, TAU = 0, 1, 2, 3, 4
_PT_MIN = {E: 3.0, MU: 3.0, JET: 15.0}
_ETA_MAX = {E: 2.5, MU: 2.4, JET: 4.7}
_SLOT_OF = {E: SLOTS["egamma"], MU: SLOTS["muon"], JET: SLOTS["jet"]}
_SINH_ETA_MAX = {k: math.sinh(v) for k, v in _ETA_MAX.items()}
TWO_PI = 2.0 * math.pi
_PI32 = np.float32(math.pi)
_PI32_BELOW = np.nextafter(_PI32, np.float32(0))  # the largest float32 below π
M_W, M_Z, M_TOP = 80.4, 91.19, 172.5

P4 = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (E, px, py, pz), each [n]
Rng = np.random.Generator


# -- kinematics ---------------------------------------------------------------------------
def _cos_sin(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos φ, sin φ in float32 (SIMD-fast; ample for L1 resolution)."""
    phi32 = phi.astype(np.float32)
    return np.cos(phi32), np.sin(phi32)


def _produce(rng: Rng, n: int, mass: float | np.ndarray, pt_scale: float, y_sigma: float) -> P4:
    """A parent of ``mass`` with pT ~ exp(pt_scale), φ uniform, rapidity ~ N(0, y_sigma)."""
    pt = rng.exponential(pt_scale, n)
    c, s = _cos_sin(rng.random(n) * TWO_PI - math.pi)
    ey = np.exp(rng.normal(0.0, y_sigma, n))
    half_mt = 0.5 * np.sqrt(np.square(mass) + pt * pt)
    return half_mt * (ey + 1.0 / ey), pt * c, pt * s, half_mt * (ey - 1.0 / ey)


def _decay(rng: Rng, parent: P4, m: float | np.ndarray, m1: float | np.ndarray = 0.0,
           m2: float | np.ndarray = 0.0) -> tuple[P4, P4]:
    """Isotropic two-body decay of ``parent`` (mass ``m``) into masses m1, m2, in the lab."""
    n = len(parent[0])
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), (n,))
    mm = m * m
    p = np.sqrt(np.maximum((mm - np.square(m1 + m2)) * (mm - np.square(np.subtract(m1, m2))), 0.0)) / (2 * m)
    cos_t = rng.random(n) * 2.0 - 1.0
    c, s = _cos_sin(rng.random(n) * TWO_PI - math.pi)
    pt = p * np.sqrt(1.0 - cos_t * cos_t)
    qx, qy, qz = pt * c, pt * s, p * cos_t
    pp = p * p
    e1 = np.sqrt(pp + np.square(m1)) if np.any(m1) else p
    e2 = np.sqrt(pp + np.square(m2)) if np.any(m2) else p
    return _boost(parent, m, (e1, qx, qy, qz)), _boost(parent, m, (e2, -qx, -qy, -qz))


def _boost(parent: P4, m: np.ndarray, v: P4) -> P4:
    """Boost ``v`` from the rest frame of ``parent`` (mass ``m``) to the lab."""
    pe, px, py, pz = parent
    gamma = pe / m
    inv_e = 1.0 / pe
    bx, by, bz = px * inv_e, py * inv_e, pz * inv_e
    bp = bx * v[1] + by * v[2] + bz * v[3]
    k = gamma * gamma / (gamma + 1.0) * bp + gamma * v[0]
    return gamma * (v[0] + bp), v[1] + k * bx, v[2] + k * by, v[3] + k * bz


def _scale(v: P4, z: np.ndarray) -> P4:
    return v[0] * z, v[1] * z, v[2] * z, v[3] * z


def _choose(rng: Rng, n: int, kinds: tuple[int, ...]) -> np.ndarray:
    """One of ``kinds`` per event, equally likely."""
    return np.asarray(kinds, dtype=np.int8)[rng.integers(0, len(kinds), n)]


@dataclass
class _Part:
    """One particle per event: pT [n] plus either (px, py, pz) or (η, φ); kind per event."""

    pt: np.ndarray
    kind: np.ndarray | int
    kinds: frozenset[int]  # the values ``kind`` can take
    in_met: bool
    px: np.ndarray | None = None
    py: np.ndarray | None = None
    pz: np.ndarray | None = None
    eta: np.ndarray | None = None
    phi: np.ndarray | None = None

    def accepted(self, k: int) -> np.ndarray:
        """Whether this particle is an L1 object of kind ``k``, per event."""
        ok = self.pt >= _PT_MIN[k]
        if self.eta is not None:
            ok &= np.abs(self.eta) < _ETA_MAX[k]
        else:
            assert self.pz is not None
            ok &= np.abs(self.pz) < self.pt * _SINH_ETA_MAX[k]
        if len(self.kinds) > 1:
            ok &= self.kind == k
        return ok

    def eta_phi(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.eta is not None:
            eta = self.eta[rows]
        else:  # asinh(pz/pT), written with log (SIMD in numpy) instead of arcsinh (not)
            assert self.pz is not None
            pz, pt = self.pz[rows], self.pt[rows]
            eta = np.copysign(np.log((np.sqrt(pt * pt + pz * pz) + np.abs(pz)) / pt), pz)
        if self.phi is not None:
            return eta, self.phi[rows]
        assert self.px is not None
        assert self.py is not None
        return eta, np.arctan2(self.py[rows], self.px[rows])


class _Event:
    """The particles of ``n`` events as columns, turned into the L1 block by :meth:`block`."""

    def __init__(self, rng: Rng, n: int) -> None:
        self.rng, self.n = rng, n
        self.parts: list[_Part] = []

    def add(self, v: P4, kind: int | np.ndarray, in_met: bool = True) -> None:
        """A final-state particle; a τ kind is decayed here (collinearly)."""
        kinds = frozenset([kind] if isinstance(kind, int) else np.flatnonzero(np.bincount(kind)).tolist())
        if TAU in kinds:
            is_tau = kind == TAU
            r = self.rng.random(self.n)
            u = self.rng.random(self.n)
            lep = r < 0.352
            z = np.where(is_tau, np.where(lep, 1.0 - np.sqrt(u), 0.2 + 0.8 * u), 1.0)
            visible = np.where(r < 0.178, E, np.where(lep, MU, JET)).astype(np.int8)
            kind = np.where(is_tau, visible, kind)
            kinds = (kinds - {TAU}) | {E, MU, JET}
            v = _scale(v, z)
        if kinds == {NU}:  # never seen: MET is minus the sum of what is
            return
        pt = np.sqrt(v[1] * v[1] + v[2] * v[2])
        self.parts.append(_Part(pt, kind, kinds, in_met, v[1], v[2], v[3]))

    def add_recoil(self, system: P4, eta_sigma: float = 2.0) -> None:
        """A jet with minus the transverse momentum of ``system`` (initial-state radiation)."""
        px, py = -system[1], -system[2]
        eta = self.rng.normal(0.0, eta_sigma, self.n)
        self.parts.append(_Part(np.sqrt(px * px + py * py), JET, frozenset([JET]), True,
                                px, py, eta=eta))

    def add_pileup(self, mean: float, max_jets: int = 4) -> None:
        """Poisson(``mean``) soft jets, balanced by unseen activity (left out of MET)."""
        count = np.minimum(self.rng.poisson(mean, self.n), max_jets)
        total = int(count.sum())
        rows = np.repeat(np.arange(self.n), count)
        rank = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        dense = np.zeros((3, max_jets, self.n))
        dense[0, rank, rows] = 15.0 + self.rng.exponential(8.0, total)
        dense[1, rank, rows] = self.rng.random(total) * 9.4 - 4.7
        dense[2, rank, rows] = self.rng.random(total) * TWO_PI - math.pi
        for j in range(int(count.max(initial=0))):
            self.parts.append(_Part(dense[0, j], JET, frozenset([JET]), False,
                                    eta=dense[1, j], phi=dense[2, j]))

    def block(self) -> np.ndarray:
        """The ``[n, 19, 3]`` float32 L1 block."""
        n = self.n
        out = np.zeros((n, 19, 3), dtype=np.float32)
        mx, my, sum_et = np.zeros(n), np.zeros(n), np.zeros(n)
        candidates: dict[int, list[tuple[_Part, np.ndarray]]] = {k: [] for k in _SLOT_OF}
        for part in self.parts:
            seen = None
            for k in part.kinds & _SLOT_OF.keys():
                ok = part.accepted(k)
                candidates[k].append((part, ok))
                seen = ok if seen is None else seen | ok
            if seen is None:
                continue
            sum_et += np.where(seen, part.pt, 0.0)
            if part.in_met:
                assert part.px is not None
                assert part.py is not None
                mx -= np.where(seen, part.px, 0.0)
                my -= np.where(seen, part.py, 0.0)
        for k, cands in candidates.items():
            if cands:
                self._fill(out, _SLOT_OF[k], cands)
        sigma = 2.0 + 0.6 * np.sqrt(sum_et)
        mx += sigma * self.rng.standard_normal(n)
        my += sigma * self.rng.standard_normal(n)
        out[:, SLOT_MET, 0] = np.sqrt(mx * mx + my * my)
        out[:, SLOT_MET, 2] = np.arctan2(my, mx)
        # float32(π) is above π: keep every φ strictly inside (-π, π) after rounding
        np.clip(out[:, :, 2], -_PI32_BELOW, _PI32_BELOW, out=out[:, :, 2])
        return out

    @staticmethod
    def _fill(out: np.ndarray, sl: slice, cands: list[tuple[_Part, np.ndarray]]) -> None:
        """Write the accepted candidates of one kind into slots ``sl``, highest pT first.

        A candidate's slot is its pT rank among the event's candidates (ties broken by
        candidate order), from pairwise comparisons: for the handful of candidates an
        event has, that is faster than ``argsort`` along rows.
        """
        cands = [(part, ok) for part, ok in cands if ok.any()]
        keys = [np.where(ok, part.pt, 0.0).astype(np.float32) for part, ok in cands]
        width = sl.stop - sl.start
        dest = out.reshape(-1)
        for i, (part, _) in enumerate(cands):
            rank = np.zeros(len(keys[i]), dtype=np.int8)
            for j in range(len(keys)):
                if j != i:
                    rank += ((keys[j] >= keys[i]) if j < i else (keys[j] > keys[i])).view(np.int8)
            rows = np.flatnonzero((keys[i] > 0) & (rank < width))
            if len(rows) == 0:
                continue
            flat = 3 * (rows * out.shape[1] + sl.start + rank[rows])
            dest[flat] = keys[i][rows]
            dest[flat + 1], dest[flat + 2] = part.eta_phi(rows)


# -- processes ----------------------------------------------------------------------------
# Each recipe fills an _Event for n events and returns extra float32 columns (or {}).
Recipe = Callable[[_Event, float], dict[str, np.ndarray]]


def _qcd(ev: _Event, pileup: float) -> dict[str, np.ndarray]:
    rng, n = ev.rng, ev.n
    mass = 40.0 * (1.0 + rng.pareto(3.0, n))
    system = _produce(rng, n, mass, 15.0, 1.2)
    j1, j2 = _decay(rng, system, mass)
    # a semileptonic heavy-flavour decay in 20 % of events: a soft lepton and a neutrino
    hf = rng.random(n) < 0.2
    z_lep = np.where(hf, rng.uniform(0.05, 0.4, n), 0.0)
    z_nu = np.where(hf, rng.uniform(0.0, 0.3, n), 0.0)
    ev.add(_scale(j1, 1.0 - z_lep - z_nu), JET)
    ev.add(_scale(j1, z_lep), _choose(rng, n, (E, MU)))
    ev.add(_scale(j1, z_nu), NU)
    ev.add(j2, JET)
    ev.add_recoil(system)
    ev.add_pileup(pileup)
    return {}


def _vjets(mass: float, width: float, daughters: Callable[[Rng, int], tuple[np.ndarray, np.ndarray]]) -> Recipe:
    def recipe(ev: _Event, pileup: float) -> dict[str, np.ndarray]:
        rng, n = ev.rng, ev.n
        m = np.maximum(mass + width * rng.standard_normal(n), 0.5 * mass)
        boson = _produce(rng, n, m, 15.0, 1.8)
        d1, d2 = _decay(rng, boson, m)
        k1, k2 = daughters(rng, n)
        ev.add(d1, k1)
        ev.add(d2, k2)
        ev.add_recoil(boson)
        ev.add_pileup(pileup)
        return {}

    return recipe


def _w_daughters(rng: Rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    return _choose(rng, n, (E, MU, TAU)), np.full(n, NU, np.int8)


def _z_daughters(rng: Rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    k = _choose(rng, n, (E, MU, TAU))
    return k, k


def _ttbar(ev: _Event, pileup: float) -> dict[str, np.ndarray]:
    rng, n = ev.rng, ev.n
    mtt = 2 * M_TOP + rng.exponential(150.0, n)
    system = _produce(rng, n, mtt, 40.0, 1.0)
    tops = _decay(rng, system, mtt, M_TOP, M_TOP)
    for top in tops:
        b, w = _decay(rng, top, M_TOP, 0.0, M_W)
        q1, q2 = _decay(rng, w, M_W)
        leptonic = rng.random(n) < 0.324
        ev.add(b, JET)
        ev.add(q1, np.where(leptonic, _choose(rng, n, (E, MU, TAU)), JET))
        ev.add(q2, np.where(leptonic, NU, JET))
    ev.add_recoil(system)
    ev.add_pileup(pileup)
    return {}


def _ato4l(ev: _Event, pileup: float) -> dict[str, np.ndarray]:
    rng, n = ev.rng, ev.n
    a = _produce(rng, n, 50.0, 30.0, 0.8)
    m1, m2 = rng.uniform(15.0, 24.0, n), rng.uniform(15.0, 24.0, n)
    for x, mx in zip(_decay(rng, a, 50.0, m1, m2), (m1, m2), strict=True):
        l1, l2 = _decay(rng, x, mx)
        flavour = _choose(rng, n, (E, MU))
        ev.add(l1, flavour)
        ev.add(l2, flavour)
    ev.add_recoil(a)
    ev.add_pileup(pileup)
    return {}


def _resonance(mass: float, pt_scale: float, k1: int, k2: int) -> Recipe:
    def recipe(ev: _Event, pileup: float) -> dict[str, np.ndarray]:
        parent = _produce(ev.rng, ev.n, mass, pt_scale, 1.2)
        d1, d2 = _decay(ev.rng, parent, mass)
        ev.add(d1, k1)
        ev.add(d2, k2)
        ev.add_recoil(parent)
        ev.add_pileup(pileup)
        return {}

    return recipe


@lru_cache(maxsize=1)
def _dijet_table() -> tuple[np.ndarray, np.ndarray]:
    """(CDF, mjj) on a log grid, for inverse-CDF sampling of the dijet function."""
    p1, p2, p3 = DIJET_PARAMS
    m = np.geomspace(*DIJET_MJJ_RANGE, 8192)
    x = m / SQRT_S
    f = (1 - x) ** p1 / x ** (p2 + p3 * np.log(x))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(m))])
    return cdf / cdf[-1], m


def _dijet(signal: bool) -> Recipe:
    """LHCO-like dijets: two back-to-back jets with mjj, jet masses and τ21.

    ``qcd_dijet``: mjj from the dijet function (:data:`DIJET_PARAMS`) above 2 TeV; jet
    masses 15 + Γ(1.3, 70) GeV, τ21 ~ Beta(6, 3.3) (mean 0.65), all independent of mjj
    and of each other; mj1 is the heavier jet. ``wprime_xy``: mjj ~ N(3500, 6 %), mj1 ~
    N(500, 10 %), mj2 ~ N(100, 10 %), τ21 ~ Beta(4, 7) (mean 0.36). The two jets have
    pT = mjj / (2 cosh(Δη/2)) (massless approximation), back to back in φ.
    """

    def recipe(ev: _Event, pileup: float) -> dict[str, np.ndarray]:
        rng, n = ev.rng, ev.n
        if signal:
            mjj = rng.normal(3500.0, 0.06 * 3500.0, n)
            ma, mb = rng.normal(500.0, 50.0, n), rng.normal(100.0, 10.0, n)
            ta, tb = rng.beta(4.0, 7.0, n), rng.beta(4.0, 7.0, n)
            deta = np.abs(rng.normal(0.0, 0.9, n))
        else:
            cdf, grid = _dijet_table()
            mjj = np.interp(rng.random(n), cdf, grid)
            ma, mb = 15.0 + rng.gamma(1.3, 70.0, n), 15.0 + rng.gamma(1.3, 70.0, n)
            ta, tb = rng.beta(6.0, 3.3, n), rng.beta(6.0, 3.3, n)
            deta = np.abs(rng.normal(0.0, 1.3, n))
        deta = np.minimum(deta, 2.6)
        swap = mb > ma
        mj1, mj2 = np.where(swap, mb, ma), np.where(swap, ma, mb)
        t1, t2 = np.where(swap, tb, ta), np.where(swap, ta, tb)
        pt = mjj / (2.0 * np.cosh(deta / 2.0))
        yb = rng.normal(0.0, 0.6, n)
        sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        phi = rng.random(n) * TWO_PI - math.pi
        c, s = _cos_sin(phi)
        for side in (1.0, -1.0):
            eta = yb + side * sign * deta / 2.0
            phi_j = phi if side > 0 else np.where(phi < 0, phi + math.pi, phi - math.pi)
            ev.parts.append(_Part(pt, JET, frozenset([JET]), True, side * pt * c, side * pt * s,
                                  eta=eta, phi=phi_j))
        ev.add_pileup(pileup)
        cols = {"mjj": mjj, "mj1": mj1, "mj2": mj2, "tau21_j1": t1, "tau21_j2": t2}
        return {k: v.astype(np.float32) for k, v in cols.items()}

    return recipe


RECIPES: dict[str, Recipe] = {
    "qcd": _qcd,
    "wjets": _vjets(M_W, 2.1, _w_daughters),
    "zjets": _vjets(M_Z, 2.5, _z_daughters),
    "ttbar": _ttbar,
    "ato4l": _ato4l,
    "lq_btau": _resonance(80.0, 30.0, JET, TAU),
    "h_tautau": _resonance(60.0, 30.0, TAU, TAU),
    "hpm_taunu": _resonance(60.0, 30.0, TAU, NU),
    "qcd_dijet": _dijet(signal=False),
    "wprime_xy": _dijet(signal=True),
}


def _make(process: str, rng: Rng, n: int, pileup: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    ev = _Event(rng, n)
    extra = RECIPES[process](ev, pileup)
    return ev.block(), extra


Flat = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (event, pT, η, φ) over objects


def event_candidates(process: str, rng: Rng, n: int) -> tuple[dict[str, Flat], np.ndarray, np.ndarray]:
    """``n`` events of ``process`` without pile-up, as true-level object candidates.

    Returns ``{"egamma" | "muon" | "jet": (event, pT, η, φ)}`` of the particles inside each
    kind's acceptance (not smeared: the caller measures them), and the calorimeter's MET
    (x, y): minus the vector sum of every visible particle with |η| < 5 except muons, so the
    neutrinos, the muons and what escapes. The zero-bias toy overlays these on crossings.

        >>> cands, mx, my = event_candidates("wjets", np.random.default_rng(1), 1000)
        >>> sorted(cands), len(mx)
        (['egamma', 'jet', 'muon'], 1000)
    """
    ev = _Event(rng, n)
    RECIPES[process](ev, 0.0)
    found: dict[int, list[Flat]] = {k: [] for k in _SLOT_OF}
    mx, my = np.zeros(n), np.zeros(n)
    for part in ev.parts:
        for k in part.kinds & _SLOT_OF.keys():
            rows = np.flatnonzero(part.accepted(k))
            if len(rows):
                eta, phi = part.eta_phi(rows)
                found[k].append((rows, part.pt[rows], eta, phi))
        if part.in_met and part.px is not None and part.py is not None:
            if part.eta is not None:
                inside = np.abs(part.eta) < 5.0
            else:
                assert part.pz is not None
                inside = np.abs(part.pz) < part.pt * math.sinh(5.0)
            in_calo = (part.kind != MU) & inside
            mx -= np.where(in_calo, part.px, 0.0)
            my -= np.where(in_calo, part.py, 0.0)
    names = {E: "egamma", MU: "muon", JET: "jet"}
    cands: dict[str, Flat] = {}
    for k, v in found.items():
        cols = [np.concatenate([f[i] for f in v]) if v else np.zeros(0) for i in range(4)]
        cands[names[k]] = (cols[0].astype(np.int64), cols[1], cols[2], cols[3])
    return cands, mx, my
