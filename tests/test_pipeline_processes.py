"""Whole runs with every stage in its own process: workers killed with SIGKILL, a run
stopped with SIGTERM, and stages in separate network namespaces talking CURVE."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from darktrigger.daq.summary import RunSummary
from darktrigger.daq.supervisor import StageFailed, Supervisor
from darktrigger.daq.testing import (
    free_metrics_base,
    make_setup,
    offline,
    recorded_ids,
    write_topology,
)
from darktrigger.daq.topology import Topology
from darktrigger.replay.storage import NativeFile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_setup(tmp_path_factory.mktemp("processes"))


def _committed(topo: Topology) -> int:
    path = topo.output / "events.h5"
    if not path.exists():
        return 0
    try:
        with NativeFile(path) as f:
            return len(f)
    except Exception:  # not written far enough to open yet
        return 0


def _wait(cond: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _check_against_offline(topo: Topology, summary: RunSummary) -> None:
    assert summary.events_lost == 0, summary
    assert summary.events_duplicated == 0, summary
    assert summary.events_in is not None
    expected_ids, expected = offline(topo, summary.events_in)
    got = recorded_ids(topo)
    assert len(np.unique(got)) == len(got), "an event was recorded twice"
    np.testing.assert_array_equal(got, expected_ids)
    assert summary.menu.counts.tolist() == expected.counts.tolist()


def _source_events(sup: Supervisor) -> int:
    """Events the source has sent so far (its /metrics; 0 before it serves)."""
    return sup.progress(0.0).events_in or 0


@pytest.mark.parametrize("seed", range(5))
def test_kill_9_a_worker_mid_run_loses_and_duplicates_nothing(setup: Path, seed: int) -> None:
    """The kill lands while the source still has >= 2.5 s of its paced run to go (it is
    timed on the source's own count of events sent, not on the recorder's file, which a
    reader may see only late), so the source must notice the lost worker (0.5 s without a
    heartbeat) and send its batches again. The count is read from the source's /metrics,
    which on a loaded machine can lag the source by a second or more: at 100 kHz a clean
    clone once saw the run end before the loss was noticed (nothing to send again, no
    worker lost), hence 60 kHz."""
    rng = np.random.default_rng(seed)
    path = write_topology(setup, f"kill{seed}.yaml", run=100 + seed, batch_size=4096,
                          source={"seed": seed, "rate_hz": 60_000, "events": 300_000},
                          reliability={"worker_timeout_s": 0.5, "heartbeat_s": 0.1},
                          metrics={"enabled": True, "host": "127.0.0.1", "base_port": free_metrics_base(2),
                                   "live_page": False})
    sup = Supervisor(path)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = sup.run(timeout_s=240, install_signals=False)
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    at = int(rng.integers(50_000, 110_000))  # a seeded moment in the first third of the run
    _wait(lambda: _source_events(sup) >= at or not t.is_alive(), f"the source to send {at:,} events")
    assert t.is_alive(), result
    sent = _source_events(sup)
    assert sent < 300_000 - 150_000, f"the kill would land too late ({sent:,} events sent)"
    victim = f"scorer-{rng.integers(0, sup.topo.workers.count)}"
    os.kill(sup.children[victim].proc.pid, signal.SIGKILL)
    t.join(300)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    killed = f"seed {seed}: killed {victim} at {sent:,} events; batches sent again {summary.batches_resent}"
    assert summary.status == "complete", killed
    assert summary.worker_restarts >= 1, killed
    assert summary.workers_lost >= 1, killed  # the source noticed, and sent its batches again
    assert summary.events_in == 300_000, killed
    _check_against_offline(sup.topo, summary)


@pytest.mark.parametrize(("signum", "group", "stopped_by"), [
    (signal.SIGINT, True, "interrupted (SIGINT)"),  # Ctrl-C in a terminal: the whole process group
    (signal.SIGTERM, False, "terminated"),
    (signal.SIGHUP, False, "hung up (SIGHUP)"),  # a dropped ssh session
])
def test_a_signal_to_the_supervisor_drains_and_the_summary_says_which(
        setup: Path, signum: signal.Signals, group: bool, stopped_by: str) -> None:
    """Ctrl-C (SIGINT to the process group), SIGTERM or SIGHUP to `darktrigger run`: the run
    drains (nothing lost, a readable file), its status is "stopped" (exit status 3) and
    run_summary.json says what stopped it, not "end of run"."""
    path = write_topology(setup, f"{signum.name}.yaml", source={"rate_hz": 100_000, "events": 5_000_000})
    topo = Topology.from_yaml(path)
    proc = subprocess.Popen([sys.executable, "-m", "darktrigger", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group, as a terminal's foreground job
    try:
        _wait(lambda: _committed(topo) > 0, "the first recorded events")
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out
    summary = RunSummary.from_json(topo.output / "run_summary.json")
    assert summary.status == "stopped"
    assert summary.stopped_by == stopped_by
    assert summary.events_in is not None
    assert 0 < summary.events_in < 5_000_000
    _check_against_offline(topo, summary)
    assert "lost 0  duplicated 0" in out
    assert f"stopped by: {stopped_by}" in out


def _run_in_thread(sup: Supervisor, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = sup.run(install_signals=False, **kwargs)
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, result


def test_a_timeout_is_recorded_as_the_reason(setup: Path) -> None:
    path = write_topology(setup, "timeout.yaml", source={"rate_hz": 50_000, "events": 50_000_000})
    sup = Supervisor(path)
    t, result = _run_in_thread(sup, timeout_s=5)
    t.join(180)
    assert isinstance(result.get("error"), StageFailed), result
    assert "did not end within 5 s" in str(result["error"])
    summary = RunSummary.from_json(sup.topo.output / "run_summary.json")
    assert (summary.stopped_by, summary.status) == ("timeout", "failed")


def test_a_stage_that_keeps_dying_is_named_in_the_summary(setup: Path) -> None:
    """A trigger killed is started again (tests/test_pipeline_restarts.py); killed again within
    seconds of that restart, it cannot run: the run fails, naming it."""
    path = write_topology(setup, "dies.yaml", source={"rate_hz": 50_000, "events": 5_000_000})
    sup = Supervisor(path)
    t, result = _run_in_thread(sup, timeout_s=240)
    _wait(lambda: _committed(sup.topo) > 0 or not t.is_alive(), "the first recorded events")
    first = sup.children["trigger"].proc.pid
    os.kill(first, signal.SIGKILL)
    _wait(lambda: sup.children["trigger"].proc.pid != first or not t.is_alive(), "the trigger's restart")
    os.kill(sup.children["trigger"].proc.pid, signal.SIGKILL)
    t.join(120)
    assert isinstance(result.get("error"), StageFailed), result
    summary = RunSummary.from_json(sup.topo.output / "run_summary.json")
    assert summary.stopped_by == "stage trigger exited with code -9"
    assert summary.status == "failed"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_stages_stop_when_the_supervisor_is_killed(setup: Path) -> None:
    """The stages run in their own process group (Ctrl-C reaches the supervisor alone), so
    they watch it: killed with SIGKILL, it leaves no stage running, and the run drains."""
    # a drain timeout inside the wait below: stages that miss the end of the run (a loaded
    # machine) still stop by themselves within it
    path = write_topology(setup, "orphans.yaml", source={"rate_hz": 50_000, "events": 5_000_000},
                          reliability={"drain_timeout_s": 20.0})
    topo = Topology.from_yaml(path)
    proc = subprocess.Popen([sys.executable, "-m", "darktrigger", "run", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stages: list[int] = []
    try:
        _wait(lambda: _committed(topo) > 0, "the first recorded events")
        stages = _children(proc.pid)
        assert len(stages) == 2 + topo.workers.count + 1, stages  # recorder, trigger, workers, source
        proc.kill()
        proc.wait(30)
        _wait(lambda: all(_gone(pid) for pid in stages), "every stage to exit", timeout=60)
        summary = RunSummary.from_json(topo.output / "run_summary.json")  # the run drained
        assert summary.stopped_by == f"the supervisor (pid {proc.pid}) exited"
        assert summary.events_lost == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in stages:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


# -- two hosts: network namespaces joined by a veth pair ------------------------------
def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    probe = subprocess.run(["ip", "netns", "add", "dt-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make network namespaces here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "dt-probe"], check=False)
    return None


@pytest.fixture
def two_hosts() -> Any:
    why = _can_make_namespaces()
    if why:
        pytest.skip(why)
    tag = f"{os.getpid() % 10000}"
    a, b = f"dt-a{tag}", f"dt-b{tag}"
    va, vb = f"dta{tag}", f"dtb{tag}"

    def ip(*args: str, ns: str | None = None) -> None:
        cmd = ["ip", *(["-n", ns] if ns else []), *args]
        subprocess.run(cmd, check=True, capture_output=True)

    ip("netns", "add", a)
    ip("netns", "add", b)
    try:
        ip("link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        ip("addr", "add", "10.77.0.1/24", "dev", va, ns=a)
        ip("addr", "add", "10.77.0.2/24", "dev", vb, ns=b)
        for ns, dev in ((a, va), (b, vb)):
            ip("link", "set", dev, "up", ns=ns)
            ip("link", "set", "lo", "up", ns=ns)
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", a], check=False)
        subprocess.run(["ip", "netns", "del", b], check=False)


def _stage(ns: str, name: str, config: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "darktrigger", "stage", name,
           "--config", str(config), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


REFUSED_PEER = """
import sys, zmq
from zmq.utils.monitor import recv_monitor_message
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH)
if sys.argv[2] == "other-keys":
    from darktrigger.daq.security import Curve
    c = Curve(__import__("pathlib").Path(sys.argv[3]))
    c.client(s)
m = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                         | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
s.connect(sys.argv[1])
assert m.poll(20000), "no handshake"
print("SUCCEEDED" if recv_monitor_message(m)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED else "REFUSED")
"""


def test_stages_on_two_hosts_talk_curve_and_refuse_a_peer_without_the_key(setup: Path, two_hosts: Any) -> None:
    host_a, host_b = two_hosts
    from darktrigger.daq.security import generate_keys

    keys = generate_keys(setup / "netns-keys", overwrite=True)
    endpoints = {"dispatch": "tcp://10.77.0.1:7550", "acks": "tcp://10.77.0.1:7551",
                 "trigger": "tcp://10.77.0.1:7552", "recorder": "tcp://10.77.0.1:7553"}
    path = write_topology(setup, "netns.yaml", endpoints=endpoints, security={"keys": str(keys)},
                          workers={"count": 2}, source={"events": 50_000})
    topo = Topology.from_yaml(path)
    assert set(topo.off_loopback) == set(endpoints)
    procs = [_stage(host_a, "recorder", path), _stage(host_a, "trigger", path),
             _stage(host_b, "scorer", path, "--index", "0"), _stage(host_b, "scorer", path, "--index", "1")]
    try:
        # peers on host b without the key: refused by the recorder's endpoint
        other = generate_keys(setup / "netns-other-keys", overwrite=True)
        for mode, extra in (("no-curve", []), ("other-keys", [str(other)])):
            out = subprocess.run(["ip", "netns", "exec", host_b, sys.executable, "-c", REFUSED_PEER,
                                  endpoints["recorder"], mode, *extra],
                                 capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])
            assert out.stdout.strip() == "REFUSED", (mode, out.stdout, out.stderr)
        source = _stage(host_a, "source", path)
        assert source.wait(180) == 0, source.communicate()[0]
        assert procs[0].wait(60) == 0, procs[0].communicate()[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    summary = RunSummary.from_json(topo.output / "run_summary.json")
    assert summary.events_in == 50_000
    assert summary.malformed_messages["recorder"] == 0  # the refused peers never got a message in
    _check_against_offline(topo, summary)
