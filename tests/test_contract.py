"""Every registered reader and generator passes the same checks.

A new reader must add a sample-file writer to SAMPLES (written to the published
format, not through our readers); the first test fails until it does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import PROCESS_LABELS, EventBatch
from darktrigger.replay.generators import GENERATORS
from darktrigger.replay.readers import READERS, detect_format, open_events
from darktrigger.replay.storage import write_events
from darktrigger.replay import testing as spec_files
from darktrigger.replay.testing import random_batch

N = 1234


def _native(path: Path) -> Path:
    write_events(path, random_batch(N, seed=4, extra=True), provenance={"generator": "test"})
    return path


def _adc(path: Path) -> Path:
    return spec_files.write_adc2021(path, spec_files.random_adc_particles(N, seed=4))


def _dm(path: Path) -> Path:
    return spec_files.write_darkmachines(path, spec_files.random_dm_lines(N, seed=4))


def _nano(path: Path) -> Path:
    rng = np.random.default_rng(4)

    def coll(mean: float) -> object:
        counts = rng.poisson(mean, N)
        return spec_files.nanoaod_collection(
            pt=[list(rng.exponential(30, c) + 3) for c in counts],
            eta=[list(rng.normal(0, 1.5, c)) for c in counts],
            phi=[list(rng.uniform(-3.14, 3.14, c)) for c in counts],
        )

    branches = {
        "run": np.full(N, 1, np.uint32), "luminosityBlock": np.full(N, 1, np.uint32),
        "event": np.arange(N, dtype=np.uint64),
        "MET_pt": rng.exponential(30, N).astype(np.float32),
        "MET_phi": rng.uniform(-3.14, 3.14, N).astype(np.float32),
        "Muon": coll(0.5), "Electron": coll(0.7), "Photon": coll(0.3), "Jet": coll(4.0),
    }
    return spec_files.write_nanoaod(path, branches)


def _lhco(path: Path) -> Path:
    from darktrigger.replay.testing import dijet_events, write_lhco

    rows, _ = dijet_events(N, seed=4, label=-1)
    return write_lhco(path, rows)


# reader name -> (file name with a misleading suffix, writer)
SAMPLES = {
    "lhco": ("sample.txt", _lhco),
    "native": ("sample.dat", _native),
    "adc2021": ("sample.root", _adc),
    "darkmachines": ("sample.h5", _dm),
    "nanoaod": ("sample.csv", _nano),
}


def test_every_reader_has_a_sample():
    assert set(SAMPLES) == set(READERS.names())


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    return {name: writer(d / fname) for name, (fname, writer) in SAMPLES.items()}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_reader_contract(name, samples):
    path = samples[name]
    assert detect_format(path) == name  # by content: the suffixes are all wrong
    reader = open_events(path, chunk_size=500)
    assert reader.name == name and reader.description
    batches = list(reader)
    assert all(isinstance(b, EventBatch) and 0 < len(b) <= 500 for b in batches)
    for b in batches:
        b.validate(f"{name} reader")
        pt = b.objects[:, :, 0]
        # empty slots are all zero; within a type, slots are pT-ordered
        assert (b.objects[pt == 0] == 0).all()
        for sl in (slice(1, 5), slice(5, 9), slice(9, 19)):
            assert (np.diff(pt[:, sl], axis=1) <= 0).all()
    total = sum(len(b) for b in batches)
    assert total == N
    if reader.count() is not None:
        assert reader.count() == N
    assert reader.skipped.count == 0
    # chunking does not change the events
    whole = open_events(path, chunk_size=100_000).read_all()
    np.testing.assert_array_equal(whole.objects, batches[0].concat(batches).objects)
    with pytest.raises(ConfigError, match="on_error"):
        open_events(path, on_error="ignore")
    with pytest.raises(FileNotFoundError, match="missing"):
        READERS.get(name)(path.parent / "missing.file")


def test_unknown_content_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="junk.bin.*expected one of the formats"):
        detect_format(junk)


GENERATOR_PROCESSES = {"toy": None, "pythia": ("qcd", "ato4l")}  # None: every process


def _generator_cases():
    for gname in GENERATORS.names():
        procs = GENERATOR_PROCESSES.get(gname, ())
        cls = GENERATORS.get(gname)
        for proc in cls.processes if procs is None else procs:
            marks = [pytest.mark.slow] if gname == "pythia" else []
            yield pytest.param(gname, proc, marks=marks, id=f"{gname}-{proc}")


def test_every_generator_is_covered():
    assert set(GENERATOR_PROCESSES) == set(GENERATORS.names())


@pytest.mark.parametrize(("gname", "process"), list(_generator_cases()))
def test_generator_contract(gname, process):
    gen = GENERATORS.get(gname)()
    n = 300 if gname == "toy" else 40
    batches = list(gen.generate(process, n, seed=11, batch_size=128))
    assert [len(b) for b in batches][:-1] == [128] * (len(batches) - 1)
    got = batches[0].concat(batches).validate(f"{gname} {process}")
    assert len(got) == n
    if process == "sm_mix":
        assert set(np.unique(got["truth"])) <= {PROCESS_LABELS[p] for p in ("qcd", "wjets", "zjets", "ttbar")}
    else:
        assert (got["truth"] == PROCESS_LABELS[process]).all()
    assert (got.objects[:, :, 0] > 0).any(axis=1).mean() > 0.9  # events are not empty
    again = gen.generate(process, n, seed=11, batch_size=128)
    np.testing.assert_array_equal(batches[0].concat(list(again)).objects, got.objects)
    prov = gen.provenance(process, 11)
    assert prov["generator"] == gname and prov["process"] == process and prov["seed"] == 11
    with pytest.raises(ConfigError, match="no process"):
        gen.check_process("higgsino")
