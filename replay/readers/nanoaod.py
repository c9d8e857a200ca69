"""Reader of CMS NanoAOD-style ROOT files, through uproot.

Muons go to the muon slots, electrons and photons together to the e/γ slots, jets to
the jet slots (highest pT kept), ``MET_pt``/``MET_phi`` to the MET slot; ``run``,
``luminosityBlock`` and ``event`` to the identity columns. Every branch name can be
changed through the ``branches`` option (a name set to None is not read: the column
gets its default), and the tree through ``tree``.

    >>> from darktrigger.replay.readers import open_events
    >>> from darktrigger.replay.testing import nanoaod_collection, write_nanoaod
    >>> def objects(pt, eta, phi):   # two events
    ...     return nanoaod_collection(pt=pt, eta=eta, phi=phi)
    >>> path = write_nanoaod("nano.root", {
    ...     "run": np.array([1, 1], np.uint32), "luminosityBlock": np.array([7, 7], np.uint32),
    ...     "event": np.array([101, 102], np.uint64),
    ...     "PuppiMET_pt": np.array([35.0, 12.0], np.float32),
    ...     "PuppiMET_phi": np.array([0.5, -2.0], np.float32),
    ...     "Muon": objects([[25.0], []], [[0.1], []], [[1.0], []]),
    ...     "Electron": objects([[], [12.0]], [[], [0.3]], [[], [2.0]]),
    ...     "Photon": objects([[], []], [[], []], [[], []]),
    ...     "Jet": objects([[80.0, 40.0], [60.0]], [[0.5, -1.0], [2.0]], [[3.0, 0.2], [-1.0]])})
    >>> reader = open_events(path, branches={"MET_pt": "PuppiMET_pt", "MET_phi": "PuppiMET_phi"})
    >>> batch = next(iter(reader))
    >>> batch.objects[:, [0, 1, 5, 9, 10], 0].tolist()   # pT of MET, e/γ 1, μ 1, jets 1 and 2
    [[35.0, 0.0, 25.0, 80.0, 40.0], [12.0, 12.0, 0.0, 60.0, 0.0]]
    >>> batch["event"].tolist(), batch["lumi"].tolist()
    ([101, 102], [7, 7])

Options: ``tree=`` (default ``Events``), ``branches={...}`` (see :data:`DEFAULT_BRANCHES`),
``truth=`` a process label for every event (default −1, data), ``weight=`` a branch
name for the event weight (default: weight 1).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.objects import empty_block, pack_slots, set_met
from darktrigger.replay.readers.adc2021 import truth_label
from darktrigger.replay.readers.base import EventReader, register_reader

log = logging.getLogger(__name__)

ROOT_MAGIC = b"root"
DEFAULT_TREE = "Events"
#: Logical name → branch name in the file; override any of them with ``branches=``.
DEFAULT_BRANCHES: dict[str, str | None] = {
    **{f"n{c}": f"n{c}" for c in ("Muon", "Electron", "Photon", "Jet")},
    **{f"{c}_{q}": f"{c}_{q}" for c in ("Muon", "Electron", "Photon", "Jet")
       for q in ("pt", "eta", "phi")},
    "MET_pt": "MET_pt",
    "MET_phi": "MET_phi",
    "run": "run",
    "luminosityBlock": "luminosityBlock",
    "event": "event",
}
#: collection → slot kind; photons share the e/γ slots with electrons
COLLECTIONS = {"Muon": "muon", "Electron": "egamma", "Photon": "egamma", "Jet": "jet"}


@register_reader("nanoaod")
class NanoAODReader(EventReader):
    """CMS NanoAOD-style ROOT (``Events`` tree; jagged Muon/Electron/Photon/Jet, MET)."""

    description = "CMS NanoAOD-style ROOT via uproot (Muon/Electron/Photon/Jet, MET, run/lumi/event)"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        unknown = set(self.options.get("branches", {})) - set(DEFAULT_BRANCHES)
        if unknown:
            raise ConfigError(f"unknown NanoAOD branch option(s) {sorted(unknown)}; "
                              f"known: {', '.join(DEFAULT_BRANCHES)}")
        self.branches: dict[str, str | None] = {**DEFAULT_BRANCHES,
                                                **self.options.get("branches", {})}
        if self.options.get("weight"):
            self.branches["weight"] = str(self.options["weight"])
        self.tree_name: str = self.options.get("tree", DEFAULT_TREE)
        self.truth = truth_label(self.options.get("truth"))
        self.dropped = {"egamma": 0, "muon": 0, "jet": 0}
        with self._tree() as (_, tree):
            self._n = int(tree.num_entries)

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return head.startswith(ROOT_MAGIC)

    def count(self) -> int:
        return self._n

    def metadata(self) -> dict[str, Any]:
        return {"tree": self.tree_name, "entries": self._n,
                "branches": {k: v for k, v in self.branches.items() if v},
                "dropped_objects": dict(self.dropped)}

    # -- reading ---------------------------------------------------------------------
    def _tree(self) -> Any:
        """A context manager giving (file, tree), with every needed branch checked."""
        import contextlib

        import uproot

        @contextlib.contextmanager
        def opened() -> Iterator[tuple[Any, Any]]:
            try:
                f = uproot.open(self.path)
            except Exception as exc:  # uproot raises many kinds on a damaged file
                raise InputFormatError(str(self.path), "", "a readable ROOT file",
                                       f"an unreadable one ({type(exc).__name__}: {exc})") from exc
            with f:
                classes = {k.split(";")[0]: c for k, c in f.classnames().items()}
                if classes.get(self.tree_name) != "TTree":
                    trees = sorted(k for k, c in classes.items() if c == "TTree")
                    what = (f"a {classes[self.tree_name]}" if self.tree_name in classes
                            else "no such tree")
                    raise InputFormatError(
                        str(self.path), f"tree {self.tree_name!r}",
                        f"a TTree named {self.tree_name!r}",
                        f"{what}{_nearest(self.tree_name, trees)} (objects in the file: "
                        f"{', '.join(f'{k} ({c})' for k, c in sorted(classes.items())) or 'none'})")
                tree = f[self.tree_name]
                keys = set(tree.keys())
                for logical, name in self.branches.items():
                    if name and name not in keys:
                        raise InputFormatError(
                            str(self.path), f"tree {self.tree_name!r}",
                            f"a branch {name!r} (for {logical})",
                            f"no such branch{_nearest(name, sorted(keys))}")
                yield f, tree

        return opened()

    def __iter__(self) -> Iterator[EventBatch]:
        import awkward as ak

        wanted = sorted({name for name in self.branches.values() if name})
        self.dropped = dict.fromkeys(self.dropped, 0)  # counts describe the latest pass
        with self._tree() as (_, tree):
            for start in range(0, self._n, self.chunk_size):
                stop = min(start + self.chunk_size, self._n)
                try:
                    arrays = tree.arrays(wanted, entry_start=start, entry_stop=stop,
                                         library="ak")
                except Exception as exc:
                    raise InputFormatError(str(self.path), f"entries {start}-{stop - 1}",
                                           f"readable branches in tree {self.tree_name!r}",
                                           f"a read error ({type(exc).__name__}: {exc})") from exc
                batch = self._build(ak, arrays, start, stop - start)
                if len(batch):
                    yield batch
        if any(self.dropped.values()):
            log.debug("%s: objects beyond the slots, dropped: %s", self.path, self.dropped)
        self.log_skips()

    def _build(self, ak: Any, arrays: Any, start: int, n: int) -> EventBatch:
        b = self.branches

        def flat(name: str | None, default: float | int = 0) -> np.ndarray:
            if not name:
                return np.full(n, default)
            return np.asarray(ak.to_numpy(arrays[name]))

        block = empty_block(n)
        set_met(block, flat(b["MET_pt"]), flat(b["MET_phi"]))
        bad = np.zeros(n, bool)

        def report(rows: np.ndarray, expected: str, got: Any) -> None:
            for row in rows[~bad[rows]]:
                self.bad(f"{self.unit} {start + row}", expected, got(row))
            bad[rows] = True

        per_kind: dict[str, list[list[np.ndarray]]] = {}
        for coll, kind in COLLECTIONS.items():
            maybe = [b[f"{coll}_{q}"] for q in ("pt", "eta", "phi")]
            if not all(maybe):
                continue
            names = [str(x) for x in maybe]
            counts = np.asarray(ak.to_numpy(ak.num(arrays[names[0]], axis=1)), np.int64)
            if b[f"n{coll}"]:
                stored = flat(b[f"n{coll}"]).astype(np.int64)
                report(np.flatnonzero(stored != counts),
                       f"{b[f'n{coll}']} equal to the number of {names[0]} values",
                       lambda r, stored=stored, counts=counts: f"{stored[r]} and {counts[r]}")
            ev = np.repeat(np.arange(n), counts)
            pt, eta, phi = (np.asarray(ak.to_numpy(ak.flatten(arrays[x], axis=1)), np.float64)
                            for x in names)
            # pack_slots ignores pT <= 0 and NaN pT: report them instead of losing them
            wrong = ~(np.isfinite(pt) & np.isfinite(eta) & np.isfinite(phi)) | (pt < 0)
            if wrong.any():
                idx = np.flatnonzero(wrong)  # ev is sorted, so ev[idx] is too

                def got(r: int, idx: np.ndarray = idx, v: tuple = (ev, pt, eta, phi)) -> str:
                    i = idx[np.searchsorted(v[0][idx], r)]
                    return f"(pT, eta, phi) = ({v[1][i]}, {v[2][i]}, {v[3][i]})"

                report(np.unique(ev[idx]), f"finite {'/'.join(names)} with pT >= 0", got)
            per_kind.setdefault(kind, []).append([ev, pt, eta, phi])
        for kind, parts in per_kind.items():
            ev, pt, eta, phi = (np.concatenate(cols) for cols in zip(*parts, strict=True))
            dropped = pack_slots(block, kind, ev, pt, eta, phi)
            self.dropped[kind] += int(dropped.sum())
        batch = EventBatch.from_objects(
            block, truth=self.truth, weight=flat(b.get("weight"), 1.0),
            run=flat(b["run"], 1), lumi=flat(b["luminosityBlock"], 1),
            event=flat(b["event"]) if b["event"] else np.arange(start, start + n))
        if bad.any():
            batch = batch[~bad]
            return self.screen(batch, locations=np.flatnonzero(~bad) + start)
        return self.screen(batch, first_row=start)


def _nearest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if close:
        return f"; nearest: {', '.join(map(repr, close))}"
    shown = ", ".join(candidates[:10]) + (", ..." if len(candidates) > 10 else "")
    return f"; the file has {shown or 'none'}"
