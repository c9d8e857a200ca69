"""The run summary, ``run_summary.json``: what the recorder counted over one run.

The recorder builds a :class:`RunSummary` when the run ends
(:meth:`darktrigger.daq.stages.RecorderStage.summary`) and writes it with
:meth:`RunSummary.write`; the supervisor, ``darktrigger run``, the benchmarks and the
tests read it back with :meth:`RunSummary.from_json`, the one reader. The JSON keys are
the field names; the ``menu`` part (and its ``background``/``signal`` split) is
:meth:`MenuCounts.to_dict`'s, each injected signal's efficiencies
:meth:`SignalEfficiency.to_dict`'s. :func:`format_summary` is the terminal's view of it.

    >>> from darktrigger.daq.trigger.rates import MenuCounts
    >>> summary = RunSummary(run=1, events_in=10, events_accepted=3, events_rejected=7,
    ...                      events_lost=0, menu=MenuCounts(["MET90"]))
    >>> path = summary.write("run_summary.json")
    >>> back = RunSummary.from_json(path)
    >>> back.events_accepted, back.events_lost, back.menu.names
    (3, 0, ('MET90',))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.daq.trigger.efficiency import SignalEfficiency
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.replay.errors import ConfigError, InputFormatError


@dataclass
class ProcessCounts:
    """One truth label's events: how many came in, how many the menu accepted."""

    events: int
    accepted: int

    @property
    def efficiency(self) -> float:
        """accepted / events (0 when no event came in)."""
        return self.accepted / self.events if self.events else 0.0


