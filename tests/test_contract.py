"""Every registered reader and generator passes the same checks.

A new reader must add a sample-file writer to darktrigger.replay.testing.SAMPLE_WRITERS
(written to the published format, not through our readers) and a misleading file name to
SAMPLES here; the first test fails until it does.
"""

from __future__ import annotations

import numpy as np
import pytest

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import PROCESS_LABELS, EventBatch
from darktrigger.replay.generators import GENERATORS
from darktrigger.replay.readers import READERS, detect_format, open_events
from darktrigger.replay.testing import write_sample

N = 1234


# reader name -> (file name with a misleading suffix, writer)
SAMPLES = {
    "lhco": "sample.txt",
    "native": "sample.dat",
    "adc2021": "sample.root",
    "darkmachines": "sample.h5",
    "nanoaod": "sample.csv",
}


def test_every_reader_has_a_sample():
    assert set(SAMPLES) == set(READERS.names())


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    return {name: write_sample(name, d / fname, n=N, seed=4) for name, fname in SAMPLES.items()}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_reader_contract(name, samples):
    path = samples[name]
    assert detect_format(path) == name  # by content: the suffixes are all wrong
    reader = open_events(path, chunk_size=500)
    assert reader.name == name
    assert reader.description
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
    elif process == "zero_bias":  # each crossing carries the label of its hardest interaction
        hardest = ("minbias", "qcd", "wjets", "zjets", "ttbar")
        assert set(np.unique(got["truth"])) <= {PROCESS_LABELS[p] for p in hardest}
    else:
        assert (got["truth"] == PROCESS_LABELS[process]).all()
    assert (got.objects[:, :, 0] > 0).any(axis=1).mean() > 0.9  # events are not empty
    again = gen.generate(process, n, seed=11, batch_size=128)
    np.testing.assert_array_equal(batches[0].concat(list(again)).objects, got.objects)
    prov = gen.provenance(process, 11)
    assert prov["generator"] == gname
    assert prov["process"] == process
    assert prov["seed"] == 11
    with pytest.raises(ConfigError, match="no process"):
        gen.check_process("higgsino")
