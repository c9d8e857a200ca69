"""The field's anomaly-detection metrics: ROC, AUC, TPR at fixed FPR, significance improvement.

Scores are "higher = more anomalous"; a cut selects ``score > threshold``, as the trigger
does. TPR at an FPR uses the same background quantile as a trigger threshold
(:mod:`darktrigger.models.thresholds`). Events may be weighted (background and each signal
by their own weights, relative): the ROC comes from weighted counts, the AUC is weighted,
and a sample expanded by integer weights gives exactly the same ROC points and AUC. An FPR
is reported only where the background sample resolves it: at least ``min_expected``
effective background events above the threshold (default 10, a ≈ 30 % statistical error
on the FPR; :func:`darktrigger.models.thresholds.resolves`). Below that the entry has
``"resolved": False``, ``None`` for every number and a ``note`` saying what the
sample can resolve.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> res = evaluate_scores(rng.normal(0, 1, 20_000), {"toy": rng.normal(2, 1, 5_000)})
    >>> round(res["signals"]["toy"]["auc"], 2)
    0.92
    >>> res["signals"]["toy"]["tpr_at_fpr"][3]["note"]
    'background sample too small: 20,000 events resolve FPR down to 5.0e-04'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from darktrigger.models.thresholds import MIN_EXPECTED_BKG as MIN_EXPECTED_BKG
from darktrigger.models.thresholds import (
    as_scores,
    as_weights,
    background_quantiles,
    effective_size,
    fraction_above,
    fraction_uncertainty,
    resolves,
    smallest_resolved_fpr,
    tail_size,
)
from darktrigger.replay.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_FPRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)
CL_1SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827


def _histograms(
    bkg_scores: Any, sig_scores: Any, bkg_weights: Any, sig_weights: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores (descending) and the background and signal weight at each."""
    b, s = as_scores(bkg_scores, "bkg_scores"), as_scores(sig_scores, "sig_scores")
    wb = as_weights(bkg_weights, b.size, "bkg_weights")
    ws = as_weights(sig_weights, s.size, "sig_weights")
    uniq, inv = np.unique(np.concatenate([b.astype(np.float64), s.astype(np.float64)]),
                          return_inverse=True)
    hb = np.bincount(inv[: b.size], weights=wb, minlength=uniq.size)
    hs = np.bincount(inv[b.size:], weights=ws, minlength=uniq.size)
    return uniq[::-1], hb[::-1], hs[::-1]


