"""The four-parameter dijet function, its binned likelihood fit, and local significances.

The smooth QCD dijet spectrum of the bump hunt (CWoLa hunting, arXiv 1805.02664):

    f(x) = p0 (1 − x)^p1 / x^(p2 + p3 ln x),     x = m_jj / √s

:func:`fit_dijet` fits it to a histogram of m_jj with a Poisson (binned) likelihood,
by iminuit's MIGRAD, leaving out the bins of the signal-region window; the result
(:class:`DijetFit`) predicts the background in any set of bins with its uncertainty
from the fit's covariance, and :func:`significance` turns observed and predicted
counts into a local significance.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> edges = np.geomspace(2000.0, 6000.0, 41)                     # GeV
    >>> mu = expected_counts(edges, (400.0, 10.0, 5.0, 0.1))        # ~21k events
    >>> counts = rng.poisson(mu)
    >>> window = (edges[15], edges[21])
    >>> fit = fit_dijet(counts, edges, exclude=window, where="window 1")
    >>> b, db = fit.predict(window)
    >>> n = int(counts[15:21].sum())
    >>> bool(abs(n - b) < 4 * np.hypot(np.sqrt(b), db))
    True
    >>> round(significance(150, 100.0, 0.0), 2), round(significance(150, 100.0, 10.0), 2)
    (4.65, 3.17)

The fit works in a centred, better-conditioned basis, ln f = c0 + c1 ln(1 − x) + c2 u
+ c3 u² with u = ln x − ln x_ref (x_ref the middle of the fitted range); (p0..p3) and
their covariance follow linearly. Expected counts are integrals of f over each bin
(5-point Gauss–Legendre in x), not f at the bin centre: the spectrum falls by orders of
magnitude across a wide bin. Start values come from a weighted linear least-squares
fit of ln(counts) (exact for this function, up to the Poisson noise), so MIGRAD starts
near the minimum; a fit that still does not converge is a :class:`FitError` naming
``where``, never a NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from darktrigger.replay.errors import DarkTriggerError

log = logging.getLogger(__name__)

SQRT_S_GEV = 13_600.0  #: √s of the Pythia samples (GeV); the x of the dijet function
PARAM_NAMES = ("p0", "p1", "p2", "p3")
N_PARAMS = 4
#: bins with events needed in the fitted range: more than the four parameters
MIN_FILLED_BINS = 6
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(5)
_MAX_EXP = 700.0  # exp() of more overflows float64


class FitError(DarkTriggerError, RuntimeError):
    """A dijet fit that cannot be done or did not converge; the message names the window."""


def dijet_function(x: np.ndarray, p0: float, p1: float, p2: float, p3: float) -> np.ndarray:
    """f(x) = p0 (1 − x)^p1 / x^(p2 + p3 ln x), for 0 < x < 1.

        >>> float(dijet_function(np.array([0.25]), 1.0, 10.0, 5.0, 0.1)[0]) > 0
        True
    """
    x = np.asarray(x, dtype=np.float64)
    lx = np.log(x)
    return p0 * np.exp(p1 * np.log1p(-x) - (p2 + p3 * lx) * lx)


def _nodes(edges: np.ndarray, sqrt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes ``[B, 5]`` in x and their weights (bin width folded in)."""
    x = np.asarray(edges, dtype=np.float64) / sqrt_s
    if x[0] <= 0 or x[-1] >= 1 or np.any(np.diff(x) <= 0):
        raise FitError(f"bin edges must rise strictly within (0, √s = {sqrt_s:g} GeV), "
                       f"got {edges[0]:g} … {edges[-1]:g} GeV")
    half, mid = 0.5 * np.diff(x), 0.5 * (x[1:] + x[:-1])
    return mid[:, None] + half[:, None] * _GL_NODES[None, :], half[:, None] * _GL_WEIGHTS[None, :]


def expected_counts(edges: Sequence[float] | np.ndarray, params: Sequence[float],
                    sqrt_s: float = SQRT_S_GEV) -> np.ndarray:
    """∫ f(x) dx over each bin of m_jj (edges in GeV): the expected counts ``[B]``.

        >>> expected_counts([2000.0, 3000.0, 4000.0], (1.0, 10.0, 5.0, 0.1)).round(2).tolist()
        [48.29, 3.49]
    """
    xs, ws = _nodes(np.asarray(edges, dtype=np.float64), sqrt_s)
    return np.asarray((dijet_function(xs, *params) * ws).sum(axis=1))


