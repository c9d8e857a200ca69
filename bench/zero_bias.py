"""Pythia vs toy zero bias: every object seed's rate at 2.0e34 from both, and their ratio.

    $ python -m bench.zero_bias --pythia /work/data/zero_bias/zb_*.h5 --out bench/results/zero_bias.md

The Pythia sample is weighted (``darktrigger generate --generator pythia --process zero_bias``:
weights in Hz, see replay/generators/pythia_zero_bias.py); the toy's is generated here
(``--toy-events``, default 2,000,000 crossings). A seed's rate is the project's weighted
estimate: Σw(fired)/Σw × the colliding-crossing rate (28.6 MHz), its error
√(Σ wᵢ²(xᵢ − p̂)²)/Σw × the crossing rate; n_eff = (Σw)²/Σw². The object seeds are those of
the example menu at run time (every seed that is not an anomaly or zero-bias seed), each
before prescale. The total is the rate of crossings that fire any of them.

    >>> import numpy as np
    >>> from bench.zero_bias import weighted_rate
    >>> rate, err = weighted_rate(np.array([True, False, False, False]), np.ones(4), 4.0)
    >>> rate, round(err, 3)
    (1.0, 0.866)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darktrigger.daq.trigger.menu import Menu
from darktrigger.daq.trigger.menus import example_menu
from darktrigger.daq.trigger.seeds import Seed
from darktrigger.replay.events import LABEL_NAMES, EventBatch
from darktrigger.replay.lhc import LHCConditions

log = logging.getLogger(__name__)
NOT_OBJECT = ("anomaly", "zero_bias")


def weighted_rate(fired: np.ndarray, weight: np.ndarray, crossing_rate_hz: float) -> tuple[float, float]:
    """(rate, error) in Hz: Σw(fired)/Σw × crossing rate and its standard error (module docs)."""
    w = np.asarray(weight, dtype=np.float64)
    x = np.asarray(fired, dtype=np.float64)
    total = w.sum()
    p = float((w * x).sum() / total)
    var = float((w ** 2 * (x - p) ** 2).sum()) / total ** 2
    return p * crossing_rate_hz, float(np.sqrt(var)) * crossing_rate_hz


def object_seeds(menu_path: Path | None = None) -> list[Seed]:
    """The example menu's object and energy-sum seeds (no anomaly, no zero-bias seed)."""
    menu = Menu.from_yaml(menu_path or example_menu())
    return [menu.seed(n) for n in menu.names if menu.seed(n).seed_type not in NOT_OBJECT]


@dataclass
class SeedRates:
    """Per seed: rate and error (Hz) and the weighted fired flags' share per truth label."""

    names: list[str]
    rates: np.ndarray
    errors: np.ndarray
    total: tuple[float, float]
    n_events: int
    n_eff: float
    by_label: list[dict[str, float]]


def seed_rates(batches: Iterable[EventBatch], seeds: Sequence[Seed], crossing_rate_hz: float) -> SeedRates:
    """Weighted rates of ``seeds`` (and of their OR) over all events of ``batches``."""
    fired_parts: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    for b in batches:
        fired_parts.append(np.stack([s.fires(b) for s in seeds], axis=1))
        weights.append(b["weight"].astype(np.float64))
        truths.append(b["truth"])
    fired = np.concatenate(fired_parts)
    w = np.concatenate(weights)
    truth = np.concatenate(truths)
    rates, errors, by_label = [], [], []
    for j in range(len(seeds)):
        r, e = weighted_rate(fired[:, j], w, crossing_rate_hz)
        rates.append(r)
        errors.append(e)
        share = {}
        wf = w * fired[:, j]
        for lab in np.unique(truth):
            share[LABEL_NAMES.get(int(lab), str(lab))] = float(wf[truth == lab].sum() / max(wf.sum(), 1e-300))
        by_label.append(share)
    total = weighted_rate(fired.any(axis=1), w, crossing_rate_hz)
    return SeedRates([s.name for s in seeds], np.array(rates), np.array(errors), total, len(w),
                     float(w.sum() ** 2 / (w ** 2).sum()), by_label)


#: leading-object spectra compared in the note to the toy's author: (name, slot, thresholds GeV)
SPECTRA: tuple[tuple[str, int, tuple[float, ...]], ...] = (
    ("leading L1 muon pT", 5, (3, 5, 7, 10, 15, 22, 30)),
    ("second L1 muon pT", 6, (3, 5, 7, 10, 15)),
    ("leading L1 e/γ ET", 1, (5, 10, 20, 30, 36, 50)),
    ("second L1 e/γ ET", 2, (5, 10, 12, 20, 25)),
    ("leading L1 jet pT", 9, (30, 60, 100, 150, 180, 250)),
    ("ETMHF (MET)", 0, (30, 50, 70, 90, 100, 120)),
)


def spectra(batches: Iterable[EventBatch], crossing_rate_hz: float) -> dict[str, list[tuple[float, float, float]]]:
    """Per spectrum of :data:`SPECTRA` (and HT): (threshold, rate Hz, error Hz) of 'object ≥ threshold'."""
    from darktrigger.daq.trigger.seeds import scalar_ht

    values: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in SPECTRA}
    values["HT (jets > 30, |η| < 2.4)"] = []
    weights: list[np.ndarray] = []
    for b in batches:
        for name, slot, _ in SPECTRA:
            values[name].append(b.objects[:, slot, 0].astype(np.float64))
        values["HT (jets > 30, |η| < 2.4)"].append(scalar_ht(b.objects))
        weights.append(b["weight"].astype(np.float64))
    w = np.concatenate(weights)
    cuts = {name: cut for name, _, cut in SPECTRA} | {"HT (jets > 30, |η| < 2.4)": (100, 200, 280, 360, 500)}
    out = {}
    for name, parts in values.items():
        v = np.concatenate(parts)
        out[name] = [(t, *weighted_rate(v >= t, w, crossing_rate_hz)) for t in cuts[name]]
    return out


