"""Every command block of README.md, and of a firmware project's README, runs as written
(issue 19, acceptance): from a fresh temporary folder, with the README's relative paths,
one command after the other as a new user types them.

README.md is read when the test runs (it changes with the project). Each fenced block is
either run or listed here with the reason it is not:

- ``bash`` blocks: every command (a line; lines ending in ``\\``, ``|``, ``&&`` or ``||``
  joined to the next, a here-document with its lines; comments kept, as a shell takes
  them) runs with ``bash -c`` in the folder, ``darktrigger`` being the one of this Python;
  a command that serves until stopped (:data:`SERVERS`) is started, checked to serve, and
  stopped with Ctrl-C (SIGINT);
- ``python`` blocks run with this Python in the same folder;
- a block without a language must be one of :data:`LISTINGS` (not commands); any other
  fails the test, so that a new block is run or listed, never skipped unseen.

Long commands run on small data: :func:`smaller` rewrites the event counts, epochs and
checked events of a few kinds of command (its table says which and why), and the report
prints every rewritten command beside the README's. Public data files a user brings
(an ADC2021 file, a Dark Machines file) are written from their specs
(:data:`USER_FILES`). Commands that cannot run here are in :data:`NOT_RUN` with the
reason. After README.md, the firmware project that README's ``firmware build`` wrote has
its own README, whose blocks run the same way in the project folder (vendor tools only
where installed).

A failing command does not stop the others: the test ends with every failure, each with
the command, its exit code and the end of its output.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from darktrigger.replay.testing import write_sample

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # where `darktrigger` of this environment lives

#: command (its start, as written) → why it does not run here
NOT_RUN: dict[str, str] = {
    "make demo": "builds .venv in the repository and runs `darktrigger demo` at full size (minutes); "
                 "tests/test_demo.py runs the same demo on small samples",
    "make test": "the whole test suite, this test included",
}

#: a command that serves until stopped (its start) → seconds it may take to show it serves
SERVERS: dict[str, float] = {
    "darktrigger monitor serve": 15.0,
    "darktrigger stage ": 15.0,
}

#: blocks without a language, by their first line → why they hold no commands
LISTINGS: dict[str, str] = {
    "replay/": "the source layout (a listing of folders)",
}

#: files README commands read that a user brings (public data); written from their specs
USER_FILES: dict[str, Callable[[Path], object]] = {
    "background_for_training.h5": lambda p: write_sample("adc2021", p, n=2000, seed=1),
    "chan1.csv": lambda p: write_sample("darkmachines", p, n=500, seed=2),
}

#: vendor tools a README command may start: run only where installed
VENDOR_TOOLS = ("vitis_hls", "vivado_hls", "vivado")


# -- reading a README ----------------------------------------------------------------------------
@dataclass
class Block:
    """A fenced block: its language (``""`` for none), the line of its first line, its text."""

    language: str
    line: int
    text: str

    def commands(self) -> list[tuple[int, str]]:
        """(line, command) of each command in it (module doc); blank and comment lines left out."""
        out: list[tuple[int, str]] = []
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            start, command = self.line + i, lines[i]
            heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", command)
            if heredoc:  # the document's lines, up to its end word, belong to the command
                while i + 1 < len(lines) and lines[i].strip() != heredoc.group(1):
                    i += 1
                    command += "\n" + lines[i]
            while command.rstrip().endswith(("\\", "|", "&&", "||")) and i + 1 < len(lines):
                i += 1
                command += "\n" + lines[i]
            i += 1
            if command.strip() and not command.lstrip().startswith("#"):
                out.append((start, command.strip()))
        return out


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    found = []
    for m in re.finditer(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", markdown, re.S | re.M):
        found.append(Block(m.group(1).lower(), markdown.count("\n", 0, m.start()) + 2, m.group(2)))
    return found


# -- small data ----------------------------------------------------------------------------------------
def _option(words: list[str], name: str) -> int | None:
    return words.index(name) if name in words else None


def _count(text: str) -> int:
    from darktrigger.daq.cli.common import event_count

    return event_count(text)


def smaller(command: str) -> tuple[str, str]:
    """(the command to run, how it differs from the README's and why; "" when it does not).

    ================================  =========================================================
    command                           on small data
    ================================  =========================================================
    ``generate --generator pythia``   at most 100 events (Pythia takes ~0.1 s an event); for
                                      ``zero_bias`` also ``--library-events 3000`` (the
                                      minimum-bias library, in a fresh cache folder: 100k
                                      events, the default, take ~4 min)
    ``generate`` (toy)                at most 2,000,000 events (the toy makes ~1M a second)
    ``replay``, ``run``               at most 200,000 events
    ``train``                         ``--epochs 2`` and ``--max-events 100000`` (set or added)
    ``cwola hunt``                    ``--epochs 3 --null-toys 50 --folds 3 --inner-folds 1
                                      --max-events 300000`` (set or added: 3 models a window,
                                      not 10, on 300k of the 1M dijets)
    ``firmware verify``               ``--n`` at most 2,000
    ``evaluate``, ``score``           ``--max-events`` at most 200,000 (per file; for evaluate
                                      also the events ``--pca-fit`` reads)
    ================================  =========================================================
    """
    if "\n" in command.replace("\\\n", ""):  # a pipeline or a here-document: as written
        return command, ""
    try:
        words = shlex.split(command.replace("\\\n", " "), comments=True)
    except ValueError:
        return command, ""
    if len(words) < 2 or words[0] != "darktrigger":
        return command, ""
    changed: list[str] = []

    def cap(option: str, most: int) -> None:
        i = _option(words, option)
        if i is not None and i + 1 < len(words) and _count(words[i + 1]) > most:
            changed.append(f"{option} {words[i + 1]} → {most}")
            words[i + 1] = str(most)

    def at_most(option: str, most: int) -> None:
        if _option(words, option) is None:
            words.extend([option, str(most)])
            changed.append(f"{option} {most} added")
        else:
            cap(option, most)

    sub = words[1]
    if sub == "generate":
        pythia = "pythia" in words[_option(words, "--generator") or 0:][:2]
        cap("--events", 100 if pythia else 2_000_000)
        if pythia and "zero_bias" in words:
            at_most("--library-events", 3000)
    elif sub in ("replay", "run"):
        cap("--events", 200_000)
    elif sub == "train":
        at_most("--epochs", 2)
        at_most("--max-events", 100_000)
    elif words[1:3] == ["cwola", "hunt"]:
        at_most("--epochs", 3)
        at_most("--null-toys", 50)
        at_most("--folds", 3)
        at_most("--inner-folds", 1)
        at_most("--max-events", 300_000)
    elif words[1:3] == ["firmware", "verify"]:
        cap("--n", 2000)
    elif sub in ("evaluate", "score"):
        at_most("--max-events", 200_000)
    if not changed:
        return command, ""
    return shlex.join(words), "small data: " + ", ".join(changed)


# -- running ------------------------------------------------------------------------------------------
@dataclass
class Report:
    """What was run, rewritten, left out and what failed; printed at the end."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.lines.append(text)

    def fail(self, where: str, command: str, code: int | None, output: str) -> None:
        self.failures.append(f"{where}: `{command}` exited {code}:\n{output[-2500:]}")
        self.note(f"  FAILED ({code})")


#: a fresh cache folder for the run (the Pythia minimum-bias library is built as on a new machine)
CACHE: dict[str, str] = {}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CACHE)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONWARNINGS"] = "ignore"  # a user's shell: third-party warnings are not failures here
    return env


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve(command: str, cwd: Path, seconds: float, where: str, report: Report) -> None:
    """Start a command that serves until stopped: it passes if it is still up after
    ``seconds``, every http:// address it printed answers 200, and it stops on SIGINT."""
    log_path = cwd / f".serve-{time.monotonic_ns()}.log"
    with log_path.open("w") as log:
        # SIGINT as a terminal gives it: a suite started in the background of a shell
        # (`make test &`) passes SIGINT down ignored, and a user's Ctrl-C is never ignored
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=_env(), text=True,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_default_sigint)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        if proc.poll() is not None:
            report.fail(where, command, proc.returncode, log_path.read_text())
            return
        for url in re.findall(r"http://[\w.:-]+/\S*", log_path.read_text()):
            with urllib.request.urlopen(url, timeout=10) as page:  # noqa: S310 (loopback, our own server)
                report.note(f"  {url} answered {page.status}")
                if page.status != 200:
                    report.fail(where, command, None, f"{url} answered {page.status}")
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            report.fail(where, command, None, "did not stop within 60 s of SIGINT\n" + log_path.read_text())
            return
    if proc.returncode not in (0, 130):
        report.fail(where, command, proc.returncode, log_path.read_text())
    else:
        report.note(f"  served {seconds:.0f} s, stopped by SIGINT (exit {proc.returncode})")
    log_path.unlink()


