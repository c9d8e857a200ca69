"""``darktrigger firmware build``: a model directory → a firmware project folder.

The project folder is at once

* the **model directory** (``card.json``, ``weights.pt``, ``preprocess.json``,
  ``model.onnx`` copied in), so ``load_model(project)`` and ``darktrigger
  evaluate/calibrate --model project`` work on it, and the ``firmware`` backend
  scores with the firmware it holds;
* the **hls4ml project** (``firmware/``, ``myproject_test.cpp``, ``build_prj.tcl``,
  ``tb_data/`` with test vectors: inputs and the QKeras outputs);
* with ``--rtl``, the **da4ml Verilog project** in ``rtl/`` (``rtl/src/*.v``, the
  Verilator library in ``rtl/sim/``);
* with ``--emulator``, the **hls4mlEmulator plugin** for CMSSW in ``emulator/`` (AXOL1TL's
  layout: sources, Makefile, ``GTADModel_<spec>.so``; :mod:`darktrigger.firmware.emulator`);
* ``darktrigger-firmware.json``, the manifest (:mod:`darktrigger.firmware.manifest`:
  model hash, precisions, clock, RTL latency and resource estimate, checks), written
  **last**: a folder without it is a build that did not finish, and every reader refuses
  it. A failed build removes what it wrote.

    $ darktrigger firmware build --model models/qvae --out fw/qvae --rtl --emulator

:func:`open_project` is how the layer reads a project back: the manifest and the
quantised model, checked to be the model the firmware was built from.

    >>> open_project(tmp_path / "nothing")
    Traceback (most recent call last):
    ...
    darktrigger.firmware.errors.ProjectError: ...: no such firmware project (build one with `darktrigger firmware build --model DIR --out DIR`)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware import hls, rtl, testbench
from darktrigger.firmware.errors import FirmwareError, ProjectError, UnsupportedModelError
from darktrigger.firmware.manifest import (
    MANIFEST,
    BuildChecks,
    Manifest,
    RTLRecord,
    read_manifest,
    write_manifest,
)
from darktrigger.models.base import copy_artifact
from darktrigger.models.card import read_card
from darktrigger.models.quantised.fixedpoint import describe
from darktrigger.models.quantised.scorers import QuantisedScorer
from darktrigger.replay.progress import Steps

log = logging.getLogger(__name__)

TB_EVENTS = 1000  #: test vectors written into tb_data/
OWN_FILES = ("card.json", "weights.pt", "preprocess.json", "model.onnx")


def model_hash(model_dir: Path) -> str:
    """sha256 over the files that fix a quantised model's arithmetic (weights, preprocessing, card hp)."""
    card = read_card(model_dir)
    h = hashlib.sha256()
    h.update(json.dumps({"scorer": card.scorer, "hp": card.hyperparameters}, sort_keys=True).encode())
    for name in ("weights.pt", "preprocess.json"):
        path = model_dir / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def load_quantised(model_dir: Path) -> QuantisedScorer:
    """The quantised scorer in ``model_dir``, or an UnsupportedModelError saying what firmware takes."""
    from darktrigger.models import SCORERS, load_model

    scorer = load_model(model_dir)
    if not isinstance(scorer, QuantisedScorer):
        quantised = [n for n, c in SCORERS.items() if issubclass(c, QuantisedScorer)]
        raise UnsupportedModelError(
            f"{model_dir}: a {scorer.name!r} model; firmware is built from a quantised model "
            f"({', '.join(quantised)}): train one with `darktrigger train --model qvae ...`")
    return scorer


def open_project(project: Path, model_dir: Path | None = None) -> tuple[Manifest, QuantisedScorer]:
    """The manifest and the quantised model of a complete project; a ProjectError when its
    model files changed after the build, or (with ``model_dir``) when it holds the
    firmware of another model than ``model_dir``'s."""
    manifest = read_manifest(project)
    check_model(project, model_dir, manifest)
    scorer = load_quantised(project)
    if model_hash(project) != manifest.model_sha256:
        raise ProjectError(f"{project}: its model files changed after the firmware was built; "
                           "build the firmware again")
    return manifest, scorer


def check_model(project: Path, model_dir: Path | None, manifest: Manifest) -> None:
    """A ProjectError when ``project`` holds the firmware of a model other than ``model_dir``'s."""
    if model_dir is None:
        return
    if model_hash(model_dir) != manifest.model_sha256:
        raise ProjectError(f"{project}: holds the firmware of another model ({manifest.spec} from "
                           f"{manifest.source_model}), not of {model_dir}; build the firmware of "
                           f"{model_dir} into its own folder")


