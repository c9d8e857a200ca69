"""The pipeline's topology: one YAML file naming every stage's endpoints and settings.

Like FairMQ's channel configuration, one file describes the whole pipeline, and each
stage reads it to know what to bind and where to connect; ``darktrigger run`` starts
every stage locally, ``darktrigger stage NAME`` starts one on any host.

.. code-block:: yaml

    run: 1
    output: run-out                  # folder for events.h5 and run_summary.json
    menu: menu.yaml                  # the trigger menu (its models are scored)
    batch_size: 8192
    source:
      mix: {bkg.h5: 0.999, sig.h5: 0.001}   # or files: [a.h5, b.h5]; or a signal at its rate:
      # mix: {zb.h5: background, sig.h5: {rate_hz: 20, fraction: 0.001}}
      rate_hz: null                  # null: as fast as possible
      loop: true
      events: 1000000                # stop after this many (--events/--duration override)
    workers: {count: 2, backend: onnxruntime, threads: 1, prefetch: 2}
    trigger: {placement: standalone} # or in_workers: the menu runs inside each scorer worker
    target_p99_ms: null              # a latency goal: batch size and in-flight window chosen from it
    endpoints:                       # who binds: source (dispatch, acks), trigger, recorder
      dispatch: tcp://127.0.0.1:5550
      acks: tcp://127.0.0.1:5551
      trigger: tcp://127.0.0.1:5552
      recorder: tcp://127.0.0.1:5553
    security: {keys: keys}           # CURVE keys; required when an endpoint leaves loopback;
    # without keys `darktrigger run` makes a key pair per run; {auth: off}: none (benchmarks)
    metrics: {base_port: 9300}       # every stage's /metrics (darktrigger.monitoring.config)

``trigger.placement`` says where the menu runs: ``standalone`` (the default) is a trigger
stage of its own, which a multi-host layout can put on any host; ``in_workers`` runs the
menu inside each scorer worker, which then sends its decided batch straight to the
recorder: one hop and one process fewer, and the scored events never travel again.

``target_p99_ms`` (optional) chooses the batch size and the in-flight window from a
latency goal instead of ``batch_size`` (:func:`plan_for_latency`): an event waits for the
batches ahead of it in the pipeline (each worker's credit, the recorder's), so the p99
latency is about those batches' events over the throughput; the plan takes the largest
batch (the least per-batch overhead) that fits the goal at 1 M events/s
(``reliability.max_inflight``, when given, is kept). Batches recorded and waiting for the
recorder's flush are kept apart from that window, so the flush interval never holds the
source back nor adds latency.

Relative paths are taken from the topology file's folder. ``source.mix`` maps each file
to a fraction, to ``background`` (the file that fills the rest) or to an injection by rate
``{rate_hz: HZ, fraction: F}``: a signal drawn at fraction F (default 0.001) and weighted
so that rates computed from the weights give it its physical rate (σ × L) at the menu's
crossing rate (:mod:`darktrigger.replay.stream` has the rule).

    >>> t = Topology.from_dict({"menu": "m.yaml", "source": {"files": ["a.h5"]}}, base=Path("/runs"))
    >>> t.endpoints["dispatch"], t.output
    ('tcp://127.0.0.1:5550', PosixPath('/runs/run-out'))
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darktrigger.monitoring.config import MetricsConfig
from darktrigger.monitoring.errors import MonitoringError
from darktrigger.replay.errors import ConfigError
from darktrigger.replay.registry import unknown_name

ENDPOINT_NAMES = ("dispatch", "acks", "trigger", "recorder")
#: Which stage binds each endpoint (the others connect to it).
BINDER = {"dispatch": "source", "acks": "source", "trigger": "trigger", "recorder": "recorder"}
DEFAULT_BASE_PORT = 5550
STAGES = ("source", "scorer", "trigger", "recorder")
#: Where the menu runs: its own stage, or inside every scorer worker.
PLACEMENTS = ("standalone", "in_workers")
#: Events recorded and waiting for the recorder's flush that the source keeps beyond its
#: window: a flush interval (0.2 s) at about 1 M events/s.
FLUSH_COVER_EVENTS = 1 << 18


@dataclass
class SourceConfig:
    files: list[Path] = field(default_factory=list)
    #: file → a fraction, "background" or an ``Inject`` (:data:`darktrigger.replay.stream.MixEntry`)
    mix: dict[Path, Any] = field(default_factory=dict)
    rate_hz: float | None = None
    loop: bool = True
    events: int | None = None
    seed: int = 0
    #: a bad row in a source file: "fail" ends the run, "skip" drops it and counts it
    on_error: str = "fail"


@dataclass
class WorkerConfig:
    count: int = 2
    backend: str | None = None  # None: each model's backend from the menu
    threads: int = 1
    prefetch: int = 2


@dataclass
class TriggerConfig:
    #: "standalone": a trigger stage of its own; "in_workers": the menu runs in each scorer worker
    placement: str = "standalone"


@dataclass
class Reliability:
    heartbeat_s: float = 0.25
    worker_timeout_s: float = 3.0
    ack_timeout_s: float = 60.0
    #: batches sent and not yet recorded; 0: workers × prefetch + 4, enough to keep every
    #: stage busy without queues that only add latency (batches recorded and waiting for the
    #: recorder's flush to be acknowledged are kept apart: :attr:`Topology.inflight_cap`)
    max_inflight: int = 0
    drain_timeout_s: float = 120.0
    flush_s: float = 0.2
    #: the recorder stops (status failed, a clear error) when its disk has less free than this
    min_free_mb: float = 64.0
    #: a stage busy on one batch, or a source waiting for acknowledgements, this long is logged
    #: and shown in its metrics as stalled
    stall_s: float = 2.0


@dataclass
class Topology:
    """A parsed, validated topology (see module docs)."""

    path: Path | None
    menu: Path
    source: SourceConfig
    output: Path
    run: int = 1
    batch_size: int = 8192
    workers: WorkerConfig = field(default_factory=WorkerConfig)
    endpoints: dict[str, str] = field(default_factory=dict)
    reliability: Reliability = field(default_factory=Reliability)
    keys: Path | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: False only when the topology says ``security: {auth: off}``: ``darktrigger run`` then
    #: makes no per-run keys (loopback links unauthenticated, for benchmarks)
    auth: bool = True
    #: the run's identity, carried by every message: a digest of the topology (so stages of
    #: another topology are refused); ``darktrigger run`` gives each run its own
    run_id: str = ""
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    #: the latency goal the batch size and window were chosen from (None: ``batch_size`` as given)
    target_p99_ms: float | None = None

    @property
    def trigger_in_workers(self) -> bool:
        """True when the menu runs inside the scorer workers (no trigger stage)."""
        return self.trigger.placement == "in_workers"

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages this topology runs (no trigger stage when the workers run the menu)."""
        return tuple(s for s in STAGES if s != "trigger" or not self.trigger_in_workers)

    @property
    def inflight_cap(self) -> int:
        """The most batches the source keeps unacknowledged: ``max_inflight`` in the pipeline
        and up to :data:`FLUSH_COVER_EVENTS` events more, recorded and waiting for the
        recorder's flush (they add to no event's latency; the cap bounds the source's memory)."""
        return self.reliability.max_inflight + math.ceil(FLUSH_COVER_EVENTS / self.batch_size)

    @property
    def decided_endpoint(self) -> str:
        """Where scored batches go and the source's ``end`` goes: the trigger's endpoint, or
        the recorder's when the workers run the menu."""
        return "recorder" if self.trigger_in_workers else "trigger"

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "topology"

    @classmethod
    def from_yaml(cls, path: str | Path) -> Topology:
        import yaml

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such topology file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data or {}, base=path.parent.resolve(), path=path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Path | None = None, path: Path | None = None) -> Topology:
        where = str(path) if path else "topology"
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping at the top, got {type(data).__name__}")
        base = base or Path.cwd()
        _no_unknown(data, {"run", "output", "menu", "batch_size", "source", "workers", "endpoints",
                           "reliability", "security", "metrics", "trigger", "target_p99_ms"}, where)

        def rel(p: Any, key: str) -> Path:
            if not isinstance(p, (str, Path)):
                raise ConfigError(f"{where}: {key} must be a path, got {p!r}")
            q = Path(p).expanduser()
            return q if q.is_absolute() else base / q

        if "menu" not in data:
            raise ConfigError(f"{where}: no 'menu' (the trigger menu YAML the trigger stage runs)")
        src = data.get("source") or {}
        if not isinstance(src, Mapping):
            raise ConfigError(f"{where}: source must be a mapping")
        _no_unknown(src, {"files", "mix", "rate_hz", "loop", "events", "seed", "on_error"}, f"{where}: source")
        on_error = src.get("on_error", "fail")
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"{where}: source.on_error must be 'fail' (a bad row ends the run) or 'skip' "
                              f"(bad rows are dropped and counted), got {on_error!r}")
        from darktrigger.replay.stream import mix_entry

        files = [rel(f, "source.files") for f in src.get("files") or []]
        raw_mix = src.get("mix") or {}
        if not isinstance(raw_mix, Mapping):
            raise ConfigError(f"{where}: source.mix must map files to fractions, 'background' or "
                              f"{{rate_hz: HZ, fraction: F}}, got {raw_mix!r}")
        mix = {rel(f, "source.mix"): mix_entry(w, f"{where}: source.mix[{f}]") for f, w in raw_mix.items()}
        if bool(files) == bool(mix):
            raise ConfigError(f"{where}: source needs exactly one of 'files' (read in sequence) or "
                              f"'mix' (file: fraction)")
        rate = src.get("rate_hz")
        source = SourceConfig(files=files, mix=mix, loop=bool(src.get("loop", True)),
                              rate_hz=None if rate in (None, 0) else _number(rate, "source.rate_hz", where, positive=True),
                              events=None if src.get("events") is None else _int(src["events"], "source.events", where),
                              seed=_int(src.get("seed", 0), "source.seed", where, minimum=0), on_error=on_error)
        w = data.get("workers") or {}
        if isinstance(w, int):
            w = {"count": w}
        _no_unknown(w, {"count", "backend", "threads", "prefetch"}, f"{where}: workers")
        workers = WorkerConfig(count=_int(w.get("count", 2), "workers.count", where),
                               backend=w.get("backend"), threads=_int(w.get("threads", 1), "workers.threads", where),
                               prefetch=_int(w.get("prefetch", 2), "workers.prefetch", where))
        if workers.backend is not None:
            from darktrigger.models.backends import BACKENDS  # torch: only when a backend is named

            if workers.backend not in BACKENDS:
                raise ConfigError(f"{where}: workers.backend: "
                                  f"{unknown_name('scoring backend', workers.backend, BACKENDS.names())}")
        r = data.get("reliability") or {}
        _no_unknown(r, set(Reliability.__dataclass_fields__), f"{where}: reliability")
        reliability = Reliability()
        for key, value in r.items():
            setattr(reliability, key, _number(value, f"reliability.{key}", where, positive=True))
        trig = data.get("trigger") or {}
        _no_unknown(trig, {"placement"}, f"{where}: trigger")
        placement = trig.get("placement", "standalone")
        if placement not in PLACEMENTS:
            raise ConfigError(f"{where}: trigger.placement: "
                              f"{unknown_name('trigger placement', str(placement), list(PLACEMENTS))}")
        given_batch = data.get("batch_size")
        batch_size = 8192 if given_batch is None else _int(given_batch, "batch_size", where)
        target = data.get("target_p99_ms")
        target_ms = None if target is None else _number(target, "target_p99_ms", where, positive=True)
        if target_ms is not None and given_batch is not None:
            raise ConfigError(f"{where}: batch_size and target_p99_ms both given; keep one (target_p99_ms "
                              f"chooses the batch size: {plan_for_latency(target_ms, workers.count).batch_size})")
        if target_ms is not None:
            plan = plan_for_latency(target_ms, workers.count, prefetch=workers.prefetch)
            batch_size, workers.prefetch = plan.batch_size, plan.prefetch
            if not r.get("max_inflight"):
                reliability.max_inflight = plan.max_inflight
        reliability.max_inflight = int(reliability.max_inflight) or workers.count * workers.prefetch + 4
        endpoints = {name: f"tcp://127.0.0.1:{DEFAULT_BASE_PORT + i}" for i, name in enumerate(ENDPOINT_NAMES)}
        given = data.get("endpoints") or {}
        _no_unknown(given, set(ENDPOINT_NAMES), f"{where}: endpoints")
        endpoints.update({k: str(v) for k, v in given.items()})
        try:
            metrics = MetricsConfig.from_mapping(data.get("metrics"), where)
        except MonitoringError as exc:
            raise ConfigError(str(exc)) from None
        sec = data.get("security") or {}
        _no_unknown(sec, {"keys", "auth"}, f"{where}: security")
        auth = sec.get("auth", True)  # YAML reads on/off as True/False
        if not isinstance(auth, bool):
            raise ConfigError(f"{where}: security.auth must be on or off, got {auth!r}")
        if not auth and sec.get("keys"):
            raise ConfigError(f"{where}: security: keys given with auth: off; keep one of them")
        topo = cls(path=path, menu=rel(data["menu"], "menu"), source=source,
                   output=rel(data.get("output", "run-out"), "output"),
                   run=_int(data.get("run", 1), "run", where, minimum=0),
                   batch_size=batch_size,
                   workers=workers, endpoints=endpoints, reliability=reliability,
                   keys=rel(sec["keys"], "security.keys") if sec.get("keys") else None,
                   metrics=metrics, auth=auth, run_id=_digest(data),
                   trigger=TriggerConfig(placement=placement), target_p99_ms=target_ms)
        topo.check_endpoints()
        return topo

    # -- endpoints ---------------------------------------------------------------------
    def check_endpoints(self) -> None:
        """Every endpoint well formed, no two the same, CURVE keys where a link leaves loopback."""
        seen: dict[str, str] = {}
        for name, ep in self.endpoints.items():
            kind, host, port = parse_endpoint(ep, f"{self.where}: endpoints.{name}")
            key = f"{kind}://{host}:{port}" if kind == "tcp" else ep
            if key in seen:
                raise ConfigError(f"{self.where}: endpoints.{name} and endpoints.{seen[key]} are both "
                                  f"{ep}: every endpoint needs its own address (a port clash)")
            seen[key] = name
        if self.metrics.enabled:
            self.check_metrics_clash()
        if self.off_loopback and self.keys is None:
            raise ConfigError(f"{self.where}: endpoint(s) {', '.join(self.off_loopback)} leave loopback; "
                              f"such links must be encrypted: make keys with `darktrigger keys generate "
                              f"--out keys` and set security: {{keys: keys}}")

    def check_metrics_clash(self) -> None:
        """No metrics port on a port one of the tcp endpoints uses on the same host, and no
        two stages on one metrics port: a clash is a :class:`ConfigError` naming both."""
        wild = ("0.0.0.0", "*", "::", "")
        taken = {}
        for name, ep in self.endpoints.items():
            kind, host, port = parse_endpoint(ep, f"{self.where}: endpoints.{name}")
            if kind == "tcp" and (host == self.metrics.host or host in wild or self.metrics.host in wild
                                  or (_is_loopback(host) and _is_loopback(self.metrics.host))):
                taken[name] = port
        try:
            self.metrics.check(self.workers.count, taken, self.where)
        except MonitoringError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def off_loopback(self) -> list[str]:
        """Names of the tcp endpoints whose host is not a loopback address."""
        out = []
        for name, ep in self.endpoints.items():
            kind, host, _ = parse_endpoint(ep, name)
            if kind == "tcp" and not _is_loopback(host):
                out.append(name)
        return out

    def check_bindable(self, stage: str) -> None:
        """Before a stage starts: each tcp endpoint it binds is free (a clear error if not)."""
        for name, binder in BINDER.items():
            if binder != stage or stage not in self.stages:
                continue
            kind, host, port = parse_endpoint(self.endpoints[name], name)
            if kind != "tcp" or host == "*":
                continue
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ does
                try:
                    s.bind((host, port))
                except OSError as exc:
                    raise ConfigError(f"{self.where}: endpoints.{name} = {self.endpoints[name]} cannot be "
                                      f"bound ({exc.strerror}): is another run or program using port "
                                      f"{port}? Choose other ports in the topology") from None

    def check_metrics_ports(self) -> None:
        """Before ``darktrigger run`` starts anything: every metrics port is free."""
        if not self.metrics.enabled:
            return
        stages = [s for s in self.metrics.ports(self.workers.count)
                  if s != "supervisor" or self.metrics.live_page]
        try:
            self.metrics.check_bindable(stages, self.workers.count, self.where)
        except MonitoringError as exc:
            raise ConfigError(f"{exc}; choose another metrics.base_port or set metrics: {{enabled: false}}") from None

    def bound_by(self, stage: str) -> list[str]:
        return [n for n, b in BINDER.items() if b == stage]


