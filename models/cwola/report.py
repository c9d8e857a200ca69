"""What a CWoLa hunt writes: the window × efficiency table, the JSON report, the plots,
and the chosen window's classifier as a model directory.

    >>> from darktrigger.models.cwola.hunt import HuntConfig, run_hunt
    >>> from darktrigger.replay.generators import GENERATORS
    >>> batch = next(GENERATORS.get("toy")().generate("qcd_dijet", 20_000, seed=1,
    ...                                                batch_size=20_000))
    >>> result = run_hunt(batch, HuntConfig(windows=[(3216.0, 3737.0)], efficiencies=(0.1,),
    ...                                     folds=3, inner_folds=1, epochs=2,
    ...                                     min_sideband_events=100))
    >>> print(format_table(result).splitlines()[-1])
    best: window 1 (signal region 3216–3737 GeV), ε = 0.1: ... σ local, ... σ global (500 null toys, 2 looks (windows × efficiencies))
    >>> sorted(write_report(result, "hunt-out"))
    ['json', 'model', 'significance_plot', 'table', 'window_1']

``write_report`` makes, in the output directory:

==========================  ==================================================================
``hunt.json``               settings, fit range, and per window: its regions, event counts, the
                            out-of-fold SR-vs-SB AUC, and per efficiency the selected events,
                            observed and predicted counts in the signal region, ``significance``
                            (with the fit's uncertainty), ``significance_uncertainty``,
                            ``significance_poisson`` (without it), ``p_value_local``,
                            ``significance_global`` (look-elsewhere effect over all windows ×
                            efficiencies; ``significance_global_is_lower_bound`` when no null
                            toy reached it), the fit, and ``error`` (a message naming the
                            window, when the fit failed); ``look_elsewhere``: the method
                            (null toys or trials factor), toys, trials; no NaN anywhere
``table.md``                the table printed by the command, as Markdown
``spectra/window_NN.png``   per window, one panel per efficiency: the selected m_jj spectrum,
                            the dijet fit outside the window and its prediction inside
``significance.png``        local significance against the window's centre, one line per ε,
                            with the local Z that is 2σ global (from the null toys)
``model/``                  the best window's fold models as one ``cwola_columns`` model
                            (:func:`darktrigger.models.load_model` reads it)
==========================  ==================================================================
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from darktrigger.models.cwola.hunt import NO_CUT, CutResult, HuntResult, WindowResult
from darktrigger.models.plots import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

REPORT_FILE = "hunt.json"
TABLE_FILE = "table.md"
MODEL_DIR = "model"


def _eff_label(eff: float) -> str:
    return "ε = 1 (no cut)" if eff >= NO_CUT else f"ε = {eff:g}"


def _global(c: CutResult) -> str:
    if c.significance_global is None:
        return "—"
    return f"{'≥ ' if c.significance_global_is_bound else ''}{c.significance_global:.2f}"


def _cell(c: CutResult) -> str:
    if c.error is not None:
        return "fit failed"
    assert c.significance is not None
    assert c.predicted is not None
    return (f"{c.significance:+.2f} ± {c.significance_uncertainty or 0.0:.2f} "
            f"({c.observed} / {c.predicted:.1f}), global {_global(c)}")


def describe_look_elsewhere(result: HuntResult) -> str:
    """How the global significances were made, in a few words."""
    le = result.look_elsewhere
    looks = f"{le.get('trials', '?')} looks (windows × efficiencies)"
    if le.get("method") == "null toys":
        return f"{le['toys']} null toys, {looks}"
    if le:
        return f"trials factor over {looks}, {le.get('why', '')}"
    return "not computed"


def format_table(result: HuntResult, markdown: bool = False) -> str:
    """Window × efficiency: ``Z ± ΔZ (observed / predicted), global Z`` in the signal region.

    A window or fit that failed shows as text, and its message follows the table.
    """
    effs = [NO_CUT, *result.config.efficiencies]
    head = ["window", "signal region (GeV)", "events SR / SB", "AUC SR vs SB",
            *(_eff_label(e) for e in effs)]
    rows: list[list[str]] = []
    notes: list[str] = []
    for w in result.windows:
        lo, hi = w.window.signal_region
        ev = w.events
        base = [str(w.window.index), f"{lo:.0f}–{hi:.0f}",
                f"{ev['signal_region']:,} / {ev['low_sideband'] + ev['high_sideband']:,}",
                "—" if w.sr_vs_sb_auc is None else f"{w.sr_vs_sb_auc:.3f}"]
        if w.error is not None:
            rows.append(base + ["skipped"] * len(effs))
            notes.append(w.error)
            continue
        rows.append(base + [_cell(c) for c in w.cuts])
        notes += [c.error for c in w.cuts if c.error is not None]
    best = result.best()
    tail = [f"best: {best[0].window.label}, {_eff_label(best[1].efficiency)}: "
            f"{best[1].significance:+.2f} σ local, {_global(best[1])} σ global "
            f"({describe_look_elsewhere(result)})"] if best else ["best: no window with a fit"]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines + [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
                         + [f"{tail[0]}"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(wd) for h, wd in zip(head, widths, strict=True))]
    out += ["  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out + [f"note: {n}" for n in notes] + tail)


def _finite_or_none(value: Any) -> Any:
    """JSON without NaN/inf: a non-finite float becomes None (only fit parameters can be)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


