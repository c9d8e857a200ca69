"""Reader of the Dark Machines unsupervised-challenge text files (arXiv 2105.14027).

One event a line, energies and momenta in MeV (converted to GeV here)::

    event ID;process ID;event weight;MET;METphi;obj,E,pt,eta,phi;obj,E,pt,eta,phi;...

Object codes: ``j`` and ``b`` go to jet slots, ``e-``, ``e+`` and ``g`` to e/γ slots,
``m-`` and ``m+`` to muon slots; the highest-pT objects of a type are kept (the others
are counted in :meth:`DarkMachinesReader.metadata`). A trailing ``;`` and blank lines
are allowed; an event with no objects is valid.

    >>> from replay.readers import open_events
    >>> reader = open_events("chan1/background_chan1_7.79.csv")   # doctest: +SKIP
    >>> batch = next(iter(reader)); batch["truth"][:3]              # doctest: +SKIP
    array([3, 3, 0], dtype=int16)

Options: ``truth=`` one label for every event instead of the process mapping;
``process_labels={"my_proc": 3}`` extends :data:`PROCESS_TRUTH`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from itertools import compress, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from replay.events import PROCESS_LABELS, EventBatch
from replay.objects import empty_block, pack_slots, set_met
from replay.readers.adc2021 import truth_label
from replay.readers.base import EventReader, register_reader

log = logging.getLogger(__name__)

MEV_PER_GEV = 1000.0  # divide (correctly rounded), not multiply by 1e-3
HEADER = ("event ID", "process ID", "event weight", "MET", "METphi")
_KINDS = ("egamma", "muon", "jet")
#: object code → index into _KINDS
OBJECT_CODES: dict[str, int] = {"e-": 0, "e+": 0, "g": 0, "m-": 1, "m+": 1, "j": 2, "b": 2}
#: Dark Machines process IDs → our truth labels; any other process is −1. The SM
#: backgrounds with a label of their own keep it; the rest (single top, dibosons,
#: tt̄+X, γ+jets, the signals) have none in PROCESS_LABELS.
PROCESS_TRUTH: dict[str, int] = {
    **PROCESS_LABELS,
    "njets": PROCESS_LABELS["qcd"],
    "w_jets": PROCESS_LABELS["wjets"],
    "z_jets": PROCESS_LABELS["zjets"],
    "ttbar": PROCESS_LABELS["ttbar"],
}


class _BadLine(Exception):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(expected, got)
        self.expected, self.got = expected, got


@register_reader("darkmachines")
class DarkMachinesReader(EventReader):
    """Dark Machines challenge CSV (``;``-separated, one event a line, MeV)."""

    description = "Dark Machines challenge text (event;process;weight;MET;METphi;obj,E,pt,eta,phi;...)"
    unit = "line"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        truth = self.options.get("truth")
        self.truth: int | None = None if truth is None else truth_label(truth)
        self.process_truth = {**PROCESS_TRUTH, **dict(self.options.get("process_labels", {}))}
        self.processes: Counter[str] = Counter()
        self.dropped = {kind: 0 for kind in _KINDS}
        self.lines_read = 0

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if b"\x00" in head:
            return False
        cut = len(head) >= 4096 and b"\n" not in head.lstrip()  # first line longer than head
        text = head if len(head) < 4096 or cut else head[: head.rfind(b"\n") + 1]
        try:
            lines = text.decode("utf-8", "ignore" if cut else "strict").splitlines()
        except UnicodeDecodeError:
            return False
        line = next((ln.strip() for ln in lines if ln.strip()), "")
        fields = line.rstrip(";").split(";")
        if cut:
            fields = fields[:-1]
        if len(fields) < 5 or not all(_is_number(x) for x in fields[2:5]):
            return False
        for obj in fields[5:]:
            parts = obj.split(",")
            if len(parts) != 5 or _is_number(parts[0]) or not all(map(_is_number, parts[1:])):
                return False
        return True

    def metadata(self) -> dict[str, Any]:
        return {"lines_read": self.lines_read, "processes": dict(self.processes),
                "dropped_objects": dict(self.dropped), "units": "MeV in the file, GeV here"}

    # -- reading ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[EventBatch]:
        lineno = 0
        self.processes.clear()  # counts describe the latest pass over the file
        self.dropped = dict.fromkeys(_KINDS, 0)
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            while raw := list(islice(fh, self.chunk_size)):
                numbers = np.arange(lineno + 1, lineno + 1 + len(raw))
                lineno += len(raw)
                lines = list(map(str.strip, raw))
                if not all(lines):
                    keep = np.fromiter(map(bool, lines), bool, len(lines))
                    lines, numbers = [ln for ln in lines if ln], numbers[keep]
                lines = list(map(str.rstrip, lines, repeat(";")))
                if not lines:
                    continue
                parsed = _parse_fast(lines)
                if parsed is None:  # something is off: find it line by line
                    parsed = self._parse_slow(lines, numbers)
                else:
                    parsed["lineno"] = numbers
                batch = self._build(parsed)
                self.lines_read = lineno
                if len(batch):
                    yield batch
        self.lines_read = lineno
        if any(self.dropped.values()):
            log.debug("%s: objects beyond the slots, dropped: %s", self.path, self.dropped)
        self.log_skips()

    def _parse_slow(self, lines: list[str], numbers: np.ndarray) -> dict[str, Any]:
        """Parse line by line, reporting bad lines through :meth:`bad`."""
        good: list[int] = []
        obj_ev: list[int] = []
        head: list[tuple] = []
        objs: list[tuple] = []
        for line, no in zip(lines, numbers.tolist(), strict=True):
            try:
                h, o = _parse_line(line)
            except _BadLine as err:
                self.bad(f"line {no}", err.expected, err.got)
                continue
            obj_ev.extend(repeat(len(good), len(o)))
            good.append(no)
            head.append(h)
            objs.extend(o)
        return {
            "lineno": np.asarray(good, np.int64),
            "ids": [h[0] for h in head], "procs": [h[1] for h in head],
            "head": np.array([h[2:] for h in head], np.float64).reshape(len(head), 3),
            "obj_event": np.asarray(obj_ev, np.int64),
            "obj_kind": np.array([o[0] for o in objs], np.int8),
            "obj": np.array([o[1:] for o in objs], np.float64).reshape(len(objs), 4),
        }

    def _build(self, p: dict[str, Any]) -> EventBatch:
        """Turn parsed columns into a batch: unit conversion, slots, truth, screening."""
        lineno, head, obj, obj_event = p["lineno"], p["head"], p["obj"], p["obj_event"]
        ids, procs = p["ids"], p["procs"]
        bad_obj = ~np.isfinite(obj).all(axis=1) | (obj[:, 1] < 0)
        bad_ev = ~np.isfinite(head).all(axis=1)
        bad_ev[obj_event[bad_obj]] = True
        if bad_ev.any():  # only reached by the fast parser: the slow one checks per line
            for i in np.flatnonzero(bad_ev):
                self.bad(f"line {lineno[i]}", *_describe(head[i], obj[obj_event == i]))
            keep = ~bad_ev
            keep_obj = keep[obj_event]
            new_index = np.cumsum(keep) - 1
            lineno, head = lineno[keep], head[keep]
            ids, procs = list(compress(ids, keep)), list(compress(procs, keep))
            obj, obj_event = obj[keep_obj], new_index[obj_event[keep_obj]]
            p["obj_kind"] = p["obj_kind"][keep_obj]
        n = len(lineno)
        block = empty_block(n)
        set_met(block, head[:, 1] / MEV_PER_GEV, head[:, 2])
        for k, kind in enumerate(_KINDS):
            sel = p["obj_kind"] == k
            dropped = pack_slots(block, kind, obj_event[sel], obj[sel, 1] / MEV_PER_GEV,
                                 obj[sel, 2], obj[sel, 3])
            self.dropped[kind] += int(dropped.sum())
        self.processes.update(procs)
        if self.truth is not None:
            truth: int | np.ndarray = self.truth
        else:
            labels = {name: self.process_truth.get(name, -1) for name in set(procs)}
            truth = np.fromiter(map(labels.__getitem__, procs), np.int16, n)
        batch = EventBatch.from_objects(block, truth=truth, weight=head[:, 0],
                                        event=_event_ids(ids, lineno))
        return self.screen(batch, locations=lineno)


def _parse_fast(lines: list[str]) -> dict[str, Any] | None:
    """Parse a chunk of stripped lines with whole-chunk string operations, or None when
    any line is malformed (the caller then parses line by line to say which)."""
    n = len(lines)
    nfields = np.fromiter(map(str.count, lines, repeat(";")), np.int64, n) + 1
    if (nfields < 5).any():
        return None
    flat = ";".join(lines).split(";")
    starts = np.cumsum(nfields) - nfields
    hidx = (starts[:, None] + np.arange(5)).ravel()
    head = itemgetter(*hidx.tolist())(flat)
    is_obj = np.ones(len(flat), bool)
    is_obj[hidx] = False
    oidx = np.flatnonzero(is_obj).tolist()
    objs: tuple[str, ...] = ()
    if oidx:
        objs = itemgetter(*oidx)(flat) if len(oidx) > 1 else (flat[oidx[0]],)
    m = len(objs)
    try:
        hnum = np.fromiter(map(float, head[2::5] + head[3::5] + head[4::5]), np.float64, 3 * n)
        if m:
            if (np.fromiter(map(str.count, objs, repeat(",")), np.int64, m) != 4).any():
                return None
            tok = ",".join(objs).split(",")
            kind = np.fromiter(map(OBJECT_CODES.get, tok[0::5], repeat(-1)), np.int8, m)
            if (kind < 0).any():
                return None
            del tok[0::5]
            obj = np.fromiter(map(float, tok), np.float64, 4 * m).reshape(m, 4)
        else:
            kind, obj = np.zeros(0, np.int8), np.zeros((0, 4))
    except ValueError:
        return None
    return {"ids": head[0::5], "procs": head[1::5], "head": hnum.reshape(3, n).T,
            "obj_event": np.repeat(np.arange(n), nfields - 5), "obj_kind": kind, "obj": obj}


def _parse_line(line: str) -> tuple[tuple, list[tuple]]:
    """One line → ((id, process, weight, MET, METphi), [(kind, E, pt, eta, phi), ...])."""
    fields = line.split(";")
    if len(fields) < 5:
        raise _BadLine(f"at least 5 ';'-separated fields ({';'.join(HEADER)})",
                       f"{len(fields)} field(s): {line[:80]!r}")
    values = []
    for name, text in zip(HEADER[2:], fields[2:5], strict=True):
        values.append(_number(text, name))
    objs = []
    for i, text in enumerate(fields[5:]):
        parts = text.split(",")
        if len(parts) != 5:
            raise _BadLine(f"object {i} as code,E,pt,eta,phi (5 fields)",
                           f"{len(parts)} field(s): {text[:80]!r}")
        kind = OBJECT_CODES.get(parts[0])
        if kind is None:
            raise _BadLine(f"object {i} code one of {', '.join(OBJECT_CODES)}",
                           f"{parts[0][:20]!r}")
        nums = [_number(x, f"object {i} {q}") for x, q in zip(parts[1:], ("E", "pt", "eta", "phi"), strict=True)]
        if nums[1] < 0:
            raise _BadLine(f"object {i} pt >= 0", repr(nums[1]))
        objs.append((kind, *nums))
    return (fields[0], fields[1], *values), objs


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _BadLine(f"a number for {what}", repr(text[:40])) from None
    if not math.isfinite(value):
        raise _BadLine(f"a finite number for {what}", repr(text))
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _event_ids(ids: Any, lineno: np.ndarray) -> np.ndarray:
    """The event ID where it is a non-negative integer, else the line number."""
    if all(map(str.isascii, ids)) and all(map(str.isdigit, ids)):
        try:
            return np.fromiter(map(int, ids), np.uint64, len(lineno))
        except OverflowError:
            pass
    out = lineno.astype(np.uint64)
    for i, text in enumerate(ids):
        if text.isascii() and text.isdigit() and int(text) < 2**64:
            out[i] = int(text)
    return out


def _describe(head: np.ndarray, obj: np.ndarray) -> tuple[str, str]:
    """(expected, got) for a line the fast parser read but whose values are bad, worded
    as :func:`_parse_line` words them."""
    for name, value in zip(HEADER[2:], head, strict=True):
        if not math.isfinite(value):
            return f"a finite number for {name}", repr(str(value))
    for i, row in enumerate(obj):
        for q, value in zip(("E", "pt", "eta", "phi"), row, strict=True):
            if not math.isfinite(value):
                return f"a finite number for object {i} {q}", repr(str(value))
        if row[1] < 0:
            return f"object {i} pt >= 0", repr(float(row[1]))
    return "valid values", "a bad value"  # pragma: no cover - only called for bad lines
