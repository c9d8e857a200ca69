"""The Dark Machines CSV reader against lines written straight from the published format."""

from __future__ import annotations

import numpy as np
import pytest

from darktrigger.replay.errors import InputFormatError
from darktrigger.replay.events import PROCESS_LABELS, SLOTS
from darktrigger.replay.readers import detect_format, open_events
from darktrigger.replay.readers.darkmachines import DarkMachinesReader
from darktrigger.replay.testing import dm_line, random_dm_lines, write_darkmachines


def gev(mev: float) -> np.float32:
    return np.float32(mev / 1000.0)


LINES = [
    # out-of-pT-order jets, a b-jet, a photon and an electron (both e/γ), a muon
    dm_line(11, "ttbar", 0.5, 45000.0, 1.25, [
        ("j", 90000, 60000.0, 0.5, 0.1), ("b", 130000, 123456.7, -1.5, -2.0),
        ("g", 20000, 20000.0, 0.0, 3.0), ("e-", 50000, 35000.0, 1.0, 1.0),
        ("m+", 30000, 29000.0, 2.0, -1.0)]),
    dm_line(12, "njets", 1.0, 10000.0, -0.5, [], trailing=False),   # no objects, no ';'
    "",                                                                   # blank line
    dm_line(13, "w_jets", 2.0, 0.0, 0.0, [                              # 6 e/γ: 4 kept
        ("e+", 1, 5000.0 * (i + 1), 0.1 * i, 0.2) for i in range(5)] + [
        ("g", 1, 1000.0, 0.0, 0.0)]),
    dm_line("evt-x", "glgl1400_neutralino1100", 1.0, 1.0, 0.0, [
        ("m-", 9, 7000.0, 0.3, 0.4)]),
]


def test_slots_units_and_identity_are_exact(tmp_path):
    path = write_darkmachines(tmp_path / "chan1.csv", LINES)
    reader = DarkMachinesReader(path)
    b = reader.read_all()
    assert len(b) == 4
    ev = b.objects
    assert ev[0, 0].tolist() == [45.0, 0.0, np.float32(1.25)]
    jets = ev[0, SLOTS["jet"]]
    assert jets[0].tolist() == [gev(123456.7), -1.5, -2.0]     # b-jet, highest pT first
    assert jets[1].tolist() == [60.0, 0.5, np.float32(0.1)]
    assert (jets[2:] == 0).all()
    eg = ev[0, SLOTS["egamma"]]
    assert eg[:2, 0].tolist() == [35.0, 20.0]                   # electron and photon
    assert ev[0, SLOTS["muon"]][0].tolist() == [29.0, 2.0, -1.0]
    assert (ev[1, 1:] == 0).all()                                # an event with no objects
    assert ev[1, 0, 0] == 10.0
    assert ev[2, SLOTS["egamma"], 0].tolist() == [25.0, 20.0, 15.0, 10.0]  # 4 of 6 kept
    assert ev[2, 0].tolist() == [0, 0, 0]
    assert b["event"].tolist() == [11, 12, 13, 5]               # non-integer id: line 5
    assert b["weight"].tolist() == [0.5, 1.0, 2.0, 1.0]
    assert b["truth"].tolist() == [PROCESS_LABELS["ttbar"], PROCESS_LABELS["qcd"],
                                   PROCESS_LABELS["wjets"], -1]
    meta = reader.metadata()
    assert meta["processes"] == {"ttbar": 1, "njets": 1, "w_jets": 1,
                                 "glgl1400_neutralino1100": 1}
    assert meta["dropped_objects"]["egamma"] == 2
    assert meta["lines_read"] == 5
    assert reader.skipped.count == 0


def test_chunks_give_the_same_events(tmp_path):
    path = write_darkmachines(tmp_path / "many.csv", random_dm_lines(500, seed=4))
    whole = DarkMachinesReader(path).read_all()
    batches = list(DarkMachinesReader(path, chunk_size=7))
    assert all(len(b) <= 7 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.objects for b in batches]), whole.objects)
    assert whole["event"].tolist() == list(range(500))