@dataclass
class DijetFit:
    """A converged fit: parameters, covariance, and what it predicts (counts per bin).

    ``edges`` GeV ``[B+1]``, ``counts`` ``[B]``, ``fitted`` bool ``[B]`` (the bins the
    likelihood used), ``params``/``errors`` the (p0..p3) values and their HESSE errors,
    ``deviance`` the Poisson deviance of the fitted bins over ``ndf`` degrees of freedom.
    """

    edges: np.ndarray
    counts: np.ndarray
    fitted: np.ndarray
    coef: np.ndarray        # (c0, c1, c2, c3), the centred basis
    cov: np.ndarray         # their covariance [4, 4]
    u_ref: float            # ln x_ref of the basis
    sqrt_s: float
    nll: float
    deviance: float
    ndf: int
    edm: float
    nfcn: int
    where: str = ""
    params: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        jac = _to_params_jacobian(self.u_ref)
        p = jac @ self.coef  # (ln p0, p1, p2, p3)
        p_cov = jac @ self.cov @ jac.T
        log_p0, p_err = p[0], np.sqrt(np.maximum(np.diag(p_cov), 0.0))
        p0 = math.exp(min(log_p0, _MAX_EXP))
        self.params = {"p0": p0, "p1": float(p[1]), "p2": float(p[2]), "p3": float(p[3])}
        self.errors = {"p0": p0 * float(p_err[0]), "p1": float(p_err[1]),
                       "p2": float(p_err[2]), "p3": float(p_err[3])}

    # -- predictions ----------------------------------------------------------------
    def expected(self, edges: np.ndarray | None = None) -> np.ndarray:
        """Expected counts in each bin (the fit's own bins by default)."""
        mu, _ = _model(self.coef, *_basis(self.edges if edges is None else edges, self.sqrt_s,
                                            self.u_ref))
        return mu

    def in_window(self, window: tuple[float, float]) -> np.ndarray:
        """bool ``[B]``: the bins that lie inside ``window`` (GeV; edges matched to 0.1 %)."""
        return _window_mask(self.edges, window)

    def predict(self, window: tuple[float, float] | np.ndarray) -> tuple[float, float]:
        """(b, σ_b): the background expected in the window's bins and its uncertainty
        from the fit's covariance (linear propagation)."""
        mask = window if isinstance(window, np.ndarray) else self.in_window(window)
        mu, dmu = _model(self.coef, *_basis(self.edges, self.sqrt_s, self.u_ref), grad=True)
        b = float(mu[mask].sum())
        g = dmu[mask].sum(axis=0)
        return b, float(math.sqrt(max(float(g @ self.cov @ g), 0.0)))

    def density(self, mjj: np.ndarray) -> np.ndarray:
        """The fitted spectrum in events per GeV at ``mjj`` (GeV), for plots."""
        x = np.asarray(mjj, dtype=np.float64) / self.sqrt_s
        u = np.log(x) - self.u_ref
        c = self.coef
        expo = np.minimum(c[0] + c[1] * np.log1p(-x) + c[2] * u + c[3] * u * u, _MAX_EXP)
        return np.exp(expo) / self.sqrt_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {"params": self.params, "errors": self.errors, "deviance": self.deviance,
                "ndf": self.ndf, "edm": self.edm, "calls": self.nfcn,
                "fitted_bins": int(self.fitted.sum()), "sqrt_s_gev": self.sqrt_s}


def _to_params_jacobian(u_ref: float) -> np.ndarray:
    """d(ln p0, p1, p2, p3)/d(c0, c1, c2, c3) (the map is linear)."""
    ell = u_ref
    return np.array([[1.0, 0.0, -ell, ell * ell],
                     [0.0, 1.0, 0.0, 0.0],
                     [0.0, 0.0, -1.0, 2.0 * ell],
                     [0.0, 0.0, 0.0, -1.0]])


def _basis(edges: np.ndarray, sqrt_s: float, u_ref: float) -> tuple[np.ndarray, np.ndarray]:
    """Per node: the design ``[B, 5, 4]`` (1, ln(1−x), u, u²) and the weights ``[B, 5]``."""
    xs, ws = _nodes(np.asarray(edges, dtype=np.float64), sqrt_s)
    u = np.log(xs) - u_ref
    design = np.stack([np.ones_like(xs), np.log1p(-xs), u, u * u], axis=-1)
    return design, ws