@dataclass(kw_only=True)
class RunSummary:
    """A run's counts: conservation, the menu's counts and rates, efficiencies, latency.

    ``events_in`` and ``batches_in`` are what the source emitted (None when its ``end``
    did not arrive), ``events_lost`` is ``events_in`` minus every event the recorder
    saw (accepted, rejected or invalid). Latencies are source emit → recorder write, per
    event, in seconds; ``wall_s`` is the source's first emission → its ``end``.
    """

    run: int
    events_in: int | None = None
    events_accepted: int = 0
    events_rejected: int = 0
    events_invalid: int = 0
    events_lost: int | None = None
    events_duplicated: int = 0
    batches_in: int | None = None
    batches_recorded: int = 0
    duplicate_batches_dropped: int = 0
    latency_p50_s: float = 0.0
    latency_p99_s: float = 0.0
    menu: MenuCounts
    #: per truth label (``LABEL_NAMES``): events in and accepted
    per_process: dict[str, ProcessCounts] = field(default_factory=dict)
    events_file: str = ""
    #: why the run ended: "end of run" (the source finished: end of its input, its event
    #: count or its duration), "interrupted (SIGINT)" (Ctrl-C), "terminated" (SIGTERM),
    #: "timeout", or the stage that died ("stage trigger exited with code 1")
    stopped_by: str = "end of run"
    #: the menu's counts of the background events alone (truth not a signal: zero bias) and of
    #: the injected signal events alone, each over every event: their rates add up to ``menu``'s
    background: MenuCounts | None = None
    signal: MenuCounts | None = None
    #: per injected signal (truth label): its events and the weight each seed kept of them
    signals: dict[str, SignalEfficiency] = field(default_factory=dict)
    #: the inputs the source injected by rate: file → {rate_hz, fraction}
    injected: dict[str, dict[str, float]] = field(default_factory=dict)
    #: bad messages dropped, per stage (source, trigger, recorder)
    malformed_messages: dict[str, int] = field(default_factory=dict)
    batches_resent: int = 0
    workers_lost: int = 0
    wall_s: float | None = None
    worker_restarts: int = 0
    #: what the run came to: "complete" (the source finished on its own and the counts close:
    #: nothing lost or duplicated), "stopped" (a signal drained it; the counts close) or
    #: "failed" (a stage died, a timeout, a full disk, or counts that do not close)
    status: str = "complete"
    #: messages refused per stage because they carried another run's identity (or none)
    refused_messages: dict[str, int] = field(default_factory=dict)
    #: rows the source's readers skipped (``source.on_error: skip``): file → {count, examples}
    rows_skipped: dict[str, Any] = field(default_factory=dict)
    #: the source's rate as the topology asked for it (None: as fast as possible) and as achieved
    requested_rate_hz: float | None = None
    achieved_rate_hz: float | None = None
    #: stages other than workers started again after they died (stage → restarts)
    stage_restarts: dict[str, int] = field(default_factory=dict)

    # -- the writer ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The summary as ``run_summary.json`` holds it (JSON types only)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "menu":
                value = self.menu.to_dict()
            elif name in ("background", "signal"):
                value = None if value is None else value.to_dict()
            elif name == "signals":
                value = {label: c.to_dict() for label, c in self.signals.items()}
            elif name == "injected":
                value = {path: dict(spec) for path, spec in self.injected.items()}
            elif name == "per_process":
                value = {label: {"events": p.events, "accepted": p.accepted, "efficiency": p.efficiency}
                         for label, p in self.per_process.items()}
            elif name in ("malformed_messages", "refused_messages", "stage_restarts", "rows_skipped"):
                value = dict(value)
            out[name] = value
        if self.background is not None and self.signal is not None:
            out["rate_split"] = self.rate_split()  # derived: what the reader does not need
        return out

    def rate_split(self) -> list[dict[str, Any]]:
        """Per seed, the rate and its background (zero-bias) and injected-signal parts, in Hz,
        each with its uncertainty (see :meth:`split_uncertainties`)."""
        bg, sig = self.background, self.signal
        if bg is None or sig is None:
            raise ConfigError("this run summary has no background/signal split")
        bg_unc, sig_unc = self.split_uncertainties()
        m = self.menu
        return [{"name": name, "rate_hz": float(m.rates_hz[i]), "rate_uncertainty_hz": float(m.rate_uncertainties_hz[i]),
                 "pure_rate_hz": float(m.pure_rates_hz[i]),
                 "background_rate_hz": float(bg.rates_hz[i]), "background_rate_uncertainty_hz": float(bg_unc[i]),
                 "signal_rate_hz": float(sig.rates_hz[i]), "signal_rate_uncertainty_hz": float(sig_unc[i])}
                for i, name in enumerate(m.names)]

    def split_uncertainties(self) -> tuple[np.ndarray, np.ndarray]:
        """The background and signal parts' rate uncertainties per seed, Hz. Where no event of a
        part fired a seed, it is the rate of one event *of that part* (its mean weight / Σw ×
        crossing rate): one injected event stands for far less rate than one zero-bias crossing."""
        bg, sig = self.background, self.signal
        if bg is None or sig is None:
            raise ConfigError("this run summary has no background/signal split")
        m = self.menu
        n_sig = sum(c.events for c in self.signals.values())
        w_sig = sum(c.sum_w for c in self.signals.values())
        out = []
        for part, n, w in ((bg, m.events - n_sig, m.sum_w - w_sig), (sig, n_sig, w_sig)):
            one = w / n / m.sum_w * m.bx_hz if n and m.sum_w > 0 else 0.0
            out.append(np.where(part.counts > 0, part.rate_uncertainties_hz, one))
        return out[0], out[1]

    def write(self, path: str | Path) -> Path:
        """Write the JSON to ``path`` (whole or not at all: a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    # -- the reader ------------------------------------------------------------------
    @classmethod
    def from_json(cls, path: str | Path) -> RunSummary:
        """Read a ``run_summary.json``; an :class:`InputFormatError` names the file and the field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputFormatError(str(path), f"line {exc.lineno}", "a run summary (JSON)",
                                   exc.msg) from None
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "run summary") -> RunSummary:
        """A summary from what :meth:`to_dict` wrote; ``where`` names it in errors."""
        if not isinstance(data, Mapping):
            raise InputFormatError(where, "", "a mapping of the run summary's fields", type(data).__name__)
        missing = [name for name in cls.__dataclass_fields__ if name not in data and name not in LATER_FIELDS]
        if missing:
            raise InputFormatError(where, "", f"every field of a run summary; {', '.join(missing)} missing")
        try:
            menu = MenuCounts.from_dict(data["menu"])
        except ConfigError as exc:
            raise InputFormatError(where, "field 'menu'", "MenuCounts.to_dict's fields", str(exc)) from None
        kwargs: dict[str, Any] = {"menu": menu}
        for name, spec in cls.__dataclass_fields__.items():
            if name == "menu":
                continue
            if name not in data:  # a summary written before the field existed: its default
                continue
            value = data[name]
            try:
                if name in ("background", "signal"):
                    kwargs[name] = None if value is None else MenuCounts.from_dict(value)
                elif name == "signals":
                    kwargs[name] = {str(label): SignalEfficiency.from_dict(c) for label, c in value.items()}
                elif name == "injected":
                    kwargs[name] = {str(path): {str(k): float(v) for k, v in spec.items()}
                                    for path, spec in value.items()}
                elif name == "per_process":
                    kwargs[name] = {str(label): ProcessCounts(int(p["events"]), int(p["accepted"]))
                                    for label, p in value.items()}
                elif name in ("malformed_messages", "refused_messages", "stage_restarts"):
                    kwargs[name] = {str(stage): int(n) for stage, n in value.items()}
                elif name == "rows_skipped":
                    kwargs[name] = {str(path): {"count": int(r["count"]), "examples": [str(e) for e in r["examples"]]}
                                    for path, r in value.items()}
                else:
                    kwargs[name] = _scalar(value, str(spec.type))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputFormatError(where, f"field {name!r}", f"a value of type {spec.type}",
                                       f"{value!r} ({type(exc).__name__}: {exc})") from None
        return cls(**kwargs)


