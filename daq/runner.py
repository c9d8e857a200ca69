"""The runners: each owns one stage's ZeroMQ sockets and loop; the stages never see a socket.

Message flow (who binds in brackets)::

    source [ROUTER dispatch] ──batch──▶ scorer workers (DEALER, credit-based) ──batch──▶
    [PULL trigger] trigger ──decided──▶ [PULL recorder] recorder ──ack──▶ [PULL acks] source

With the trigger in the workers (``trigger: {placement: in_workers}``) each worker runs the
menu on the batch it scored and sends the ``decided`` batch straight to the recorder (and
the source's ``end`` goes there too): no trigger stage, one hop fewer::

    source [ROUTER dispatch] ──batch──▶ scorer + menu (DEALER) ──decided──▶ [PULL recorder] recorder

* **Credit**: a worker announces ``ready`` with ``credit`` k when it can take k more
  batches; the source sends a worker no more than its credit, and keeps at most
  ``max_inflight`` batches in the pipeline (sent, not yet recorded). The recorder says
  which batches it has recorded as it goes (an ``ack`` with ``flushed: false``) and
  acknowledges them after its flush; recorded batches wait for that apart from the
  window, up to :attr:`Topology.inflight_cap` in all.
* **Nothing lost**: a batch stays in the source's in-flight table until the recorder
  acknowledges it (after the events are flushed to disk). Batches held by a worker that
  stops heartbeating for ``worker_timeout_s`` (killed, hung), or not acknowledged within
  ``ack_timeout_s``, are sent again.
* **Nothing duplicated**: the recorder keeps each (run, seq) once.
* **End of run**: the source stops reading (end of input, ``--events``, ``--duration`` or
  SIGTERM), waits until every batch is acknowledged, then sends ``end`` through the
  trigger to the recorder, which writes ``run_summary.json``; then it tells the workers
  to ``stop``.
* **Bad messages** on any input are counted (``stats["malformed"]``), logged (rate
  limited) and dropped; the loop goes on. No frame larger than
  :func:`~darktrigger.daq.wire.max_frame_bytes` of the run's batch size is taken in
  (ZeroMQ drops the peer that sends one).
* **Run identity**: every message carries the run number and the run's identity
  (``meta["run_id"]``, :attr:`Topology.run_id`); a message of another run or topology
  (a stray worker, a forged ``end`` or ``decided``) is refused and counted
  (``stats["refused"]``), never used. A worker's credit is at most the topology's
  ``workers.prefetch``.

Each runner's ``run(stop)`` returns when its part is done or ``stop`` (a
``threading.Event``) is set, so a test can run a whole pipeline in threads or
processes and look at ``runner.stats``; ``runner.cpu_s`` is the CPU time its process
spent while it ran (every thread: ZeroMQ's I/O and encryption too), which it logs at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from darktrigger.daq.security import Curve
from darktrigger.daq.stages import RecorderStage, ScorerStage, SeqSet, SourceStage, TriggerStage
from darktrigger.daq.summary import RATE_KEPT, RunSummary, run_status
from darktrigger.daq.topology import Topology
from darktrigger.daq.trigger.decision import Decision
from darktrigger.daq.wire import (
    Message,
    WireError,
    decode,
    encode,
    encode_batch,
    max_frame_bytes,
    peek_kind,
)
from darktrigger.replay.errors import DarkTriggerError
from darktrigger.replay.events import TRIGGER_BITS, EventBatch

if TYPE_CHECKING:
    from darktrigger.monitoring.metrics import StageMetrics

log = logging.getLogger(__name__)

POLL_MS = 50
#: a recorder with batches to acknowledge and no input for this long flushes now
IDLE_FLUSH_MS = 20
ALL_PREFIX = "all/"  # columns of a ``decided`` message that cover every event of the batch
#: what a ``decided`` message carries for every event (as ``all/<name>``): the decision
#: before and after prescale, the truth label and the weight, which the recorder's rates,
#: their background/signal split and the signal's efficiencies need
DECIDED_COLUMNS = {"raw": np.dtype(np.uint64), "bits": np.dtype(np.uint64), "truth": np.dtype(np.int16),
                   "weight": np.dtype(np.float32)}
#: ``stopped_by`` when the source finished on its own (end of input, events, duration)
END_OF_RUN = "end of run"
#: after a trigger or recorder restart: for this long, a batch unacknowledged this long is sent again
RECOVERY_S = 30.0
RECOVERY_ACK_S = 3.0


class Stop(threading.Event):
    """A stop event that says why: ``stop.set_because("terminated")``; the source passes the
    reason on to the run summary's ``stopped_by``."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def set_because(self, reason: str) -> None:
        if self.reason is None:  # the first reason stands
            self.reason = reason
        self.set()


def stop_reason(stop: threading.Event, default: str = "stopped") -> str:
    """Why ``stop`` was set: its reason if it is a :class:`Stop` that has one, else ``default``."""
    reason = stop.reason if isinstance(stop, Stop) else None
    return reason or default


