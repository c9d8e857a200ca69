"""The run summary, ``run_summary.json``: what the recorder counted over one run.

The recorder builds a :class:`RunSummary` when the run ends
(:meth:`darktrigger.daq.stages.RecorderStage.summary`) and writes it with
:meth:`RunSummary.write`; the supervisor, ``darktrigger run``, the benchmarks and the
tests read it back with :meth:`RunSummary.from_json`, the one reader. The JSON keys are
the field names; the ``menu`` part is :meth:`MenuCounts.to_dict`'s. :func:`format_summary`
is the terminal's view of it.

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
    #: "end of run" (the source's ``end`` arrived) or "signal" (the recorder was stopped)
    stopped_by: str = "end of run"
    #: bad messages dropped, per stage (source, trigger, recorder)
    malformed_messages: dict[str, int] = field(default_factory=dict)
    batches_resent: int = 0
    workers_lost: int = 0
    wall_s: float | None = None
    worker_restarts: int = 0

    # -- the writer ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The summary as ``run_summary.json`` holds it (JSON types only)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "menu":
                value = self.menu.to_dict()
            elif name == "per_process":
                value = {label: {"events": p.events, "accepted": p.accepted, "efficiency": p.efficiency}
                         for label, p in self.per_process.items()}
            elif name == "malformed_messages":
                value = dict(value)
            out[name] = value
        return out

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
        missing = [name for name in cls.__dataclass_fields__ if name not in data]
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
            value = data[name]
            try:
                if name == "per_process":
                    kwargs[name] = {str(label): ProcessCounts(int(p["events"]), int(p["accepted"]))
                                    for label, p in value.items()}
                elif name == "malformed_messages":
                    kwargs[name] = {str(stage): int(n) for stage, n in value.items()}
                else:
                    kwargs[name] = _scalar(value, str(spec.type))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputFormatError(where, f"field {name!r}", f"a value of type {spec.type}",
                                       f"{value!r} ({type(exc).__name__}: {exc})") from None
        return cls(**kwargs)


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
    """The run summary for the terminal: conservation, seeds, efficiencies, latency."""
    s = summary
    lines = []
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
                 f"{sum(s.malformed_messages.values())}")
    lines.append("")
    lines.append(s.menu.format_table())
    lines.append("")
    lines.append("per process (truth label): events in, accepted, efficiency")
    for name, row in s.per_process.items():
        lines.append(f"  {name:<12}{row.events:>12,}{row.accepted:>10,}{row.efficiency:>10.4f}")
    lines.append("")
    lines.append(f"latency source → recorder: p50 {s.latency_p50_s * 1e3:.1f} ms, "
                 f"p99 {s.latency_p99_s * 1e3:.1f} ms")
    if s.wall_s and s.events_in is not None:
        lines.append(f"{s.events_in:,} events in {s.wall_s:.2f} s: {s.events_in / s.wall_s:,.0f} events/s "
                     "end to end (start-up excluded)")
    return "\n".join(lines)


__all__ = ["ProcessCounts", "RunSummary", "format_summary"]
