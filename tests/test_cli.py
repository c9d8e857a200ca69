from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from darktrigger.daq.cli import build_parser, main
from darktrigger.replay import testing as spec_files
from darktrigger.replay.readers import READERS
from darktrigger.replay.testing import write_sample

DARKTRIGGER = [sys.executable, "-m", "darktrigger"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*DARKTRIGGER, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "darktrigger"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "generate" in proc.stdout
    assert "replay" in proc.stdout


def _subcommands() -> list[list[str]]:
    """Every command line that has its own --help: ``[family]`` or ``[family, subcommand]``."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        out += [[name, s] for a in nested for s in a.choices] if nested else [[name]]
    return out


@pytest.mark.parametrize("command", _subcommands(), ids=" ".join)
def test_every_subcommand_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert f"darktrigger {' '.join(command)}" in out


def test_subcommands_are_all_listed():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"generate", "inspect", "replay", "formats"} <= set(sub.choices)


def test_generate_inspect_replay(tmp_path):
    bkg, sig = tmp_path / "bkg.h5", tmp_path / "sig.h5"
    out = run("generate", "--generator", "toy", "--process", "sm_mix", "--events", "20000",
              "--seed", "3", "--out", str(bkg), "--no-progress").stdout
    assert "wrote 20,000 toy sm_mix events (seed 3)" in out
    run("generate", "--generator", "toy", "--process", "ato4l", "--events", "2000", "--seed", "4",
        "--out", str(sig), "--no-progress")
    info = json.loads(run("inspect", str(bkg), "--json").stdout)
    assert info["format"] == "native"
    assert info["events"] == 20000
    assert info["metadata"]["provenance"]["process"] == "sm_mix"
    assert len(info["occupancy"]) == 19
    assert info["occupancy"][0]["type"] == "met"
    assert set(info["pt"]) == {"met", "egamma", "muon", "jet"}
    text = run("inspect", str(sig)).stdout
    assert "events    2,000" in text
    assert "slot occupancy" in text
    rep = run("replay", "--mix", f"{bkg}=0.9", "--mix", f"{sig}=0.1", "--events", "10000",
              "--out", str(tmp_path / "stream.h5")).stdout
    assert "replayed 10,000 events" in rep
    assert "ato4l" in rep
    again = json.loads(run("inspect", str(tmp_path / "stream.h5"), "--json").stdout)
    assert again["events"] == 10000


def test_replay_injects_a_signal_by_its_rate(tmp_path):
    """--inject FILE=RATE@FRACTION: the signal's weight share is its rate over the crossing rate."""
    import numpy as np

    from darktrigger.replay.events import PROCESS_LABELS
    from darktrigger.replay.readers import open_events

    zb, sig, out = tmp_path / "zb.h5", tmp_path / "sig.h5", tmp_path / "stream.h5"
    run("generate", "--generator", "toy", "--process", "zero_bias", "--events", "50000", "--seed", "5",
        "--out", str(zb), "--no-progress")
    run("generate", "--generator", "toy", "--process", "ato4l", "--events", "500", "--seed", "4",
        "--out", str(sig), "--no-progress")
    rep = run("replay", "--mix", f"{zb}=background", "--inject", f"{sig}=20@0.002", "--events", "40000",
              "--crossing-rate-mhz", "28.61", "--out", str(out)).stdout
    assert f"from {sig}: 80" in rep   # floor(0.002 x 40,000) drawn
    batches = list(open_events(out))
    w = np.concatenate([b["weight"] for b in batches]).astype(np.float64)
    signal = np.concatenate([b["truth"] for b in batches]) == PROCESS_LABELS["ato4l"]
    assert w[signal].sum() / w.sum() * 28.61e6 == pytest.approx(20.0, rel=1e-5)   # float32 weights
    bad = run("replay", "--mix", f"{zb}=background", "--inject", f"{sig}=fast", "--events", "10", check=False)
    assert bad.returncode != 0
    assert "--inject" in bad.stderr
    assert "RATE_HZ" in bad.stderr


def test_same_seed_same_file_content(tmp_path):
    import numpy as np

    from darktrigger.replay.readers import open_events

    paths = []
    for name in ("a.h5", "b.h5"):
        run("generate", "--generator", "toy", "--process", "qcd", "--events", "5000", "--seed", "9",
            "--out", str(tmp_path / name), "--no-progress")
        paths.append(tmp_path / name)
    a, b = (open_events(p).read_all() for p in paths)
    for col in a.columns:
        np.testing.assert_array_equal(a[col], b[col])


def test_bad_input_exit_codes_and_messages(tmp_path):
    good = spec_files.dm_line(1, "ttbar", 1.0, 30e3, 0.1, [("j", 60e3, 50e3, 0.5, 0.3)])
    lines = [good, good.replace("60000.0", "sixty"), good, "2;ttbar;1;3e4;0.1;q,1,2,3,4;", good]
    csv = spec_files.write_darkmachines(tmp_path / "chan1.csv", lines)
    proc = run("inspect", str(csv), check=False)
    assert proc.returncode == 2
    assert "chan1.csv, line 2" in proc.stderr
    assert "expected" in proc.stderr
    info = json.loads(run("inspect", str(csv), "--json", "--on-error", "skip").stdout)
    assert info["events"] == 3
    assert info["skipped"]["count"] == 2
    proc = run("generate", "--generator", "toy", "--process", "higgsino", "--events", "10",
               "--out", str(tmp_path / "x.h5"), check=False)
    assert proc.returncode == 2
    assert "higgsino" in proc.stderr
    proc = run("generate", "--generator", "pythai", "--process", "qcd", "--events", "10",
               "--out", str(tmp_path / "x.h5"), check=False)
    assert proc.returncode == 2
    assert "did you mean 'pythia'" in proc.stderr
    proc = run("replay", "--mix", "nofraction", check=False)
    assert proc.returncode == 2
    assert "FILE=FRACTION" in proc.stderr


def _format_files(tmp_path: Path) -> dict[str, Path]:
    """One small file of each format darktrigger reads, and a Pythia file."""
    files = {fmt: write_sample(fmt, tmp_path / f"sample-{fmt}", n=40, seed=1) for fmt in READERS.names()}
    files["pythia"] = tmp_path / "pythia.h5"
    run("generate", "--generator", "pythia", "--process", "qcd", "--events", "20", "--seed", "1",
        "--out", str(files["pythia"]), "--no-progress")
    return files


@pytest.mark.slow
def test_inspect_json_is_json_for_every_format(tmp_path):
    """FastJet's banner (LHC Olympics jets, Pythia) and TensorFlow's noise stay off stdout."""
    files = _format_files(tmp_path)
    assert set(files) == {*READERS.names(), "pythia"}
    for fmt, path in files.items():
        proc = run("inspect", "--json", str(path))
        info = json.loads(proc.stdout)  # the whole of stdout is one JSON document
        assert info["events"] > 0, fmt
        assert info["format"] == ("native" if fmt == "pythia" else fmt)


def test_readme_python_example_runs_beside_folders_named_like_our_layers(tmp_path):
    """A folder holding models/, replay/ and firmware/ (say, trained models) shadows nothing."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code, "README.md has no python example"
    for name in ("models", "replay", "firmware", "daq", "monitoring"):
        (tmp_path / name / "vae").mkdir(parents=True)
    write_sample("native", tmp_path / "bkg.h5", n=5000, seed=1)
    run("generate", "--generator", "toy", "--process", "ato4l", "--events", "1000", "--seed", "2",
        "--out", str(tmp_path / "ato4l.h5"), "--no-progress")
    proc = subprocess.run([sys.executable, "-c", code.group(1)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "200,000 events" in proc.stdout
    (tmp_path / "elsewhere").mkdir()
    modules = subprocess.run([sys.executable, "-c", "import models"], cwd=tmp_path / "elsewhere",
                             capture_output=True, text=True, timeout=60)
    assert modules.returncode == 1
    assert "No module named 'models'" in modules.stderr


def test_generate_recipe_is_a_pythia_option(tmp_path, capsys):
    """--recipe adc2021 reaches the Pythia generator only; --library-events goes with it.
    (The recipe's events: tests/test_pythia_adc2021.py.)"""
    out = tmp_path / "x.h5"
    assert main(["generate", "--generator", "toy", "--recipe", "adc2021", "--process", "sm_mix",
                 "--events", "10", "--out", str(out)]) == 2
    assert "--recipe is a Pythia recipe; it means nothing for --generator toy" in capsys.readouterr().err
    assert main(["generate", "--generator", "pythia", "--process", "qcd", "--library-events", "300",
                 "--events", "10", "--out", str(out)]) == 2
    assert "zero_bias and --recipe adc2021" in capsys.readouterr().err
    assert not out.exists()
    from darktrigger.daq.cli import build_parser
    from darktrigger.daq.cli.replay import _generator_options

    args = build_parser().parse_args(["generate", "--generator", "pythia", "--recipe", "adc2021", "--process",
                                      "ato4l", "--events", "10", "--library-events", "300", "--out", str(out)])
    assert _generator_options(args) == {"recipe": "adc2021", "library_events": 300}