class _Runner:
    """Shared parts: the context, sockets with CURVE where configured, bad-message counting."""

    stage = "stage"

    def __init__(self, topo: Topology, ctx: zmq.Context | None = None, metrics: StageMetrics | None = None) -> None:
        self.topo = topo
        self.ctx = ctx or zmq.Context.instance()
        self.curve = Curve.from_topology(topo)
        self.metrics = metrics
        self.stats: Counter[str] = Counter()
        self.busy_s = 0.0  # time spent processing batches (the rest is waiting)
        self._cpu0 = time.process_time()
        self.cpu_s = 0.0  # the process's CPU time from this runner's start to its close
        self._stop = threading.Event()
        self._sockets: list[zmq.Socket] = []
        self._last_bad_log = 0.0
        self._last_refused_log = 0.0
        self.run_id = topo.run_id
        self.max_frame = max_frame_bytes(topo.batch_size)

    def ident(self, **meta: Any) -> dict[str, Any]:
        """A message's meta with this run's identity."""
        return {**meta, "run_id": self.run_id}

    def ours(self, msg: Message, what: str) -> bool:
        """True if ``msg`` belongs to this run (its number and identity); else count it as
        refused, log it (at most once a second) and return False."""
        if msg.run == self.topo.run and msg.meta.get("run_id") == self.run_id:
            return True
        self.stats["refused"] += 1
        if self.metrics is not None:
            self.metrics.malformed()
        now = time.monotonic()
        if now - self._last_refused_log > 1.0:
            self._last_refused_log = now
            log.warning("%s: refused a %s message on %s of run %d (identity %r); this is run %d (%s) "
                        "(%d refused so far)", self.stage, msg.kind, what, msg.run, msg.meta.get("run_id"),
                        self.topo.run, self.run_id, self.stats["refused"])
        return False

    def bind(self, kind: int, name: str) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        sock.maxmsgsize = self.max_frame
        if self.curve:
            self.curve.server(sock, self.ctx)
        endpoint = self.topo.endpoints[name]
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise OSError(f"{self.stage}: cannot bind endpoints.{name} = {endpoint}: {exc}") from None
        self._sockets.append(sock)
        return sock

    def connect(self, kind: int, name: str, identity: bytes | None = None, linger_ms: int = 0) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = linger_ms
        sock.maxmsgsize = self.max_frame
        if identity is not None:
            sock.identity = identity
        if self.curve:
            self.curve.client(sock)
        sock.connect(self.topo.endpoints[name])
        self._sockets.append(sock)
        return sock

    def send(self, sock: zmq.Socket, frames: list[Any], copy: bool = True) -> bool:
        """Send a data message, waiting while the peer's queue is full (back-pressure), but
        never past ``stop``: then the message is counted as unsent (the source sends
        unacknowledged batches again)."""
        while True:
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=copy)
                return True
            except zmq.Again:
                if self._stop.is_set():
                    self.stats["unsent"] += 1
                    return False
                sock.poll(100, zmq.POLLOUT)

    def signal(self, sock: zmq.Socket, frames: list[Any]) -> None:
        """Send a control message (ready, heartbeat, stop) if it can go now, else drop it:
        a peer that is not reading them is gone or about to be declared so."""
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            self.stats["control_dropped"] += 1

    def processed(self, events: int, seconds: float) -> None:
        """Account one batch: ``seconds`` of processing for ``events`` events."""
        self.busy_s += seconds
        self.stats["batches"] += 1
        self.stats["events"] += events
        if self.metrics is not None:
            self.metrics.batch(events, seconds)

    def bad(self, what: str, exc: Exception) -> None:
        """Count and (at most once a second) log a message that could not be used."""
        self.stats["malformed"] += 1
        if self.metrics is not None:
            self.metrics.malformed()
        now = time.monotonic()
        if now - self._last_bad_log > 1.0:
            self._last_bad_log = now
            log.warning("%s: dropped a bad message on %s (%d so far): %s", self.stage, what,
                        self.stats["malformed"], exc)

    def close(self) -> None:
        self.cpu_s = time.process_time() - self._cpu0
        log.info("%s: %d batches, %d events, busy %.2f s, cpu %.3f s; %d bad messages", self.stage,
                 self.stats["batches"], self.stats["events"], self.busy_s, self.cpu_s, self.stats["malformed"])
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self.curve:
            self.curve.stop()


@dataclass
class _Worker:
    credit: int = 0
    last_seen: float = 0.0
    alive: bool = True


@dataclass
class _InFlight:
    frames: list[Any]
    count: int
    worker: bytes | None = None
    sent: float = 0.0
    sends: int = 0
    recorded: bool = False  # the recorder has it (not yet flushed): out of the window


@dataclass
class SourceResult:
    events_in: int = 0
    batches_in: int = 0
    stats: dict[str, int] = field(default_factory=dict)