# -- plots --------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_window(w: WindowResult, path: str | Path) -> Path:
    """One panel per efficiency: selected m_jj (points), the fit (line) outside the window,
    its prediction inside (dashed), the signal region shaded."""
    cols = 2
    rows = math.ceil(len(w.cuts) / cols)
    fig = _figure(5.2 * cols, 3.6 * rows)
    edges = np.asarray(w.window.edges)
    centres = np.sqrt(edges[1:] * edges[:-1])
    lo, hi = w.window.signal_region
    for i, c in enumerate(w.cuts):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axvspan(lo, hi, color="gold", alpha=0.3, label="signal region")
        filled = c.counts > 0
        ax.errorbar(centres[filled], c.counts[filled], yerr=np.sqrt(c.counts[filled]), fmt="o",
                    markersize=3, color="black", label=f"selected ({c.selected:,})")
        if c.fit is not None:
            mu = c.fit.expected()
            ax.stairs(np.where(c.fit.fitted, mu, np.nan), edges, color="tab:blue", baseline=None,
                      label="dijet fit (outside)")
            ax.stairs(np.where(c.fit.fitted, np.nan, mu), edges, color="tab:blue", baseline=None,
                      linestyle="--", label="prediction (inside)")
            title = f"{_eff_label(c.efficiency)}: {c.significance:+.2f} σ"
        else:
            title = f"{_eff_label(c.efficiency)}: fit failed"
        ax.set_yscale("log")
        ax.set_xlabel("m_jj [GeV]")
        ax.set_ylabel("events / bin")
        ax.set_title(title, fontsize="medium")
        if i == 0:
            ax.legend(fontsize="x-small")
    fig.suptitle(w.window.label)
    return save_figure(fig, path)


def plot_significance(result: HuntResult, path: str | Path) -> Path:
    """Local significance against the signal region's centre, one line per efficiency."""
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    effs = [NO_CUT, *result.config.efficiencies]
    for k, eff in enumerate(effs):
        xs, ys, es = [], [], []
        for w in result.windows:
            if w.error is not None or k >= len(w.cuts):
                continue
            c = w.cuts[k]
            if c.significance is None:
                continue
            xs.append(math.sqrt(w.window.signal_region[0] * w.window.signal_region[1]))
            ys.append(c.significance)
            es.append(c.significance_uncertainty or 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=_eff_label(eff))
    for z, style in ((3.0, ":"), (5.0, "--")):
        ax.axhline(z, color="grey", linestyle=style, linewidth=0.8)
    z2 = result.look_elsewhere.get("local_z_for_global_2sigma")
    if z2 is not None:
        ax.axhline(z2, color="black", linestyle="-.", linewidth=1.0,
                   label=f"2σ global ({result.look_elsewhere['toys']} null toys): {z2:.2f}σ local")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel("signal-region centre m_jj [GeV]")
    ax.set_ylabel("local significance [σ]")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return save_figure(fig, path)

def report_dict(result: HuntResult) -> dict[str, Any]:
    """The JSON report (see the module docs)."""
    return _finite_or_none(result.to_dict())


def write_report(result: HuntResult, out_dir: str | Path, *, plots: bool = True,
                 export: bool = True) -> dict[str, Path]:
    """Write the report files (module docs); their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    report = report_dict(result)
    best = result.best()
    if export and best is not None and best[0].model is not None:
        model_dir = best[0].model.save(out / MODEL_DIR)
        report["model"] = {"path": str(model_dir), "window": best[0].window.index}
        written["model"] = model_dir
    path = out / REPORT_FILE
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    written["json"] = path
    table = out / TABLE_FILE
    table.write_text(format_table(result, markdown=True) + "\n", encoding="utf-8")
    written["table"] = table
    if plots:
        for w in result.windows:
            if w.error is None:
                written[f"window_{w.window.index}"] = plot_window(
                    w, out / "spectra" / f"window_{w.window.index:02d}.png")
        written["significance_plot"] = plot_significance(result, out / "significance.png")
    return written