@dataclass
class BuildOptions:
    """What :func:`build` makes (the options of ``darktrigger firmware build``)."""

    backend: str = "Vitis"
    part: str = hls.DEFAULT_PART
    clock_ns: float = 4.0
    rtl: bool = False
    synth: bool = False
    #: also an hls4mlEmulator plugin for CMSSW (``emulator/``, :mod:`darktrigger.firmware.emulator`)
    emulator: bool = False
    tb_events: int = TB_EVENTS
    #: a log line as each step starts (``darktrigger.progress``; the command line shows them)
    progress: bool = False
    #: layer → precision entries replacing the derived ones (tests: a wrong precision)
    precision_overrides: dict[str, dict[str, str]] = field(default_factory=dict)


def _prepare_out(out: Path, digest: str) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ProjectError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        out.rmdir()
        return
    if not (out / MANIFEST).is_file():
        raise ProjectError(f"{out}: exists and is not a darktrigger firmware project; "
                           "choose an empty or new --out")
    old = read_manifest(out)
    if old.model_sha256 != digest:
        raise ProjectError(f"{out}: holds the firmware of another model ({old.spec} from "
                           f"{old.source_model}); choose another --out, or delete it first")
    shutil.rmtree(out)  # the same model: rebuild


def test_events(n: int, events: Path | None) -> np.ndarray:
    """``n`` events' objects ``[N, 57]``: from ``events``, or toy ``sm_mix`` (seed 0)."""
    from darktrigger.models.base import as_flat

    if events is not None:
        from darktrigger.models.neural.training import read_events

        batch = read_events([events], n, "test-vector", hashes=False)[0]
    else:
        from darktrigger.replay.generators import GENERATORS

        batch = next(GENERATORS.get("toy")().generate("sm_mix", n, seed=0, batch_size=n))
    return as_flat(batch, "test vectors")


def test_vectors(scorer: QuantisedScorer, n: int, events: Path | None) -> np.ndarray:
    """``n`` events' network inputs: from ``events``, or toy ``sm_mix`` (seed 0)."""
    return scorer.inputs(test_events(n, events))


def build(model_dir: Path, out: Path, options: BuildOptions, events: Path | None = None) -> Manifest:
    """Build the project (see the module doc); its manifest."""
    t0 = time.monotonic()
    hls.require_cxx()  # the tools first: a missing one fails before anything is written
    if options.rtl:
        rtl.verilator_env()
    scorer = load_quantised(model_dir)
    digest = model_hash(model_dir)
    _prepare_out(out, digest)
    out.mkdir(parents=True)
    steps = Steps(f"firmware build {out}", 4 + 3 * options.rtl + options.synth + options.emulator,
                  enabled=options.progress)
    try:
        manifest = _build(scorer, model_dir, out, options, events, digest, steps)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    manifest = dataclasses.replace(manifest, build_seconds=round(time.monotonic() - t0, 1))
    write_manifest(out, manifest)
    return manifest