def test_truth_option_overrides_process(tmp_path):
    path = write_darkmachines(tmp_path / "sig.csv", LINES)
    assert (DarkMachinesReader(path, truth="ato4l").read_all()["truth"] == 10).all()


BAD = [
    (dm_line(1, "ttbar", 1.0, 100.0, 0.5), None, None),
    ("2;ttbar;1;abc;0.5;j,1,2,3,0.1;", "a number for MET", "'abc'"),
    ("3;ttbar;1;100;0.5;x,1,2,3,0.1", "code one of", "'x'"),
    ("4;ttbar;1;100;0.5;j,1,2,3", "code,E,pt,eta,phi (5 fields)", "4 field(s)"),
    ("5;ttbar;1;100", "at least 5", "4 field(s)"),
    ("6;ttbar;1;100;0.5;m+,1,nan,3,0.1", "a finite number for object 0 pt", "'nan'"),
    ("7;ttbar;1;inf;0.5", "a finite number for MET", "'inf'"),
    ("8;ttbar;1;100;0.5;e-,1,2,3,9.5", "phi in [-pi, pi]", "phi = 9.5"),
    (dm_line(9, "ttbar", 1.0, 200.0, 0.5, [("j", 1, 30000.0, 0.0, 0.0)]), None, None),
]


@pytest.mark.parametrize("k", range(1, 8))
def test_bad_line_fails_naming_file_line_and_expectation(tmp_path, k):
    lines = [BAD[0][0], BAD[k][0], BAD[-1][0]]
    path = write_darkmachines(tmp_path / "bad.csv", lines)
    with pytest.raises(InputFormatError) as err:
        DarkMachinesReader(path).read_all()
    msg = str(err.value)
    assert str(path) in msg
    assert "line 2:" in msg
    assert BAD[k][1] in msg
    assert BAD[k][2] in msg
    assert isinstance(err.value, ValueError)


def test_skip_mode_counts_bad_lines_and_keeps_the_rest(tmp_path):
    path = write_darkmachines(tmp_path / "bad.csv", [line for line, *_ in BAD])
    reader = DarkMachinesReader(path, on_error="skip", chunk_size=4)
    b = reader.read_all()
    assert reader.skipped.count == 7
    assert b["event"].tolist() == [1, 9]
    assert b.objects[1, 9].tolist() == [30.0, 0.0, 0.0]
    assert "line 3" in reader.skipped.summary()


def test_nan_found_by_the_fast_parser_names_the_line(tmp_path):
    lines = random_dm_lines(20, seed=1)
    lines[13] = dm_line(13, "ttbar", 1.0, 5.0, 0.1, [("j", 1.0, float("nan"), 0.0, 0.0)])
    path = write_darkmachines(tmp_path / "nan.csv", lines)
    with pytest.raises(InputFormatError, match=r"line 14: expected a finite number for object 0 pt, got .nan."):
        DarkMachinesReader(path).read_all()
    reader = DarkMachinesReader(path, on_error="skip")
    assert len(reader.read_all()) == 19
    assert reader.skipped.count == 1


def test_detected_by_content_not_extension(tmp_path):
    path = write_darkmachines(tmp_path / "looks_like.h5", LINES)
    assert detect_format(path) == "darkmachines"
    header_only = write_darkmachines(tmp_path / "x.root", ["1;ttbar;1;100;0.5"])
    assert detect_format(header_only) == "darkmachines"
    assert len(open_events(header_only).read_all()) == 1
    prose = tmp_path / "notes.csv"
    prose.write_text("a;b;c;d;e;f\n")
    assert not DarkMachinesReader.sniff(prose, prose.read_bytes())


# -- the compiled engine against the Python one ------------------------------------------