def run_block(block: Block, cwd: Path, where: str, report: Report) -> None:
    """Run one block of a README (see the module doc), noting each command in ``report``."""
    if block.language == "python":
        report.note(f"{where}, line {block.line}: python block")
        done = subprocess.run([sys.executable, "-c", block.text], cwd=cwd, env=_env(),
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            report.fail(f"{where}, line {block.line}", "python block", done.returncode,
                        done.stdout + done.stderr)
        return
    if block.language not in ("bash", "sh", "shell", "console"):
        first = block.text.strip().splitlines()[0] if block.text.strip() else ""
        reason = next((why for start, why in LISTINGS.items() if first.startswith(start)), None)
        if reason is None:
            report.fail(f"{where}, line {block.line}", first, None,
                        f"a block tagged {block.language or 'with no language'!r} that this test does "
                        "not know: tag it bash or python to have it run, or add it to LISTINGS with why")
        else:
            report.note(f"{where}, line {block.line}: not commands: {reason}")
        return
    for line, command in block.commands():
        report.note(f"{where}, line {line}: $ {command}")
        skip = next((why for start, why in NOT_RUN.items() if command.startswith(start)), None)
        tool = next((t for t in VENDOR_TOOLS if command.split()[0] == t), None)
        if skip is not None:
            report.note(f"  not run: {skip}")
            continue
        if tool is not None and shutil.which(tool) is None:
            report.note(f"  not run: needs the vendor tool {tool}, not installed here")
            continue
        run, how = smaller(command)
        if how:
            report.note(f"  ran as: $ {run}    ({how})")
        serve = next((s for start, s in SERVERS.items() if run.startswith(start)), None)
        if serve is not None:
            _serve(run, cwd, serve, f"{where}, line {line}", report)
            continue
        t0 = time.monotonic()
        done = subprocess.run(["bash", "-c", run], cwd=cwd, env=_env(), capture_output=True,
                              text=True, timeout=900)
        report.note(f"  exit {done.returncode} after {time.monotonic() - t0:.0f} s")
        if done.returncode != 0:
            report.fail(f"{where}, line {line}", command, done.returncode, done.stdout + done.stderr)


def test_blocks_commands_and_small_data() -> None:
    """The reading rules on a README of each kind of block (fast: nothing runs)."""
    text = ("# T\n\n```bash\nmake test   # all\n# a comment\ndarktrigger train --model ae \\\n"
            "    --background b.h5 --out m --epochs 30\nls |\n    wc -l\ncat > t.yaml <<'EOF'\n"
            "a: 1\nEOF\n```\n\n```python\nprint(1)\n```\n\n```\nreplay/   the layout\n```\n")
    found = blocks(text)
    assert [(b.language, b.line) for b in found] == [("bash", 4), ("python", 16), ("", 20)]
    assert found[0].commands() == [
        (4, "make test   # all"),
        (6, "darktrigger train --model ae \\\n    --background b.h5 --out m --epochs 30"),
        (8, "ls |\n    wc -l"), (10, "cat > t.yaml <<'EOF'\na: 1\nEOF")]
    assert smaller(found[0].commands()[1][1]) == (
        "darktrigger train --model ae --background b.h5 --out m --epochs 2 --max-events 100000",
        "small data: --epochs 30 → 2, --max-events 100000 added")
    assert smaller("darktrigger generate --generator pythia --process qcd --events 1e4 --out q.h5")[0] \
        .endswith("--events 100 --out q.h5")
    assert smaller("darktrigger generate --generator pythia --process zero_bias --events 2000 --out z.h5")[0] \
        .endswith("--events 100 --out z.h5 --library-events 3000")
    assert smaller("darktrigger evaluate --model m --background b.h5 --signal a=a.h5  # a comment") == (
        "darktrigger evaluate --model m --background b.h5 --signal a=a.h5 --max-events 200000",
        "small data: --max-events 200000 added")
    assert smaller("darktrigger inspect x.h5") == ("darktrigger inspect x.h5", "")
    assert smaller("ls |\n    wc -l") == ("ls |\n    wc -l", "")


def test_every_block_of_the_readme_is_run_or_listed() -> None:
    """Fast: each untagged block of README.md is a known listing, each tagged one is run."""
    for block in blocks((ROOT / "README.md").read_text()):
        if block.language in ("bash", "sh", "shell", "console", "python"):
            continue
        first = block.text.strip().splitlines()[0]
        assert any(first.startswith(start) for start in LISTINGS), \
            f"README.md line {block.line}: a block this test does not know ({first!r})"


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    report = Report()
    CACHE["XDG_CACHE_HOME"] = str(tmp_path / ".cache")
    for name, write in USER_FILES.items():
        write(tmp_path / name)
        report.note(f"user file {name}: written from its format's spec (darktrigger.replay.testing)")
    for block in blocks((ROOT / "README.md").read_text()):
        run_block(block, tmp_path, "README.md", report)
    projects = sorted(p.parent for p in tmp_path.glob("**/darktrigger-firmware.json"))
    if not projects:
        report.fail("README.md", "firmware build", None, "no firmware project was built, so its README "
                    "could not be checked")
    for project in projects[:1]:
        where = f"{project.relative_to(tmp_path)}/README.md"
        for block in blocks((project / "README.md").read_text()):
            run_block(block, project, where, report)
    text = "\n".join(report.lines)
    (tmp_path / "readme-commands.txt").write_text(text + "\n")
    assert not report.failures, text + "\n\nFAILURES\n\n" + "\n\n".join(report.failures)
