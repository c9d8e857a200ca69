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
name for the event weight (default: weight 1), ``objects=`` ``l1`` or ``offline``.

**L1 objects** (``objects="l1"``, the default when the file has them): CMS Run-3 NanoAOD
stores the Level-1 trigger's own objects, the inputs the L1 anomaly triggers see, as
``L1Mu``, ``L1EG``, ``L1Jet`` and ``L1EtSum`` (CMSSW ``PhysicsTools/NanoAOD/python/l1trig_cff.py``:
bunch crossings −2…2, each object with its ``bx``; ``L1EtSum`` with ``etSumType``). Only
bunch crossing 0 is read; the MET is the ``L1EtSum`` of type 2 (``kMissingEt``) in bx 0, η 0.
Where the hardware branches exist they are used — pT = ``hwPt`` × 0.5 GeV; e/γ and jets
η = ``hwEta`` × 0.0435, φ = ``hwPhi`` × 2π/144; muons at the vertex, η = ``hwEtaAtVtx`` ×
0.010875, φ = ``hwPhiAtVtx`` × 2π/576; the MET φ = ``hwPhi`` × 2π/144 — otherwise (the
reduced central NanoAOD) the floats are put on those grids (pT, η, φ rounded to the nearest
step; muons from ``etaAtVtx``/``phiAtVtx`` when present). The slots' limits apply as for
offline objects (4 e/γ, 4 μ, 10 jets, highest pT first). A ROOT **RNTuple** named
``Events`` with the same field names reads as the TTree does.
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
from darktrigger.replay.l1units import (
    CALO_ETA_LSB,
    CALO_PHI_LSB,
    MUON_ETA_LSB,
    MUON_PHI_LSB,
    PT_LSB,
)
from darktrigger.replay.objects import empty_block, pack_slots, set_met, wrap_phi
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

#: the L1 collections of Run-3 NanoAOD → slot kind (the MET comes from ``L1EtSum``)
L1_COLLECTIONS = {"L1EG": "egamma", "L1Mu": "muon", "L1Jet": "jet"}
L1_SUMS = "L1EtSum"
MET_SUM_TYPE = 2  #: l1t::EtSum::kMissingEt
OBJECTS_CHOICES = ("l1", "offline")
ROOT_CLASSES = ("TTree", "ROOT::RNTuple")