class SourceRunner(_Runner):
    """Dispatches the replay's batches to workers by credit and sees each acknowledged."""

    stage = "source"

    def __init__(self, topo: Topology, source: SourceStage, ctx: zmq.Context | None = None,
                 duration_s: float | None = None, metrics: StageMetrics | None = None,
                 resume: bool = False, recover: threading.Event | None = None) -> None:
        super().__init__(topo, ctx, metrics)
        self.source = source
        self.duration_s = duration_s
        self.workers: dict[bytes, _Worker] = {}
        self.inflight: dict[int, _InFlight] = {}
        self.resend: deque[int] = deque()
        self.events_in = 0
        self.batches_in = 0
        self.last_ack = time.monotonic()  # the last acknowledgement that freed a batch
        self._stall_logged = 0.0
        self._rate_logged = 0.0
        #: set (by SIGUSR1 from the supervisor) when a trigger or recorder was started again:
        #: every unacknowledged batch is sent again, and for a while the acknowledgement
        #: timeout is short (batches lost in the gap are sent again until acknowledged)
        self.recover = recover or threading.Event()
        self._recovering_until = 0.0
        #: acknowledged seqs, saved to ``checkpoint_path``: a source started again (``resume``)
        #: replays the same batches and sends only those not acknowledged
        self.checkpoint_path = topo.output / ".source-state.json"
        self.acked = self._load_checkpoint() if resume else SeqSet()
        self._acked_saved = len(self.acked)
        self._last_save = 0.0
        self.events_skipped = 0  # events of batches acknowledged before a restart

    def _load_checkpoint(self) -> SeqSet:
        import json

        try:
            state = json.loads(self.checkpoint_path.read_text())
        except (OSError, ValueError):
            return SeqSet()
        if not isinstance(state, dict) or state.get("run_id") != self.run_id:
            return SeqSet()
        acked = SeqSet((int(a), int(b)) for a, b in state.get("acked", []))
        log.info("source: resuming: %d batch(es) acknowledged before the restart are not sent again", len(acked))
        return acked

    def _save_checkpoint(self, now: float, force: bool = False) -> None:
        """The acknowledged seqs as ranges, at most twice a second (whole or not at all)."""
        if len(self.acked) == self._acked_saved or (not force and now - self._last_save < 0.5):
            return
        import json

        ranges = self.acked.ranges()
        try:
            self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
            tmp.write_text(json.dumps({"run_id": self.run_id, "acked": ranges}))
            tmp.replace(self.checkpoint_path)
        except OSError as exc:
            log.warning("source: cannot save its checkpoint %s: %s", self.checkpoint_path, exc)
        self._acked_saved, self._last_save = len(self.acked), now

    def _recover(self, now: float) -> None:
        """A trigger or recorder was started again: send every unacknowledged batch again."""
        self.recover.clear()
        self._recovering_until = now + RECOVERY_S
        held = [seq for seq, item in self.inflight.items() if item.sends and seq not in self.resend]
        for seq in sorted(held):
            self.inflight[seq].worker = None
            self.resend.append(seq)
        log.warning("source: a stage was started again; sending %d unacknowledged batch(es) again", len(held))

    def _watch(self, now: float, pace0: float | None) -> None:
        """Trouble made visible within seconds: a pipeline that stopped acknowledging (a stalled
        trigger or recorder) and a source that cannot keep its rate, in the log and the metrics."""
        rel = self.topo.reliability
        waited = now - max(self.last_ack, min((i.sent for i in self.inflight.values() if i.sends), default=now))
        stalled = waited if self.inflight and waited > rel.stall_s else 0.0
        if stalled and now - self._stall_logged > 5 * rel.stall_s:
            self._stall_logged = now
            log.warning("source: no acknowledgement for %.1f s with %d batch(es) in flight: the trigger, the "
                        "recorder or the workers are stalled", stalled, len(self.inflight))
        rate = self.source.rate_hz
        running = now - pace0 if pace0 is not None else 0.0
        achieved = (self.events_in - self.events_skipped) / running if rate and running > 0 else None
        if rate and achieved is not None and running > 2.0 and achieved < RATE_KEPT * rate \
                and now - self._rate_logged > 10.0:
            self._rate_logged = now
            log.warning("source: asked for %s Hz, achieving %s Hz: the pipeline cannot keep the rate",
                        f"{rate:,.0f}", f"{achieved:,.0f}")
        if self.metrics is not None:
            self.metrics.stalled(stalled)
            if rate and achieved is not None:
                self.metrics.source_rate(rate, achieved)

    def run(self, stop: threading.Event | None = None) -> SourceResult:
        stop = self._stop = stop or threading.Event()
        rel = self.topo.reliability
        router = self.bind(zmq.ROUTER, "dispatch")
        router.router_mandatory = 1  # a send to a vanished worker raises instead of vanishing
        acks = self.bind(zmq.PULL, "acks")
        downstream = self.connect(zmq.PUSH, self.topo.decided_endpoint, linger_ms=5000)  # for the end
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(acks, zmq.POLLIN)
        it = iter(self.source)
        pending: tuple[int, EventBatch] | None = None
        exhausted = False
        rate = self.source.rate_hz
        t_first: float | None = None  # the first batch's emission: the run's clock starts
        pace0: float | None = None  # when a worker first had credit for a batch: pacing starts
        read_s = 0.0  # time the replay took for the pending batch
        stopped_at: float | None = None  # when stop was first seen: the drain's clock
        try:
            while True:
                now = time.monotonic()
                started = t_first if t_first is not None else now  # clocks start at the first batch
                if stop.is_set() or (self.duration_s is not None and now - started >= self.duration_s):
                    exhausted = True  # drain: no new batches, finish those in flight
                if stop.is_set():
                    stopped_at = stopped_at or now
                    if self.inflight and now - stopped_at > rel.drain_timeout_s:
                        log.error("source: %d batch(es) still unacknowledged %g s after the stop; giving up "
                                  "(the recorder is gone?)", len(self.inflight), rel.drain_timeout_s)
                        break
                wake = now + POLL_MS / 1000
                while self.acked and not exhausted:  # a resumed source: past what was recorded, workers or not
                    if pending is None:
                        pending = next(it, None)
                        if pending is None:
                            exhausted = True
                            break
                    if pending[0] not in self.acked:
                        break
                    self.events_in += len(pending[1])
                    self.events_skipped += len(pending[1])
                    self.batches_in += 1
                    pending = None
                while True:  # dispatch while some worker has credit
                    worker = self._pick_worker()
                    if worker is None:
                        break
                    if self.resend:
                        self._send(router, worker, self.resend.popleft())
                        continue
                    if exhausted or self._window_full():
                        break
                    if pending is None:
                        t_read = time.perf_counter()
                        pending = next(it, None)
                        read_s = time.perf_counter() - t_read
                        if pending is None:
                            exhausted = True
                            break
                    seq, batch = pending
                    if seq in self.acked:  # recorded before this source was started again
                        pending = None
                        self.events_in += len(batch)
                        self.events_skipped += len(batch)
                        self.batches_in += 1
                        continue
                    if rate:
                        # paced from when the first batch could go (a worker had credit):
                        # workers that start slowly do not make the source catch up in a burst
                        if pace0 is None:
                            pace0 = time.monotonic()
                        due = pace0 + (self.events_in - self.events_skipped + len(batch)) / rate
                        if due > time.monotonic():
                            wake = min(wake, due)
                            break
                    pending = None
                    if t_first is None:
                        t_first = time.monotonic()
                    t_encode = time.perf_counter()
                    frames = encode_batch("batch", self.source.run, seq, batch, meta=self.ident(t_emit=time.time()))
                    self.inflight[seq] = _InFlight(frames, len(batch))
                    self.processed(len(batch), read_s + time.perf_counter() - t_encode)  # read + encode
                    self.events_in += len(batch)
                    self.batches_in += 1
                    self._send(router, worker, seq)
                if exhausted and not self.inflight and not self.resend:
                    break
                timeout = max(0.0, wake - time.monotonic())
                for sock, _ in poller.poll(int(timeout * 1000)):
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        if sock is router:
                            self._on_worker(frames)
                        else:
                            self._on_ack(frames)
                if self.recover.is_set():
                    self._recover(time.monotonic())
                self._check_health(time.monotonic())
                self._watch(time.monotonic(), pace0)
                self._save_checkpoint(time.monotonic())
                if self.metrics is not None:
                    self.metrics.inflight(len(self.inflight))
                    self.metrics.workers(sum(w.alive for w in self.workers.values()))
            seconds = time.monotonic() - t_first if t_first is not None else 0.0
            paced = time.monotonic() - pace0 if pace0 is not None else 0.0
            end = encode("end", run=self.source.run, meta=self.ident(
                events_in=self.events_in, batches_in=self.batches_in, seconds=seconds,
                source=dict(self.stats), injected=self.source.injected,
                rows_skipped=self.source.rows_skipped(),
                requested_rate_hz=rate,
                achieved_rate_hz=(self.events_in - self.events_skipped) / paced if paced > 0 else None,
                stopped_by=stop_reason(stop) if stop.is_set() else END_OF_RUN))
            self._save_checkpoint(time.monotonic(), force=True)  # a source started again sends just the end
            self.send(downstream, end)
            for identity, w in self.workers.items():
                if w.alive:
                    self.signal(router, [identity, *encode("stop", run=self.source.run, meta=self.ident())])
        finally:
            self.close()
        log.info("source: %d events in %d batches; %d batches sent again", self.events_in,
                 self.batches_in, self.stats["batches_resent"])
        return SourceResult(self.events_in, self.batches_in, dict(self.stats))

    def _window_full(self) -> bool:
        """No new batch now: ``max_inflight`` are in the pipeline, or the cap of those kept
        for acknowledgement is reached."""
        if len(self.inflight) >= self.topo.inflight_cap:
            return True
        return sum(not item.recorded for item in self.inflight.values()) >= self.topo.reliability.max_inflight

    def _pick_worker(self) -> bytes | None:
        best, credit = None, 0
        for identity, w in self.workers.items():
            if w.alive and w.credit > credit:
                best, credit = identity, w.credit
        return best

    def _send(self, router: zmq.Socket, worker: bytes, seq: int) -> None:
        item = self.inflight.get(seq)
        if item is None:  # acknowledged meanwhile
            return
        try:
            router.send_multipart([worker, *item.frames], copy=False)
        except zmq.ZMQError:  # the worker's connection is gone
            self._declare_dead(worker, "its connection closed")
            self.resend.appendleft(seq)
            return
        self.workers[worker].credit -= 1
        item.worker, item.sent, item.recorded = worker, time.monotonic(), False
        item.sends += 1
        if item.sends > 1:
            self.stats["batches_resent"] += 1
            if self.metrics is not None:
                self.metrics.resent()

    def _on_worker(self, frames: list[Any]) -> None:
        if len(frames) < 2:
            self.bad("dispatch", WireError("a message with no header frame"))
            return
        identity = bytes(frames[0].buffer)
        try:
            msg = decode(frames[1:])
        except WireError as exc:
            self.bad("dispatch", exc)
            return
        if msg.kind not in ("ready", "heartbeat"):
            self.bad("dispatch", WireError(f"a worker sent a {msg.kind!r} message; expected ready or heartbeat"))
            return
        if not self.ours(msg, "dispatch"):  # a worker of another run or topology: never given a batch
            return
        w = self.workers.get(identity)
        if w is None or not w.alive:
            if w is not None:
                log.info("source: worker %s is back", identity.decode(errors="replace"))
            # a worker first heard by its heartbeat (this source was started again, or the
            # worker was declared dead) has announced its credit to no one: it may take prefetch
            credit = self.topo.workers.prefetch if msg.kind == "heartbeat" else 0
            w = self.workers[identity] = _Worker(credit=credit)
        w.last_seen = time.monotonic()
        if msg.kind == "ready":
            credit = msg.meta.get("credit", 1)
            most = self.topo.workers.prefetch  # what the topology allows a worker to hold
            if isinstance(credit, int) and not isinstance(credit, bool) and 0 < credit <= most:
                w.credit = min(w.credit + credit, most)
            else:
                self.bad("dispatch", WireError(f"ready with credit {credit!r}; expected 1-{most} "
                                               f"(the topology's workers.prefetch)"))

    def _on_ack(self, frames: list[Any]) -> None:
        try:
            msg = decode(frames)
        except WireError as exc:
            self.bad("acks", exc)
            return
        seqs = msg.meta.get("seqs")
        if msg.kind != "ack" or not isinstance(seqs, list):
            self.bad("acks", WireError(f"expected an ack with a list of seqs, got kind {msg.kind!r}"))
            return
        if not self.ours(msg, "acks"):
            return
        if msg.meta.get("flushed") is False:  # recorded, to be acknowledged after the recorder's flush
            for seq in seqs:
                item = self.inflight.get(seq) if isinstance(seq, int) and not isinstance(seq, bool) else None
                if item is not None:
                    item.recorded = True
                    self.last_ack = time.monotonic()
            return
        for seq in seqs:
            if isinstance(seq, int) and not isinstance(seq, bool) and self.inflight.pop(seq, None) is not None:
                self.last_ack = time.monotonic()
                self.acked.add(seq)

    def _declare_dead(self, identity: bytes, why: str) -> None:
        w = self.workers[identity]
        if not w.alive:
            return
        w.alive, w.credit = False, 0
        self.stats["workers_lost"] += 1
        if self.metrics is not None:
            self.metrics.worker_lost()
        held = [seq for seq, item in self.inflight.items() if item.worker == identity and seq not in self.resend]
        self.resend.extend(sorted(held))
        log.warning("source: worker %s %s; sending its %d batch(es) again", identity.decode(errors="replace"),
                    why, len(held))

    def _check_health(self, now: float) -> None:
        rel = self.topo.reliability
        for identity, w in self.workers.items():
            if w.alive and now - w.last_seen > rel.worker_timeout_s:
                self._declare_dead(identity, f"sent nothing for {rel.worker_timeout_s:g} s")
        timeout = rel.ack_timeout_s if now > self._recovering_until else min(rel.ack_timeout_s, RECOVERY_ACK_S)
        for seq, item in self.inflight.items():
            if item.worker is not None and now - item.sent > timeout and seq not in self.resend:
                log.warning("source: batch %d not acknowledged after %g s; sending it again", seq, timeout)
                item.worker = None
                self.resend.append(seq)