#: The throughput a latency plan assumes unless told (events/s): the pipeline's goal on a
#: two-core machine. A slower pipeline gets a proportionally higher latency from the same plan.
PLAN_RATE_HZ = 1.0e6
#: Batch sizes a plan chooses from (powers of two): below, per-batch overhead dominates; above,
#: frames grow past what the stages handle well.
PLAN_BATCHES = (256, 65536)


@dataclass(frozen=True)
class LatencyPlan:
    """Batch size and in-flight window for a latency goal (:func:`plan_for_latency`)."""

    batch_size: int
    prefetch: int
    max_inflight: int
    #: batches an event can find ahead of it between its emission and its recording
    ahead: int

    def p99_s(self, rate_hz: float = PLAN_RATE_HZ) -> float:
        """The latency this plan expects at ``rate_hz``: the batches ahead of an event, and its own."""
        return (self.ahead + 1) * self.batch_size / rate_hz


def plan_for_latency(target_ms: float, workers: int, *, prefetch: int = 2,
                     rate_hz: float = PLAN_RATE_HZ) -> LatencyPlan:
    """The largest power-of-two batch whose expected p99 latency fits ``target_ms`` at ``rate_hz``.

    An event emitted into a busy pipeline waits behind the batches the workers already
    hold (``workers × prefetch``) and the one the recorder is writing, then for its own; so
    p99 ≈ (workers × prefetch + 2) × batch / rate. The window (``max_inflight``: batches sent
    and not yet recorded) holds every worker's credit and four batches more; batches recorded
    and waiting for the recorder's flush do not count against it (:attr:`Topology.inflight_cap`).

        >>> plan = plan_for_latency(50, workers=2)
        >>> plan.batch_size, plan.max_inflight, round(plan.p99_s() * 1e3)
        (8192, 8, 49)
        >>> plan_for_latency(1, workers=2).batch_size    # never below the smallest batch
        256
    """
    if not target_ms > 0 or workers < 1 or prefetch < 1 or not rate_hz > 0:
        raise ConfigError(f"a latency plan needs target_p99_ms > 0, workers >= 1, prefetch >= 1 and a rate > 0; "
                          f"got {target_ms!r}, {workers!r}, {prefetch!r}, {rate_hz!r}")
    ahead = workers * prefetch + 1
    fits = target_ms * 1e-3 * rate_hz / (ahead + 1)
    low, high = PLAN_BATCHES
    batch = low
    while batch * 2 <= min(fits, high):
        batch *= 2
    return LatencyPlan(batch_size=batch, prefetch=prefetch, max_inflight=workers * prefetch + 4, ahead=ahead)