#: fields added after the first summaries were written: absent, they take their defaults
LATER_FIELDS = frozenset({"status", "refused_messages", "rows_skipped", "requested_rate_hz", "achieved_rate_hz",
                          "stage_restarts"})
#: ``stopped_by`` values of a run drained on request (a signal, the supervisor gone)
STOP_REQUESTS = ("interrupted (SIGINT)", "terminated", "hung up (SIGHUP)", "the supervisor (pid")
#: a source that achieves less than this fraction of its requested rate did not keep it
RATE_KEPT = 0.95
#: ``darktrigger run``'s exit status for each run status
EXIT_CODES = {"complete": 0, "failed": 1, "stopped": 3}


def run_status(stopped_by: str, events_lost: int | None, events_duplicated: int) -> str:
    """What a run came to (see :attr:`RunSummary.status`): never "complete" or "stopped"
    unless every event the source sent was recorded once.

        >>> run_status("end of run", 0, 0), run_status("terminated", 0, 0), run_status("end of run", 3, 0)
        ('complete', 'stopped', 'failed')
    """
    if events_lost != 0 or events_duplicated != 0:
        return "failed"
    if stopped_by == "end of run":
        return "complete"
    return "stopped" if stopped_by.startswith(STOP_REQUESTS) else "failed"


def _scalar(value: Any, annotation: str) -> Any:
    """``value`` as the annotation (a string: the module uses postponed annotations) says."""
    if value is None and annotation.endswith("| None"):
        return None
    base = annotation.removesuffix(" | None")
    if isinstance(value, bool) or (base in ("int", "float") and not isinstance(value, int | float)):
        raise TypeError(f"expected {annotation}")
    if base == "int":
        if not float(value).is_integer():
            raise ValueError("not a whole number")
        return int(value)
    if base == "float":
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise TypeError(f"expected {annotation}")
        return value
    raise TypeError(f"no reader for {annotation}")


def format_summary(summary: RunSummary) -> str:
    """The run summary for the terminal: how it ended, conservation, the menu's rates split
    into background and injected signal, the signal's efficiencies, the software latency."""
    s = summary
    lines = [f"status: {s.status}  stopped by: {s.stopped_by}"]
    if s.events_in is not None:
        lines.append(f"events in {s.events_in:,}  accepted {s.events_accepted:,}  rejected "
                     f"{s.events_rejected:,}  invalid {s.events_invalid:,}  "
                     f"lost {s.events_lost}  duplicated {s.events_duplicated}")
    else:
        lines.append(f"events accepted {s.events_accepted:,}, rejected {s.events_rejected:,} "
                     "(the source's count did not arrive)")
    lines.append(f"batches resent {s.batches_resent}, duplicate batches dropped "
                 f"{s.duplicate_batches_dropped}, workers lost {s.workers_lost}, "
                 f"worker restarts {s.worker_restarts}, malformed messages "
                 f"{sum(s.malformed_messages.values())}, refused (another run) "
                 f"{sum(s.refused_messages.values())}")
    if s.stage_restarts:
        lines.append("stages started again: " + ", ".join(f"{k} {v}" for k, v in s.stage_restarts.items()))
    for path, report in s.rows_skipped.items():
        lines.append(f"skipped {report['count']} bad row(s) of {path}: {'; '.join(report['examples'][:3])}"
                     + (" …" if report["count"] > 3 else ""))
    if s.requested_rate_hz is not None and s.achieved_rate_hz is not None:
        short = " (the source could not keep the rate)" if s.achieved_rate_hz < RATE_KEPT * s.requested_rate_hz else ""
        lines.append(f"source rate: asked {s.requested_rate_hz:,.0f} Hz, achieved {s.achieved_rate_hz:,.0f} Hz{short}")
    for path, spec in s.injected.items():
        lines.append(f"injected: {path} at {spec['rate_hz']:g} Hz (σ × L), drawn as "
                     f"{spec['fraction']:.3g} of the events and weighted to its rate")
    lines.append("")
    lines.append(format_rates(s))
    lines.append("")
    lines.append("per process (truth label): events in, accepted, fraction accepted (unweighted)")
    for name, row in s.per_process.items():
        lines.append(f"  {name:<12}{row.events:>12,}{row.accepted:>10,}{row.efficiency:>10.4f}")
    lines.append("")
    lines.append(f"software pipeline latency (source emit → recorder write, on this machine; not the L1 "
                 f"hardware's ~4 µs): p50 {s.latency_p50_s * 1e3:.1f} ms, p99 {s.latency_p99_s * 1e3:.1f} ms")
    if s.wall_s and s.events_in is not None:
        lines.append(f"{s.events_in:,} events in {s.wall_s:.2f} s: {s.events_in / s.wall_s:,.0f} events/s "
                     "end to end (start-up excluded)")
    return "\n".join(lines)