class ScorerRunner(_Runner):
    """One scoring worker: asks for batches, scores them, pushes them to the trigger; with a
    ``trigger`` (the topology's ``trigger: {placement: in_workers}``) it runs the menu too and
    pushes the decided batch to the recorder."""

    stage = "scorer"

    def __init__(self, topo: Topology, scorer: ScorerStage, ctx: zmq.Context | None = None,
                 name: str | None = None, metrics: StageMetrics | None = None,
                 trigger: TriggerStage | None = None) -> None:
        super().__init__(topo, ctx, metrics)
        if (trigger is not None) != topo.trigger_in_workers:
            raise ValueError(f"{topo.where}: trigger.placement is {topo.trigger.placement}: a worker "
                             f"{'needs' if topo.trigger_in_workers else 'takes no'} trigger stage")
        self.scorer = scorer
        self.trigger = trigger
        self.name = name or f"scorer-{os.getpid()}"
        self.stage = self.name

    def run(self, stop: threading.Event | None = None) -> dict[str, int]:
        stop = self._stop = stop or threading.Event()
        rel = self.topo.reliability
        dealer = self.connect(zmq.DEALER, "dispatch", identity=f"{self.name}-{time.time_ns()}".encode())
        push = self.connect(zmq.PUSH, self.topo.decided_endpoint, linger_ms=5000)
        prefetch = self.topo.workers.prefetch
        run = self.topo.run
        self.signal(dealer, encode("ready", run=run, meta=self.ident(credit=prefetch)))
        last_beat = time.monotonic()
        try:
            while not stop.is_set():
                if dealer.poll(POLL_MS):
                    frames = dealer.recv_multipart(copy=False)
                    if not self._handle(frames, dealer, push):
                        break
                now = time.monotonic()
                if now - last_beat >= rel.heartbeat_s:
                    self.signal(dealer, encode("heartbeat", run=run, meta=self.ident()))
                    last_beat = now
        finally:
            self.close()
        return dict(self.stats)

    def _handle(self, frames: list[Any], dealer: zmq.Socket, push: zmq.Socket) -> bool:
        credit_back = encode("ready", run=self.topo.run, meta=self.ident(credit=1))
        try:
            msg = decode(frames)
            if msg.kind == "stop":
                return not self.ours(msg, "dispatch")
            if msg.kind != "batch":
                raise WireError(f"expected a batch or stop, got {msg.kind!r}")
            if not self.ours(msg, "dispatch"):
                self.signal(dealer, credit_back)
                return True
            batch = _batch_of(msg)
            t = time.perf_counter()
            scored, invalid = self.scorer.process(batch)
            meta = dict(msg.meta)
            prior = meta.get("invalid", 0)
            meta["invalid"] = (prior if isinstance(prior, int) and not isinstance(prior, bool) else 0) + invalid
            if self.trigger is None:
                frames = encode_batch("batch", msg.run, msg.seq, scored, meta=meta)
            else:
                frames = decided_frames(self.trigger, scored, msg.run, msg.seq, meta)
        except Exception as exc:  # noqa: BLE001 - a message we cannot use (also one a model or the menu cannot use)
            self.bad("dispatch", exc)
            if peek_kind(frames) == "batch":  # a batch the source sent (and counted against our credit)
                self.signal(dealer, credit_back)
            return True
        self.processed(len(batch), time.perf_counter() - t)
        if self.metrics is not None:
            for name in self.scorer.scorers:
                self.metrics.scores(name, scored.columns[f"score/{name}"])
            if invalid:
                self.metrics.dropped_events(invalid, "invalid")
        self.send(push, frames, copy=False)
        self.signal(dealer, credit_back)
        return True