def _digest(data: Mapping[str, Any]) -> str:
    """A short digest of a topology's settings: its default run identity."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_endpoint(ep: str, where: str) -> tuple[str, str, int]:
    """``tcp://host:port`` → ("tcp", host, port); ``ipc://path`` → ("ipc", path, 0)."""
    if ep.startswith("ipc://") and len(ep) > 6:
        return "ipc", ep[6:], 0
    if ep.startswith("inproc://") and len(ep) > 9:
        return "inproc", ep[9:], 0
    if not ep.startswith("tcp://"):
        raise ConfigError(f"{where}: expected tcp://HOST:PORT or ipc://PATH, got {ep!r}")
    host, sep, port = ep[6:].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected tcp://HOST:PORT with a port 1-65535, got {ep!r}")
    return "tcp", host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_unknown(data: Any, allowed: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        import difflib

        hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, allowed, 1)) else repr(u)
                 for u in unknown]
        raise ConfigError(f"{where}: unknown key(s) {', '.join(hints)}; expected some of {sorted(allowed)}")


def _number(v: Any, key: str, where: str, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {v!r}")
    if positive and not v > 0:
        raise ConfigError(f"{where}: {key} must be > 0, got {v!r}")
    return float(v)


def _int(v: Any, key: str, where: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{where}: {key} must be an integer >= {minimum}, got {v!r}")
    return v
