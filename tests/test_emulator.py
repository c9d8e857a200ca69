"""hls4mlEmulator plugins imported and scored as CMSSW does (issue 16, items 1 and 7).

Real parts: a plugin project in AXOL1TL's layout generated here (an hls4ml network of AXOL1TL
v1's shape, ``scales.h``, an emulator class and a Makefile: :mod:`darktrigger.firmware.testing`),
built by ``darktrigger firmware import`` with g++; 100,000 toy zero-bias crossings; a
standalone C++ driver (``firmware/cmssw/driver.cc``) that loads the same ``.so`` and fills
the inputs from the hardware counts as CMSSW's condition does. Small hand-written projects
check the errors. About 45 s on one core, most of it compiling the hls4ml network once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.firmware import emulator
from darktrigger.firmware.errors import FirmwareError, ProjectError
from darktrigger.firmware.testing import RESULT_TYPE, axol1tl_v1_project
from darktrigger.models import load_model
from darktrigger.replay.generators.toy import ToyGenerator
from darktrigger.replay.l1units import hardware_counts
from darktrigger.replay.readers import open_events
from darktrigger.replay.storage import write_events

N_EVENTS = 100_000


@dataclass
class Imported:
    root: Path
    source: Path
    model: Path
    driver: Path
    events: Path


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    root = tmp_path_factory.mktemp("emulator")
    source = axol1tl_v1_project(root / "GTADModel_v1")
    model = root / "axo_v1"
    assert main(["firmware", "import", "--emulator", str(source), "--out", str(model),
                 "--name", "axo_v1", "--no-progress"]) == 0
    driver = emulator.compile_driver(root / "driver", f"std::array<{RESULT_TYPE}, 3>")
    events = root / "zb.h5"
    write_events(events, ToyGenerator().generate("zero_bias", N_EVENTS, seed=16))
    return Imported(root, source, model, driver, events)


def test_import_layout_and_manifest(v1: Imported) -> None:
    for name in ("card.json", "backend.json", emulator.MANIFEST, "README.md", "GTADModel_v1.so",
                 emulator.SHIM_FILE, "source/Makefile", "source/scales.h", "source/NN/GTADModel_v1.cpp"):
        assert (v1.model / name).is_file(), name
    m = emulator.EmulatorManifest.read(v1.model)
    assert m.name == "axo_v1"
    assert m.pair_type == "std::pair<std::array<result_t, 3>, resultsq_t>"  # read from the source
    # ... and resolved by the compiler against the project's own headers
    assert m.pair_type_resolved == ("std::pair<std::array<ap_fixed<10, 7, AP_RND_CONV, AP_SAT, 0>, 3>, "
                                    "ap_ufixed<18, 14> >")
    assert m.loss_is_cmssw
    readme = (v1.model / "README.md").read_text()
    assert "| 15 | muon0 | hwPt/2 |" in readme
    assert "hwPhiAtVtx" in readme


def test_score_equals_the_cmssw_style_driver_on_100k_events(v1: Imported) -> None:
    out = v1.root / "scored.h5"
    # no --backend: the model directory's backend.json names the emulator
    assert main(["score", "--model", str(v1.model), "--events", str(v1.events), "--out", str(out),
                 "--no-progress"]) == 0
    batch = open_events(out).read_all()
    scores = np.asarray(batch.columns["score/axo_v1"], np.float64)
    counts = hardware_counts(batch.objects)
    driven = emulator.run_driver(v1.driver, v1.model / "GTADModel_v1.so", counts, v1.root)
    assert len(scores) == len(driven) == N_EVENTS
    np.testing.assert_array_equal(scores, driven)
    # the scores are CMSSW's: loss (ap_ufixed<18,14>) x 16 is an integer below 2^18, and they vary
    assert np.array_equal(scores, np.round(scores))
    assert scores.min() >= 0
    assert scores.max() < 2**18
    assert len(np.unique(scores)) > 500
    # the events exercise every input kind, muons on their own (finer) LSBs
    muons = counts[:, 5:9]
    assert (muons[..., 0] > 0).sum() > 1000
    assert (muons[..., 2] > 143).any()
    assert (np.abs(muons[..., 1]) > 128).any()
    assert (counts[:, 1:5, 0] > 0).any()
    assert (counts[:, 9:, 0] > 0).sum() > 10_000


def test_an_anomaly_seed_runs_the_imported_plugin(v1: Imported) -> None:
    from darktrigger.daq.trigger.menu import Menu, add_scores, load_scorers

    batch = next(ToyGenerator().generate("zero_bias", 3000, seed=3, batch_size=3000))
    scorer = load_model(v1.model, "emulator")
    scores = scorer.score(batch)
    threshold = float(np.quantile(scores, 0.9))
    menu = Menu.from_dict({"models": {"axo": {"path": str(v1.model), "backend": "emulator"}},
                           "seeds": [{"name": "AXO_v1", "type": "anomaly", "model": "axo",
                                      "threshold": threshold}]})
    decision = menu.decide(add_scores(batch, load_scorers(menu)))
    fired = (decision.bits & 1).astype(bool)
    np.testing.assert_array_equal(fired, scores > threshold)
    assert 100 < fired.sum() < 600


def test_scorer_is_score_only_and_one_call_per_batch(v1: Imported) -> None:
    scorer = load_model(v1.model, "onnxruntime")  # backend.json: the emulator runs it anyway
    assert isinstance(scorer, emulator.EmulatorScorer)
    assert scorer.spec == "axo_v1"
    x = emulator.smoke_inputs()
    np.testing.assert_array_equal(scorer.score_inputs(x), emulator.EmulatorManifest.read(v1.model).smoke)
    with pytest.raises(Exception, match="only scores"):
        scorer.fit(np.zeros((2, 57), np.float32))


def test_scoring_from_two_threads_at_once(v1: Imported) -> None:
    import threading

    scorer = load_model(v1.model, "emulator")
    batch = next(ToyGenerator().generate("zero_bias", 20_000, seed=8, batch_size=20_000))
    expected = scorer.score(batch)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(scorer.score(batch))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for r in results:
        np.testing.assert_array_equal(r, expected)


# -- bad input: small hand-written projects ---------------------------------------------
TINY = """#include "NN/tiny.h"
#include "emulator.h"
#include <any>
#include <utility>
#include "ap_fixed.h"
#include "scales.h"
class Tiny : public hls4mlEmulator::Model {
  unscaled_t in_[57]; resultsq_t loss_;
 public:
  void prepare_input(std::any input) override {
    unscaled_t* p = std::any_cast<unscaled_t*>(input);
    for (int i = 0; i < 57; i++) in_[i] = p[i];
  }
  void predict() override { loss_ = tiny(in_); }
  void read_result(std::any result) override {
    auto* p = std::any_cast<std::pair<ap_fixed<18, 14, AP_RND_CONV, AP_SAT>, resultsq_t>*>(result);
    p->first = loss_; p->second = loss_;
  }
};
extern "C" hls4mlEmulator::Model* create_model() { return new Tiny; }
extern "C" void destroy_model(hls4mlEmulator::Model* m) { delete m; }
"""
TINY_NN_H = """#pragma once
#include "ap_fixed.h"
typedef ap_fixed<18, 13> unscaled_t;
typedef ap_ufixed<18, 14> resultsq_t;
resultsq_t tiny(const unscaled_t in[57]);
"""
TINY_NN = """#include "tiny.h"
resultsq_t tiny(const unscaled_t in[57]) { resultsq_t s = 0; for (int i = 0; i < 57; i += 3) s += in[i] >> 4; return s; }
"""
TINY_MAKE = """tiny.so: tiny_emulator.o tiny.o
\t$(CXX) $(CXXFLAGS) -shared $^ -o $@
%.o: NN/%.cpp
\t$(CXX) $(CXXFLAGS) $(INCLUDES) -c $< -o $@
%.o: %.cpp
\t$(CXX) $(CXXFLAGS) $(INCLUDES) -c $< -o $@
"""


def tiny_project(root: Path, emulator_cpp: str = TINY, scales: str = "#pragma once\n") -> Path:
    (root / "NN").mkdir(parents=True)
    (root / "tiny_emulator.cpp").write_text(emulator_cpp)
    (root / "NN" / "tiny.h").write_text(TINY_NN_H)
    (root / "NN" / "tiny.cpp").write_text(TINY_NN)
    (root / "scales.h").write_text(scales)
    (root / "Makefile").write_text(TINY_MAKE)
    return root


def test_a_small_project_scores_exactly(tmp_path: Path) -> None:
    emulator.import_emulator(tiny_project(tmp_path / "tiny"), tmp_path / "m")
    scorer = emulator.EmulatorScorer.load(tmp_path / "m")
    x = np.zeros((3, 57), np.int32)
    x[1, 0::3] = 32  # 19 pT inputs of 32: each >> 4 = 2, loss 38, score 608
    x[2, 0] = 5000  # beyond ap_fixed<18,13>: wraps to 5000 - 8192, as CMSSW's assignment would;
    # >> 4 is -199.5, which the unsigned loss wraps modulo 2^14
    assert scorer.score_inputs(x).tolist() == [0.0, 38 * 16, (5000 - 8192) % 2**18]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: (p / "tiny_emulator.cpp").write_text(TINY.replace("public hls4mlEmulator::Model", "public Base")),
     r"no \.cpp file at its top level defines a class deriving hls4mlEmulator::Model"),
    (lambda p: (p / "tiny_emulator.cpp").write_text(TINY.replace('extern "C" void destroy_model', "void destroy_model")),
     r'defines no extern "C" destroy_model\(\)'),
    (lambda p: (p / "scales.h").unlink(), r"lacks scales\.h"),
    # AXOL1TL v1's own read_result filled an array: CMSSW's condition passes a pair
    (lambda p: (p / "tiny_emulator.cpp").write_text(TINY.replace(
        "auto* p = std::any_cast<std::pair<ap_fixed<18, 14, AP_RND_CONV, AP_SAT>, resultsq_t>*>(result);\n    p->first = loss_; p->second = loss_;",
        "*std::any_cast<resultsq_t*>(result) = loss_;")),
     r"error: static assertion failed: darktrigger: the plugin's read_result must fill a std::pair<result, loss>"),
    # declared in the source but not in the library: the loader's own check names the symbol
    (lambda p: (p / "tiny_emulator.cpp").write_text(TINY.replace('extern "C" void destroy_model', '#if 0\nextern "C" void destroy_model') + "#endif\n"),
     r'exports no extern "C" destroy_model symbol'),
    (lambda p: (p / "tiny_emulator.cpp").write_text(TINY.replace("void predict() override {", "void predict() override { undeclared_x = 1;")),
     r"tiny_emulator\.cpp:\d+:\d+: error: .undeclared_x. was not declared"),
])
def test_bad_projects_are_named(tmp_path: Path, edit: object, message: str) -> None:
    src = tiny_project(tmp_path / "bad")
    edit(src)  # type: ignore[operator]
    with pytest.raises((ProjectError, FirmwareError), match=message) as info:
        emulator.import_emulator(src, tmp_path / "m")
    assert str(src) in str(info.value)
    assert not (tmp_path / "m").exists()


def test_a_plugin_taking_other_inputs_than_cmssw_passes(tmp_path: Path) -> None:
    src = tiny_project(tmp_path / "other", TINY.replace("std::any_cast<unscaled_t*>(input)",
                                                        "reinterpret_cast<unscaled_t*>(std::any_cast<float*>(input))"))
    with pytest.raises(FirmwareError, match=r"prepare_input.*bad_any_cast.*ap_fixed<18, 13>") as info:
        emulator.import_emulator(src, tmp_path / "m")
    assert str(src) in str(info.value)