def _both(path, **options):
    """(batch, reader) from each engine."""
    out = []
    for engine in ("numba", "python"):
        reader = DarkMachinesReader(path, engine=engine, **options)
        out.append((reader.read_all(), reader))
    return out


def _assert_same(path, **options):
    (fast, rf), (slow, rs) = _both(path, **options)
    assert fast.names == slow.names
    for name in slow.names:  # bit for bit: -0.0 and NaN payloads included
        a, b = fast[name], slow[name]
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    assert rf.metadata() == rs.metadata()
    assert list(rf.metadata()["processes"]) == list(rs.metadata()["processes"])
    assert rf.skipped.summary() == rs.skipped.summary()
    return fast, rf


TRICKY = [
    "1;ttbar;1;1.5e+03;-0.5;j,1.5E+05,1.2e5,-2.25,3.0e-1;b,2e4,20000,-0.0,-3.1",  # no ';'
    "2;ttbar;0.25;45000;+1.25;e-,100,+99,.5,-.5;;;",            # '+', '.5', several ';'
    "3;njets;1;7.;0;m+,1,30000,-1,1;m-,1,30000,1,-1;m+,1,30000,2,2;m-,1,30000,3,3;"
    "m+,1,29999.5,0,0;m-,1,30000,-3,-3;",                        # pT ties: input order kept
    "4;w_jets;1;0;0;g,5,-0.0,0,0;e+,5,0,0,0;",                  # -0 and 0 pT: not packed
    "007;z_jets;1;1;0;j,1,0.1234567890123456789,0,0;",          # leading zeros; 19 digits
    "18446744073709551615;ttbar;1;1;0",                         # largest uint64 ID
    "18446744073709551616;ttbar;1;1;0",                         # overflow: line number
    "-5;ttbar;1;1;0;j,1,1e-30,0,0;j,1,1e30,0,0;j,1,123456789012345678,0,0",
    "9;ttbar;1;1_000;0;j,1,2_0,0,0;",                           # float() takes '_'
    "10;tt\u0304bar;1;1;0;",                                     # non-ASCII process
    "  11;ttbar;1;1;0; \t",                                      # whitespace at the ends
    "12;ttbar;1; 5 ;0;j, 1,2 ,3,0.1",                           # float() takes spaces
    "   ",
    "13;ttbar;1;0e999;-0;j,00001,00002.50,-0.000,1E0;",
    "14;glgl1400_neutralino1100;2;9007199254740993;0;j,1,9007199254740991,0,0;",
    "",
    "15;;1;1;0;",                                                # empty process
    ";ttbar;1;1;0;",                                             # empty ID: line number
    "16;ttbar;1;1;0;e+,1,5,1,1;e+,1,6,1,1;e+,1,7,1,1;e+,1,8,1,1;e-,1,9,1,1;g,1,4,1,1",
]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("chunk_size", [1, 3, 65536])
def test_engines_agree_on_tricky_lines(tmp_path, newline, chunk_size):
    pytest.importorskip("numba")
    path = tmp_path / "tricky.csv"
    path.write_bytes(newline.join(TRICKY).encode("utf-8"))           # no final newline
    fast, _ = _assert_same(path, chunk_size=chunk_size)
    assert len(fast) == len(TRICKY) - 2                               # two blank lines
    # ID 007, the largest uint64, then one too big (line 7); an empty ID (line 18)
    assert fast["event"][4:7].tolist() == [7, 2**64 - 1, 7]
    assert fast["event"][15] == 18
    assert fast.objects[0, 0].tolist() == [1.5, 0.0, -0.5]
    assert fast.objects[0, SLOTS["jet"]][:2].tolist() == [[120.0, -2.25, np.float32(0.3)],
                                                        [20.0, 0.0, np.float32(-3.1)]]
    # ties keep the file's order; the lowest of six muon-like objects are dropped
    assert fast.objects[2, SLOTS["muon"], 1].tolist() == [-1.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("seed", range(3))
def test_engines_agree_on_random_files(tmp_path, seed, monkeypatch):
    pytest.importorskip("numba")
    from darktrigger.replay.readers import darkmachines
    monkeypatch.setattr(darkmachines, "_READ_BYTES", 1000)  # reads end mid-line
    rng = np.random.default_rng(seed)
    lines = random_dm_lines(3000, seed=seed, mean_objects=rng.uniform(1, 12))
    for i in rng.choice(len(lines), 40, replace=False):
        lines[i] = TRICKY[rng.integers(len(TRICKY))]
    for i in rng.choice(len(lines), 300, replace=False):
        lines[i] = lines[i].rstrip(";")
    path = tmp_path / "random.csv"
    path.write_bytes(("\r\n" if seed == 1 else "\n").join(lines).encode() + b"\n")
    fast, reader = _assert_same(path, chunk_size=int(rng.integers(100, 5000)))
    assert len(fast) > 2900
    assert reader.lines_read == 3000


BAD_MORE = [
    "2;ttbar;1;100;0.5;j,1,-5,3,0.1",
    "2;ttbar;1;NaN;0.5;j,1,5,3,0.1",
    "2;ttbar;1;100;0.5;j,1,Infinity,3,0.1",
    "2;ttbar;1;1e999;0.5",
    "2;ttbar;1;100;0.5;j,1,-5,3,0.1;x,1,1,1,1",          # value error first, then syntax
    "2;ttbar;1;100;0.5;j,1,5,3,0.1,7",
    "2;ttbar;1;100;0.5;j,1,5,3,0.1;;j,1,5,3,0.1",
    "2;ttbar;1;100;0.5;j,1,5e,3,0.1",
    "2;ttbar;1;100;0.5;jj,1,5,3,0.1",
    "2;ttbar;1;100;0.5;e,1,5,3,0.1",
    "2;ttbar;1;100;0.5;j,1,5,3,9.5",
    "2;ttbar;1;-100;0.5",
    ";;;;",
]


@pytest.mark.parametrize("bad", [line for line, *_ in BAD[1:-1]] + BAD_MORE)
def test_engines_report_bad_lines_alike(tmp_path, bad):
    pytest.importorskip("numba")
    lines = random_dm_lines(30, seed=2)
    lines[1], lines[20] = bad, "21;ttbar;1;2;0;j,1,nan,0,0"
    path = write_darkmachines(tmp_path / "bad.csv", lines)
    messages = []
    for engine in ("numba", "python"):
        with pytest.raises(InputFormatError) as err:
            DarkMachinesReader(path, engine=engine).read_all()
        messages.append(str(err.value))
    # values screened in the built batch (φ range, negative MET) come after parse errors
    first = "line 21:" if bad.endswith(("9.5", ";-100;0.5")) else "line 2:"
    assert messages[0] == messages[1]
    assert first in messages[0]
    fast, reader = _assert_same(path, on_error="skip", chunk_size=8)
    assert reader.skipped.count == 2
    assert len(fast) == 28


def test_numbers_equal_float(tmp_path):
    """Every number the kernel accepts is bit for bit what float() gives; most are accepted."""
    K = pytest.importorskip("darktrigger.replay.readers._dm_fast")
    rng = np.random.default_rng(7)
    x = rng.standard_normal(20000) * 10.0 ** rng.integers(-12, 12, 20000)
    texts = [*map(repr, x), *(f"{v:.6g}" for v in x), *(f"{v:.9e}" for v in x),
             *(f"{v:.3f}" for v in x), *map(str, rng.integers(-10**15, 10**15, 2000)),
             *(f"{v:.17g}" for v in x[:2000]), "0", "-0", "+0.0", ".5", "5.", "1e22", "1e-22",
             "9007199254740993", "123456789012345678e-5", "1E+00", "-.0e-0"]
    data = "".join(f"1;p;1;{t};0\n" for t in texts).encode()
    buf = np.frombuffer(data, np.uint8)
    starts, ends = np.empty(len(texts), np.int64), np.empty(len(texts), np.int64)
    n, _ = K.scan_lines(buf, 0, len(texts), True, starts, ends)
    status, *_, head = K.parse_lines(buf, starts, ends, n)[:5]
    ok = status == K.OK
    want = np.array([float(t) for t in texts])
    assert n == len(texts)
    assert ok.mean() > 0.8
    assert head[ok, 1].view(np.int64).tolist() == want[ok].view(np.int64).tolist()


def test_compiled_packing_matches_pack_slots():
    K = pytest.importorskip("darktrigger.replay.readers._dm_fast")
    from darktrigger.replay.objects import empty_block, pack_slots
    from darktrigger.replay.readers.darkmachines import _FIRST_SLOT, _KINDS, _N_SLOTS
    rng = np.random.default_rng(3)
    m, n = 50000, 2000
    event, kind = rng.integers(0, n, m), rng.integers(0, 3, m).astype(np.int8)
    pt = np.round(rng.exponential(20, m), 0) - 1.0   # ties, zeros and negatives
    pt[rng.choice(m, 50)] = np.nan
    pt[rng.choice(m, 50)] = -0.0
    eta, phi = rng.normal(0, 2, m), rng.uniform(-3, 3, m)
    want = empty_block(n)
    dropped_want = [int(pack_slots(want, k, event[kind == i], pt[kind == i], eta[kind == i],
                                   phi[kind == i]).sum()) for i, k in enumerate(_KINDS)]
    got = empty_block(n)
    dropped = K.pack_objects(got, event, kind, pt, eta, phi, _FIRST_SLOT, _N_SLOTS)
    assert got.tobytes() == want.tobytes()
    assert dropped.tolist() == dropped_want
    assert min(dropped_want) > 0


def test_without_numba_the_python_engine_reads(tmp_path, monkeypatch):
    from darktrigger.replay.errors import ConfigError
    from darktrigger.replay.readers import darkmachines
    path = write_darkmachines(tmp_path / "x.csv", LINES)
    monkeypatch.setattr(darkmachines, "_KERNEL", None)
    reader = DarkMachinesReader(path)
    assert len(reader.read_all()) == 4
    assert reader._compiled is None
    with pytest.raises(ConfigError, match="numba"):
        DarkMachinesReader(path, engine="numba")
    with pytest.raises(ConfigError, match="auto, numba, python"):
        DarkMachinesReader(path, engine="fast")


def test_import_does_not_load_numba():
    import subprocess
    import sys
    code = "import sys, darktrigger.replay, darktrigger.replay.readers; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_auto_engine_compiles_only_for_big_files(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    from darktrigger.replay.readers import darkmachines
    path = write_darkmachines(tmp_path / "x.csv", LINES)
    monkeypatch.setattr(darkmachines, "_KERNEL", darkmachines._UNSET)  # as in a new process
    small = DarkMachinesReader(path)
    want = small.read_all().objects.tobytes()
    assert small._compiled is None
    assert darkmachines._KERNEL is darkmachines._UNSET
    monkeypatch.setattr(darkmachines, "AUTO_MIN_BYTES", path.stat().st_size)
    big = DarkMachinesReader(path)
    assert big.read_all().objects.tobytes() == want
    assert big._compiled is not None


def test_engines_agree_beyond_the_kernels_process_table(tmp_path):
    K = pytest.importorskip("darktrigger.replay.readers._dm_fast")
    n = K.MAX_PROCESSES + 50
    lines = [dm_line(i, f"proc{i % (n - 10)}", 1.0, 5.0, 0.1, [("j", 1, 3000.0 + i, 0, 0)])
             for i in range(n)]
    path = write_darkmachines(tmp_path / "many.csv", lines)
    fast, reader = _assert_same(path)
    assert len(reader.metadata()["processes"]) == n - 10
    assert len(fast) == n
