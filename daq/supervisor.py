"""Run every stage of a topology as a child process and watch over them.

``darktrigger run`` is this: the recorder, the trigger (unless the workers run the menu:
``trigger: {placement: in_workers}``), N scorer workers and the source
start as ``darktrigger stage NAME`` processes (the same command that starts one stage on
another host). A worker that dies is started again (the source sends its batches to the
others meanwhile), and so is a source, trigger or recorder: the recorder resumes from its
checkpoint (the counts of every batch it acknowledged, and the events file's committed
rows, copied to a clean file), the source replays the same batches and sends only those
not acknowledged, and after a trigger or recorder restart the source sends every
unacknowledged batch again (SIGUSR1); the summary counts the restarts. A stage that dies
again within seconds of a restart ends the run with an error naming it and its log. SIGINT (Ctrl-C) and SIGTERM ask the source to drain: the run
ends as at the end of its input, with every batch in flight recorded, and the summary's
``stopped_by`` says which ended it ("interrupted (SIGINT)", "terminated"; "timeout" or
the stage that died when the run fails). SIGHUP (a dropped ssh session) drains too. The
stages run in their own process group, so Ctrl-C in a terminal (which signals the whole
foreground process group) reaches the supervisor alone, which drains the run.

Every run is authenticated: unless the topology names its own ``security: {keys: ...}``
or turns authentication off (``security: {auth: off}``, for benchmarks), the supervisor
makes a CURVE key pair for this run alone (in a private temporary folder, removed when
the run ends) and gives it to its stages, so a local peer without it is refused during
the handshake; each run also has its own identity (``--run-id``), which every message
carries. The summary's ``status`` says what the run came to (complete, stopped, failed).

    >>> from darktrigger.daq.testing import make_setup, write_topology
    >>> root = make_setup(Path("pipeline"), n_bkg=5_000, model=False)  # toy events, object seeds
    >>> sup = Supervisor(write_topology(root), events=20_000)
    >>> summary = sup.run(timeout_s=120, install_signals=False)  # Ctrl-C stays the caller's
    >>> summary.events_in, summary.events_lost, summary.worker_restarts
    (20000, 0, 0)
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from darktrigger.daq.summary import RunSummary
from darktrigger.daq.topology import Topology
from darktrigger.replay.errors import ConfigError, DarkTriggerError

log = logging.getLogger(__name__)


#: A worker that exits this soon after starting, this many times in a row, cannot run
#: (a bad model, a missing file): the run stops instead of restarting it forever.
QUICK_EXIT_S = 10.0
MAX_QUICK_EXITS = 3


class StageFailed(DarkTriggerError, RuntimeError):
    """The run cannot go on: a stage that is not a worker exited with an error, workers that
    cannot start, or a time limit passed. ``stopped_by`` is what the run summary records."""

    def __init__(self, message: str, stopped_by: str) -> None:
        super().__init__(message)
        self.stopped_by = stopped_by


class OutputNotEmpty(DarkTriggerError, FileExistsError):
    """The run's output folder holds an earlier run's files and ``force`` was not given."""


@dataclass
class Progress:
    """Where a run stands: seconds since its start; events the source sent and events any
    seed kept (read from the stages' /metrics: None with metrics off); events per second
    since the previous report."""

    elapsed_s: float
    events_in: int | None = None
    accepted: int | None = None
    rate_hz: float | None = None
    #: False when no stage answered this time (the counts are the last ones heard)
    fresh: bool = True

    def __str__(self) -> str:
        """One line: ``[  12 s] events in 1,228,800  accepted 4,562  (98,304 events/s)``."""
        head = f"[{self.elapsed_s:5.0f} s]"
        if self.events_in is None:
            return f"{head} running (no event counts: metrics are off in the topology)"
        acc = "" if self.accepted is None else f"  accepted {self.accepted:,}"
        if not self.fresh:
            return f"{head} events in {self.events_in:,}{acc}  (last counts heard; the stages are finishing)"
        rate = "" if self.rate_hz is None else f"  ({self.rate_hz:,.0f} events/s)"
        return f"{head} events in {self.events_in:,}{acc}{rate}"


#: The signals that drain a run (Ctrl-C, kill, a dropped ssh session).
DRAIN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: How often ``darktrigger run`` reports progress, seconds.
PROGRESS_EVERY_S = 5.0


@dataclass
class Child:
    stage: str
    index: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: TextIO
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return f"{self.stage}-{self.index}" if self.stage == "scorer" else self.stage


class Supervisor:
    """Starts, restarts and stops the stage processes of one run (see module docs)."""

    def __init__(self, config: str | Path, *, events: int | None = None, duration_s: float | None = None,
                 verbose: int = 0, python: str | None = None, module: str = "darktrigger",
                 env: dict[str, str] | None = None, force: bool = False) -> None:
        self.config = Path(config)
        self.force = force  # replace a previous run's files in the output folder
        self.topo = Topology.from_yaml(self.config)
        self.events = events
        self.duration_s = duration_s
        self.verbose = verbose
        self.python = python or sys.executable
        self.module = module  # what `python -m` runs for a stage (benchmarks swap it)
        self.env = env
        self.children: dict[str, Child] = {}
        self.restarts = 0
        #: restarts of the source, trigger and recorder (the workers' are ``restarts``)
        self.stage_restarts: dict[str, int] = {}
        self.logs = self.topo.output / "logs"
        self._stopping = False
        self.metrics: Any = None
        self.server: Any = None
        self.live_url: str | None = None
        self._last_progress: Progress | None = None
        #: this run's identity: every message of its stages carries it
        self.run_id = f"{self.topo.run_id}-{secrets.token_hex(6)}"
        #: the per-run CURVE keys' folder (None: the topology's own keys, or auth off)
        self.run_keys: Path | None = None

    def _make_run_keys(self) -> None:
        """Per-run CURVE keys in a private temporary folder (see module docs)."""
        if self.topo.keys is not None or not self.topo.auth or self.run_keys is not None:
            return
        import tempfile

        from darktrigger.daq.security import generate_keys

        folder = Path(tempfile.mkdtemp(prefix="darktrigger-run-keys-"))  # mode 0700
        self.run_keys = generate_keys(folder / "keys")
        log.info("per-run CURVE keys in %s", self.run_keys)

    def _remove_run_keys(self) -> None:
        if self.run_keys is not None:
            shutil.rmtree(self.run_keys.parent, ignore_errors=True)
            self.run_keys = None

    def preflight(self) -> None:
        """Everything that can be checked before a process starts or a file is written: the
        inputs (menu, models, source files, CURVE keys), the ports, and an output folder
        that holds no earlier run (unless ``force``). Touches no file."""
        from darktrigger.daq.trigger.menu import Menu

        menu = Menu.from_yaml(self.topo.menu)
        for name, spec in menu.models.items():
            if not Path(spec.path).exists():
                raise FileNotFoundError(f"{self.topo.menu}: model {name!r} at {spec.path} does not exist")
        for p in [*self.topo.source.files, *self.topo.source.mix]:
            if not Path(p).exists():
                raise FileNotFoundError(f"{self.topo.where}: source file {p} does not exist")
        from darktrigger.daq.stages import SourceStage

        try:  # the mixture as a whole: fractions that leave room, injected rates below the crossing rate
            SourceStage(self.topo, max_events=self.events)
        except ConfigError as exc:
            raise ConfigError(f"{self.topo.where}: source: {exc}") from None
        if self.topo.keys is not None:
            from darktrigger.daq.security import Curve

            Curve(self.topo.keys).stop()  # every key file there and readable
        for stage in ("source", "trigger", "recorder"):
            self.topo.check_bindable(stage)  # none for a trigger the workers run
        self.check_disk()
        self.topo.check_metrics_ports()
        self.check_output()

    def check_disk(self) -> None:
        """The output's disk has at least ``reliability.min_free_mb`` free (a ConfigError naming it if not)."""
        from darktrigger.daq.runner import disk_free_mb

        out = self.topo.output
        existing = next((p for p in (out, *out.parents) if p.exists()), Path("/"))
        free, margin = disk_free_mb(existing), self.topo.reliability.min_free_mb
        if free < margin:
            raise ConfigError(f"{self.topo.where}: the disk holding the output {out} has {free:.1f} MB free, "
                              f"less than the {margin:g} MB a run keeps free (reliability.min_free_mb)")

    def check_output(self) -> None:
        """The output folder is absent or empty, or ``force`` is set: a run never replaces
        an earlier run's files unasked (:class:`OutputNotEmpty` names what is there)."""
        out = self.topo.output
        if out.exists() and not out.is_dir():
            raise OutputNotEmpty(f"{self.topo.where}: output {out} is a file, not a folder")
        there = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()) if out.is_dir() else []
        if there and not self.force:
            shown = ", ".join(there[:6]) + (f" and {len(there) - 6} more" if len(there) > 6 else "")
            raise OutputNotEmpty(
                f"{self.topo.where}: output folder {out} is not empty (it holds {shown}); a run would "
                f"overwrite events.h5 and run_summary.json there. Set another `output:` in the topology, "
                f"or pass --force to replace that run's events.h5, run_summary.json and logs/")

    def _clear_previous(self) -> None:
        """With ``force``: remove the files an earlier run left that this run writes."""
        out = self.topo.output
        for name in ("events.h5", "run_summary.json", ".recorder-state.pkl", ".source-state.json"):
            (out / name).unlink(missing_ok=True)
        if self.logs.is_dir():
            for f in self.logs.glob("*.log"):
                f.unlink()

    def _start(self, stage: str, index: int = 0, resume: bool = False) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-m", self.module, *(["-v"] * self.verbose), "stage", stage,
               "--config", str(self.config), *(["--resume"] if resume else [])]
        if stage == "scorer":
            cmd += ["--index", str(index)]
        if stage == "source":
            if self.events is not None:
                cmd += ["--events", str(self.events)]
            if self.duration_s is not None:
                cmd += ["--duration", str(self.duration_s)]
        name = f"{stage}-{index}" if stage == "scorer" else stage
        log_path = self.logs / f"{name}.log"
        log_file = open(log_path, "a")  # noqa: SIM115 - kept open while the child runs
        cmd += ["--supervisor-pid", str(os.getpid()), "--run-id", self.run_id]
        if self.run_keys is not None:
            cmd += ["--keys", str(self.run_keys)]
        # its own process group: the terminal's Ctrl-C reaches the supervisor alone, which
        # drains the run through the source; the stage stops by itself if the supervisor goes
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True, preexec_fn=_ignore_usr1)
        child = Child(stage, index, proc, log_path, log_file)
        self.children[child.name] = child
        log.info("started %s (pid %d)", child.name, proc.pid)
        return child

    def start(self) -> None:
        self.preflight()  # first: a run that cannot start has changed no file
        if self.force:
            self._clear_previous()
        self._make_run_keys()
        self._serve_metrics()
        self._start("recorder")
        if "trigger" in self.topo.stages:  # else the workers run the menu (trigger.placement: in_workers)
            self._start("trigger")
        for i in range(self.topo.workers.count):
            self._start("scorer", i)
        self._start("source")

    def _serve_metrics(self) -> None:
        """The supervisor's own metrics (worker restarts, build info) and the live page."""
        cfg = self.topo.metrics
        if not cfg.enabled:
            return
        from prometheus_client import CollectorRegistry

        from darktrigger import __version__
        from darktrigger.monitoring.metrics import StageMetrics

        registry = CollectorRegistry()
        self.metrics = StageMetrics(registry, "supervisor", version=__version__)
        ports = cfg.ports(self.topo.workers.count)
        if cfg.live_page:
            from darktrigger.monitoring.live import serve_live

            targets = {name: f"{cfg.host}:{port}" for name, port in ports.items()
                       if name != "supervisor" and (name != "trigger" or "trigger" in self.topo.stages)}
            self.server = serve_live(targets, cfg.host, ports["supervisor"], extra_registry=registry)
            self.live_url = f"http://{cfg.host}:{ports['supervisor']}/"
            log.info("live page: %s", self.live_url)

    def progress(self, elapsed_s: float) -> Progress:
        """The run's counts now, scraped from the source's and the recorder's /metrics (a
        stage that has stopped serving keeps its last counts)."""
        from darktrigger.monitoring.live import SCRAPE_TIMEOUT_S, parse_exposition

        cfg = self.topo.metrics
        last = self._last_progress or Progress(0.0, 0, 0)
        now = Progress(elapsed_s, last.events_in, last.accepted, fresh=False)
        if cfg.enabled:
            import urllib.request

            ports = cfg.ports(self.topo.workers.count)
            for stage in ("source", "recorder"):
                url = f"http://{cfg.host}:{ports[stage]}/metrics"
                try:
                    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as resp:  # noqa: S310 - our stages
                        sample = parse_exposition(resp.read().decode())
                except OSError as exc:  # a stage not serving yet, or gone at the end
                    log.debug("progress: no scrape of %s (%s)", url, exc)
                    continue
                now.fresh = True
                # events in: sent by the source, or (once it has stopped) seen by the recorder
                for key in (("darktrigger_events_total", (("stage", "source"),)),
                            ("darktrigger_recorded_input_events_total", ())):
                    if key in sample:
                        now.events_in = max(now.events_in or 0, int(sample[key]))
                if ("darktrigger_accepted_events_total", ()) in sample:
                    now.accepted = int(sample[("darktrigger_accepted_events_total", ())])
        else:
            now.events_in = now.accepted = None
        if (now.fresh and last.events_in is not None and now.events_in is not None
                and now.elapsed_s > last.elapsed_s):
            now.rate_hz = (now.events_in - last.events_in) / (now.elapsed_s - last.elapsed_s)
        self._last_progress = now
        return now

    def pids(self) -> dict[str, int]:
        return {name: c.proc.pid for name, c in self.children.items()}

    def drain(self, signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        """Ask the source to stop reading and finish what is in flight: it is sent the signal
        the supervisor got (SIGINT or SIGTERM), so the run summary says which ended the run."""
        if self._stopping:
            return
        self._stopping = True
        src = self.children.get("source")
        if src and src.proc.poll() is None:
            log.info("%s: draining; the source stops reading, batches in flight are finished",
                     signal.Signals(signum).name)
            src.proc.send_signal(signum)

    def run(self, timeout_s: float | None = None, install_signals: bool = True,
            on_progress: Callable[[Progress], None] | None = None,
            progress_every_s: float = PROGRESS_EVERY_S) -> RunSummary:
        """Start everything, wait for the run to end, stop the rest; the run summary.
        ``on_progress`` is given a :class:`Progress` every ``progress_every_s`` seconds."""
        if install_signals:
            for sig in DRAIN_SIGNALS:
                signal.signal(sig, self.drain)
        self.start()
        t0 = time.monotonic()
        drain_limit = self.topo.reliability.drain_timeout_s
        source_done: float | None = None
        quick_exits = 0
        next_report = t0 + progress_every_s
        failure: StageFailed | None = None
        try:
            while True:
                time.sleep(0.05)
                if on_progress is not None and time.monotonic() >= next_report:
                    on_progress(self.progress(time.monotonic() - t0))
                    next_report += progress_every_s
                for name, child in list(self.children.items()):
                    code = child.proc.poll()
                    if code is None:
                        continue
                    if child.stage == "scorer":
                        if self._stopping or code == 0:  # stopped: by us, or by the source at the end
                            continue
                        if time.monotonic() - child.started < QUICK_EXIT_S:
                            quick_exits += 1
                            if quick_exits >= MAX_QUICK_EXITS:
                                raise StageFailed(
                                    f"worker {name} exited (code {code}) within {QUICK_EXIT_S:g} s of "
                                    f"starting, {quick_exits} times: it cannot run; see its log "
                                    f"{child.log_path}:\n{_tail(child.log_path)}",
                                    f"workers that cannot run ({name} exited with code {code}, "
                                    f"{quick_exits} times)")
                        else:
                            quick_exits = 0
                        self.restarts += 1
                        if self.metrics is not None:
                            self.metrics.worker_restart()
                        log.warning("worker %s exited (code %s); starting it again (restart %d)",
                                    name, code, self.restarts)
                        child.log_file.close()
                        self._start("scorer", child.index)
                    elif code != 0 and not self._stopping and self._may_restart(child, code):
                        self._restart(child, code)
                    elif code != 0:
                        raise StageFailed(f"stage {name} exited with code {code}{self._disk_note(name)}; see its log "
                                          f"{child.log_path}:\n{_tail(child.log_path)}",
                                          f"stage {name} exited with code {code}")
                    elif child.stage == "source" and source_done is None:
                        source_done = time.monotonic()
                recorder = self.children["recorder"].proc
                if recorder.poll() == 0:
                    break
                now = time.monotonic()
                if source_done is not None and now - source_done > drain_limit:
                    raise StageFailed(f"the recorder did not finish within {drain_limit:g} s after the source "
                                      f"ended; see {self.logs}", f"timeout (the recorder's drain, {drain_limit:g} s)")
                if timeout_s is not None and now - t0 > timeout_s:
                    raise StageFailed(f"the run did not end within {timeout_s:g} s", "timeout")
        except StageFailed as exc:
            failure = exc
            raise
        finally:
            self._stopping = True
            self.stop_all()
            self._remove_run_keys()
            if failure is not None:
                self._record_failure(failure.stopped_by)
        summary_path = self.topo.output / "run_summary.json"
        summary = RunSummary.from_json(summary_path)
        summary.worker_restarts = self.restarts
        summary.stage_restarts = dict(self.stage_restarts)
        summary.write(summary_path)
        return summary

    def _may_restart(self, child: Child, code: int) -> bool:
        """A source, trigger or recorder that died is started again, unless it died within
        :data:`QUICK_EXIT_S` of starting (it cannot run: a bad input, a full disk) or the
        recorder stopped on its full disk."""
        if child.stage == "recorder" and self._disk_note("recorder"):
            return False
        return time.monotonic() - child.started >= QUICK_EXIT_S or self.stage_restarts.get(child.stage, 0) == 0

    def _restart(self, child: Child, code: int) -> None:
        """Start ``child``'s stage again, resuming (the recorder from its checkpoint and file,
        the source from the batches acknowledged); after a trigger or recorder, the source
        sends every unacknowledged batch again (SIGUSR1)."""
        self.stage_restarts[child.stage] = self.stage_restarts.get(child.stage, 0) + 1
        log.warning("%s exited (code %s); starting it again (restart %d)", child.name, code,
                    self.stage_restarts[child.stage])
        child.log_file.close()
        self._start(child.stage, resume=True)
        src = self.children.get("source")
        if child.stage != "source" and src is not None and src.proc.poll() is None:
            src.proc.send_signal(signal.SIGUSR1)
        elif child.stage != "source" and src is not None and src.proc.poll() == 0:
            # the source had finished: its end may have died with this stage. Started again, it
            # finds every batch acknowledged in its checkpoint and sends the end once more
            log.warning("the source had finished; starting it again to send the end of the run once more")
            src.log_file.close()
            self._start("source", resume=True)

    def _disk_note(self, stage: str) -> str:
        """For a recorder that failed: the output disk's state, when it is (nearly) full (its
        log may be on that disk and empty)."""
        if stage != "recorder":
            return ""
        from darktrigger.daq.runner import disk_free_mb

        try:
            free = disk_free_mb(self.topo.output)
        except OSError:
            return ""
        margin = self.topo.reliability.min_free_mb
        return (f" (disk full: the output disk holding {self.topo.output} has {free:.1f} MB free, below the "
                f"margin of {margin:g} MB)") if free < margin else ""

    def _record_failure(self, stopped_by: str) -> None:
        """Put why the run failed into the summary the recorder wrote as it was stopped (if it did);
        a summary that already says why it failed (the recorder's full disk) keeps its reason."""
        path = self.topo.output / "run_summary.json"
        try:
            summary = RunSummary.from_json(path)
        except (OSError, DarkTriggerError) as exc:  # the recorder wrote none: a summary that says so
            log.warning("the recorder wrote no run summary (%s); writing one that records %r", exc, stopped_by)
            from darktrigger.daq.trigger.menu import Menu
            from darktrigger.daq.trigger.rates import MenuCounts

            summary = RunSummary(run=self.topo.run, menu=MenuCounts.for_menu(Menu.from_yaml(self.topo.menu)),
                                 events_file=str(self.topo.output / "events.h5"))
            summary.status = "failed"
        if summary.status == "failed" and summary.stopped_by.startswith("disk"):
            return
        summary.stopped_by = stopped_by
        summary.status = "failed"
        summary.worker_restarts = self.restarts
        summary.stage_restarts = dict(self.stage_restarts)
        try:
            summary.write(path)
        except OSError as exc:
            log.error("cannot write the run summary %s: %s", path, exc)

    def stop_all(self, grace_s: float = 5.0) -> None:
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s; killing it", child.name, grace_s)
                child.proc.kill()
                child.proc.wait()
            child.log_file.close()
        if self.server is not None:
            self.server.close()
            self.server = None


def _ignore_usr1() -> None:
    """In a stage before it starts: SIGUSR1 (send again, for the source) ignored until the
    stage installs its handler, so one that comes early does not kill it."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


__all__ = ["Child", "OutputNotEmpty", "Progress", "StageFailed", "Supervisor"]
