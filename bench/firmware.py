"""Firmware benchmark: quantised models on ADC2021-recipe Pythia events, their firmware's latency, resources and speed.

    $ python -m bench.firmware --data data/adc2021 [--epochs 20] [--threads 2]
    $ python -m bench.firmware --data data/adc2021 --speed-only     # the throughput table alone
    $ python -m bench.firmware --data data/adc2021 --emulator-only  # hls4mlEmulator plugins vs RTL

On the samples of :mod:`bench.adc2021_models` (run it first: ``--data`` is its folder), trains
``qae``, ``qvae`` and ``qaxo`` on ``bkg_train.h5`` (skipped where ``models/<name>`` exists, as
that bench leaves ``qvae`` and ``qaxo``), evaluates them beside the float ``ae``/``vae``/``axo``
on the paper-weighted test background (cost of quantisation), builds their firmware with
``--rtl`` and verifies it on :data:`N_VERIFY` test events, and times firmware-emulation scoring:
the Verilator RTL against hls4ml's ``predict()`` on the same events, one core; and (:func:`emulator_throughput`, on toy
zero-bias crossings, self-contained) hls4mlEmulator plugins scored as CMSSW runs them
beside the RTL backend of the same kind of model. Writes ``bench/results/firmware.md``, which
``make bench`` copies into BENCHMARKS.md; every figure comes from the commands it lists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.adc2021_models import SIGNALS
from bench.machine import describe
from darktrigger.daq.cli import run_shown

N_CSIM = 5000  #: events for hls4ml predict(), which runs one event per Python call
N_VERIFY = 100_000  #: test events ``firmware verify`` checks
N_SPEED = 40_000  #: test events the throughput is timed on
QUANTISED = ("qvae", "qae", "qaxo")
#: quantised model → its float counterpart in the cost-of-quantisation table
FLOAT_OF = {"qae": "ae", "qvae": "vae:mu2", "qaxo": "axo"}
TEST = "bkg_test_paper.h5"


def _rate(fn: object, n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return n / best


def _rates(fns: dict[str, Any], n: int, repeats: int = 5) -> dict[str, float]:
    """events/s of each ``fn``, best of ``repeats`` taken in turn (load on the machine hits all alike)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: n / t for name, t in best.items()}


def throughput(d: Path) -> dict[str, dict[str, float]]:
    """Events/s on one core, :data:`N_SPEED` test events: the RTL's scoring build (``firmware``
    backend) and its pipelined build, hls4ml ``predict()`` and the exact model, per model."""
    from darktrigger.firmware import hls, rtl
    from darktrigger.firmware.project import load_quantised
    from darktrigger.models.neural.training import read_events

    batch = read_events([d / TEST], N_SPEED, "bench", hashes=False)[0]
    speed = {}
    for q in QUANTISED:
        out = d / "firmware" / q
        scorer = load_quantised(out)
        x = scorer.inputs(batch)
        runner = rtl.RTLRunner(out / rtl.RTL_DIR)
        csim = hls.load_project(out)
        speed[q] = _rates({"rtl": lambda r=runner, x=x: r.run(x),
                           "rtl_pipelined": lambda r=runner, x=x: r.run_pipelined(x)}, len(x))
        speed[q]["scoring"] = runner.scoring  # type: ignore[assignment]
        speed[q]["operations"] = rtl.operations(out / rtl.RTL_DIR)
        speed[q]["sparsity"] = float(scorer.hyperparameters["sparsity"])
        speed[q]["csim"] = _rate(lambda c=csim, x=x: hls.csim_predict(c, x[:N_CSIM]), N_CSIM, repeats=1)
        speed[q]["onnx"] = _rate(lambda s=scorer: s.score(batch), len(x))
    return speed


