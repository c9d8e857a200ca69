"""Replay-layer benchmarks: readers (native, ADC2021, Dark Machines) and generators.

Each figure is the best of a few repeats on one process (the readers are
single-threaded; Blosc is limited to one thread), whole files streamed through the
public reader API with its value checks on, as a user would.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("BLOSC_NTHREADS", "1")

import numpy as np  # noqa: E402

from darktrigger.replay import testing as spec_files  # noqa: E402
from darktrigger.replay.generators import GENERATORS  # noqa: E402
from darktrigger.replay.readers import open_events  # noqa: E402
from darktrigger.replay.storage import write_events  # noqa: E402


def best_rate(n: int, fn: Callable[[], Any], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def _generate_all(toy: Any, process: str, n: int) -> int:
    return sum(len(b) for b in toy.generate(process, n, seed=4, batch_size=65536))


def drain(path: Path) -> int:
    return sum(len(b) for b in open_events(path))


def raw_h5py(path: Path) -> int:
    """The floor under our reader: h5py reading the same datasets, no checks, no batches."""
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(path, "r") as f:
        datasets = list(f["events"].values())
        n = datasets[0].shape[0]
        for a in range(0, n, 65536):
            for ds in datasets:
                ds[a:a + 65536]
    return n


def run(work: Path, quick: bool = False) -> list[dict[str, Any]]:
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    n = 200_000 if quick else 1_000_000
    toy = GENERATORS.get("toy")()
    bkg = list(toy.generate("sm_mix", n, seed=1, batch_size=65536))
    for comp in ("lz4", "none"):
        path = work / f"native_{comp}.h5"
        write_events(path, bkg, compression=comp, provenance={"generator": "toy"})
        rate = best_rate(n, functools.partial(drain, path))
        rows.append({"what": f"native HDF5 read ({comp} compression, toy sm_mix)", "n": n,
                     "unit": "events/s", "rate": rate, "goal": 5e6})
        rows.append({"what": f"  reference: h5py alone, every column, 65536-event slices ({comp})", "n": n,
                     "unit": "events/s", "rate": best_rate(n, functools.partial(raw_h5py, path)), "goal": None})

    adc = work / "adc2021.h5"
    particles = spec_files.random_adc_particles(n, seed=2)
    spec_files.write_adc2021(adc, particles, dtype=np.float32)
    rows.append({"what": "ADC2021 read (float32, uncompressed)", "n": n, "unit": "events/s",
                 "rate": best_rate(n, lambda: drain(adc)), "goal": 5e6})
    adc64 = work / "adc2021_f64.h5"
    spec_files.write_adc2021(adc64, particles, dtype=np.float64)
    rows.append({"what": "ADC2021 read (float64, uncompressed)", "n": n, "unit": "events/s",
                 "rate": best_rate(n, lambda: drain(adc64)), "goal": 5e6})

    n_lines = 50_000 if quick else 200_000
    dm = spec_files.write_darkmachines(work / "chan1.csv", spec_files.random_dm_lines(n_lines, seed=3))
    rows.append({"what": "Dark Machines CSV parse (≈5 objects/line)", "n": n_lines, "unit": "lines/s",
                 "rate": best_rate(n_lines, lambda: drain(dm)), "goal": 3e5})

    n_toy = 100_000 if quick else 500_000
    for proc in toy.processes:
        if proc == "zero_bias":
            continue
        rate = best_rate(n_toy, functools.partial(_generate_all, toy, proc, n_toy))
        rows.append({"what": f"toy generation, {proc}", "n": n_toy, "unit": "events/s", "rate": rate, "goal": 1e6})
    # one event = one colliding bunch crossing at 2.0e34 (μ ≈ 56): the stream a menu is calibrated on
    n_zb = 200_000 if quick else 2_000_000
    rate = best_rate(n_zb, functools.partial(_generate_all, toy, "zero_bias", n_zb))
    rows.append({"what": "toy generation, zero_bias (bunch crossings, μ = 56)", "n": n_zb, "unit": "events/s",
                 "rate": rate, "goal": 1e6})

    pythia = GENERATORS.get("pythia")()
    n_py = 100 if quick else 500
    for proc in ("qcd", "ttbar", "ato4l"):
        t = time.perf_counter()
        first = 0
        t_first = 0.0
        total = 0
        # the filtered ato4l always makes its first 1000 accepted events (the filter-efficiency run)
        n_proc = max(n_py, 1000) if proc == "ato4l" else n_py
        for b in pythia.generate(proc, n_proc, seed=5, batch_size=100):
            total += len(b)
            if not first:
                first, t_first = len(b), time.perf_counter()
        t_end = time.perf_counter()
        whole = total / (t_end - t)
        note = ("generator-level lepton filter: ~half the tried events are vetoed" if proc == "ato4l"
                else f"after the first batch: {(total - first) / (t_end - t_first):.0f} events/s")
        rows.append({"what": f"Pythia 8 + detector, {proc} (whole call incl. start-up; {note})",
                     "n": total, "unit": "events/s", "rate": whole, "goal": None})
    return rows
