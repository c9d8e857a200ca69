"""Reader of the Dark Machines unsupervised-challenge text files (arXiv 2105.14027).

One event a line, energies and momenta in MeV (converted to GeV here)::

    event ID;process ID;event weight;MET;METphi;obj,E,pt,eta,phi;obj,E,pt,eta,phi;...

Object codes: ``j`` and ``b`` go to jet slots, ``e-``, ``e+`` and ``g`` to e/γ slots,
``m-`` and ``m+`` to muon slots; the highest-pT objects of a type are kept (the others
are counted in :meth:`DarkMachinesReader.metadata`). A trailing ``;`` and blank lines
are allowed; an event with no objects is valid.

    >>> from darktrigger.replay.readers import open_events
    >>> from darktrigger.replay.testing import dm_line, write_darkmachines
    >>> path = write_darkmachines("background_chan1.csv", [
    ...     dm_line(1, "ttbar", 1.0, 50e3, 0.1, [("j", 120e3, 100e3, 0.5, 1.0),
    ...                                          ("m-", 40e3, 35e3, -0.3, -2.0)]),
    ...     dm_line(2, "w_jets", 1.0, 30e3, -1.2, [("e+", 30e3, 29e3, 0.2, 2.5)]),
    ...     dm_line(3, "gluino_01", 1.0, 300e3, 2.0)])
    >>> path.read_text().splitlines()
    ['1;ttbar;1.0;50000.0;0.1;j,120000.0,100000.0,0.5,1.0;m-,40000.0,35000.0,-0.3,-2.0;',
     '2;w_jets;1.0;30000.0;-1.2;e+,30000.0,29000.0,0.2,2.5;',
     '3;gluino_01;1.0;300000.0;2.0;']
    >>> reader = open_events(path)
    >>> batch = next(iter(reader)); batch["truth"].tolist()
    [3, 1, -1]
    >>> batch.objects[0, [0, 5, 9], 0].tolist()   # GeV: MET, the muon, the jet
    [50.0, 35.0, 100.0]
    >>> reader.metadata()["processes"]
    {'ttbar': 1, 'w_jets': 1, 'gluino_01': 1}

Options: ``truth=`` one label for every event instead of the process mapping;
``process_labels={"my_proc": 3}`` extends :data:`PROCESS_TRUTH`; ``engine=`` ``"auto"``
(the default: the compiled parser of :mod:`darktrigger.replay.readers._dm_fast`, the faster
one (see BENCHMARKS.md), when numba can be imported and the file is at least :data:`AUTO_MIN_BYTES` or the
parser is already loaded; else Python), ``"numba"`` or ``"python"``. Both engines give
the same events and the same error messages: the compiled one hands every line it
cannot vouch for to the Python line parser.
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

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import PROCESS_LABELS, SLOTS, EventBatch
from darktrigger.replay.objects import empty_block, pack_slots, set_met
from darktrigger.replay.readers.adc2021 import truth_label
from darktrigger.replay.readers.base import EventReader, register_reader

log = logging.getLogger(__name__)

MEV_PER_GEV = 1000.0  # divide (correctly rounded), not multiply by 1e-3
ENGINES = ("auto", "numba", "python")
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
        self._compiled: Any = None  # the kernels' module while a pass uses them
        self.engine = self.options.get("engine", "auto")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "numba" and _kernel() is None:
            raise ConfigError(f"{self.path}: engine 'numba' asked for, but numba cannot be "
                              "imported; install it or use engine='auto'")

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
        self.processes.clear()  # counts describe the latest pass over the file
        self.dropped = dict.fromkeys(_KINDS, 0)
        self.lines_read = 0
        self._compiled = _kernel() if self._wants_kernel() else None
        if self._compiled is not None:
            yield from self._iter_compiled(self._compiled)
        else:
            yield from self._iter_python()
        if any(self.dropped.values()):
            log.debug("%s: objects beyond the slots, dropped: %s", self.path, self.dropped)
        self.log_skips()

    def _wants_kernel(self) -> bool:
        if self.engine != "auto":
            return self.engine == "numba"
        # numba's start-up (import, then loading the kernels from its cache at the first
        # call) is worth paying only for a big file, or once this process has paid it already
        return _KERNEL is not _UNSET or self.path.stat().st_size >= AUTO_MIN_BYTES

    def _iter_python(self) -> Iterator[EventBatch]:
        lineno = 0
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            while raw := list(islice(fh, self.chunk_size)):
                numbers = np.arange(lineno + 1, lineno + 1 + len(raw))
                lineno += len(raw)
                lines = list(map(str.strip, raw))
                if not all(lines):
                    keep = np.fromiter(map(bool, lines), bool, len(lines))
                    lines, numbers = [ln for ln in lines if ln], numbers[keep]
                lines = list(map(str.rstrip, lines, repeat(";")))
                batch = self._build(self._parse_python(lines, numbers)) if lines else None
                self.lines_read = lineno
                if batch is not None and len(batch):
                    yield batch

    def _iter_compiled(self, kernel: Any) -> Iterator[EventBatch]:
        """Whole chunks of bytes through the numba kernel; flagged lines through Python."""
        lineno = 0
        cap = min(self.chunk_size, _READ_BYTES)  # grows with the lines a chunk holds
        starts, ends = np.empty(cap, np.int64), np.empty(cap, np.int64)
        data, pos, eof = b"", 0, False
        with open(self.path, "rb") as fh:
            while True:
                buf = np.frombuffer(data, np.uint8)
                n, nxt = kernel.scan_lines(buf, pos, cap, eof, starts, ends)
                if n < self.chunk_size and not eof:
                    if n == cap:  # the arrays are full, not the bytes
                        cap = min(2 * cap, self.chunk_size)
                        starts, ends = np.empty(cap, np.int64), np.empty(cap, np.int64)
                        continue
                    more = fh.read(max(_READ_BYTES, len(data) - pos))
                    eof = not more
                    data, pos = data[pos:] + more, 0
                    continue
                if n == 0:
                    break
                numbers = np.arange(lineno + 1, lineno + 1 + n)
                lineno += n
                cols = self._kernel_columns(kernel, data, buf, starts, ends, n, numbers)
                pos = nxt
                batch = self._build(cols) if len(cols["lineno"]) else None
                self.lines_read = lineno
                if batch is not None and len(batch):
                    yield batch

    def _kernel_columns(self, kernel: Any, data: bytes, buf: np.ndarray, starts: np.ndarray,
                        ends: np.ndarray, n: int, numbers: np.ndarray) -> dict[str, Any]:
        (status, event, id_ok, process, head, obj_line, kind, values,
         proc_start, proc_len) = kernel.parse_lines(buf, starts, ends, n)
        good = status == kernel.OK
        names = [data[a:a + b].decode("ascii") for a, b in zip(proc_start.tolist(), proc_len.tolist(), strict=True)]
        cols = {
            "lineno": numbers[good],
            "event": np.where(id_ok, event, numbers.astype(np.uint64))[good],
            "process": process[good].astype(np.int64), "names": names,
            "head": head[good],
            "obj_event": (np.cumsum(good) - 1)[obj_line], "obj_kind": kind, "obj": values,
        }
        full = cols["process"] < 0  # more processes in the chunk than the kernel's table
        if full.any():
            extra = [data[starts[k]:ends[k]].split(b";", 2)[1].decode("ascii")
                     for k in np.flatnonzero(good)[full]]
            cols["process"][full], more_names = _index(extra, len(names))
            cols["names"] = names + more_names
        flagged = np.flatnonzero(status == kernel.FLAGGED)
        if not len(flagged):
            return cols
        lines = [data[a:b].decode("utf-8", "replace").strip()
                 for a, b in zip(starts[flagged].tolist(), ends[flagged].tolist(), strict=True)]
        keep = np.fromiter(map(bool, lines), bool, len(lines))
        lines = [ln.rstrip(";") for ln in lines if ln]
        if not lines:
            return cols
        # the kernel's lines have no errors, so the Python parser, given only the others,
        # reports the same errors in the same order as given the whole chunk
        return _merge(cols, self._parse_python(lines, numbers[flagged][keep]))

    def _parse_python(self, lines: list[str], numbers: np.ndarray) -> dict[str, Any]:
        """Columns of stripped, non-blank lines, reporting bad ones through :meth:`bad`."""
        parsed = _parse_fast(lines)
        if parsed is None:  # something is off: find it line by line
            parsed = self._parse_slow(lines, numbers)
        else:
            parsed["lineno"] = numbers
            self._drop_bad_values(parsed)
        process, names = _index(parsed["procs"])
        return {
            "lineno": parsed["lineno"], "event": _event_ids(parsed["ids"], parsed["lineno"]),
            "process": process, "names": names, "head": parsed["head"],
            "obj_event": parsed["obj_event"], "obj_kind": parsed["obj_kind"],
            "obj": parsed["obj"][:, 1:],
        }

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

    def _drop_bad_values(self, p: dict[str, Any]) -> None:
        """Report and drop (in place) the lines :func:`_parse_fast` read with NaN/inf
        values or a negative pT: it does not check them, :func:`_parse_line` does."""
        lineno, head, obj, obj_event = p["lineno"], p["head"], p["obj"], p["obj_event"]
        bad_obj = ~np.isfinite(obj).all(axis=1) | (obj[:, 1] < 0)
        bad_ev = ~np.isfinite(head).all(axis=1)
        bad_ev[obj_event[bad_obj]] = True
        if not bad_ev.any():
            return
        for i in np.flatnonzero(bad_ev):
            self.bad(f"line {lineno[i]}", *_describe(head[i], obj[obj_event == i]))
        keep = ~bad_ev
        keep_obj = keep[obj_event]
        new_index = np.cumsum(keep) - 1
        p["lineno"], p["head"] = lineno[keep], head[keep]
        p["ids"], p["procs"] = list(compress(p["ids"], keep)), list(compress(p["procs"], keep))
        p["obj"], p["obj_event"] = obj[keep_obj], new_index[obj_event[keep_obj]]
        p["obj_kind"] = p["obj_kind"][keep_obj]

    def _build(self, c: dict[str, Any]) -> EventBatch:
        """Turn parsed columns into a batch: unit conversion, slots, truth, screening.

        ``c`` holds ``lineno`` (int64 ``[n]``), ``event`` (uint64 ``[n]``), ``process``
        (int64 ``[n]``, index into the list ``names``), ``head`` (float64 ``[n, 3]``:
        weight, MET in MeV, METphi) and, per object, ``obj_event`` (int64, row of its
        event), ``obj_kind`` (int8 index into ``_KINDS``), ``obj`` (float64 ``[m, 3]``: pT
        in MeV, η, φ).
        """
        lineno, head, obj, obj_event = c["lineno"], c["head"], c["obj"], c["obj_event"]
        n = len(lineno)
        block = empty_block(n)
        set_met(block, head[:, 1] / MEV_PER_GEV, head[:, 2])
        pt = obj[:, 0] / MEV_PER_GEV
        if self._compiled is not None:
            cont = np.ascontiguousarray  # one layout, one compiled signature
            dropped = self._compiled.pack_objects(
                block, cont(obj_event, np.int64), cont(c["obj_kind"], np.int8), pt,
                cont(obj[:, 1]), cont(obj[:, 2]), _FIRST_SLOT, _N_SLOTS)
            for k, kind in enumerate(_KINDS):
                self.dropped[kind] += int(dropped[k])
        else:
            for k, kind in enumerate(_KINDS):
                sel = c["obj_kind"] == k
                dropped = pack_slots(block, kind, obj_event[sel], pt[sel], obj[sel, 1], obj[sel, 2])
                self.dropped[kind] += int(dropped.sum())
        names, process = c["names"], c["process"]
        counts = np.bincount(process, minlength=len(names))
        _, first = np.unique(process, return_index=True)  # count in order of appearance
        for i in process[np.sort(first)].tolist():
            self.processes[names[i]] += int(counts[i])
        if self.truth is not None:
            truth: int | np.ndarray = self.truth
        else:
            labels = np.array([self.process_truth.get(name, -1) for name in names], np.int16)
            truth = labels[process] if len(names) else np.full(n, -1, np.int16)
        batch = EventBatch.from_objects(block, truth=truth, weight=head[:, 0], event=c["event"])
        return self.screen(batch, locations=lineno)


_READ_BYTES = 1 << 22
#: files from this size on are read by the compiled kernel under ``engine="auto"``
AUTO_MIN_BYTES = 16 << 20
_FIRST_SLOT = np.array([SLOTS[kind].start for kind in _KINDS], np.int64)
_N_SLOTS = np.array([SLOTS[kind].stop - SLOTS[kind].start for kind in _KINDS], np.int64)


def _kernel() -> Any:
    """The compiled kernels' module, or None when numba cannot be imported."""
    global _KERNEL
    if _KERNEL is _UNSET:
        try:
            from darktrigger.replay.readers import _dm_fast
        except ImportError as exc:
            log.debug("numba unavailable (%s): Dark Machines files are parsed in Python", exc)
            _KERNEL = None
        except Exception as exc:  # numba there but unusable (e.g. no cache directory)
            log.warning("the compiled Dark Machines parser cannot be loaded (%s); "
                        "parsing in Python, which is slower", exc)
            _KERNEL = None
        else:
            _KERNEL = _dm_fast
    return _KERNEL