def throughput_lines(speed: dict[str, dict[str, float]]) -> list[str]:
    lines = ["### Firmware-emulation throughput (one core)", "",
             "| model | pruned | da4ml operations | RTL, Verilator: `firmware` backend (events/s) "
             "| RTL, pipelined build, one clock an event | hls4ml `predict()` C sim "
             "| exact model in torch (float64), for scale |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for q, sp in speed.items():
        lines.append(f"| {q} | {sp['sparsity']:.0%} | {sp['operations']:,.0f} | {sp['rtl']:,.0f} ({sp['scoring']}) "
                     f"| {sp['rtl_pipelined']:,.0f} | {sp['csim']:,.0f} | {sp['onnx']:,.0f} |")
    met = {q: v["rtl"] >= 1e6 for q, v in speed.items()}
    lines += ["", "Goal ≥ 1 M events/s for the RTL: " + ", ".join(
                  f"{q} {'met' if ok else 'not met'}" for q, ok in met.items()) +
              ". The `firmware` backend runs the RTL's combinational build (da4ml's netlist without its "
              "pipeline registers, one Verilator `eval()` an event; the pipelined build, one clock = two "
              "`eval()` an event, is the one whose latency is measured), all events in one call to the "
              "library. Verilator's C++ evaluates every operation of the fully unrolled network once an "
              "event, so the time an event follows the netlist's size (the operations column): pruning "
              "the weights (a zero weight is no adder) and leaving φ out of qvae's encoder make it "
              "smaller; qae, with its decoder and 57 squares, stays larger (firmware/rtl.py). The C "
              "simulation is called once per event from Python by hls4ml.", ""]
    return lines


def emulator_throughput(work: Path, n: int = 200_000) -> dict[str, Any]:
    """Events/s on one core, ``n`` toy zero-bias crossings: an imported AXOL1TL-v1-shaped
    plugin (the ``emulator`` backend, events → CMSSW's 57 inputs → plugin; and the plugin
    alone on precomputed inputs), and a default ``qvae`` (trained on 20k toy ``sm_mix``)
    built with ``--rtl --emulator``: its exported plugin through the batch shim beside its
    RTL (the ``firmware`` backend); and a default ``qaxo`` (the same 20k events) built with
    ``--rtl``, its RTL beside qvae's, with both RTL latencies. Projects are made once in
    ``work`` and reused."""
    from darktrigger.firmware import emulator
    from darktrigger.firmware.project import BuildOptions, build
    from darktrigger.firmware.testing import axol1tl_v1_project
    from darktrigger.models import load_model
    from darktrigger.models.quantised.testing import train_small
    from darktrigger.replay.generators.toy import ToyGenerator
    from darktrigger.replay.l1units import cmssw_inputs

    work.mkdir(parents=True, exist_ok=True)
    made: dict[str, float] = {}
    v1 = work / "axol1tl_v1_model"
    if not (v1 / emulator.MANIFEST).is_file():
        t0 = time.monotonic()
        src = axol1tl_v1_project(work / "GTADModel_v1")
        emulator.import_emulator(src, v1, "axol1tl_v1")
        made["import (generate the v1-shaped project, make, shim)"] = time.monotonic() - t0
    fw = work / "fw_qvae"
    if not (fw / "darktrigger-firmware.json").is_file():
        t0 = time.monotonic()
        model = train_small("qvae", work / "qvae", n=20000)
        build(model, fw, BuildOptions(rtl=True, emulator=True))
        made["train qvae, firmware build --rtl --emulator"] = time.monotonic() - t0
    fw_axo = work / "fw_qaxo"
    if not (fw_axo / "darktrigger-firmware.json").is_file():
        t0 = time.monotonic()
        build(train_small("qaxo", work / "qaxo", n=20000), fw_axo, BuildOptions(rtl=True))
        made["train qaxo, firmware build --rtl"] = time.monotonic() - t0
    for d in (fw, fw_axo):  # time only firmware that is the model
        checks = json.loads((d / "darktrigger-firmware.json").read_text())["checks"]
        if checks.get("rtl_equals_qkeras") != checks["tb_events"]:
            raise SystemExit(f"{d}: the RTL equals QKeras on {checks.get('rtl_equals_qkeras')} of "
                             f"{checks['tb_events']} test vectors; not timing it")
    batch = next(ToyGenerator().generate("zero_bias", n, seed=7, batch_size=n))
    flat = batch.objects.reshape(n, -1)
    x = cmssw_inputs(flat)
    imported = load_model(v1, "emulator")
    record = json.loads((fw / "darktrigger-firmware.json").read_text())["emulator"]
    tmp = work / "shim"
    tmp.mkdir(exist_ok=True)
    exported = emulator.load_export(fw, record, tmp)
    firmware = load_model(fw, "firmware")
    firmware_axo = load_model(fw_axo, "firmware")
    rates = _rates({"imported v1 plugin, emulator backend (events in)": lambda: imported.score(flat),
                    "imported v1 plugin alone (CMSSW's int inputs in)": lambda: imported.score_inputs(x),  # type: ignore[attr-defined]
                    "exported qvae plugin through the shim (int inputs in)": lambda: exported.score(x),
                    "qvae RTL, firmware backend (events in)": lambda: firmware.score(flat),
                    "qaxo RTL, firmware backend (events in)": lambda: firmware_axo.score(flat),
                    "CMSSW's 57 inputs alone (replay.l1units.cmssw_inputs)": lambda: cmssw_inputs(flat)},
                   n, repeats=3)
    latency = {}
    for name, d in (("qvae", fw), ("qaxo", fw_axo)):
        rtl = json.loads((d / "darktrigger-firmware.json").read_text())["rtl"]
        latency[name] = (rtl["measured_cycles"], rtl["measured_cycles"] * rtl["clock_ns"])
    return {"events": n, "rates": rates, "made_seconds": made, "rtl_latency": latency,
            "qvae_score_shift": record["score_shift"], "load": os.getloadavg()}


def emulator_lines(r: dict[str, Any]) -> list[str]:
    lines = ["### hls4mlEmulator plugins (CMSSW's interface) beside the RTL (one core)", "",
             f"{r['events']:,} toy zero-bias crossings; best of 3 (load average "
             f"{' '.join(f'{v:.2f}' for v in r['load'])}).", "",
             "| scoring | events/s |", "| --- | ---: |"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in r["rates"].items()]
    lines += ["", "RTL latency (pipelined build): " + ", ".join(
        f"{name} {c} clocks = {ns:.0f} ns" for name, (c, ns) in r.get("rtl_latency", {}).items()) + "."]
    lines += ["", "The plugins run one event per `prepare_input`/`predict`/`read_result`, as CMSSW's "
              "AXOL1TLCondition calls them, the loop in C++ (one call into the shim per batch); the RTL "
              "is the combinational Verilator build. The v1-shaped network (57-32-16-3, dense, hls4ml "
              "`ap_fixed<16,6>`, unpruned) is larger than the pruned qvae. The exported qvae plugin's "
              f"score is floor(score x 2^{r['qvae_score_shift']}).", ""]
    return lines


def _formats(name: str, h: dict[str, Any]) -> str:
    """One line of a quantised model's fixed-point types, from its card's hyper-parameters."""
    line = (f"- `{name}`: weights `ap_fixed<{h['weight_bits']},{h['weight_integer'] + 1}>`, biases "
            f"`ap_fixed<{h['bias_bits']},{h['bias_integer'] + 1}>`, activations "
            f"`ap_ufixed<{h['act_bits']},{h['act_integer']}>`")
    if "mu_bits" in h:
        line += f", μ `ap_fixed<{h['mu_bits']},{h['mu_integer'] + 1}>`"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/adc2021"),
                        help="the folder python -m bench.adc2021_models made its samples (and models) in")
    parser.add_argument("--out", type=Path, default=Path("bench/results/firmware.md"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock-ns", type=float, default=4.0)
    parser.add_argument("--speed-only", action="store_true",
                        help="only time the firmware emulation of the projects already built; print, write nothing")
    parser.add_argument("--emulator-only", action="store_true",
                        help="only time hls4mlEmulator plugins beside the RTL (self-contained, toy events); "
                             "print, write nothing")
    args = parser.parse_args(argv)
    d: Path = args.data
    if args.emulator_only:
        print("\n".join(emulator_lines(emulator_throughput(d / "firmware-emulator"))))
        return 0
    if args.speed_only:
        print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print("\n".join(throughput_lines(throughput(d))))
        return 0
    missing = [str(p) for p in (d / "bkg_train.h5", d / TEST, *(d / f"sig_{s}.h5" for s in SIGNALS)) if not p.exists()]
    if missing:
        print(f"bench.firmware: missing {', '.join(missing)}; run python -m bench.adc2021_models --data {d} first",
              file=sys.stderr)
        return 2
    t_start = time.monotonic()
    commands: list[str] = []
    models = d / "models"
    for q in ("ae", "vae", "axo", *QUANTISED):
        if not (models / q / "card.json").is_file():
            commands.append(run_shown(["train", "--model", q, "--background", str(d / "bkg_train.h5"),
                                       "--out", str(models / q), "--epochs", str(args.epochs), "--seed", "1",
                                       "--threads", str(args.threads), "--no-progress"]))
        else:
            commands.append(f"darktrigger train --model {q} --background {d / 'bkg_train.h5'} "
                            f"--out {models / q} --epochs {args.epochs} --seed 1   # (made earlier, reused)")
    test = d / TEST
    evaluation = d / "evaluation_quantised.json"
    commands.append(run_shown(
        ["evaluate", *[x for m in ("ae", "vae", "axo", *QUANTISED) for x in ("--model", str(models / m))],
         "--background", str(test), *[x for s in SIGNALS for x in ("--signal", f"{s}={d / f'sig_{s}.h5'}")],
         "--fprs", "1e-2,1e-3,1e-4", "--no-baselines", "--json", str(evaluation), "--no-progress"]))
    fw: dict[str, dict[str, Any]] = {}
    for q in QUANTISED:
        out = d / "firmware" / q
        commands.append(run_shown(["firmware", "build", "--model", str(models / q), "--out", str(out), "--rtl",
                                   "--clock-ns", str(args.clock_ns), "--events", str(test), "--no-progress"]))
        vjson = d / "firmware" / f"verify_{q}.json"
        commands.append(run_shown(["firmware", "verify", "--project", str(out), "--events", str(test),
                                   "--n", str(N_VERIFY), "--json", str(vjson)]))
        fw[q] = json.loads(vjson.read_text())

    speed = throughput(d)  # one core: the firmware backend (RTL) vs hls4ml predict on the same events
    plugins = emulator_throughput(d / "firmware-emulator")

    ev = json.loads(evaluation.read_text())["models"]
    lines = [
        "## Firmware: quantised models on ADC2021-recipe events, HLS and RTL",
        "",
        *describe(("numpy", "tensorflow", "qkeras", "hls4ml", "da4ml", "verilator")),
        f"- command: `python -m bench.firmware --data {d} --epochs {args.epochs} --threads {args.threads}` "
        f"({time.monotonic() - t_start:.0f} s), which ran:",
        "",
        "```",
        *commands,
        "```",
        "",
        "Inputs: CMSSW's 57 AXOL1TL integers (hwPt/2 in 1 GeV; e/γ, jets, MET η 0.0435, φ 2π/144; muons η 0.010875, "
        "φ 2π/576, unsigned φ; `darktrigger.replay.l1units`), shift-normalised onto "
        "`ap_fixed<12,6>` (`darktrigger.models.quantised.preprocess`); bit widths from the model cards:",
        "",
        *[_formats(q, json.loads((models / q / "card.json").read_text())["hyperparameters"])
          for q in QUANTISED],
        "",
        "`qvae` is trained on a weighted reconstruction error (pT 8, η 1, φ 0; e/γ and muon slots ×64, "
        "`QVAEScorer.reco_weight_vector`) and reads pT and η only (`encoder_inputs`); `qaxo` is AXOL1TL "
        "v5's shape (a feature extractor, then an autoencoder in feature space) with 5-bit weights; all "
        "are pruned (`sparsity`, the fraction of each layer's weights held at 0). The float models beside "
        "them are the CLI's defaults, not like-for-like references (other widths, inputs and losses): "
        "the float twins of the section \"Recipe search on ADC2021-recipe Pythia events\" (same network, "
        "inputs and loss, no rounding) measure the cost of quantisation alone.",
        "",
        f"### Quantised against float (ADC2021-recipe test background `{TEST}`, weighted to the paper's "
        "composition; the signals of the ADC2021 section)",
        "",
        "| signal | model | AUC | TPR@1e-03 |",
        "| --- | --- | --- | --- |",
    ]
    for s in SIGNALS:
        for q in QUANTISED:
            for m in (FLOAT_OF[q], q):
                r = ev[m]["signals"][s]
                ent = next((e for e in r["tpr_at_fpr"] if abs(e["fpr_target"] - 1e-3) < 1e-12), None)
                tpr = ("—" if not ent or not ent["resolved"] else f"< {ent['tpr_hi']:.4f}" if ent["tpr"] == 0
                       else f"{ent['tpr']:.4f} ± {ent['tpr_err']:.4f}")
                lines.append(f"| {s} | {m} | {r['auc']:.4f} ± {r['auc_err']:.4f} | {tpr} |")
    loss = {q: ev[FLOAT_OF[q]]["signals"]["ato4l"]["auc"] - ev[q]["signals"]["ato4l"]["auc"] for q in QUANTISED}
    lines += ["", "AUC lost on ato4l against the float default: " + ", ".join(f"{q} {v:+.4f}" for q, v in loss.items()),
              "",
              "`—`: the test background cannot resolve that FPR; `< x`: no signal event above the threshold, "
              "x the upper end of its 68 % Clopper–Pearson interval.", "",
              "### Bit-exactness, latency, resources", "",
              "| model | events | equal in all (QKeras, C sim, testbench, RTL) | max diff (LSB) | RTL latency "
              "| clock | da4ml estimate |", "| --- | ---: | --- | ---: | --- | --- | --- |"]
    for q, r in fw.items():
        rt = r["rtl"]
        lines.append(f"| {q} | {r['events']:,} | {float(r['all_equal']):.4%} | "
                     f"{max(r['max_diff_lsb'].values())} | {rt['measured_cycles']} cycles = "
                     f"{rt['measured_cycles'] * rt['clock_ns']:g} ns | {rt['clock_ns']:g} ns | "
                     f"{rt['luts_estimate']:,.0f} LUT, {rt['ffs_estimate']:,} FF |")
    lines += ["", "The 100,000-event bit-exactness check on toy events is the slow test "
              "`tests/test_firmware_100k.py::test_default_models_verify_on_100k_events`.", "",
              *throughput_lines(speed), *emulator_lines(plugins)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0 if np.isfinite(list(loss.values())).all() else 1


if __name__ == "__main__":
    sys.exit(main())