@register_reader("nanoaod")
class NanoAODReader(EventReader):
    """CMS NanoAOD-style ROOT (``Events`` tree; jagged Muon/Electron/Photon/Jet, MET)."""

    description = ("CMS NanoAOD-style ROOT via uproot, TTree or RNTuple: L1 objects of bx 0 (L1Mu/L1EG/L1Jet, "
                   "L1EtSum MET) or offline ones (Muon/Electron/Photon/Jet, MET)")

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
        objects = self.options.get("objects")
        if objects is not None and objects not in OBJECTS_CHOICES:
            raise ConfigError(f"{self.path}: objects must be one of {', '.join(OBJECTS_CHOICES)}, got {objects!r}")
        self.objects: str = "offline"
        self.l1_branches: dict[str, str] = {}
        with self._tree(check=False) as (_, tree):
            self._n = int(tree.num_entries)
            keys = set(tree.keys())
        has_l1 = any(f"{c}_pt" in keys for c in (*L1_COLLECTIONS, L1_SUMS))
        has_offline = any(f"{c}_pt" in keys for c in COLLECTIONS) or "MET_pt" in keys
        if objects == "l1" or (objects is None and has_l1):
            self.objects = "l1"
            self.l1_branches = self._l1_branches(keys)
        elif objects is None and not has_offline:
            raise InputFormatError(
                str(self.path), f"tree {self.tree_name!r}",
                "NanoAOD objects: the offline collections (Muon, Electron, Photon, Jet, MET) or the "
                "L1 ones (L1Mu, L1EG, L1Jet, L1EtSum with their bx branches)",
                f"neither{_nearest('L1Mu_pt', sorted(keys))}")
        if self.objects == "offline":
            with self._tree():  # every offline branch checked
                pass

    def _l1_branches(self, keys: set[str]) -> dict[str, str]:
        """The L1 branches this file gives, checked: ``{logical: branch}``."""
        out: dict[str, str] = {}
        found = [c for c in (*L1_COLLECTIONS, L1_SUMS) if f"{c}_pt" in keys]
        if not found:
            raise InputFormatError(str(self.path), f"tree {self.tree_name!r}",
                                   "the L1 collections (L1Mu, L1EG, L1Jet, L1EtSum) for objects='l1'",
                                   f"none of them{_nearest('L1Mu_pt', sorted(keys))}")
        for coll in found:
            need = ["pt", "phi", "bx"] + ([] if coll == L1_SUMS else ["eta"]) + (["etSumType"] if coll == L1_SUMS else [])
            for q in need:
                name = f"{coll}_{q}"
                if name not in keys:
                    why = ("every L1 object belongs to a bunch crossing (-2..2), and only bx 0 is the "
                           "event's" if q == "bx" else "")
                    raise InputFormatError(str(self.path), f"tree {self.tree_name!r}",
                                           f"a branch {name!r} beside {coll}_pt" + (f" ({why})" if why else ""),
                                           f"no such branch{_nearest(name, sorted(keys))}")
                out[name] = name
            hw = (["hwPt", "hwEtaAtVtx", "hwPhiAtVtx"] if coll == "L1Mu" else
                  ["hwPt", "hwPhi"] if coll == L1_SUMS else ["hwPt", "hwEta", "hwPhi"])
            if all(f"{coll}_{q}" in keys for q in hw):
                out.update({f"{coll}_{q}": f"{coll}_{q}" for q in hw})
            elif coll == "L1Mu":
                out.update({f"{coll}_{q}": f"{coll}_{q}" for q in ("etaAtVtx", "phiAtVtx") if f"{coll}_{q}" in keys})
        for name in ("run", "luminosityBlock", "event"):
            if self.branches.get(name) and self.branches[name] in keys:
                out[name] = str(self.branches[name])
        if self.branches.get("weight"):
            out["weight"] = str(self.branches["weight"])
        return out

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return head.startswith(ROOT_MAGIC)

    def count(self) -> int:
        return self._n

    def metadata(self) -> dict[str, Any]:
        if self.objects == "l1":
            colls = sorted({b.split("_")[0] for b in self.l1_branches if b.startswith("L1")})
            hardware = sorted({b.split("_")[0] for b in self.l1_branches if "_hw" in b})
            return {"tree": self.tree_name, "entries": self._n, "objects": "l1",
                    "collections": colls, "bunch_crossing": 0,
                    "met": f"{L1_SUMS} etSumType {MET_SUM_TYPE} (kMissingEt)",
                    "hardware_values": hardware, "branches": dict(self.l1_branches),
                    "dropped_objects": dict(self.dropped)}
        return {"tree": self.tree_name, "entries": self._n, "objects": "offline",
                "branches": {k: v for k, v in self.branches.items() if v},
                "dropped_objects": dict(self.dropped)}

    # -- reading ---------------------------------------------------------------------
    def _tree(self, check: bool = True) -> Any:
        """A context manager giving (file, tree) — a TTree or an RNTuple — with every needed
        offline branch checked (``check``)."""
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
                if classes.get(self.tree_name) not in ROOT_CLASSES:
                    trees = sorted(k for k, c in classes.items() if c in ROOT_CLASSES)
                    what = (f"a {classes[self.tree_name]}" if self.tree_name in classes
                            else "no such tree")
                    raise InputFormatError(
                        str(self.path), f"tree {self.tree_name!r}",
                        f"a TTree or RNTuple named {self.tree_name!r}",
                        f"{what}{_nearest(self.tree_name, trees)} (objects in the file: "
                        f"{', '.join(f'{k} ({c})' for k, c in sorted(classes.items())) or 'none'})")
                tree = f[self.tree_name]
                keys = set(tree.keys()) if check else set()
                for logical, name in (self.branches.items() if check else ()):
                    if name and name not in keys:
                        raise InputFormatError(
                            str(self.path), f"tree {self.tree_name!r}",
                            f"a branch {name!r} (for {logical})",
                            f"no such branch{_nearest(name, sorted(keys))}")
                yield f, tree

        return opened()

    def __iter__(self) -> Iterator[EventBatch]:
        import awkward as ak

        l1 = self.objects == "l1"
        wanted = sorted(set(self.l1_branches.values()) if l1 else {n for n in self.branches.values() if n})
        self.dropped = dict.fromkeys(self.dropped, 0)  # counts describe the latest pass
        with self._tree(check=not l1) as (_, tree):
            for start in range(0, self._n, self.chunk_size):
                stop = min(start + self.chunk_size, self._n)
                try:
                    arrays = tree.arrays(wanted, entry_start=start, entry_stop=stop,
                                         library="ak")
                except Exception as exc:
                    raise InputFormatError(str(self.path), f"entries {start}-{stop - 1}",
                                           f"readable branches in tree {self.tree_name!r}",
                                           f"a read error ({type(exc).__name__}: {exc})") from exc
                batch = (self._build_l1 if l1 else self._build)(ak, arrays, start, stop - start)
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


    def _build_l1(self, ak: Any, arrays: Any, start: int, n: int) -> EventBatch:
        """One chunk of L1 objects: bx 0 only, on the hardware grids (module doc)."""
        b = self.l1_branches

        def jagged(name: str) -> tuple[np.ndarray, np.ndarray]:
            """(event index, flat values) of a jagged branch."""
            arr = arrays[name]
            counts = np.asarray(ak.to_numpy(ak.num(arr, axis=1)), np.int64)
            return np.repeat(np.arange(n), counts), np.asarray(ak.to_numpy(ak.flatten(arr, axis=1)), np.float64)

        def grid(values: np.ndarray, lsb: float) -> np.ndarray:
            return np.round(values / lsb) * lsb

        block = empty_block(n)
        for coll, kind in L1_COLLECTIONS.items():
            if f"{coll}_pt" not in b:
                continue
            ev, bx = jagged(f"{coll}_bx")
            muon = coll == "L1Mu"
            eta_lsb, phi_lsb = (MUON_ETA_LSB, MUON_PHI_LSB) if muon else (CALO_ETA_LSB, CALO_PHI_LSB)
            if f"{coll}_hwPt" in b:
                pt = jagged(f"{coll}_hwPt")[1] * PT_LSB
                eta = jagged(f"{coll}_hwEtaAtVtx" if muon else f"{coll}_hwEta")[1] * eta_lsb
                phi = jagged(f"{coll}_hwPhiAtVtx" if muon else f"{coll}_hwPhi")[1] * phi_lsb
            else:
                pt = grid(jagged(f"{coll}_pt")[1], PT_LSB)
                vtx = muon and f"{coll}_etaAtVtx" in b and f"{coll}_phiAtVtx" in b
                eta = grid(jagged(f"{coll}_etaAtVtx" if vtx else f"{coll}_eta")[1], eta_lsb)
                phi = grid(jagged(f"{coll}_phiAtVtx" if vtx else f"{coll}_phi")[1], phi_lsb)
            keep = bx == 0
            dropped = pack_slots(block, kind, ev[keep], pt[keep], eta[keep], wrap_phi(phi[keep]))
            self.dropped[kind] += int(dropped.sum())
        if f"{L1_SUMS}_pt" in b:
            ev, bx = jagged(f"{L1_SUMS}_bx")
            kind_of = jagged(f"{L1_SUMS}_etSumType")[1]
            if f"{L1_SUMS}_hwPt" in b:
                pt, phi = jagged(f"{L1_SUMS}_hwPt")[1] * PT_LSB, jagged(f"{L1_SUMS}_hwPhi")[1] * CALO_PHI_LSB
            else:
                pt = grid(jagged(f"{L1_SUMS}_pt")[1], PT_LSB)
                phi = grid(jagged(f"{L1_SUMS}_phi")[1], CALO_PHI_LSB)
            met = (bx == 0) & (kind_of == MET_SUM_TYPE)
            met_pt, met_phi = np.zeros(n), np.zeros(n)
            met_pt[ev[met]], met_phi[ev[met]] = pt[met], wrap_phi(phi[met])  # one per event and bx
            set_met(block, met_pt, met_phi)

        def flat(name: str, default: float) -> np.ndarray:
            return np.asarray(ak.to_numpy(arrays[b[name]])) if name in b else np.full(n, default)

        batch = EventBatch.from_objects(
            block, truth=self.truth, weight=flat("weight", 1.0), run=flat("run", 1),
            lumi=flat("luminosityBlock", 1),
            event=flat("event", 0) if "event" in b else np.arange(start, start + n))
        return self.screen(batch, first_row=start)


def _nearest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if close:
        return f"; nearest: {', '.join(map(repr, close))}"
    shown = ", ".join(candidates[:10]) + (", ..." if len(candidates) > 10 else "")
    return f"; the file has {shown or 'none'}"
