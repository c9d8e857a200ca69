"""Test sources shipped with the package: small files in the published formats, written
straight from their specs, and seeded random event batches.

Nothing in the file writers uses darktrigger code: the files are written with h5py,
plain text and uproot exactly as the public formats describe them, so the readers are
tested against the formats and not against themselves. Tests, benchmarks and a user's
own checks use them alike.

    >>> import numpy as np
    >>> from darktrigger.replay.readers import open_events
    >>> path = write_adc2021("bkg.h5", np.stack([adc_event(met=(30, 0.5), muon=[(25, 0.1, 1.0)])]))
    >>> batch = open_events(path).read_all()
    >>> batch.objects[0, 5].tolist()
    [25.0, 0.10000000149011612, 1.0]
    >>> len(random_batch(100, seed=1))
    100
    >>> open_events(write_sample("darkmachines", "chan1.csv", n=20)).name
    'darkmachines'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from darktrigger.replay.events import SLOTS, EventBatch

#: Hadrons per row of the LHC Olympics R&D files (700 × (pT, η, φ), zero padded).
LHCO_HADRONS = 700


# ADC2021: rows 0 MET, 1-4 e/γ, 5-8 μ, 9-18 jets; class 1 MET, 2 e/γ, 3 μ, 4 jet, 0 empty
ADC_ROWS = {"met": (0, 1, 1), "egamma": (1, 4, 2), "muon": (5, 4, 3), "jet": (9, 10, 4)}
ADC_CLASS_NAMES = [b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"]


def adc_event(met: tuple[float, float] = (0.0, 0.0), egamma: Sequence[tuple] = (),
              muon: Sequence[tuple] = (), jet: Sequence[tuple] = ()) -> np.ndarray:
    """One ``(19, 4)`` ADC2021 row block from (pT, η, φ) tuples, written in the given order."""
    ev = np.zeros((19, 4))
    if met[0] > 0:
        ev[0] = (met[0], 0.0, met[1], 1)
    for kind, objs in (("egamma", egamma), ("muon", muon), ("jet", jet)):
        first, width, cls = ADC_ROWS[kind]
        for i, (pt, eta, phi) in enumerate(objs[:width]):
            ev[first + i] = (pt, eta, phi, cls)
    return ev


def random_adc_particles(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 19, 4)`` float64 valid ADC2021 events: pT-ordered objects, classes set."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 19, 4))
    for first, width, cls in ADC_ROWS.values():
        pt = rng.exponential(30.0, (n, width)) * (rng.random((n, width)) < 0.5)
        pt = -np.sort(-pt, axis=1)
        filled = pt > 0
        sl = slice(first, first + width)
        out[:, sl, 0] = pt
        out[:, sl, 1] = np.where(filled & (cls != 1), rng.normal(0, 1.5, (n, width)), 0)
        out[:, sl, 2] = np.where(filled, rng.uniform(-np.pi, np.pi, (n, width)), 0)
        out[:, sl, 3] = np.where(filled, cls, 0)
    return out


def write_adc2021(path: str | Path, particles: np.ndarray, *, dtype: Any = np.float32,
                  with_classes: bool = True, evtid: np.ndarray | None = None,
                  compression: str | None = None, chunks: tuple[int, ...] | None = None,
                  ) -> Path:
    """An ADC2021 file: dataset ``Particles`` (as given, cast to ``dtype``), optionally
    ``Particles_Classes`` and ``EvtId``."""
    import h5py

    path = Path(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("Particles", data=np.asarray(particles, dtype=dtype),
                         compression=compression, chunks=chunks)
        if with_classes:
            f.create_dataset("Particles_Classes", data=np.array(ADC_CLASS_NAMES))
        if evtid is not None:
            f.create_dataset("EvtId", data=np.asarray(evtid))
    return path


def dm_line(event_id: Any, process: str, weight: float, met: float, met_phi: float,
            objects: Iterable[tuple] = (), trailing: bool = True) -> str:
    """One Dark Machines line; objects are (code, E, pt, eta, phi) in MeV."""
    fields = [str(event_id), process, repr(weight), repr(met), repr(met_phi)]
    fields += [",".join([code, *(repr(float(x)) for x in rest)]) for code, *rest in objects]
    return ";".join(fields) + (";" if trailing else "")


def write_darkmachines(path: str | Path, lines: Iterable[str]) -> Path:
    """A Dark Machines text file, one given line a line."""
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def random_dm_lines(n: int, seed: int = 0, mean_objects: float = 5.0) -> list[str]:
    """``n`` valid Dark Machines lines with a Poisson number of objects of all codes."""
    rng = np.random.default_rng(seed)
    codes = ["j", "j", "j", "b", "e-", "e+", "m-", "m+", "g"]
    lines = []
    for i in range(n):
        objs = []
        for _ in range(rng.poisson(mean_objects)):
            pt, eta = rng.exponential(50e3) + 20e3, rng.normal(0, 1.5)
            objs.append(f"{codes[rng.integers(len(codes))]},{pt * np.cosh(eta):.6g},"
                        f"{pt:.6g},{eta:.6g},{rng.uniform(-3.14, 3.14):.6g}")
        head = [str(i), "ttbar", "1", f"{rng.exponential(40e3):.6g}",
                f"{rng.uniform(-3.1, 3.1):.6g}"]
        lines.append(";".join(head + objs) + ";")
    return lines


def nanoaod_collection(**fields: Sequence[Sequence[float]]) -> Any:
    """An awkward record array of jagged fields, written by uproot as ``nX`` + ``X_field``."""
    import awkward as ak

    return ak.zip({k: ak.Array([list(map(float, ev)) for ev in v]) for k, v in fields.items()})


def write_nanoaod(path: str | Path, branches: Mapping[str, Any], tree: str = "Events", *,
                  rntuple: bool = False) -> Path:
    """A ROOT file with one TTree (or, ``rntuple=True``, an RNTuple): flat numpy branches and
    jagged collections.

    A collection ``{"Muon": nanoaod_collection(pt=..., eta=..., phi=...)}`` becomes the
    NanoAOD branches ``nMuon``, ``Muon_pt``, ``Muon_eta``, ``Muon_phi`` (in an RNTuple: fields
    of those names, the jagged ones of type ``std::vector``).
    """
    import awkward as ak
    import uproot

    path = Path(path)
    if rntuple:
        fields: dict[str, Any] = {}
        for name, value in branches.items():
            if isinstance(value, ak.Array) and value.fields:
                fields[f"n{name}"] = np.asarray(ak.num(value, axis=1), np.int32)
                fields.update({f"{name}_{q}": value[q] for q in value.fields})
            else:
                fields[name] = value
        with uproot.recreate(path) as f:
            f[tree] = fields  # uproot 5.7 writes a dict of arrays as an RNTuple
        return path
    with uproot.recreate(path) as f:
        # mktree, not f[tree] = ...: uproot 5.7 writes the latter as an RNTuple
        out = f.mktree(tree, {k: v.type if isinstance(v, ak.Array) else np.asarray(v).dtype
                              for k, v in branches.items()})
        out.extend(dict(branches))
    return path


# -- LHC Olympics ------------------------------------------------------------------------
def _s(text: str) -> np.ndarray:
    """A string attribute as PyTables writes one: fixed length, UTF-8 (read back as str)."""
    data = text.encode()
    return np.array(data, dtype=h5py.string_dtype("utf-8", max(len(data), 1)))


def write_lhco(path: Path, table: np.ndarray, *, key: str = "df", index: np.ndarray | None = None,
               compression: str | None = None) -> Path:
    """A pandas "fixed" frame of ``table`` ``(N, 2100 or 2101)``, as ``to_hdf`` lays it out."""
    table = np.asarray(table, dtype=np.float64)
    n, ncols = table.shape
    with h5py.File(path, "w") as f:
        f.attrs.update({"CLASS": _s("GROUP"), "PYTABLES_FORMAT_VERSION": _s("2.1"),
                        "TITLE": _s(""), "VERSION": _s("1.0")})
        g = f.create_group(key)
        g.attrs.update({"CLASS": _s("GROUP"), "TITLE": _s(""), "VERSION": _s("1.0"),
                        "pandas_type": _s("frame"), "pandas_version": _s("0.15.2"),
                        "encoding": _s("UTF-8"), "errors": _s("strict"), "ndim": np.int64(2),
                        "axis0_variety": _s("regular"), "axis1_variety": _s("regular"),
                        "nblocks": np.int64(1), "block0_items_variety": _s("regular")})

        def array(name: str, data: np.ndarray, **attrs: object) -> None:
            ds = g.create_dataset(name, data=data, compression=compression)
            ds.attrs.update({"CLASS": _s("ARRAY"), "VERSION": _s("2.4"), "TITLE": _s(""),
                             "FLAVOR": _s("numpy"), **attrs})

        columns = np.arange(ncols, dtype=np.int64)
        array("axis0", columns, kind=_s("integer"))
        array("axis1", np.arange(n, dtype=np.int64) if index is None else index, kind=_s("integer"))
        array("block0_items", columns, kind=_s("integer"))
        array("block0_values", table, transposed=np.uint8(1))
    return path


def _cone(rng: np.random.Generator, pt: float, eta: float, phi: float, k: int,
          width: float = 0.25) -> np.ndarray:
    """``k`` massless hadrons (pT, η, φ) sharing ``pt`` within ΔR ≲ 2·width of an axis."""
    share = rng.dirichlet(np.ones(k)) * pt
    return np.stack([share, eta + rng.normal(0, width / 2, k),
                     (phi + rng.normal(0, width / 2, k) + np.pi) % (2 * np.pi) - np.pi], axis=1)


def dijet_events(n: int, seed: int = 0, label: int | None = 0,
                 ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Rows of ``n`` events of two narrow back-to-back cones (and the cones), with label
    ``label`` (−1: alternating 0, 1; None: no label column, a black box)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, 3 * LHCO_HADRONS + (label is not None)))
    cones: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(n):
        phi = rng.uniform(-np.pi, np.pi)
        a = _cone(rng, rng.uniform(1300, 1800), rng.uniform(-1, 1), phi, int(rng.integers(20, 60)))
        b = _cone(rng, rng.uniform(1000, 1500), rng.uniform(-1, 1), phi + np.pi, int(rng.integers(20, 60)))
        hadrons = np.concatenate([a, b])
        hadrons = hadrons[np.argsort(-hadrons[:, 0])]
        rows[i, : hadrons.size] = hadrons.ravel()
        cones.append((a, b))
        if label is not None:
            rows[i, -1] = label if label >= 0 else i % 2
    return rows, cones


# -- event batches --------------------------------------------------------------------
def random_batch(n: int, seed: int = 0, truth: int = 0, extra: bool = False) -> EventBatch:
    """``n`` valid events with a few objects of each type, pT-ordered within a type."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((n, 19, 3), np.float32)
    for kind, sl in SLOTS.items():
        width = sl.stop - sl.start
        pt = rng.exponential(30.0, (n, width)) * (rng.random((n, width)) < 0.5)
        pt = -np.sort(-pt, axis=1)
        filled = pt > 0
        obj[:, sl, 0] = pt
        obj[:, sl, 1] = np.where(filled, rng.normal(0, 1.5, (n, width)), 0) * (kind != "met")
        obj[:, sl, 2] = np.where(filled, rng.uniform(-np.pi, np.pi, (n, width)), 0)
    cols = {"mjj": rng.uniform(1000, 5000, n).astype(np.float32)} if extra else None
    return EventBatch.from_objects(obj, truth=truth, weight=rng.random(n).astype(np.float32),
                                   extra=cols)