def roc_curve(
    bkg_scores: Any, sig_scores: Any, bkg_weights: Any = None, sig_weights: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)``, fpr[i] = fraction of background > thresholds[i].

    One point per distinct score, from (0, 0) at the highest score to (1, 1) at the last
    threshold, −inf; a background/signal tie gives a diagonal step (counted half in the AUC).

    >>> roc_curve([0.1, 0.4], [0.4, 0.8])
    (array([0. , 0. , 0.5, 1. ]), array([0. , 0.5, 1. , 1. ]), array([ 0.8,  0.4,  0.1, -inf]))
    """
    thr, hb, hs = _histograms(bkg_scores, sig_scores, bkg_weights, sig_weights)
    cb = np.concatenate([[0.0], np.cumsum(hb)])
    cs = np.concatenate([[0.0], np.cumsum(hs)])
    return cb / cb[-1], cs / cs[-1], np.append(thr, -np.inf)


def roc_auc(
    bkg_scores: Any, sig_scores: Any, bkg_weights: Any = None, sig_weights: Any = None
) -> float:
    """ROC AUC = P(signal score > background score) + ½ P(tie): the Mann–Whitney U / (n_s n_b).

    Unweighted, it is computed in integers and divided once, so it equals the brute-force
    pair count exactly; weighted, 2U is summed first and divided once too, so integer
    weights give exactly the AUC of the expanded sample (while the sums stay below 2⁵³).

    >>> roc_auc([0.1, 0.4], [0.4, 0.8])
    0.875
    """
    _, hb, hs = _histograms(bkg_scores, sig_scores, bkg_weights, sig_weights)
    below = hb.sum() - np.cumsum(hb)  # background strictly below each (descending) score
    if bkg_weights is None and sig_weights is None:
        twice_u = int(np.dot(hs.astype(np.int64), 2 * below.astype(np.int64) + hb.astype(np.int64)))
        return twice_u / (2 * int(hb.sum()) * int(hs.sum()))
    twice_u_w = float(np.dot(hs, 2 * below + hb))
    return twice_u_w / (2 * float(hb.sum()) * float(hs.sum()))


def auc_uncertainty(auc: float, n_sig: float, n_bkg: float) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from n_sig signal and n_bkg background."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_sig - 1) * (q1 - auc**2) + (n_bkg - 1) * (q2 - auc**2)) / (n_sig * n_bkg)
    return math.sqrt(max(var, 0.0))


def binomial_interval(k: float, n: float, cl: float = CL_1SIGMA) -> tuple[float, float]:
    """Clopper–Pearson (exact) interval of an efficiency k/n at confidence ``cl``.

    >>> [round(x, 4) for x in binomial_interval(0, 100)]
    [0.0, 0.0182]
    """
    from scipy.stats import beta  # only here: thresholds stay numpy-only

    if n <= 0 or not 0 <= k <= n:
        raise ConfigError(f"binomial_interval: expected 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = (1 - cl) / 2
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return lo, hi


def significance_improvement(
    eff_s: float, eff_b: float, eff_s_err: float = 0.0, eff_b_err: float = 0.0
) -> tuple[float, float]:
    """SI = ε_S/√ε_B and its error, the two (independent) errors propagated linearly.

    >>> significance_improvement(0.5, 1e-4, 0.01, 1e-5)
    (50.0, 2.69...)
    """
    for name, value in (("eff_s", eff_s), ("eff_b", eff_b)):
        if not 0 <= value <= 1:
            raise ConfigError(f"{name}: expected an efficiency in [0, 1], got {value}")
    if eff_b <= 0:
        raise ConfigError("eff_b: expected a background efficiency above 0 (SI divides by √ε_B)")
    si = eff_s / math.sqrt(eff_b)
    err = math.hypot(eff_s_err / math.sqrt(eff_b), 0.5 * eff_s * eff_b_err / eff_b**1.5)
    return si, err


def _check_fprs(fpr_targets: Sequence[float]) -> list[float]:
    fprs = [float(f) for f in fpr_targets]
    if not fprs or not all(0 < f < 1 for f in fprs):
        raise ConfigError(f"fpr_targets: expected FPRs between 0 and 1, got {list(fpr_targets)}")
    return fprs


def _unresolved_note(b: np.ndarray, wb: np.ndarray | None, min_expected: float) -> str:
    n_eff = effective_size(b.size, wb)
    size = f"{b.size:,} events" + ("" if wb is None else f" (effective {n_eff:,.0f})")
    return (f"background sample too small: {size} resolve FPR down to "
            f"{smallest_resolved_fpr(b, wb, min_expected):.1e}")


def tpr_at_fpr(
    bkg_scores: Any,
    sig_scores: Any,
    fpr_targets: Sequence[float] = DEFAULT_FPRS,
    *,
    bkg_weights: Any = None,
    sig_weights: Any = None,
    min_expected: float = MIN_EXPECTED_BKG,
) -> list[dict[str, Any]]:
    """Signal efficiency at each background efficiency (FPR) target, with binomial errors.

    Each entry: ``fpr_target``, ``resolved``, ``note``, ``threshold``, ``fpr`` (achieved,
    ≤ target), ``fpr_err``, ``n_bkg_above``, ``tpr``, ``tpr_err`` (sqrt(p(1−p)/n);
    weighted: :func:`~darktrigger.models.thresholds.fraction_uncertainty`),
    ``tpr_lo``/``tpr_hi`` (Clopper–Pearson 68 %, at the effective size), ``n_sig_above``;
    the numbers are None when not resolved. The FPR is the background's weighted fraction,
    the TPR the signal's, each by its own weights.

    >>> [e["tpr"] for e in tpr_at_fpr(np.arange(100.0), np.arange(50.0, 150.0), [0.1])]
    [0.6]
    """
    fprs = _check_fprs(fpr_targets)
    b, s = as_scores(bkg_scores, "bkg_scores"), as_scores(sig_scores, "sig_scores")
    wb = as_weights(bkg_weights, b.size, "bkg_weights")
    ws = as_weights(sig_weights, s.size, "sig_weights")
    nb_eff, ns_eff = effective_size(b.size, wb), effective_size(s.size, ws)
    thresholds = background_quantiles(b, fprs, wb)
    out: list[dict[str, Any]] = []
    for target, thr in zip(fprs, thresholds, strict=True):
        entry: dict[str, Any] = dict.fromkeys(
            ("threshold", "fpr", "fpr_err", "n_bkg_above", "tpr", "tpr_err", "tpr_lo", "tpr_hi",
             "n_sig_above"))
        entry |= {"fpr_target": target, "resolved": resolves(tail_size(b, wb, float(thr)), min_expected),
                  "note": ""}
        if not entry["resolved"]:
            entry["note"] = _unresolved_note(b, wb, min_expected)
            out.append(entry)
            continue
        fpr, nb_above = fraction_above(float(thr), b, wb)
        tpr, ns_above = fraction_above(float(thr), s, ws)
        lo, hi = binomial_interval(min(tpr * ns_eff, ns_eff), ns_eff)
        entry |= {
            "threshold": float(thr), "fpr": fpr, "fpr_err": _fraction_err(fpr, float(thr), b, wb, nb_eff),
            "n_bkg_above": nb_above, "tpr": tpr, "tpr_err": _fraction_err(tpr, float(thr), s, ws, ns_eff),
            "tpr_lo": lo, "tpr_hi": hi, "n_sig_above": ns_above,
        }
        out.append(entry)
    return out


def _fraction_err(p: float, threshold: float, scores: np.ndarray, weights: np.ndarray | None,
                  n_eff: float) -> float:
    """The standard deviation of the fraction ``p`` of events above ``threshold``."""
    if weights is None:
        return math.sqrt(p * (1 - p) / n_eff)
    above = weights[scores > threshold]
    return float(fraction_uncertainty(above.sum(), above @ above, weights.sum(), weights @ weights))


def _si_entry(tpr_entry: Mapping[str, Any]) -> dict[str, Any]:
    entry = {"fpr_target": tpr_entry["fpr_target"], "resolved": tpr_entry["resolved"],
             "note": tpr_entry["note"], "si": None, "si_err": None}
    if entry["resolved"] and not tpr_entry["fpr"] > 0:
        entry |= {"resolved": False, "note": "no background above the threshold (tied scores)"}
    if entry["resolved"]:
        si, err = significance_improvement(
            tpr_entry["tpr"], tpr_entry["fpr"], tpr_entry["tpr_err"], tpr_entry["fpr_err"])
        entry |= {"si": si, "si_err": err}
    return entry


def evaluate_scores(
    bkg: Any,
    signals: Mapping[str, Any],
    fprs: Sequence[float] = DEFAULT_FPRS,
    *,
    bkg_weights: Any = None,
    signal_weights: Mapping[str, Any] | None = None,
    min_expected: float = MIN_EXPECTED_BKG,
) -> dict[str, Any]:
    """All metrics of one model's scores, as a JSON-ready dict.

    ``{"n_bkg", "n_bkg_eff", "fpr_targets", "min_expected_bkg", "signals": {name:
    {"n_sig", "auc", "auc_err", "tpr_at_fpr": [...], "si": [...]}}}``; the lists follow
    ``fprs`` (see :func:`tpr_at_fpr`; ``si`` entries hold ``si``, ``si_err``, ``resolved``,
    ``note``).
    """
    if not signals:
        raise ConfigError("signals: expected at least one named signal sample, got none")
    fprs = _check_fprs(fprs)
    b = as_scores(bkg, "bkg")
    wb = as_weights(bkg_weights, b.size, "bkg_weights")
    nb_eff = effective_size(b.size, wb)
    result: dict[str, Any] = {"n_bkg": int(b.size), "n_bkg_eff": nb_eff, "fpr_targets": fprs,
                              "min_expected_bkg": min_expected, "signals": {}}
    for name, sig in signals.items():
        s = as_scores(sig, f"signals[{name!r}]")
        ws = as_weights((signal_weights or {}).get(name), s.size, f"signal_weights[{name!r}]")
        auc = roc_auc(b, s, wb, ws)
        ns_eff = effective_size(s.size, ws)
        tprs = tpr_at_fpr(b, s, fprs, bkg_weights=wb, sig_weights=ws, min_expected=min_expected)
        result["signals"][name] = {
            "n_sig": int(s.size), "auc": auc, "auc_err": auc_uncertainty(auc, ns_eff, nb_eff),
            "tpr_at_fpr": tprs, "si": [_si_entry(e) for e in tprs],
        }
        log.debug("signal %s: AUC %.4f", name, auc)
    return result


def _pm(value: float, err: float) -> str:
    """``value ± err`` with two significant digits on the error."""
    digits = 2 - math.floor(math.log10(err)) - 1 if err > 0 else 3
    digits = min(max(digits, 0), 7)
    return f"{value:.{digits}f} ± {err:.{digits}f}"


def _cell(entry: Mapping[str, Any], tpr_entry: Mapping[str, Any], si: bool) -> str:
    """A TPR or SI cell; with no signal above the threshold, the 68 % upper limit."""
    scale = 1 / math.sqrt(tpr_entry["fpr"]) if si else 1.0
    if tpr_entry["n_sig_above"] == 0:
        return f"< {tpr_entry['tpr_hi'] * scale:.2g}"
    return _pm(entry["si" if si else "tpr"], entry["si_err" if si else "tpr_err"])


def format_table(results_by_model: Mapping[str, Mapping[str, Any]], markdown: bool = False) -> str:
    """A side-by-side table: signal × model rows; AUC, TPR@FPR and SI@FPR columns.

    Baselines are just more models. No signal above a threshold reads ``< x`` (the
    Clopper–Pearson 68 % upper limit). Unresolved cells read ``—`` and are explained
    below the table.

    >>> rng = np.random.default_rng(1)
    >>> res = evaluate_scores(rng.normal(0, 1, 1000), {"toy": rng.normal(2, 1, 1000)}, [0.1])
    >>> print(format_table({"ae": res}, markdown=True).splitlines()[0])
    | signal | model | AUC | TPR@1e-01 | SI@1e-01 |
    """
    if not results_by_model:
        raise ConfigError("results_by_model: expected at least one model's results, got none")
    fprs: list[float] = []
    for res in results_by_model.values():
        fprs += [f for f in res["fpr_targets"] if f not in fprs]
    header = ["signal", "model", "AUC", *(f"TPR@{f:.0e}" for f in fprs),
              *(f"SI@{f:.0e}" for f in fprs)]
    signals: list[str] = []
    for res in results_by_model.values():
        signals += [s for s in res["signals"] if s not in signals]
    rows: list[list[str]] = []
    notes: dict[str, list[str]] = {}
    for sig in signals:
        for model, res in results_by_model.items():
            m = res["signals"].get(sig)
            if m is None:
                rows.append([sig, model, *["n/a"] * (len(header) - 2)])
                continue
            cells = [sig, model, _pm(m["auc"], m["auc_err"])]
            for key in ("tpr_at_fpr", "si"):
                by_fpr = {e["fpr_target"]: e for e in m[key]}
                tpr_by_fpr = {e["fpr_target"]: e for e in m["tpr_at_fpr"]}
                for f in fprs:
                    e = by_fpr.get(f)
                    if e is None:
                        cells.append("n/a")
                    elif not e["resolved"]:
                        cells.append("—")
                        notes.setdefault(e["note"], []).append(model)
                    else:
                        cells.append(_cell(e, tpr_by_fpr[f], key == "si"))
            rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in [header, ["-" * w for w in widths], *rows]]
    if notes:
        lines += ["", *(f"— {n} ({', '.join(dict.fromkeys(ms))})" for n, ms in notes.items())]
    return "\n".join(lines)


#: the Dark Machines unsupervised challenge's result columns (arXiv 2105.14027): TPR at these FPRs
DM_CSV_FPRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
DM_CSV_HEADER: tuple[str, ...] = ("Signal", "Model", "Chan", "AUC", "1e-2", "1e-3", "1e-4")


def dm_challenge_rows(results_by_model: Mapping[str, Mapping[str, Any]], channel: str = "chan1",
                      ) -> list[dict[str, Any]]:
    """One row per (signal, model) in the Dark Machines challenge's CSV layout
    (:data:`DM_CSV_HEADER`): the AUC and the TPR at FPR 1e-2, 1e-3, 1e-4 (``nan`` where the
    background sample does not resolve that FPR, or it was not evaluated).

    >>> rng = np.random.default_rng(1)
    >>> res = evaluate_scores(rng.normal(0, 1, 5000), {"toy": rng.normal(2, 1, 1000)})
    >>> row = dm_challenge_rows({"ae": res})[0]
    >>> row["Signal"], row["Model"], row["Chan"], round(row["AUC"], 2), round(row["1e-2"], 2), row["1e-4"]
    ('toy', 'ae', 'chan1', 0.92, 0.38, nan)
    """
    rows = []
    for model, res in results_by_model.items():
        for signal, entry in res["signals"].items():
            row: dict[str, Any] = {"Signal": signal, "Model": model, "Chan": channel, "AUC": entry["auc"]}
            for target, column in zip(DM_CSV_FPRS, DM_CSV_HEADER[4:], strict=True):
                match = [e for e in entry["tpr_at_fpr"] if math.isclose(e["fpr_target"], target)]
                row[column] = match[0]["tpr"] if match and match[0]["resolved"] else math.nan
            rows.append(row)
    return rows


def write_dm_csv(path: Any, results_by_model: Mapping[str, Mapping[str, Any]], channel: str = "chan1") -> int:
    """Write :func:`dm_challenge_rows` to ``path`` as CSV (header :data:`DM_CSV_HEADER`,
    ``nan`` for unresolved cells); returns the number of rows."""
    import csv
    from pathlib import Path

    rows = dm_challenge_rows(results_by_model, channel)
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(DM_CSV_HEADER))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