_UNSET = object()
_KERNEL: Any = _UNSET


def _index(names: list[str], offset: int = 0) -> tuple[np.ndarray, list[str]]:
    """(index of each name into the distinct names, the distinct names in order seen)."""
    table: dict[str, int] = {}
    index = np.fromiter((table.setdefault(x, offset + len(table)) for x in names), np.int64, len(names))
    return index, list(table)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One set of columns from two, rows in line order."""
    order = np.argsort(np.concatenate([a["lineno"], b["lineno"]]), kind="stable")
    row = np.empty_like(order)
    row[order] = np.arange(len(order))
    na = len(a["lineno"])
    table = {name: i for i, name in enumerate(a["names"])}
    remap = np.array([table.setdefault(name, len(table)) for name in b["names"]], np.int64)
    out = {key: np.concatenate([a[key], b[key]])[order]
           for key in ("lineno", "event", "head")}
    out["process"] = np.concatenate([a["process"], remap[b["process"]] if len(remap) else b["process"]])[order]
    out["names"] = list(table)
    out["obj_event"] = np.concatenate([row[a["obj_event"]], row[na + b["obj_event"]]])
    out["obj_kind"] = np.concatenate([a["obj_kind"], b["obj_kind"]])
    out["obj"] = np.concatenate([a["obj"], b["obj"]])
    return out


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