def _build(scorer: QuantisedScorer, model_dir: Path, out: Path, options: BuildOptions,
           events: Path | None, digest: str, steps: Steps) -> Manifest:
    steps(f"test vectors: {options.tb_events:,} events from "
          f"{events or 'toy sm_mix (seed 0)'}, scored by the QKeras model")
    objects = test_events(options.tb_events, events)
    x = scorer.inputs(objects)
    ref = scorer.fixed_outputs(x)["score"][:, 0]
    keras_model = scorer.keras_model()
    qk = np.asarray(keras_model.predict(x, batch_size=4096, verbose=0), np.float64)[:, 0]
    precision = hls.precisions(scorer)
    for name, entry in options.precision_overrides.items():
        if name not in precision:
            raise ProjectError(f"precision override for {name!r}: no such layer; layers: "
                               f"{', '.join(precision)}")
        precision[name] = {**precision[name], **entry}
    steps(f"writing the hls4ml {options.backend} project (precisions derived from the weights)")
    model = hls.convert(keras_model, out, precision=precision, backend=options.backend,
                        part=options.part, clock_ns=options.clock_ns, tb_inputs=x, tb_outputs=qk,
                        where=str(model_dir))
    steps("compiling the C simulation (g++)")
    hls.compile_csim(model, str(out))  # compile() writes the project again: patch after it
    testbench.patch(out)
    steps(f"C simulation of the {len(x):,} test vectors")
    csim = hls.csim_predict(model, x)
    copy_artifact(model_dir, out)
    ranges = scorer.ranges()
    checks = BuildChecks(tb_events=len(x), qkeras_equals_reference=int(np.sum(qk == ref)),
                         csim_equals_qkeras=int(np.sum(csim == qk)))
    if checks.csim_equals_qkeras != len(x):
        log.warning("%s: the C simulation equals QKeras on %d of %d test vectors",
                    out, checks.csim_equals_qkeras, len(x))
    rtl_record = None
    if options.rtl:
        info = rtl.build(scorer, out / rtl.RTL_DIR, clock_ns=options.clock_ns, part=options.part,
                         on_step=steps)
        steps(f"RTL simulation (Verilator) of the {len(x):,} test vectors, latency measured")
        runner = rtl.RTLRunner(out / rtl.RTL_DIR)
        y = runner.run(x)
        rtl_record = RTLRecord(info, rtl.RTL_DIR, rtl.measure_latency(
            runner, lambda v: scorer.fixed_outputs(v)["score"][:, 0]))
        # both builds: the combinational one scores (firmware backend), the pipelined one is the firmware
        checks = dataclasses.replace(checks, rtl_equals_qkeras=check_rtl(out, qk, y, runner.run_pipelined(x)))
    plugin = None
    if options.emulator:
        plugin = _export(scorer, keras_model, precision, out, options, objects, qk, str(model_dir), steps)
    synth = None
    if options.synth:
        from darktrigger.firmware import vendor

        steps(f"vendor synthesis ({options.backend} HLS)")
        synth = vendor.synthesise(out, options.backend)
    manifest = Manifest(
        spec=scorer.spec, scorer=scorer.name, source_model=str(model_dir), model_sha256=digest,
        backend=options.backend, part=options.part, clock_ns=options.clock_ns,
        input_type=scorer.input_fmt.ap, score_type=ranges[-1].accum_fmt.ap, score_frac=ranges[-1].frac,
        precisions=precision, precision_overrides=options.precision_overrides,
        layers=describe(scorer.layers(), ranges), checks=checks, rtl=rtl_record, synth=synth,
        emulator=plugin)
    from darktrigger.replay.l1units import input_table_markdown

    assert scorer.qpre is not None
    write_readme(out, manifest, input_table_markdown(scorer.qpre.input_table()))
    return manifest


def check_rtl(out: Path, qk: np.ndarray, comb: np.ndarray, pipelined: np.ndarray) -> int:
    """How many test vectors both RTL builds score exactly as QKeras does; a
    :class:`~darktrigger.firmware.errors.FirmwareError` unless all of them.

    Unlike the C simulation, whose precisions a user may override, the RTL is traced from
    the quantised network itself and is bit-exact by construction: any difference is a bug
    (in the tracing, in da4ml or in Verilator), so the build stops rather than write a
    project that ``firmware verify`` would reject.

        >>> check_rtl(Path("fw"), np.array([0.5, 1.0]), np.array([0.5, 1.0]), np.array([0.5, 1.0]))
        2
        >>> check_rtl(Path("fw"), np.array([0.5, 1.0]), np.array([0.5, 1.0]), np.array([0.5, 0.75]))
        Traceback (most recent call last):
        ...
        darktrigger.firmware.errors.FirmwareError: fw: the RTL (Verilator) equals QKeras on 1 of 2 test vectors (pipelined build 1, combinational 2; first difference at vector 1: QKeras 1, pipelined 0.75, combinational 1); the RTL is bit-exact by construction, so this is a bug: please report it with the model. Build without --rtl meanwhile.
    """
    same_comb, same_pipe = comb == qk, pipelined == qk
    equal = int(np.sum(same_comb & same_pipe))
    if equal != len(qk):
        first = int(np.flatnonzero(~(same_comb & same_pipe))[0])
        raise FirmwareError(
            f"{out}: the RTL (Verilator) equals QKeras on {equal} of {len(qk)} test vectors (pipelined build "
            f"{int(same_pipe.sum())}, combinational {int(same_comb.sum())}; first difference at vector {first}: "
            f"QKeras {qk[first]:g}, pipelined {pipelined[first]:g}, combinational {comb[first]:g}); the RTL is "
            "bit-exact by construction, so this is a bug: please report it with the model. "
            "Build without --rtl meanwhile.")
    return equal


