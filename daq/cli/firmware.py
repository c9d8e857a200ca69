"""``darktrigger firmware build|verify|import``: quantised models into HLS and RTL, checked bit
for bit; CMS's hls4mlEmulator plugins (AXOL1TL) imported as scoring models.

    $ darktrigger firmware build --model models/qvae --out fw/qvae --rtl --emulator
    $ darktrigger firmware verify --project fw/qvae --events bkg.h5 --n 100000
    $ darktrigger firmware import --emulator AXOL1TL_v5 --out models/axol1tl_v5
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any


def cmd_build(args: argparse.Namespace) -> int:
    from darktrigger.firmware.project import BuildOptions, build

    opts = BuildOptions(backend=args.backend, part=args.part, clock_ns=args.clock_ns, rtl=args.rtl,
                        synth=args.synth, emulator=args.emulator, tb_events=args.tb_events, progress=not args.no_progress,
                        precision_overrides=_parse_overrides(args.precision))
    m = build(args.model, args.out, opts, events=args.events)
    c = m.checks
    print(f"firmware of {m.spec} written to {args.out} ({m.build_seconds or 0:.0f} s)")
    print(f"  hls4ml {m.backend} project, {m.io_type}, {m.strategy}, part {m.part}, "
          f"clock {m.clock_ns:g} ns; input {m.input_type}, score {m.score_type}")
    print(f"  tb_data: {c.tb_events} test vectors; C simulation equals QKeras on "
          f"{c.csim_equals_qkeras}/{c.tb_events}")
    if m.rtl:
        r = m.rtl.info
        print(f"  RTL (da4ml, Verilator): {r.cycles} stages × {r.clock_ns:g} ns = "
              f"{r.latency_ns:g} ns (measured {m.rtl.measured_cycles} clocks); estimate "
              f"{r.luts:,.0f} LUT, {r.ffs:,} FF; equals QKeras on "
              f"{c.rtl_equals_qkeras}/{c.tb_events}")
    if m.emulator:
        e = m.emulator
        print(f"  hls4mlEmulator plugin for CMSSW: {e['directory']}/{e['plugin']} (loss x 16 = "
              f"floor(score x 2^{e['score_shift']})); equals QKeras on {e['tb_equal']}/{e['tb_events']}")
    if m.synth:
        s = m.synth
        print(f"  synthesis: latency {s['latency_cycles']} cycles, II {s['ii']}, LUT {s['lut']}, "
              f"FF {s['ff']}, DSP {s['dsp']}, BRAM {s['bram']}")
    print(f"  check it: darktrigger firmware verify --project {shlex.quote(str(args.out))} "
          "(its test vectors; add --events FILE --n 100000 for events of your own)")
    return 0


def _parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    from darktrigger.replay.errors import ConfigError

    out: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        layer, dot, kind = target.partition(".")
        if not sep or not dot or not value:
            raise ConfigError(f"--precision takes LAYER.KIND=TYPE (e.g. enc1.result=ap_fixed<16,6>), "
                              f"got {item!r}")
        out.setdefault(layer, {})[kind] = value
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    from darktrigger.firmware.verify import verify

    report = verify(args.project, args.events, args.n, model_dir=args.model,
                    use_rtl=not args.no_rtl, use_testbench=not args.no_testbench,
                    progress=not args.no_progress)
    print(report.format())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"JSON written to {args.json}")
    return 0 if report.ok else 1


def cmd_import(args: argparse.Namespace) -> int:
    from darktrigger.firmware.emulator import import_emulator

    m = import_emulator(args.emulator, args.out, args.name, progress=not args.no_progress)
    print(f"hls4mlEmulator plugin {m.name} imported into {args.out} ({m.build_seconds or 0:.0f} s)")
    print(f"  {m.plugin}, built from {m.source} ({m.emulator}, its Makefile, {m.compiler})")
    print(f"  read_result fills {m.pair_type_resolved}; the score is loss x 16"
          + ("" if m.loss_is_cmssw else " (WARNING: the loss is not CMSSW's ap_ufixed<18,14>)"))
    print(f"  score with it: darktrigger score --model {shlex.quote(str(args.out))} --events FILE --out OUT.h5")
    return 0


def add_parsers(sub: argparse._SubParsersAction, formatter: Any) -> None:
    """``firmware build`` and ``firmware verify`` (see :data:`darktrigger.daq.cli.COMMAND_MODULES`)."""
    p = sub.add_parser(
        "firmware", formatter_class=formatter,
        help="FPGA firmware of a quantised model (hls4ml HLS, da4ml RTL), verified bit for bit; "
             "CMS hls4mlEmulator plugins imported",
        description="Turn a quantised model (qae, qvae, qaxo) into an hls4ml HLS project and, with --rtl,\n"
                    "da4ml Verilog; check the QKeras model, the C simulation, the project's testbench\n"
                    "and the RTL under Verilator agree on every event.",
        epilog="examples:\n"
               "  darktrigger train --model qvae --background bkg.h5 --out models/qvae\n"
               "  darktrigger firmware build --model models/qvae --out fw/qvae --rtl\n"
               "  darktrigger firmware verify --project fw/qvae --events bkg_test.h5 --n 100000\n"
               "  darktrigger firmware import --emulator AXOL1TL_v5 --out models/axol1tl_v5")
    fsub = p.add_subparsers(dest="firmware_command", metavar="SUBCOMMAND", required=True)
    b = fsub.add_parser(
        "build", formatter_class=formatter, help="write (and compile) the firmware project",
        description="Write an hls4ml project (io_parallel, latency strategy) with every precision set so\n"
                    "its C simulation equals the QKeras model bit for bit, test vectors in tb_data/ and\n"
                    "a README on synthesis; with --rtl also da4ml's pipelined Verilog, compiled with\n"
                    "Verilator. The folder is also a copy of the model directory. A failed build\n"
                    "leaves nothing behind.",
        epilog="examples:\n"
               "  darktrigger firmware build --model models/qvae --out fw/qvae --rtl --clock-ns 4\n"
               "  darktrigger firmware build --model models/qae --out fw/qae --backend Vivado --synth")
    b.add_argument("--model", type=Path, required=True, help="a quantised model directory (qae, qvae, qaxo)")
    b.add_argument("--out", type=Path, required=True, help="project folder to write")
    b.add_argument("--backend", choices=("Vitis", "Vivado"), default="Vitis")
    b.add_argument("--part", default="xcvu13p-flga2577-2-e", help="FPGA part (default xcvu13p-flga2577-2-e)")
    b.add_argument("--clock-ns", type=float, default=4.0, help="clock period in ns (default 4.0)")
    b.add_argument("--rtl", action="store_true", help="also da4ml Verilog, compiled with Verilator")
    b.add_argument("--emulator", action="store_true",
                   help="also an hls4mlEmulator plugin (emulator/: sources, Makefile, .so) that CMSSW's "
                        "L1 emulation loads as it loads AXOL1TL")
    b.add_argument("--synth", action="store_true",
                   help="run vendor synthesis (needs vitis_hls or vivado_hls on PATH) and read its report")
    b.add_argument("--events", type=Path, default=None,
                   help="events for the test vectors (default: toy sm_mix, seed 0)")
    b.add_argument("--tb-events", type=int, default=1000, help="test vectors in tb_data/ (default 1000)")
    b.add_argument("--precision", action="append", default=[], metavar="LAYER.KIND=TYPE",
                   help="replace a derived precision (for experiments; verify shows what it breaks)")
    b.add_argument("--no-progress", action="store_true",
                   help="no progress lines on stderr (default: one as each build step starts)")
    b.set_defaults(func=cmd_build)
    v = fsub.add_parser(
        "verify", formatter_class=formatter,
        help="QKeras, HLS C simulation, testbench and RTL on the same events, bit for bit",
        description="Score N events with the QKeras model, hls4ml's C simulation, the project's\n"
                    "testbench (g++) and the RTL (Verilator); report the fraction of events equal in\n"
                    "all, the largest difference in LSBs, trigger decisions at the model's calibrated\n"
                    "thresholds, the RTL latency measured in simulation and da4ml's resource estimate.\n"
                    "Exits 1 on any mismatch.",
        epilog="examples:\n"
               "  darktrigger firmware verify --project fw/qvae --events bkg_test.h5 --n 100000\n"
               "  darktrigger firmware verify --project fw/qvae      # on the project's test vectors\n"
               "  darktrigger firmware verify --project fw/qvae --events bkg.h5 --model models/qvae --json v.json")
    v.add_argument("--project", type=Path, required=True, help="a folder made by firmware build")
    v.add_argument("--events", type=Path, default=None,
                   help="events (any format darktrigger reads; default: the project's test vectors "
                        "in tb_data/)")
    v.add_argument("--n", type=int, default=100_000, help="events to check (default 100000)")
    v.add_argument("--model", type=Path, default=None, help="also check the project was built from this model")
    v.add_argument("--no-rtl", action="store_true", help="skip the RTL")
    v.add_argument("--no-testbench", action="store_true", help="skip the g++ testbench")
    v.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    v.add_argument("--no-progress", action="store_true",
                   help="no progress lines on stderr (default: one as each implementation starts)")
    v.set_defaults(func=cmd_verify)
    i = fsub.add_parser(
        "import", formatter_class=formatter,
        help="build an hls4mlEmulator plugin project (AXOL1TL's layout) into a scoring model",
        description="Check and build a plugin project laid out as CMS's AXOL1TL ones (the emulator\n"
                    ".cpp with a class deriving hls4mlEmulator::Model and extern \"C\" create_model/\n"
                    "destroy_model, NN/ with the hls4ml sources, scales.h, a Makefile) with g++ against\n"
                    "hls4ml's ap_types and darktrigger's interface header, into a model directory that\n"
                    "the emulator backend scores as CMSSW's AXOL1TLCondition does: the 57\n"
                    "ap_fixed<18,13> inputs, prepare_input, predict, read_result; score = loss x 16.",
        epilog="examples:\n"
               "  darktrigger firmware import --emulator AXOL1TL_v5 --out models/axol1tl_v5\n"
               "  darktrigger score --model models/axol1tl_v5 --events zb.h5 --out zb_scored.h5")
    i.add_argument("--emulator", type=Path, required=True, metavar="DIR", help="the plugin project folder")
    i.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model directory to write")
    i.add_argument("--name", default=None, help="the model's name (default: the folder's name)")
    i.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    i.set_defaults(func=cmd_import)