def decided_frames(trigger: TriggerStage, batch: EventBatch, run: int, seq: int,
                   meta: Mapping[str, Any]) -> list[Any]:
    """The ``decided`` message of a scored batch: the accepted events with their
    ``trigger_bits``, and for every event (``all/`` columns) the decision before and after
    prescale, the truth label and the weight. What the trigger stage sends, and a worker
    that runs the menu itself."""
    accepted, decision = trigger.process(batch)
    cols = dict(accepted.columns)
    cols[f"{ALL_PREFIX}raw"] = decision.raw
    cols[f"{ALL_PREFIX}bits"] = decision.bits
    cols[f"{ALL_PREFIX}truth"] = batch.columns["truth"]
    cols[f"{ALL_PREFIX}weight"] = batch.columns["weight"]
    return encode("decided", run=run, seq=seq, columns=cols, count=len(batch), meta=meta)


def _batch_of(msg: Message) -> EventBatch:
    try:
        batch = msg.batch()
    except Exception as exc:
        raise WireError(f"{msg.kind} run {msg.run} seq {msg.seq}: {exc}") from None
    if len(batch) != msg.count:
        raise WireError(f"{msg.kind} run {msg.run} seq {msg.seq}: header says {msg.count} events, "
                        f"the columns hold {len(batch)}")
    return batch


