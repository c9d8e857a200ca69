"""Every command that can run longer than a few seconds shows progress (issue 19, point 5):
a tqdm bar on a terminal, log lines otherwise.

Each command runs as a user starts it, ``python -m darktrigger ...`` in a folder with
relative paths: with its output on a pseudo-terminal (the bar, with the epoch in it), or
on pipes (numbered step lines, periodic lines; ``DARKTRIGGER_PROGRESS_S`` shortens their
period so that a small test run shows several). Covered: ``train`` (ae on a terminal;
qae on a terminal and on pipes), ``firmware build`` and ``firmware verify``, ``cwola
hunt`` and a paced ``run``.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from darktrigger.daq.testing import free_metrics_base, make_setup, write_topology
from darktrigger.models.quantised.testing import train_small
from darktrigger.replay.generators import GENERATORS
from darktrigger.replay.storage import write_events

DARKTRIGGER = [sys.executable, "-m", "darktrigger"]


def in_terminal(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run ``darktrigger args`` with stdout and stderr on a pseudo-terminal (120 columns);
    (exit code, everything the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([*DARKTRIGGER, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                proc.kill()
                pytest.fail(f"darktrigger {' '.join(args)}: no end after {timeout} s; so far:\n"
                            + b"".join(chunks).decode(errors="replace")[-3000:])
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


def on_pipes(args: list[str], cwd: Path, every_s: float | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``darktrigger args`` with stdout and stderr on pipes (a batch job, a log file)."""
    env = dict(os.environ)
    if every_s is not None:
        env["DARKTRIGGER_PROGRESS_S"] = str(every_s)
    done = subprocess.run([*DARKTRIGGER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bkg.h5`` (6,000 toy sm_mix events) and ``dijets.h5`` (60,000 toy qcd_dijet)."""
    root = tmp_path_factory.mktemp("progress")
    toy = GENERATORS.get("toy")()
    write_events(root / "bkg.h5", next(toy.generate("sm_mix", 6_000, seed=1, batch_size=6_000)))
    write_events(root / "dijets.h5", next(toy.generate("qcd_dijet", 60_000, seed=2, batch_size=60_000)))
    return root


# -- train ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["ae", "qae"])
def test_train_shows_a_bar_with_the_epoch_on_a_terminal(folder: Path, model: str) -> None:
    code, screen = in_terminal(["train", "--model", model, "--background", "bkg.h5", "--out",
                                f"models/{model}-tty", "--epochs", "3", "--batch-size", "256"], folder)
    assert code == 0, screen
    for epoch in (1, 2, 3):  # the label names the epoch as it goes
        assert f"train {model} epoch {epoch}/3" in screen, screen
    batches = 3 * -(-4_800 // 256)  # 80 % of 6,000 events for training, in batches of 256
    assert re.search(rf"\b{batches}/{batches} \[", screen), screen  # tqdm's count of the batches
    assert "\r" in screen  # a bar redrawn in place, not lines
    assert f"model in models/{model}-tty" in screen


def test_train_qae_logs_lines_without_a_terminal(folder: Path) -> None:
    done = on_pipes(["train", "--model", "qae", "--background", "bkg.h5", "--out", "models/qae-pipe",
                     "--epochs", "3", "--batch-size", "64"], folder, every_s=0.2)
    lines = re.findall(r"INFO darktrigger\.progress: train qae: epoch (\d)/3: ([\d,]+)/([\d,]+) batch "
                       r"\((\d+) %, (\d+) s", done.stderr)
    assert len(lines) >= 3, done.stderr
    counts = [int(n.replace(",", "")) for _, n, *_ in lines]
    assert counts == sorted(counts)
    assert counts[-1] == int(lines[-1][2].replace(",", "")) == 3 * -(-4_800 // 64)
    assert lines[-1][0] == "3"
    assert "\r" not in done.stderr  # no bar drawn into a log file
    assert "validation_loss" in done.stderr


# -- firmware --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_firmware_build_and_verify_log_each_step(folder: Path) -> None:
    train_small("qvae", folder / "models" / "qvae-fw", n=1_000, hidden=[8], latent=2)
    done = on_pipes(["firmware", "build", "--model", "models/qvae-fw", "--out", "fw/qvae", "--rtl",
                     "--tb-events", "200"], folder)
    steps = re.findall(r"INFO darktrigger\.progress: firmware build fw/qvae \[(\d)/7\] (.+) \((\d+) s so far\)",
                       done.stderr)
    assert [int(k) for k, *_ in steps] == list(range(1, 8)), done.stderr
    assert [int(s) for *_, s in steps] == sorted(int(s) for *_, s in steps)
    said = " | ".join(text for _, text, _ in steps)
    for part in ("test vectors", "hls4ml", "C simulation (g++)", "da4ml", "Verilator compiles"):
        assert part in said, said
    assert "firmware of qvae written to fw/qvae" in done.stdout
    verified = on_pipes(["firmware", "verify", "--project", "fw/qvae", "--events", "bkg.h5", "--n", "500"],
                        folder)
    steps = re.findall(r"firmware verify fw/qvae \[(\d)/6\] (.+) \(", verified.stderr)
    assert [int(k) for k, _ in steps] == list(range(1, 7)), verified.stderr
    assert "OK, bit-exact" in verified.stdout
    quiet = on_pipes(["firmware", "verify", "--project", "fw/qvae", "--n", "100", "--no-rtl",
                      "--no-progress"], folder)
    assert "darktrigger.progress" not in quiet.stderr


# -- the CWoLa hunt ----------------------------------------------------------------------------------
def test_cwola_hunt_logs_folds_and_null_toys_without_a_terminal(folder: Path) -> None:
    done = on_pipes(["cwola", "hunt", "--events", "dijets.h5", "--windows", "3216-3737", "--folds", "3",
                     "--inner-folds", "1", "--epochs", "3", "--null-toys", "300", "--no-plots",
                     "--no-export", "--out", "hunt"], folder, every_s=0.0)
    folds = re.findall(r"cwola hunt: window 1, fold (\d)/3: (\d)/3 fold", done.stderr)
    assert folds[-1] == ("3", "3"), done.stderr
    toys = [int(n) for n in re.findall(r"cwola hunt: null toys: ([\d,]+)/300 toy", done.stderr)]
    assert len(toys) >= 2, done.stderr
    assert toys[-1] == 300
    assert "\r" not in done.stderr


# -- the pipeline ------------------------------------------------------------------------------------
def test_a_paced_run_logs_progress_lines(tmp_path: Path) -> None:
    root = make_setup(tmp_path, n_bkg=5_000, model=False)
    config = write_topology(root, "paced.yaml", source={"rate_hz": 100_000, "events": 300_000},
                            metrics={"enabled": True, "host": "127.0.0.1", "base_port": free_metrics_base(2),
                                     "live_page": False})
    done = on_pipes(["run", "--config", config.name, "--progress", "1"], root)
    events = [int(e.replace(",", "")) for e in
              re.findall(r"darktrigger run: \[\s*\d+ s\] events in ([\d,]+)", done.stderr)]
    assert len(events) >= 2, done.stderr
    assert events == sorted(events)
    assert "run summary:" in done.stdout
