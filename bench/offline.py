"""Offline scoring in one process and on Dask ``local:2``: ``darktrigger score`` over toy
zero-bias files with a VAE, events/s and what Dask costs (daq/offline.py).

    $ python -m bench.offline [--quick]

Both runs score the same chunks (262,144 rows a task) and write the same output file, bit
for bit (tests/test_dask.py checks it); the client reads each chunk again and writes it with
its scores, so it is a third process beside the two workers on this 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from darktrigger.daq.offline import DaskExecutor, LocalExecutor, ModelRef, score_files
from darktrigger.models import get_scorer
from darktrigger.replay.generators.toy import ToyGenerator
from darktrigger.replay.storage import write_events


def run(quick: bool = False) -> list[str]:
    n_files, per_file = (4, 250_000) if quick else (10, 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="darktrigger-bench-offline-"))
    try:
        gen = ToyGenerator()
        files = []
        for seed in range(n_files):
            path = work / f"zb{seed}.h5"
            write_events(path, gen.generate("zero_bias", per_file, seed=100 + seed))
            files.append(str(path))
        vae = get_scorer("vae")
        vae.fit(next(gen.generate("zero_bias", 50_000, seed=7, batch_size=50_000)), epochs=2)
        vae.save(work / "vae")
        model = [ModelRef("vae", str(work / "vae"))]
        n = n_files * per_file

        t0 = time.perf_counter()
        score_files(files, model, work / "one.h5", executor=LocalExecutor(), progress=False)
        t_one = time.perf_counter() - t0

        t0 = time.perf_counter()
        executor = DaskExecutor("local:2")
        t_start = time.perf_counter() - t0
        try:
            t1 = time.perf_counter()
            score_files(files, model, work / "dask.h5", executor=executor, progress=False)
            t_dask = time.perf_counter() - t1
        finally:
            executor.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate_one, rate_dask = n / t_one, n / t_dask
    return [
        "## Offline scoring: one process and Dask local:2 (`darktrigger score`, VAE, onnxruntime)",
        "",
        f"{n:,} toy zero-bias crossings in {n_files} native files, 262,144 rows a task; "
        "`python -m bench.offline`.",
        "",
        "| executor | wall s | crossings/s | vs one process |",
        "| --- | ---: | ---: | ---: |",
        f"| this process | {t_one:.1f} | {rate_one / 1e6:.2f} M | 1.00 |",
        f"| Dask local:2 (2 worker processes) | {t_dask:.1f} | {rate_dask / 1e6:.2f} M | {t_one / t_dask:.2f} |",
        f"| Dask local:2, with its {t_start:.1f} s start-up | {t_dask + t_start:.1f} | "
        f"{n / (t_dask + t_start) / 1e6:.2f} M | {t_one / (t_dask + t_start):.2f} |",
        "",
        "Both write the same events and scores (tests/test_dask.py checks it bit for bit). What Dask costs here: the cluster's start-up, one model "
        "load per worker, and the client, which reads every chunk again and writes it with its "
        "scores (serial, on the same two cores as the workers). On a machine with more cores, or "
        "a cluster, the workers scale and the client's read-and-write (a few M rows/s) is the limit.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M crossings instead of 10M")
    args = parser.parse_args(argv)
    print("\n".join(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
