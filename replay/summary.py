"""A file's content at a glance: what ``darktrigger inspect`` prints.

    >>> from darktrigger.replay.generators.toy import ToyGenerator
    >>> from darktrigger.replay.readers import open_events
    >>> from darktrigger.replay.storage import write_events
    >>> from darktrigger.replay.summary import format_summary, summarize
    >>> gen = ToyGenerator()
    >>> write_events("events.h5", gen.generate("sm_mix", 1000, seed=1),
    ...              provenance=gen.provenance("sm_mix", 1))
    1000
    >>> info = summarize(open_events("events.h5"))
    >>> info["events"], info["format"], info["processes"]
    (1000, 'native', {'qcd': 330, 'wjets': 591, 'zjets': 77, 'ttbar': 2})
    >>> lines = format_summary(info).splitlines()
    >>> lines[:3]
    ['file      events.h5',
     'format    native — darktrigger native HDF5 (chunked, compressed, with provenance)',
     'events    1,000']
    >>> lines[-5:]
    ['type     objects/evt   mean pT  lead med  lead p90  lead p99    max pT  (GeV)',
     'met            1.000      22.0      19.0      44.5      67.3      96.4',
     'egamma         0.261      30.4      31.8      44.5      63.5     108.2',
     'muon           0.234      30.9      32.4      48.1      88.8      95.7',
     'jet            1.723      26.8      27.1      49.1      83.7     122.4']

Streams over the file chunk by chunk, so any size works. Quantiles of the leading
objects' pT come from a fine logarithmic histogram (0.1 GeV – 100 TeV, 2 % wide bins).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from darktrigger.replay.events import LABEL_NAMES, SLOT_TYPES, SLOTS, EventBatch
from darktrigger.replay.readers import EventReader

_EDGES = np.geomspace(0.1, 1e5, 700)


def _quantiles(hist: np.ndarray, qs: tuple[float, ...]) -> list[float | None]:
    total = hist.sum()
    if total == 0:
        return [None for _ in qs]
    cdf = np.cumsum(hist) / total
    centres = np.sqrt(_EDGES[:-1] * _EDGES[1:])
    return [round(float(centres[min(int(np.searchsorted(cdf, q)), len(centres) - 1)]), 2) for q in qs]


class _Accumulator:
    def __init__(self) -> None:
        self.n = 0
        self.occupied = np.zeros(len(SLOT_TYPES), np.int64)
        self.truth: Counter[int] = Counter()
        self.weight_sum = 0.0
        self.kinds = [k for k in SLOTS]
        self.lead_hist = {k: np.zeros(len(_EDGES) - 1, np.int64) for k in self.kinds}
        self.n_objects = {k: 0 for k in self.kinds}
        self.pt_sum = {k: 0.0 for k in self.kinds}
        self.pt_max = {k: 0.0 for k in self.kinds}
        self.extra: dict[str, list[float]] = {}  # name -> [min, sum, max, n]
        self.schema: dict[str, Any] | None = None

    def add(self, batch: EventBatch) -> None:
        if self.schema is None:
            self.schema = {n: {"dtype": str(np.dtype(d)), "shape": ["N", *s]}
                           for n, (d, s) in batch.schema().items()}
        self.n += len(batch)
        pt = batch.objects[:, :, 0]
        self.occupied += (pt > 0).sum(axis=0)
        labels, counts = np.unique(batch["truth"], return_counts=True)
        self.truth.update(dict(zip(labels.tolist(), counts.tolist(), strict=True)))
        self.weight_sum += float(batch["weight"].sum(dtype=np.float64))
        for kind, sl in SLOTS.items():
            block = pt[:, sl]
            filled = block[block > 0]
            self.n_objects[kind] += len(filled)
            self.pt_sum[kind] += float(filled.sum(dtype=np.float64))
            if len(filled):
                self.pt_max[kind] = max(self.pt_max[kind], float(filled.max()))
            lead = block[:, 0]
            self.lead_hist[kind] += np.histogram(lead[lead > 0], _EDGES)[0]
        for name in batch.extra_names:
            col = batch[name].astype(np.float64)
            if len(col) == 0:
                continue
            acc = self.extra.setdefault(name, [np.inf, 0.0, -np.inf, 0])
            acc[0] = min(acc[0], float(col.min()))
            acc[1] += float(col.sum())
            acc[2] = max(acc[2], float(col.max()))
            acc[3] += len(col)

    def result(self) -> dict[str, Any]:
        n = max(self.n, 1)
        occupancy = [
            {"slot": i, "type": t, "occupancy": round(float(self.occupied[i]) / n, 4)}
            for i, t in enumerate(SLOT_TYPES)
        ]
        pt_summary = {}
        for kind in self.kinds:
            med, p90, p99 = (None if q is None else min(q, round(self.pt_max[kind], 2))
                             for q in _quantiles(self.lead_hist[kind], (0.5, 0.9, 0.99)))
            pt_summary[kind] = {
                "objects": self.n_objects[kind],
                "objects_per_event": round(self.n_objects[kind] / n, 3),
                "mean_pt_gev": round(self.pt_sum[kind] / self.n_objects[kind], 2) if self.n_objects[kind] else None,
                "max_pt_gev": round(self.pt_max[kind], 2),
                "leading_pt_median_gev": med,
                "leading_pt_p90_gev": p90,
                "leading_pt_p99_gev": p99,
            }
        return {
            "events": self.n,
            "schema": self.schema or {},
            "processes": {LABEL_NAMES.get(k, str(k)): v for k, v in sorted(self.truth.items())},
            "weight_sum": self.weight_sum,
            "occupancy": occupancy,
            "pt": pt_summary,
            "columns": {k: {"min": v[0], "mean": v[1] / v[3], "max": v[2]} for k, v in self.extra.items()},
        }


def summarize(reader: EventReader) -> dict[str, Any]:
    """Stream ``reader`` once and return the summary (a JSON-ready dict)."""
    acc = _Accumulator()
    for batch in reader:
        acc.add(batch)
    out: dict[str, Any] = {"file": str(reader.path), "format": reader.name, "description": reader.description}
    out.update(acc.result())
    out["metadata"] = reader.metadata()
    out["skipped"] = {"count": reader.skipped.count, "examples": reader.skipped.examples}
    return out


def format_summary(info: dict[str, Any]) -> str:
    """The human-readable text of a summary."""
    lines = [
        f"file      {info['file']}",
        f"format    {info['format']} — {info['description']}",
        f"events    {info['events']:,}",
    ]
    prov = info.get("metadata", {}).get("provenance")
    if prov:  # the short, scalar part; the full provenance is in --json
        shown = {k: v for k, v in sorted(prov.items()) if isinstance(v, (str, int, float)) and len(str(v)) < 40}
        lines.append("provenance " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        recipe = prov.get("recipe")
        if isinstance(recipe, dict) and recipe.get("recipe"):  # a generator recipe: its filter's efficiency
            eff, err = recipe.get("filter_efficiency") or {}, recipe.get("filter_efficiency_error") or {}
            lines.append(f"recipe    {recipe['recipe']}: pile-up μ {recipe.get('pileup')}, filter on "
                         f"{recipe.get('filter_level')}, efficiency " + ", ".join(
                             f"{k} {v:.4f} ± {err.get(k, float('nan')):.4f}" for k, v in eff.items()))
    meta = info.get("metadata", {})
    if meta.get("objects") == "l1":  # which objects a NanoAOD file gave
        hw = meta.get("hardware_values") or []
        lines.append(f"objects   L1 ({', '.join(meta.get('collections', []))}), bunch crossing 0; MET "
                     f"from {meta.get('met')}; " + (f"hardware values of {', '.join(hw)}" if hw else
                                                    "floats put on the hardware grids"))
    elif meta.get("objects") == "offline":
        lines.append("objects   offline (Muon, Electron, Photon, Jet, MET)")
    if info["processes"]:
        lines.append("processes " + ", ".join(f"{k}: {v:,}" for k, v in info["processes"].items()))
    lines.append("schema    " + ", ".join(
        f"{k} {v['dtype']}[{', '.join(map(str, v['shape']))}]" for k, v in info["schema"].items()))
    lines.append("")
    lines.append("slot occupancy (fraction of events with pT > 0)")
    occ = info["occupancy"]
    for kind, sl in SLOTS.items():
        vals = " ".join(f"{o['occupancy']:.3f}" for o in occ[sl])
        lines.append(f"  {kind:<7} {vals}")
    lines.append("")
    lines.append(f"{'type':<8}{'objects/evt':>12}{'mean pT':>10}{'lead med':>10}{'lead p90':>10}{'lead p99':>10}{'max pT':>10}  (GeV)")
    for kind, s in info["pt"].items():
        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f}"
        lines.append(f"{kind:<8}{s['objects_per_event']:>12.3f}{f(s['mean_pt_gev']):>10}{f(s['leading_pt_median_gev']):>10}"
                     f"{f(s['leading_pt_p90_gev']):>10}{f(s['leading_pt_p99_gev']):>10}{f(s['max_pt_gev']):>10}")
    if info["columns"]:
        lines.append("")
        for name, s in info["columns"].items():
            lines.append(f"column {name:<12} min {s['min']:.4g}  mean {s['mean']:.4g}  max {s['max']:.4g}")
    sk = info["skipped"]
    if sk["count"]:
        lines.append("")
        lines.append(f"skipped {sk['count']} bad event(s): " + "; ".join(sk["examples"]))
    return "\n".join(lines)