def read(paths: Sequence[Path]) -> Iterable[EventBatch]:
    from darktrigger.replay.readers import open_events

    for p in paths:
        yield from open_events(p)


def toy_batches(n: int, seed: int = 11) -> Iterable[EventBatch]:
    from darktrigger.replay.generators import GENERATORS

    yield from GENERATORS.get("toy")().generate("zero_bias", n, seed=seed, batch_size=262_144)


def fmt_khz(rate: float, err: float) -> str:
    return f"{rate / 1e3:.2f} ± {err / 1e3:.2f}"


def section(pythia: SeedRates, toy: SeedRates | None, *, command: str, seconds: float,
            pythia_files: Sequence[Path]) -> list[str]:
    lhc = LHCConditions()
    lines = [
        "## Zero bias at 2.0e34: Pythia (weighted) vs toy, per object seed of the example menu",
        "",
        f"Rates in kHz before prescale, at L = {lhc.luminosity:.1e} cm⁻²s⁻¹, μ = {lhc.pileup:.1f}, "
        f"{lhc.crossing_rate_hz / 1e6:.2f} MHz of colliding crossings; ± is the statistical error "
        "(Σw² for Pythia). Pythia: " + ", ".join(p.name for p in pythia_files)
        + f" ({pythia.n_events:,} crossings, n_eff {pythia.n_eff:,.0f}); toy: "
        + (f"{toy.n_events:,} crossings." if toy else "not run."),
        "",
        "| seed | Pythia (kHz) | toy (kHz) | toy / Pythia | within ×2 | Pythia's rate comes from |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for j, name in enumerate(pythia.names):
        src = ", ".join(f"{k} {v:.0%}" for k, v in sorted(pythia.by_label[j].items(), key=lambda kv: -kv[1])
                        if v >= 0.05)
        if toy is not None and name in toy.names:
            k = toy.names.index(name)
            ratio = toy.rates[k] / pythia.rates[j] if pythia.rates[j] > 0 else float("inf")
            ok = "yes" if 0.5 <= ratio <= 2.0 else "**no**"
            lines.append(f"| {name} | {fmt_khz(pythia.rates[j], pythia.errors[j])} | "
                         f"{fmt_khz(toy.rates[k], toy.errors[k])} | {ratio:.2f} | {ok} | {src} |")
        else:
            lines.append(f"| {name} | {fmt_khz(pythia.rates[j], pythia.errors[j])} | — | — | — | {src} |")
    total = f"| any object seed (OR) | {fmt_khz(*pythia.total)} | "
    if toy is not None:
        ratio = toy.total[0] / pythia.total[0] if pythia.total[0] > 0 else float("inf")
        total += f"{fmt_khz(*toy.total)} | {ratio:.2f} | {'yes' if 0.5 <= ratio <= 2 else '**no**'} | |"
    else:
        total += "— | — | — | |"
    lines += [total, "", f"- command: `{command}` ({seconds:.0f} s)",
              "- Pythia sample: `darktrigger generate --generator pythia --process zero_bias --jobs 1 --events 30000 "
              "--part-events 30000 --seed S` for S = 2026…2035 (one file each, 6–13 min of one shared core per "
              "file: 40–90 crossings/s), weights in Hz (replay/generators/pythia_zero_bias.py).",
              "- What drives each rate (Pythia): SingleMu22 heavy-flavour and decay-in-flight muons with the L1 "
              "1/pT tail, from QCD and from the pile-up of minimum-bias crossings; DoubleMu mostly one muon "
              "and its ghost; SingleEG/DoubleEG π⁰ photons of 30–120 GeV jets (no isolation in the object "
              "block: SingleIsoEG30er2p1 is a non-isolated SingleEG30er2p1 here); jets and HTT hard QCD "
              "above 120 GeV; ETMHF pile-up MET (ΣET resolution) plus QCD mismeasurement.",
              "- Statistical errors above 20 %: DoubleMu_15_7 and ETMHF100 (their few minimum-bias / "
              "low-p̂T crossings carry large weights); more minimum-bias crossings (the generator's "
              "`allocation` option) or more files bring them down.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pythia", type=Path, nargs="+", required=True, help="Pythia zero_bias file(s)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown section here")
    parser.add_argument("--toy-events", type=float, default=2e6, help="toy crossings (0: no toy)")
    parser.add_argument("--menu", type=Path, default=None, help="menu YAML (default: the example menu)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    seeds = object_seeds(args.menu)
    rate_hz = LHCConditions().crossing_rate_hz
    py = seed_rates(read(args.pythia), seeds, rate_hz)
    toy = seed_rates(toy_batches(int(args.toy_events)), seeds, rate_hz) if args.toy_events > 0 else None
    command = "python -m bench.zero_bias " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = section(py, toy, command=command, seconds=time.perf_counter() - start, pythia_files=args.pythia)
    text = "\n".join(lines)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
