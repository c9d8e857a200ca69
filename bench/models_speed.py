"""Scoring throughput of the neural scorers: AE and ``vae:mu2``, torch and onnxruntime.

One thread, batch 65536 events, best of 10 after a warm-up (every case taken in turn,
round after round), through the public scoring API (``load_model(...).score(batch)``,
which chunks internally), on a model trained briefly on toy ``sm_mix`` (the weights do
not change the speed). Row format as :func:`bench.io_gen.run`.

Three more rows time the two parts of the ONNX graph alone, in the same rounds and
chunks as ``OnnxScorer`` (:data:`models.onnx_backend.SCORE_CHUNK`): each network from
features preprocessed beforehand (what the graph costs without its preprocessing), and
onnxruntime's Cos and Sin of the 19 φ (its Cos/Sin are scalar ``std::cos``/``std::sin``).
The graph can be no faster than its network alone, and the Cos/Sin row bounds how much
the φ part of the preprocessing can take off.

    $ python -m bench.models_speed            # prints the rows
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import get_scorer, load_model
from models.onnx_backend import SCORE_CHUNK, session_options
from models.training import ONNX_OPSET, TorchScorer
from replay.events import EventBatch
from replay.generators import GENERATORS

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


class _CosSin(nn.Module):
    def forward(self, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cos(phi), torch.sin(phi)


def _onnx_chunks(module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str],
                 path: Path) -> Callable[[list[dict[str, np.ndarray]]], None]:
    """Export ``module`` (inputs ``names``, dynamic last axis) and return a function that
    runs it on a list of feeds, one onnxruntime session run per feed (one thread)."""
    import onnxruntime as ort

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=names, dynamic_axes={n: {1: "batch"} for n in names})
    session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    used = {i.name for i in session.get_inputs()}  # the exporter drops inputs a head ignores

    def go(feeds: list[dict[str, np.ndarray]]) -> None:
        for feed in feeds:
            session.run(None, {k: v for k, v in feed.items() if k in used})
    return go


def part_cases(dirs: dict[str, Path], batch: EventBatch,
               work: Path) -> list[tuple[str, Callable[[], Any]]]:
    """(row name, timed function) for the parts of the ONNX graph: each network from
    preprocessed features, and Cos/Sin of the 19 φ, chunked as ``OnnxScorer`` chunks."""
    flat = torch.from_numpy(batch.objects.reshape(len(batch), -1).copy())
    cases: list[tuple[str, Callable[[], Any]]] = []
    for spec in ("ae", "vae:mu2"):
        name, _, variant = spec.partition(":")
        scorer = load_model(dirs[name], "torch", variant=variant or None)
        assert isinstance(scorer, TorchScorer)
        graph = scorer.graph()
        with torch.inference_mode():
            parts = [graph.pre(flat[i:i + SCORE_CHUNK]) for i in range(0, len(flat), SCORE_CHUNK)]
        feeds = [{"features": f.numpy(), "filled": m.numpy()} for f, m in parts]
        go = _onnx_chunks(graph.head, (parts[0][0].clone(), parts[0][1].clone()),
                          ["features", "filled"], work / f"{name}-head.onnx")
        cases.append((f"{NAMES[spec]}, network alone from preprocessed features, onnxruntime",
                      partial(go, feeds)))
    phi = [{"phi": np.ascontiguousarray(batch.objects[i:i + SCORE_CHUNK, :, 2].T)}
           for i in range(0, len(batch), SCORE_CHUNK)]
    go = _onnx_chunks(_CosSin(), (torch.zeros(19, 2),), ["phi"], work / "cossin.onnx")
    cases.append(("cos φ and sin φ of the 19 slots alone (Cos, Sin), onnxruntime", partial(go, phi)))
    return cases


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
            parts = part_cases(dirs, batch, Path(tmp))
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