def _export(scorer: QuantisedScorer, keras_model: Any, precision: dict[str, dict[str, str]], out: Path,
            options: BuildOptions, objects: np.ndarray, qk: np.ndarray, where: str,
            steps: Steps) -> dict[str, Any]:
    """The hls4mlEmulator plugin in ``out/emulator``, built and checked on the test vectors
    through the interface (the batch shim) as CMSSW would call it."""
    import tempfile

    from darktrigger.firmware import emulator
    from darktrigger.replay.l1units import cmssw_inputs

    steps("hls4mlEmulator plugin for CMSSW: writing and compiling it (g++), then the test vectors")
    record = emulator.export_plugin(scorer, keras_model, precision, out / emulator.EXPORT_DIR, objects, qk,
                                    backend=options.backend, where=where)
    with tempfile.TemporaryDirectory(prefix="darktrigger-shim-") as tmp:
        runner = emulator.load_export(out, record, Path(tmp))
        got = runner.score(cmssw_inputs(objects))
        runner.close()
    equal = int(np.sum(got == emulator.cmssw_score(qk, record["score_shift"])))
    if equal != len(qk):
        log.warning("%s: the hls4mlEmulator plugin equals QKeras on %d of %d test vectors", out, equal, len(qk))
    return {**record, "tb_equal": equal}


def _emulator_readme(m: Manifest) -> str:
    if not m.emulator:
        return ""
    e = m.emulator
    so, shift, n = e["plugin"], e["score_shift"], e["tb_events"]
    version = e["name"].removeprefix("GTADModel_")
    return f"""
## hls4mlEmulator plugin for CMSSW (`{e['directory']}/`)

`{e['directory']}/{so}` is this model as CMSSW's L1 emulation loads an AXOL1TL version, with
its sources in AXOL1TL's layout (`{e['name']}_emulator.cpp`, `NN/` with the hls4ml network,
`scales.h`, `Makefile`). `prepare_input` takes CMSSW's array of 57 `{e['input_type']}`
(AXOL1TLCondition's order and units: the table below) and applies this model's right shifts
(`scales.h`; the `shift` column), flooring onto `{m.input_type}` and saturating as the model
does; `read_result` fills `{e['pair_type']}`, the pair CMSSW's condition reads from
plugins other than v3/v4. CMSSW's score, loss × 16, is `floor(score × 2^{shift})` (at most
2^18 − 1), so a threshold T on this model's score is T × 2^{shift} in an L1 menu.

Build it (here: up to date, nothing to do; after an edit it rebuilds) with g++ against the
project's `ap_types` and the `hls4mlEmulator` interface header (in CMSSW:
hls4mlEmulatorExtras' `include/hls4ml`; a copy is in `{e['directory']}/include`):

```bash
make -C {e['directory']} CXX=g++ CXXFLAGS="-O2 -std=c++17 -fPIC" INCLUDES="-I. -I../firmware/ap_types -Iinclude/hls4ml"
```

CMSSW loads it as it loads AXOL1TL: an AXOL1TL condition whose model version is `{version}`
makes `hls4mlEmulator::ModelLoader("{e['name']}")`, which `dlopen`s `{so}` from the library
path and calls `create_model()`; per event the condition fills the 57 inputs and calls
`prepare_input`, `predict`, `read_result`, and compares loss × 16 with the seed's threshold.
`{e['directory']}/driver.cc` does the same, standalone, on the hardware counts of the
{n} test vectors; its scores must equal `floor(score × 2^{shift})` of the QKeras model:

```bash
g++ -O2 -std=c++17 -Ifirmware/ap_types -I{e['directory']}/include {e['directory']}/driver.cc -ldl -o {e['directory']}/driver
LD_LIBRARY_PATH={e['directory']} {e['directory']}/driver {so} {e['directory']}/tb_counts.i32 {e['directory']}/tb_scores.f64
cmp {e['directory']}/tb_scores.f64 {e['directory']}/tb_expected.f64 && echo "the plugin equals the model on all {n} test vectors"
```

`darktrigger firmware verify --project . --events FILE` loads the plugin through the same
interface (darktrigger's batch shim) and includes it in the bit-exactness check.
"""


