"""Scoring throughput of the neural scorers: AE and ``vae:mu2``, torch and onnxruntime.

One thread, batch 65536 events, best of 10 after a warm-up (every case taken in turn,
round after round), through the public scoring API (``load_model(...).score(batch)``,
which chunks internally), on a model trained briefly on toy ``sm_mix`` (the weights do
not change the speed). Row format as :func:`bench.io_gen.run`.

The "part:" rows time the pieces of the onnxruntime backend's score alone, in the same
rounds and chunks as ``OnnxScorer`` (:data:`darktrigger.models.neural.onnx_backend.SCORE_CHUNK`): the
compiled preprocessing kernel (:mod:`darktrigger.models.neural.kernels`), each network (``net.onnx``) on
ready features, and the self-contained ``model.onnx`` that has the preprocessing in the
graph (what the split into kernel and ``net.onnx`` is measured against).

    $ python -m bench.models_speed            # prints the rows
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darktrigger.models import get_scorer, load_model
from darktrigger.models.neural import kernels
from darktrigger.models.neural.onnx_backend import SCORE_CHUNK, OnnxScorer, make_session
from darktrigger.replay.events import EventBatch
from darktrigger.replay.generators import GENERATORS

BATCH = 65536
GOALS = {"ae": {"onnxruntime": 3e6}, "vae:mu2": {"onnxruntime": 5e6}}
NAMES = {"ae": "AE 75-32-16-3-16-32-75 reconstruction error",
         "vae:mu2": "VAE Σμ² (encoder 75-32-16-4 only)"}


def best_rates(n: int, fns: list[Callable[[], Any]], repeats: int = 10) -> list[float]:
    """``n`` / best time of each of ``fns``, run round-robin (a warm-up, then ``repeats``
    rounds), so that other work on the machine weighs on all of them alike."""
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn()  # warm-up: first-run allocations, onnxruntime's arena
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return [n / b for b in best]


def trained_models(work: Path, n_train: int = 20_000) -> dict[str, Path]:
    """``ae`` and ``vae`` trained 2 epochs on toy ``sm_mix``, saved under ``work``."""
    toy = GENERATORS.get("toy")()
    train = next(toy.generate("sm_mix", n_train, seed=1, batch_size=n_train))
    out = {}
    for name in ("ae", "vae"):
        scorer = get_scorer(name)
        scorer.fit(train, epochs=2, batch_size=512, seed=0)
        out[name] = scorer.save(work / name)
    return out


def part_cases(dirs: dict[str, Path], batch: EventBatch) -> list[tuple[str, Callable[[], Any]]]:
    """(row name, timed function) for the parts of the onnxruntime backend's score, chunked
    as ``OnnxScorer`` chunks: the compiled preprocessing alone, each network (``net.onnx``)
    alone on ready features, and, for comparison, the self-contained ``model.onnx`` (the
    preprocessing inside the graph)."""
    flat = np.ascontiguousarray(batch.objects.reshape(len(batch), -1))
    chunks = [flat[i:i + SCORE_CHUNK] for i in range(0, len(flat), SCORE_CHUNK)]
    cases: list[tuple[str, Callable[[], Any]]] = []
    for spec in ("ae", "vae:mu2"):
        name, _, variant = spec.partition(":")
        scorer = load_model(dirs[name], "onnxruntime", variant=variant or None, threads=1)
        assert isinstance(scorer, OnnxScorer)
        assert scorer.pre is not None
        pre = scorer.pre
        feeds = [{"features": kernels.features(c, pre.shift, pre.scale)[0]} for c in chunks]
        if spec == "ae":
            cases.append(("preprocessing kernel alone (numba: pT^¼, η, cos φ, sin φ, masks)",
                          partial(_each, partial(_features, pre), chunks)))
        cases.append((f"{NAMES[spec]}, network alone (net.onnx) on ready features, onnxruntime",
                      partial(_each, partial(_run, scorer.session), feeds)))
        whole = make_session(dirs[name] / "model.onnx", 1)
        cases.append((f"{NAMES[spec]}, self-contained model.onnx (preprocessing in the graph), onnxruntime",
                      partial(_each, partial(_run_objects, whole), chunks)))
    return cases


def _each(fn: Callable[[Any], Any], items: list[Any]) -> None:
    for item in items:
        fn(item)


def _features(pre: Any, chunk: np.ndarray) -> None:
    kernels.features(chunk, pre.shift, pre.scale)


def _run(session: Any, feed: dict[str, np.ndarray]) -> None:
    session.run(None, feed)


def _run_objects(session: Any, chunk: np.ndarray) -> None:
    session.run(None, {"objects": chunk})


def run(quick: bool = False) -> list[dict[str, Any]]:
    """AE and vae:mu2, each with torch and onnxruntime (one thread), then the parts of
    the ONNX graph timed alone (:func:`part_cases`)."""
    repeats = 3 if quick else 10
    toy = GENERATORS.get("toy")()
    batch = next(toy.generate("sm_mix", BATCH, seed=2, batch_size=BATCH))
    rows: list[dict[str, Any]] = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="darktrigger-models-bench-") as tmp:
            dirs = trained_models(Path(tmp), 5_000 if quick else 20_000)
            cases = [(spec, backend) for spec in ("ae", "vae:mu2")
                     for backend in ("torch", "onnxruntime")]
            fns: list[Callable[[], Any]] = []
            for spec, backend in cases:
                name, _, variant = spec.partition(":")
                scorer = load_model(dirs[name], backend, variant=variant or None, threads=1)
                fns.append(partial(scorer.score, batch))
            parts = part_cases(dirs, batch)
            rates = best_rates(BATCH, fns + [fn for _, fn in parts], repeats)
    finally:
        torch.set_num_threads(before)
    for (spec, backend), rate in zip(cases, rates[:len(cases)], strict=True):
        rows.append({"what": f"{NAMES[spec]}, {backend}, batch {BATCH}, 1 thread",
                     "n": BATCH, "unit": "events/s", "rate": rate, "goal": GOALS[spec].get(backend)})
    for (what, _), rate in zip(parts, rates[len(cases):], strict=True):
        rows.append({"what": f"part: {what}, batch {BATCH}, 1 thread",
                     "n": BATCH, "unit": "events/s", "rate": rate, "goal": None})
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    for row in run():
        goal = f"goal {row['goal'] / 1e6:.0f} M" if row["goal"] else ""
        print(f"{row['what']:<75} {row['rate'] / 1e6:6.2f} M {row['unit']}  {goal}")
    print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