# -- one sample file of each format ---------------------------------------------------------
def _native_sample(path: Path, n: int, seed: int) -> Path:
    from darktrigger.replay.storage import write_events

    write_events(path, random_batch(n, seed=seed, extra=True), provenance={"generator": "test"})
    return path


def _nanoaod_sample(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)

    def coll(mean: float) -> object:
        counts = rng.poisson(mean, n)
        return nanoaod_collection(
            pt=[list(rng.exponential(30, c) + 3) for c in counts],
            eta=[list(rng.normal(0, 1.5, c)) for c in counts],
            phi=[list(rng.uniform(-3.14, 3.14, c)) for c in counts],
        )

    branches = {
        "run": np.full(n, 1, np.uint32), "luminosityBlock": np.full(n, 1, np.uint32),
        "event": np.arange(n, dtype=np.uint64),
        "MET_pt": rng.exponential(30, n).astype(np.float32),
        "MET_phi": rng.uniform(-3.14, 3.14, n).astype(np.float32),
        "Muon": coll(0.5), "Electron": coll(0.7), "Photon": coll(0.3), "Jet": coll(4.0),
    }
    return write_nanoaod(path, branches)


#: format name → writer(path, n, seed) of a valid sample file in that format
SAMPLE_WRITERS: dict[str, Any] = {
    "native": _native_sample,
    "adc2021": lambda path, n, seed: write_adc2021(path, random_adc_particles(n, seed=seed)),
    "darkmachines": lambda path, n, seed: write_darkmachines(path, random_dm_lines(n, seed=seed)),
    "nanoaod": _nanoaod_sample,
    "lhco": lambda path, n, seed: write_lhco(Path(path), dijet_events(n, seed=seed, label=-1)[0]),
}


def write_sample(fmt: str, path: str | Path, *, n: int = 1000, seed: int = 0) -> Path:
    """A valid file of ``n`` random events in format ``fmt`` (a reader's name) at ``path``."""
    if fmt not in SAMPLE_WRITERS:
        from darktrigger.replay.registry import unknown_name

        raise KeyError(unknown_name("sample format", fmt, SAMPLE_WRITERS))
    return Path(SAMPLE_WRITERS[fmt](Path(path), n, seed))