def _model(coef: np.ndarray, design: np.ndarray, ws: np.ndarray,
           grad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Expected counts ``[B]`` and, with ``grad``, their derivatives ``[B, 4]``."""
    f = np.exp(np.minimum(design @ coef, _MAX_EXP)) * ws
    mu = f.sum(axis=1)
    dmu = np.einsum("bk,bkj->bj", f, design) if grad else np.empty((0, N_PARAMS))
    return mu, dmu


def _window_mask(edges: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    tol = 1e-3 * (hi - lo)
    return (edges[:-1] >= lo - tol) & (edges[1:] <= hi + tol)


def _start_values(design: np.ndarray, ws: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of ln(n / Δx) on the bin-centre design: (coef, covariance)."""
    filled = counts > 0
    a = design[filled, 2, :]                       # the middle node of each bin
    y = np.log(counts[filled] / ws[filled].sum(axis=1))
    w = counts[filled].astype(np.float64)          # var(ln n) ≈ 1/n
    aw = a * w[:, None]
    cov = np.linalg.pinv(a.T @ aw)
    coef = cov @ (aw.T @ y)
    return coef, cov


def _covariance(coef: np.ndarray, design: np.ndarray, ws: np.ndarray,
                counts: np.ndarray) -> np.ndarray | None:
    """The inverse of the NLL's exact (analytic) Hessian at ``coef``; None if not positive
    definite. (Minuit's numerical HESSE is unreliable at correlations of 0.9999.)"""
    with np.errstate(all="ignore"):  # overflow shows as a non-finite Hessian, checked below
        f = np.exp(np.minimum(design @ coef, _MAX_EXP)) * ws           # [B, K]
        mu = np.maximum(f.sum(axis=1), 1e-300)
        dmu = np.einsum("bk,bkj->bj", f, design)                         # [B, 4]
        d2mu = np.einsum("bk,bki,bkj->bij", f, design, design)           # [B, 4, 4]
        hess = (np.einsum("b,bi,bj->ij", counts / mu**2, dmu, dmu)
                + np.einsum("b,bij->ij", 1.0 - counts / mu, d2mu))
    if not np.all(np.isfinite(hess)):
        return None
    try:
        np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        return None
    cov = np.linalg.inv(hess)
    return cov if np.all(np.isfinite(cov)) else None


def fit_dijet(counts: np.ndarray, edges: np.ndarray, *, exclude: tuple[float, float] | None = None,
              sqrt_s: float = SQRT_S_GEV, where: str = "dijet fit") -> DijetFit:
    """Fit the dijet function to binned ``counts`` (edges in GeV), leaving out the bins
    inside ``exclude`` (the signal-region window).

    Raises :class:`FitError` naming ``where`` when there are too few filled bins, MIGRAD
    does not converge, or the likelihood's Hessian at the minimum is not positive definite.
    The covariance is the inverse of that (analytic) Hessian.
    """
    from iminuit import Minuit

    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if counts.ndim != 1 or len(edges) != len(counts) + 1:
        raise FitError(f"{where}: need counts [B] and edges [B+1], got {counts.shape} and {edges.shape}")
    fitted = np.ones(len(counts), bool) if exclude is None else ~_window_mask(edges, exclude)
    n_filled = int((counts[fitted] > 0).sum())
    if n_filled < MIN_FILLED_BINS:
        raise FitError(f"{where}: only {n_filled} bin(s) with events outside the window "
                       f"({int(counts[fitted].sum())} events); the 4-parameter fit needs at least "
                       f"{MIN_FILLED_BINS}: select more events (a looser efficiency) or use wider bins")
    x_fit = edges / sqrt_s
    u_ref = float(0.5 * (math.log(x_fit[0]) + math.log(x_fit[-1])))
    design, ws = _basis(edges, sqrt_s, u_ref)
    d_fit, w_fit, n_fit = design[fitted], ws[fitted], counts[fitted]

    def nll(c: np.ndarray) -> float:
        mu, _ = _model(c, d_fit, w_fit)
        mu = np.maximum(mu, 1e-300)
        return float((mu - n_fit * np.log(mu)).sum())

    def grad(c: np.ndarray) -> np.ndarray:
        mu, dmu = _model(c, d_fit, w_fit, grad=True)
        return np.asarray(((1.0 - n_fit / np.maximum(mu, 1e-300))[:, None] * dmu).sum(axis=0))

    start, start_cov = _start_values(design[fitted], ws[fitted], n_fit)
    # MIGRAD works on whitened parameters θ = Lᵀc (L Lᵀ = the start's Fisher matrix):
    # the dijet parameters are correlated to 0.999+, and in θ they are nearly independent
    try:
        white = np.linalg.cholesky(np.linalg.inv(start_cov))
    except np.linalg.LinAlgError:  # a degenerate start (few bins): plain parameters
        white = np.eye(N_PARAMS)
    to_coef = np.linalg.inv(white.T)

    def nll_theta(t: np.ndarray) -> float:
        return nll(to_coef @ t)

    def grad_theta(t: np.ndarray) -> np.ndarray:
        return np.asarray(to_coef.T @ grad(to_coef @ t))

    m = Minuit(nll_theta, white.T @ start, grad=grad_theta, name=("t0", "t1", "t2", "t3"))
    m.errordef = Minuit.LIKELIHOOD
    m.errors = np.ones(N_PARAMS)
    m.strategy = 1
    m.migrad(iterate=5)
    if not m.valid:
        m.strategy = 2
        m.simplex().migrad(iterate=5)
    if not m.valid or not np.isfinite(m.fval):
        fmin = m.fmin
        why = "call limit reached" if fmin is not None and fmin.has_reached_call_limit else (
            "the estimated distance to the minimum stayed above tolerance"
            if fmin is not None and fmin.is_above_max_edm else "MIGRAD found no valid minimum")
        raise FitError(f"{where}: the dijet fit did not converge ({why}; {int(n_fit.sum())} events "
                       f"in {len(n_fit)} bins outside the window)")
    coef = to_coef @ np.array(m.values, dtype=np.float64)
    cov = _covariance(coef, d_fit, w_fit, n_fit)
    if cov is None:
        raise FitError(f"{where}: the dijet fit converged but its covariance is not positive "
                       f"definite (parameters not constrained by {int(n_fit.sum())} events)")
    mu, _ = _model(coef, d_fit, w_fit)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n_fit > 0, n_fit * np.log(n_fit / mu), 0.0)
    deviance = float(2.0 * (mu - n_fit + term).sum())
    return DijetFit(edges=edges, counts=counts, fitted=fitted, coef=coef, cov=cov, u_ref=u_ref,
                    sqrt_s=sqrt_s, nll=float(m.fval), deviance=deviance,
                    ndf=int(len(n_fit) - N_PARAMS), edm=float(m.fmin.edm) if m.fmin else 0.0,
                    nfcn=int(m.nfcn), where=where)


