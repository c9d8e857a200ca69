"""``make bench``: run the benchmarks and rewrite BENCHMARKS.md.

    $ python -m bench.run --out BENCHMARKS.md [--quick]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import io_gen, models_speed, monitoring, offline, pipeline, zero_bias
from bench.machine import describe

LIMITS = {
    "native HDF5 read (lz4": "Blosc-LZ4 decompression on one core (the reference row under it: "
                            "h5py alone on the same file) plus the per-batch value checks (NaN/inf, "
                            "pT >= 0, |φ| <= π); write with --compression none where read speed "
                            "matters more than disk",
    "native HDF5 read (none": "the per-batch value checks (NaN/inf, pT >= 0, |φ| <= π) on top of "
                             "h5py's own reading (the reference row under it)",
    "ADC2021 read (float32": "the class-column check and the copy that drops it, on top of the "
                             "value checks; both are whole-chunk numpy passes",
    "ADC2021 read (float64": "the float64 → float32 conversion on top of the float32 path",
    "AE ": "the network alone (net.onnx, the 'part:' row) takes most of it: two 75×32 "
           "matrix products an event, at the ~20 GMAC/s onnxruntime's MLAS gives one core here; "
           "the preprocessing kernel and the masked error come on top (models/neural/kernels.py)",
    "VAE ": "the encoder alone (net-mu2.onnx) plus the preprocessing kernel (the 'part:' rows); "
            "see models/neural/kernels.py",
    "toy generation, ttbar": "ranking ~11 jet candidates per event into slots",
    "toy generation, sm_mix": "copying the four sub-process batches together",
    "toy generation, ato4l": "two-level decay chain (A → XX → 4ℓ) with boosts",
}


def fmt(rate: float) -> str:
    if rate != rate:  # NaN
        return "n/a"
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k" if rate >= 1e4 else f"{rate:.0f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| what | N | rate | goal | met? |", "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        goal = f"≥ {fmt(r['goal'])} {r['unit']}" if r["goal"] else "—"
        ok = "" if not r["goal"] else ("yes" if r["rate"] >= r["goal"] else "no")
        out.append(f"| {r['what']} | {r['n']:,} | {fmt(r['rate'])} {r['unit']} | {goal} | {ok} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--quick", action="store_true", help="smaller samples (a smoke run)")
    parser.add_argument("--zero-bias", default=os.environ.get("DARKTRIGGER_ZERO_BIAS_PYTHIA"),
                        help="glob of Pythia zero_bias files: the Pythia-vs-toy section (bench/zero_bias.py) is "
                             "remade from them; without, its last committed result is used "
                             "(default: $DARKTRIGGER_ZERO_BIAS_PYTHIA)")
    args = parser.parse_args(argv)
    if args.zero_bias:
        files = sorted(glob.glob(args.zero_bias))
        if not files:
            parser.error(f"--zero-bias {args.zero_bias!r} matches no file")
        zero_bias.main(["--pythia", *files, "--out", str(Path(__file__).parent / "results" / "zero_bias.md"),
                        *(["--toy-events", "2e5"] if args.quick else [])])
    work = Path(tempfile.mkdtemp(prefix="darktrigger-bench-"))
    try:
        rows = io_gen.run(work, quick=args.quick)
        model_rows = models_speed.run(quick=args.quick)
        pipeline_section = pipeline.run(quick=args.quick)
        monitoring_section = monitoring.run(quick=args.quick)
        offline_section = offline.run(quick=args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run --out BENCHMARKS.md`); do not edit by hand.",
        "",
        *describe(),
        f"- command: `python -m bench.run --out {args.out}{' --quick' if args.quick else ''}`",
        "",
        "## Replay layer: readers and generators (one process)",
        "",
        *table(rows),
        "",
        "## Scoring throughput (one thread, batch 65536)",
        "",
        *table(model_rows),
        "",
    ]
    missed = [r for r in rows + model_rows if r["goal"] and r["rate"] < r["goal"]]
    if missed:
        lines += ["### Goals missed, and what limits them", ""]
        for r in missed:
            why = next((v for k, v in LIMITS.items() if r["what"].startswith(k)),
                       "not profiled; this figure moves with the machine's load (see the load average above)")
            lines.append(f"- {r['what']}: {fmt(r['rate'])} {r['unit']} — {why}.")
        lines.append("")
    lines += pipeline_section + monitoring_section + offline_section
    for extra in sorted(Path(__file__).parent.glob("results/*.md")):
        # sections too slow for every `make bench` (an hour of Pythia): made by their own
        # command, which each section names, and copied here as they are
        lines += [extra.read_text(encoding="utf-8"), ""]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