class TriggerRunner(_Runner):
    """Runs the menu on scored batches; passes accepted events and the decision on."""

    stage = "trigger"

    def __init__(self, topo: Topology, trigger: TriggerStage, ctx: zmq.Context | None = None,
                 metrics: StageMetrics | None = None) -> None:
        super().__init__(topo, ctx, metrics)
        self.trigger = trigger

    def run(self, stop: threading.Event | None = None) -> dict[str, int]:
        stop = self._stop = stop or threading.Event()
        pull = self.bind(zmq.PULL, "trigger")
        push = self.connect(zmq.PUSH, "recorder", linger_ms=5000)
        try:
            while not stop.is_set():
                if not pull.poll(POLL_MS):
                    continue
                frames = pull.recv_multipart(copy=False)
                try:
                    msg = decode(frames)
                    if msg.kind not in ("batch", "end"):
                        raise WireError(f"expected a batch or end, got {msg.kind!r}")
                    if not self.ours(msg, "trigger"):  # a forged end or batch: refused, counted
                        continue
                    if msg.kind == "end":
                        meta = dict(msg.meta) | {"trigger": dict(self.stats)}
                        self.send(push, encode("end", run=msg.run, meta=meta))
                        break
                    batch = _batch_of(msg)
                    t = time.perf_counter()
                    frames = decided_frames(self.trigger, batch, msg.run, msg.seq, msg.meta)
                except Exception as exc:  # noqa: BLE001 - garbage, or a batch the menu cannot use
                    self.bad("trigger", exc)
                    continue
                self.processed(len(batch), time.perf_counter() - t)
                self.send(push, frames, copy=False)
        finally:
            self.close()
        return dict(self.stats)


class DiskFull(DarkTriggerError, OSError):
    """The recorder's disk has less free space than ``reliability.min_free_mb`` (or is full)."""


def disk_free_mb(path: Path) -> float:
    """Free space, MB, of the file system holding ``path``."""
    import shutil

    return shutil.disk_usage(path).free / 1e6