def write_readme(out: Path, m: Manifest, inputs_table: str = "") -> None:
    """The project's README.md: what the folder holds and how to synthesise and check it.

    Every command in it runs as printed from the project folder (tests/test_readme_commands.py
    runs those that need no vendor tool).
    """
    rtl_part = ""
    if m.rtl:
        r = m.rtl.info
        rtl_part = f"""
## RTL (da4ml, `rtl/`)

Pipelined Verilog of the same fixed-point network: `rtl/src/score.v` (top `score`,
wrapped with uniform ports in `score_wrapper.v`), {r.cycles} stages at {r.clock_ns} ns
= {r.latency_ns} ns, II = 1. da4ml's estimate: {r.luts:.0f} LUT, {r.ffs} FF.
Timing constraints: `rtl/src/score.xdc` (Vivado), `score.sdc`. Synthesise with Vivado
(edit the part in the script if needed):

```bash
vivado -mode batch -source rtl/build_vivado_prj.tcl
```

Simulate: the Verilator library in `rtl/sim/` (`darktrigger firmware verify`).
`rtl/comb/` holds the same netlist without pipeline registers, for simulation only: the
`firmware` backend scores events with it (one evaluation an event, not a clock of the
pipelined design); `firmware verify` checks both bit for bit.
"""
    text = f"""# Firmware of `{m.spec}` (darktrigger)

Made by `darktrigger firmware build` from `{m.source_model}` (model sha256 `{m.model_sha256[:16]}…`).
The folder is also a model directory (`card.json`, `weights.pt`, ...): `darktrigger evaluate
--model THIS_FOLDER --backend firmware` scores events with the firmware. The commands below
run in this folder.

## HLS (hls4ml, {m.backend}, {m.io_type}, {m.strategy} strategy)

Top function `myproject` in `firmware/myproject.cpp`; input `{m.input_type}` × 57 (the L1
inputs in hardware units, shift-normalised: see `preprocess.json`), output the score
`{m.score_type}`. Every precision is set so that the C simulation equals the QKeras
model bit for bit; they are listed in `{MANIFEST}` (`precisions`) and `hls4ml_config.yml`.

Test vectors: `tb_data/tb_input_features.dat` ({m.checks.tb_events} events) and
`tb_data/tb_output_predictions.dat` (the QKeras model's scores for them).

C simulation with g++ only (no vendor tool); the testbench reads the weights from
`WEIGHTS_DIR` and its test vectors from `tb_data/`, both relative to where it runs:

```bash
g++ -O2 -std=c++17 -Ifirmware/ap_types -Ifirmware -DWEIGHTS_DIR='"firmware/weights"' \\
    myproject_test.cpp firmware/myproject.cpp -o tb
./tb    # writes tb_data/csim_results.log (17 significant digits)
paste -d ' ' tb_data/csim_results.log tb_data/tb_output_predictions.dat |
    awk '$1 != $2 {{n++}} END {{print n+0 " of " NR " scores differ from QKeras"; exit n > 0}}'
```

Synthesis, C simulation and RTL co-simulation with the vendor tools (part `{m.part}`,
clock {m.clock_ns} ns), Vitis HLS or the older Vivado HLS:

```bash
vitis_hls -f build_prj.tcl "csim=1 synth=1 cosim=1 validation=1"
vivado_hls -f build_prj.tcl "csim=1 synth=1 cosim=1 validation=1"
```

The synthesis report is then in `myproject_prj/solution1/syn/report/myproject_csynth.rpt`;
`darktrigger firmware build --synth` runs this and reads latency, II, LUT, FF, DSP and BRAM
from it when `vitis_hls` or `vivado_hls` is on PATH.
{rtl_part}{_emulator_readme(m)}
## Check it

QKeras, the C simulation, this testbench{" and the RTL" if m.rtl else ""} on the test vectors, bit for bit
(add `--events FILE --n 100000` for events of your own):

```bash
darktrigger firmware verify --project .
```
"""
    if inputs_table:
        text += f"""
## The 57 inputs

CMSSW's `AXOL1TLCondition` array (`ap_fixed<18,13>`), in this order and these units (muons on
the muon system's LSBs); the network reads `x = in >> shift` as `{m.input_type}`
(`preprocess.json`).

{inputs_table}"""
    (out / "README.md").write_text(text)


__all__ = ["MANIFEST", "OWN_FILES", "BuildOptions", "Manifest", "build", "check_model", "load_quantised",
           "model_hash", "open_project", "read_manifest", "test_vectors"]