# -- significance ---------------------------------------------------------------------
def poisson_significance(n: float, b: float) -> float:
    """Signed local significance of ``n`` observed over ``b`` expected (likelihood ratio).

        >>> round(poisson_significance(130, 100.0), 2), round(poisson_significance(70, 100.0), 2)
        (2.87, -3.17)
    """
    if b <= 0:
        raise FitError(f"expected background must be positive, got {b}")
    term = n * math.log(n / b) if n > 0 else 0.0
    z2 = 2.0 * (term - (n - b))
    return math.copysign(math.sqrt(max(z2, 0.0)), n - b)


def significance(n: float, b: float, sigma_b: float) -> float:
    """Signed local significance of ``n`` over ``b ± sigma_b``: the profile likelihood
    ratio with the background's uncertainty as a Gaussian-like constraint (Cowan's
    Z with uncertainty, which is :func:`poisson_significance` when ``sigma_b`` = 0).
    """
    if b <= 0:
        raise FitError(f"expected background must be positive, got {b}")
    if sigma_b <= 0:
        return poisson_significance(n, b)
    s2 = sigma_b * sigma_b
    first = n * math.log(n * (b + s2) / (b * b + n * s2)) if n > 0 else 0.0
    second = (b * b / s2) * math.log1p(s2 * (n - b) / (b * (b + s2)))
    z2 = 2.0 * (first - second)
    return math.copysign(math.sqrt(max(z2, 0.0)), n - b)


def significance_spread(n: float, b: float, sigma_b: float) -> float:
    """How far the background fit's uncertainty alone moves the significance: half the
    difference of :func:`poisson_significance` at ``b − σ_b`` and ``b + σ_b``."""
    if sigma_b <= 0:
        return 0.0
    low = max(b - sigma_b, 1e-3 * b)
    return 0.5 * abs(poisson_significance(n, low) - poisson_significance(n, b + sigma_b))