class RecorderRunner(_Runner):
    """Records decided batches once each, acknowledges them after a flush, writes the summary.

    It tells the source which batches it has recorded as it goes (they leave the source's
    window) and flushes and acknowledges them every ``reliability.flush_s``, or sooner: as
    soon as half of what the source keeps for acknowledgement waits here, or when no batch
    came for :data:`IDLE_FLUSH_MS` (the end of a run; at most four times a flush interval).

    Before it starts and before every flush it looks at its disk: below
    ``reliability.min_free_mb`` (or on an error writing) it stops at once, closes the events
    file cleanly (what was committed stays readable by plain h5py), writes the summary with
    status "failed" and ``stopped_by`` naming the disk (to the system's temporary folder if
    the output cannot take it) and raises :class:`DiskFull`: the stage exits with an error.
    """

    stage = "recorder"

    def __init__(self, topo: Topology, recorder: RecorderStage, ctx: zmq.Context | None = None,
                 metrics: StageMetrics | None = None) -> None:
        super().__init__(topo, ctx, metrics)
        self.recorder = recorder
        self.summary: RunSummary | None = None
        #: the accepted events' columns (name → dtype, shape of one event), set by the first batch
        #: (or by the checkpoint a resumed recorder started from)
        self.schema: dict[str, tuple[str, tuple[int, ...]]] | None = recorder.schema

    def check_disk(self) -> None:
        """Raise :class:`DiskFull` if the output's disk has less free than the margin."""
        margin = self.topo.reliability.min_free_mb
        free = disk_free_mb(self.recorder.output)
        if free < margin:
            raise DiskFull(f"disk full: the output disk holding {self.recorder.output} has {free:.1f} MB free, "
                           f"below the margin of {margin:g} MB (reliability.min_free_mb); free some space "
                           f"or set another output")

    def run(self, stop: threading.Event | None = None) -> RunSummary:
        try:
            return self._run(stop)
        except OSError as exc:  # DiskFull, or the disk refused a write (ENOSPC, EIO...)
            if not _disk_trouble(exc):
                raise
            self._fail_on_disk(exc)
            raise

    def _fail_on_disk(self, exc: OSError) -> None:
        """Close the events file (what is committed stays readable) and write a failed summary."""
        why = str(exc) if isinstance(exc, DiskFull) else (
            f"disk error writing {self.recorder.events_path}: {exc}")
        log.error("recorder: %s; stopping the run", why)
        try:
            self.recorder.writer.close()
        except Exception as close_exc:  # noqa: BLE001 - the pending rows could not be written
            log.error("recorder: closing %s: %s (its committed events are kept)", self.recorder.events_path,
                      close_exc)
        summary = dataclasses.replace(self._summary(None), stopped_by=why, status="failed")
        self.summary = summary
        try:
            summary.write(self.recorder.output / "run_summary.json")
        except OSError:
            import tempfile

            where = Path(tempfile.gettempdir()) / f"darktrigger-run{self.topo.run}-summary.json"
            summary.write(where)
            log.error("recorder: the output disk cannot take the run summary; written to %s", where)

    def _run(self, stop: threading.Event | None = None) -> RunSummary:
        stop = self._stop = stop or threading.Event()
        flush_s = self.topo.reliability.flush_s
        # acknowledge once half of what the source keeps for acknowledgement waits here, not
        # only every flush_s, so the source's cap never holds it back
        ack_every = max(1, (self.topo.inflight_cap - self.topo.reliability.max_inflight) // 2)
        self.check_disk()
        pull = self.bind(zmq.PULL, "recorder")
        acks = self.connect(zmq.PUSH, "acks", linger_ms=2000)
        to_ack: dict[int, list[int]] = {}
        last_flush = time.monotonic()
        end_meta: dict[str, Any] | None = None
        try:
            while not stop.is_set():
                idle = True
                # with batches waiting for their flush, a short wait: a recorder with nothing
                # to do flushes at once (the end of a run is acknowledged without delay)
                if pull.poll(IDLE_FLUSH_MS if to_ack else POLL_MS):
                    idle = False
                    frames = pull.recv_multipart(copy=False)
                    try:
                        msg = decode(frames)
                        if msg.kind not in ("decided", "end"):
                            raise WireError(f"expected a decided batch or end, got {msg.kind!r}")
                        if not self.ours(msg, "recorder"):  # a forged end or decided: refused, counted
                            continue
                        if msg.kind == "end":
                            end_meta = dict(msg.meta)
                            break
                        t = time.perf_counter()
                        self._record(msg)
                        self.processed(msg.count, time.perf_counter() - t)
                        to_ack.setdefault(msg.run, []).append(msg.seq)
                        # out of the source's window now; acknowledged after the flush
                        self.signal(acks, encode("ack", run=msg.run, meta=self.ident(seqs=[msg.seq], flushed=False)))
                    except WireError as exc:
                        self.bad("recorder", exc)
                since = time.monotonic() - last_flush
                if to_ack and ((idle and since >= flush_s / 4) or since >= flush_s
                               or sum(map(len, to_ack.values())) >= ack_every):
                    self.check_disk()
                    self._flush_and_ack(acks, to_ack)
                    last_flush = time.monotonic()
            self.check_disk()
            self._flush_and_ack(acks, to_ack)
            summary = self._summary(end_meta)
            if self.metrics is not None and summary.events_lost:
                self.metrics.lost(summary.events_lost)
            self.recorder.close(summary)
            self.summary = summary
        finally:
            self.close()
        return summary

    def _summary(self, end: Mapping[str, Any] | None) -> RunSummary:
        """The recorder's summary with what the ``end`` message brought (the source's and
        the trigger's counts); values of the wrong type count as absent."""
        meta = end or {}
        source, trigger = _counts(meta.get("source")), _counts(meta.get("trigger"))
        summary = self.recorder.summary(_int_or_none(meta.get("events_in")), _int_or_none(meta.get("batches_in")))
        seconds = meta.get("seconds")
        if end is None:  # the recorder itself was stopped before the source's end arrived
            stopped_by = stop_reason(self._stop, "stopped before the source's end arrived")
        else:
            stopped_by = meta["stopped_by"] if isinstance(meta.get("stopped_by"), str) else "unknown"
        return dataclasses.replace(
            summary, stopped_by=stopped_by, injected=_injected(meta.get("injected")),
            status=run_status(stopped_by, summary.events_lost, summary.events_duplicated),
            malformed_messages={"source": source.get("malformed", 0), "trigger": trigger.get("malformed", 0),
                                "recorder": self.stats["malformed"]},
            refused_messages={"source": source.get("refused", 0), "trigger": trigger.get("refused", 0),
                              "recorder": self.stats["refused"]},
            rows_skipped=_skipped(meta.get("rows_skipped")),
            requested_rate_hz=_float_or_none(meta.get("requested_rate_hz")),
            achieved_rate_hz=_float_or_none(meta.get("achieved_rate_hz")),
            batches_resent=source.get("batches_resent", 0), workers_lost=source.get("workers_lost", 0),
            wall_s=_float_or_none(seconds))

    def _record(self, msg: Message) -> None:
        if msg.kind != "decided":
            raise WireError(f"expected a decided batch or end, got {msg.kind!r}")
        every = {k[len(ALL_PREFIX):]: v for k, v in msg.columns.items() if k.startswith(ALL_PREFIX)}
        if set(every) != set(DECIDED_COLUMNS):
            raise WireError(f"decided run {msg.run} seq {msg.seq}: expected columns "
                            f"{', '.join(ALL_PREFIX + c for c in DECIDED_COLUMNS)}, got {sorted(every)}")
        if any(len(v) != msg.count or v.ndim != 1 for v in every.values()):
            raise WireError(f"decided run {msg.run} seq {msg.seq}: all/ columns must have {msg.count} rows")
        wrong = [f"{ALL_PREFIX}{c} is {every[c].dtype}, expected {dtype}" for c, dtype in DECIDED_COLUMNS.items()
                 if every[c].dtype != dtype]
        if wrong:
            raise WireError(f"decided run {msg.run} seq {msg.seq}: {'; '.join(wrong)}")
        weights = every["weight"]
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise WireError(f"decided run {msg.run} seq {msg.seq}: all/weight holds a NaN, infinite or "
                            f"negative weight")
        try:
            accepted = EventBatch({k: v for k, v in msg.columns.items() if not k.startswith(ALL_PREFIX)})
        except Exception as exc:
            raise WireError(f"decided run {msg.run} seq {msg.seq}: {exc}") from None
        if TRIGGER_BITS not in accepted or len(accepted) != int((every["bits"] != 0).sum()):
            raise WireError(f"decided run {msg.run} seq {msg.seq}: the accepted events do not match the bits")
        schema = {k: (v.dtype.str, v.shape[1:]) for k, v in accepted.columns.items()}
        if self.schema is not None and schema != self.schema:
            raise WireError(f"decided run {msg.run} seq {msg.seq}: accepted columns "
                            f"{sorted((k, d, list(s)) for k, (d, s) in schema.items())} are not the run's "
                            f"{sorted((k, d, list(s)) for k, (d, s) in self.schema.items())}")
        t_emit = msg.meta.get("t_emit")
        invalid = msg.meta.get("invalid", 0)
        try:
            decision = Decision(every["raw"], every["bits"], self.recorder.menu.names)
        except DarkTriggerError as exc:
            raise WireError(f"decided run {msg.run} seq {msg.seq}: {exc}") from None
        fresh = self.recorder.record(msg.run, msg.seq, accepted, decision, every["truth"], weights,
                                     t_emit=t_emit if isinstance(t_emit, float) else None,
                                     invalid=invalid if isinstance(invalid, int) and not isinstance(invalid, bool)
                                     and 0 <= invalid <= 1 << 40 else 0)
        self.schema = schema
        counts = self.recorder.last_counts
        if fresh and self.metrics is not None and counts is not None:
            from darktrigger.monitoring.metrics import WeightSums

            self.metrics.decisions(counts.events, counts.raw, counts.counts, counts.pure, counts.accepted,
                                   weights=WeightSums.of(counts))
            if isinstance(t_emit, float):
                self.metrics.end_to_end(time.time() - t_emit, msg.count)

    def _flush_and_ack(self, acks: zmq.Socket, to_ack: dict[int, list[int]]) -> None:
        if not to_ack:
            return
        t = time.perf_counter()
        self.recorder.flush()
        self.recorder.checkpoint(self.schema)  # what a restarted recorder resumes from
        self.busy_s += time.perf_counter() - t
        for run, seqs in to_ack.items():
            self.send(acks, encode("ack", run=run, meta=self.ident(seqs=seqs)))
        to_ack.clear()



def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return out if np.isfinite(out) else None


def _disk_trouble(exc: OSError) -> bool:
    """A full or failing disk (not, say, a port that cannot be bound)."""
    import errno

    return (isinstance(exc, DiskFull) or exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS,
                                                       errno.EFBIG)
            or "No space left" in str(exc) or "disk" in str(exc).lower())


def _skipped(value: Any) -> dict[str, dict[str, Any]]:
    """The source's skipped rows from an ``end`` message (entries of the wrong shape left out)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(path): {"count": r["count"], "examples": [str(e) for e in r["examples"]][:10]}
            for path, r in value.items()
            if isinstance(r, Mapping) and isinstance(r.get("count"), int) and isinstance(r.get("examples"), list)}


def _counts(value: Any) -> dict[str, int]:
    """A stage's counts from an ``end`` message's meta: the integer entries of a map."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def _injected(value: Any) -> dict[str, dict[str, float]]:
    """The source's injections by rate from an ``end`` message (entries of the wrong shape left out)."""
    if not isinstance(value, Mapping):
        return {}
    out = {}
    for path, spec in value.items():
        if isinstance(spec, Mapping) and all(isinstance(spec.get(k), int | float) for k in ("rate_hz", "fraction")):
            out[str(path)] = {"rate_hz": float(spec["rate_hz"]), "fraction": float(spec["fraction"])}
    return out