def _pct(value: float, unc: float) -> str:
    return f"{100 * value:6.2f} ± {100 * unc:5.2f}"


def format_rates(summary: RunSummary) -> str:
    """The menu table: per seed the rate ± its uncertainty and the pure rate, split into the
    background (zero-bias) and injected-signal parts, and for each injected signal the
    efficiency and unique efficiency (%); the total against the budget."""
    menu, bg, sig = summary.menu, summary.background, summary.signal
    if bg is None or sig is None:
        return menu.format_table()
    signals = list(summary.signals.items())
    width = max([len("seed"), len("total"), *map(len, menu.names)]) + 2
    head = (f"{'seed':<{width}}{'prescale':>9}{'rate Hz':>14}{'±':>11}{'pure Hz':>13}"
            f"{'background Hz':>15}{'±':>11}{'signal Hz':>12}{'±':>10}")
    for label, _ in signals:
        head += f"{label + ' eff. %':>18}{'unique %':>18}"
    rule = "-" * len(head)
    lines = [head, rule]
    rate, unc, pure = menu.rates_hz, menu.rate_uncertainties_hz, menu.pure_rates_hz
    (b, g), (bu, gu) = (bg.rates_hz, sig.rates_hz), summary.split_uncertainties()
    effs = [(c.efficiencies(), c.unique_efficiencies()) for _, c in signals]
    for i, name in enumerate(menu.names):
        row = (f"{name:<{width}}{menu.prescales[i]:>9g}{rate[i]:>14,.1f}{unc[i]:>11,.1f}{pure[i]:>13,.1f}"
               f"{b[i]:>15,.1f}{bu[i]:>11,.1f}{g[i]:>12,.2f}{gu[i]:>10,.2f}")
        for (e, eu), (ue, ueu) in effs:
            row += f"{_pct(e[i], eu[i]):>18}{_pct(ue[i], ueu[i]):>18}"
        lines.append(row)
    lines.append(rule)
    lines.append(f"{'total':<{width}}{'':>9}{menu.total_rate_hz:>14,.1f}{menu.total_rate_uncertainty_hz:>11,.1f}"
                 f"{'':>13}{bg.total_rate_hz:>15,.1f}{bg.total_rate_uncertainty_hz:>11,.1f}"
                 f"{sig.total_rate_hz:>12,.2f}{sig.total_rate_uncertainty_hz:>10,.2f}")
    budget = ""
    if menu.budget_khz is not None:
        verdict = "OVER BUDGET" if menu.over_budget else "within budget"
        budget = f"; budget {menu.budget_khz:g} kHz: {verdict}"
    lines.append(f"total accept rate {menu.total_rate_hz / 1e3:,.3f} ± {menu.total_rate_uncertainty_hz / 1e3:,.3f} kHz"
                 f"{budget}")
    lines.append(f"rates at the crossing rate {menu.bx_rate_mhz:.2f} MHz, from {menu.events:,} events "
                 f"(Σ weights of the events kept / Σ weights of all × crossing rate); background: truth "
                 f"not a signal (zero bias), signal: the injected events")
    for label, c in signals:
        if not c.anomaly.any():
            lines.append(f"{label}: {c.events:,} events")
            continue
        a = c.anomaly_efficiency()
        lines.append(f"{label}: {c.events:,} events; the anomaly seeds together keep "
                     f"{_pct(a['efficiency'], a['efficiency_err']).strip()} %, adding "
                     f"{_pct(a['adds'], a['adds_err']).strip()} % to the rest of the menu (kept by no "
                     f"non-anomaly seed)")
    return "\n".join(lines)


__all__ = ["ProcessCounts", "RunSummary", "format_rates", "format_summary"]
