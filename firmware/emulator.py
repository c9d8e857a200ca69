"""hls4mlEmulator plugins: CMS's AXOL1TL emulators run here bit for bit, and ours exported for CMSSW.

CMSSW's L1 trigger emulation runs each deployed anomaly trigger (AXOL1TL) as a plugin: a
shared library whose class derives ``hls4mlEmulator::Model`` (``prepare_input(std::any)``,
``predict()``, ``read_result(std::any)``) and which exports ``extern "C" create_model()`` and
``destroy_model(Model*)``. Its condition (``L1Trigger/L1TGlobal/src/AXOL1TLCondition.cc``)
fills 57 ``ap_fixed<18,13>`` inputs per event (MET, 4 e/γ, 4 μ, 10 jets, each hwPt/2, hwEta,
hwPhi: :func:`darktrigger.replay.l1units.cmssw_inputs`), calls the three methods and reads a
``std::pair<result, loss>``; the trigger's score is ``loss × 16``.

This module

* **imports** such a plugin project (:func:`import_emulator`, ``darktrigger firmware import
  --emulator DIR --out MODEL_DIR``): a folder laid out as AXOL1TL's (the emulator ``.cpp``,
  ``NN/`` with the hls4ml sources, ``scales.h``, a ``Makefile``) is checked, copied and built
  with its own Makefile by g++ against the ``ap_types`` headers hls4ml ships and darktrigger's
  interface header (``firmware/cmssw/include/hls4ml/emulator.h``), into a model directory
  whose ``emulator`` backend (:class:`EmulatorScorer`) scores events as CMSSW does;
* **scores** through a batch shim (``firmware/cmssw/shim.cc``): one ctypes call per batch,
  the event loop in C++. The result pair's type differs between plugin versions and
  ``std::any_cast`` needs it exactly, so it is read from the project: the type the emulator's
  ``read_result`` casts its argument to is taken from the ``.cpp``, and the shim is compiled
  once per plugin with a generated header that includes the project's own headers (those the
  emulator ``.cpp`` includes, and its ``using namespace`` lines) and declares that type, so
  the compiler resolves it (:func:`compile_shim`);
* **writes** plugin projects in the same layout (:func:`write_plugin_project`): the export of
  a quantised model (``darktrigger firmware build --emulator``: :func:`export_plugin`) and
  the AXOL1TL-v1-shaped project the tests build.

    >>> src = tmp_path / "not-a-plugin"; src.mkdir(); _ = (src / "scales.h").write_text("")
    >>> inspect_project(src)
    Traceback (most recent call last):
    ...
    darktrigger.firmware.errors.ProjectError: ...not-a-plugin: not an hls4mlEmulator plugin project: no .cpp file at its top level defines a class deriving hls4mlEmulator::Model (expected the emulator .cpp, NN/, scales.h and a Makefile, as AXOL1TL_v5 has them)
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import importlib.util
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.firmware.errors import FirmwareError, ProjectError, ToolMissingError
from darktrigger.models.backends import register_backend
from darktrigger.models.base import BatchLike, ScoreOnlyScorer, as_flat
from darktrigger.models.card import ModelCard, write_json
from darktrigger.replay.errors import ConfigError

log = logging.getLogger(__name__)

CMSSW_DIR = Path(__file__).resolve().parent / "cmssw"
INCLUDE_DIR = CMSSW_DIR / "include"  #: holds hls4ml/emulator.h
SHIM_SOURCE = CMSSW_DIR / "shim.cc"
DRIVER_SOURCE = CMSSW_DIR / "driver.cc"
N_INPUTS = 57
INPUT_TYPE = "ap_fixed<18,13>"  #: CMSSW's input type
LOSS_TYPE = "ap_ufixed<18,14>"  #: CMSSW's loss type
SCORE_MAX = 2**18 - 1  #: the largest loss × 16
#: the result type CMSSW's condition reads from plugins other than v3/v4 (with the loss)
CMSSW_SCALAR_RESULT = "ap_fixed<18, 14, AP_RND_CONV, AP_SAT>"

MANIFEST = "darktrigger-emulator.json"
MANIFEST_VERSION = 1
BACKEND_FILE = "backend.json"  #: names the one backend that runs the directory
SHIM_FILE = "darktrigger_shim.so"
SOURCE_DIR = "source"
CXXFLAGS = "-O2 -std=c++17 -fPIC"
CHUNK = 65536

_INTERFACE = re.compile(r"public\s+(?:virtual\s+)?(?:::)?hls4mlEmulator\s*::\s*Model\b")
_READ_RESULT = re.compile(r"\bread_result\s*\(\s*(?:const\s+)?std\s*::\s*any\s+(\w+)\s*\)")
_USING = re.compile(r"^\s*using\s+namespace\s+[\w:]+\s*;", re.M)
_INCLUDE = re.compile(r"^\s*#\s*include\s*[\"<][^\">]+[\">]", re.M)
_TOP = re.compile(r"void\s+(\w+)\s*\(\s*(\w+)\s+\w+\s*\[\s*(\d+)\s*\]\s*,\s*(\w+)\s+\w+\s*\[\s*(\d+)\s*\]\s*\)")


# -- tools ------------------------------------------------------------------------------
def ap_types_dir() -> Path:
    """The ``ap_types`` headers (``ap_fixed.h``) hls4ml ships, found without importing it."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissingError("hls4ml is not installed: its ap_types headers are needed to build "
                               "hls4mlEmulator plugins (pip install hls4ml==1.3.0)")
    for root in spec.submodule_search_locations:
        path = Path(root) / "templates" / "vivado" / "ap_types"
        if (path / "ap_fixed.h").is_file():
            return path
    raise ToolMissingError("hls4ml's ap_types headers (templates/vivado/ap_types/ap_fixed.h) are "
                           "missing from its installation; reinstall hls4ml")


def require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(f"{name} is not on PATH: {why}; install it (Debian/Ubuntu: "
                               f"apt-get install {'g++' if name == 'g++' else name})")
    return path


def include_flags() -> list[str]:
    """``-I`` for the ap_types and the interface header (as ``emulator.h`` and ``hls4ml/emulator.h``)."""
    return [f"-I{ap_types_dir()}", f"-I{INCLUDE_DIR / 'hls4ml'}", f"-I{INCLUDE_DIR}"]


def first_error(stderr: str) -> str:
    """g++'s first error line (``file:line:col: error: ...``), else its first line.

        >>> first_error("a.cpp: In function 'f':\\na.cpp:3:5: error: 'x' was not declared\\n")
        "a.cpp:3:5: error: 'x' was not declared"
    """
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"\b(fatal )?error\b", ln):
            return ln.strip()
    return lines[0].strip() if lines else "(no message)"


def _run(cmd: list[str], where: str, what: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if res.returncode != 0:
        out = (res.stderr or "") + (res.stdout or "")
        raise FirmwareError(f"{where}: {what} failed: {first_error(out)}\n"
                            f"(command: {' '.join(cmd)}; last output:\n{out[-3000:]})")
    return res


def _sha256_tree(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix not in (".o", ".so")):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# -- the project ------------------------------------------------------------------------
@dataclass(frozen=True)
class PluginSource:
    """An hls4mlEmulator plugin project as :func:`inspect_project` finds it."""

    folder: Path
    #: the emulator .cpp (the class deriving hls4mlEmulator::Model)
    emulator: Path
    #: the type ``read_result`` casts its argument to a pointer of (source text)
    pair_type: str
    #: the ``#include`` lines and top-level ``using namespace`` lines of the emulator .cpp
    includes: tuple[str, ...]
    usings: tuple[str, ...]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _cast_type(body: str, var: str) -> str | None:
    """The ``T`` of the first ``std::any_cast<T*>(var)`` in ``body`` (nested ``<>`` allowed)."""
    for m in re.finditer(r"any_cast\s*<", body):
        depth, i = 1, m.end()
        while i < len(body) and depth:
            depth += {"<": 1, ">": -1}.get(body[i], 0)
            i += 1
        inner = body[m.end():i - 1].strip()
        if re.match(rf"\s*\(\s*{var}\s*\)", body[i:]) and inner.endswith("*"):
            return re.sub(r"\s+", " ", inner[:-1]).strip()
    return None


def inspect_project(folder: Path) -> PluginSource:
    """Check a plugin project folder; what the build needs from it, or a ProjectError naming
    the folder and what it lacks."""
    folder = Path(folder)
    expected = "expected the emulator .cpp, NN/, scales.h and a Makefile, as AXOL1TL_v5 has them"
    if not folder.is_dir():
        raise ProjectError(f"{folder}: no such folder ({expected})")
    candidates = []
    for cpp in sorted(folder.glob("*.cpp")):
        text = _strip_comments(cpp.read_text(errors="replace"))
        if _INTERFACE.search(text):
            candidates.append((cpp, text))
    if not candidates:
        raise ProjectError(f"{folder}: not an hls4mlEmulator plugin project: no .cpp file at its top "
                           f"level defines a class deriving hls4mlEmulator::Model ({expected})")
    if len(candidates) > 1:
        raise ProjectError(f"{folder}: {len(candidates)} emulator classes "
                           f"({', '.join(c.name for c, _ in candidates)}); a plugin has one")
    emulator, text = candidates[0]
    missing = [name for name in ("NN", "scales.h", "Makefile") if not (folder / name).exists()]
    if missing:
        raise ProjectError(f"{folder}: lacks {', '.join(missing)} ({expected})")
    for symbol in ("create_model", "destroy_model"):
        if not re.search(rf'extern\s+"C"[^;{{]*\b{symbol}\s*\(', text):
            raise ProjectError(f"{emulator}: defines no extern \"C\" {symbol}(); CMSSW's loader "
                               "(hls4mlEmulator::ModelLoader) needs create_model and destroy_model")
    m = _READ_RESULT.search(text)
    if m is None:
        raise ProjectError(f"{emulator}: the emulator class has no read_result(std::any); the "
                           "hls4mlEmulator::Model interface needs prepare_input, predict and read_result")
    pair = _cast_type(text[m.end():], m.group(1))
    if pair is None:
        raise ProjectError(f"{emulator}: read_result does not std::any_cast its argument to a "
                           "pointer; CMSSW passes a pointer to a std::pair<result, loss>")
    return PluginSource(folder, emulator, pair, tuple(x.strip() for x in _INCLUDE.findall(text)),
                        tuple(x.strip() for x in _USING.findall(text)))


def build_plugin(src: Path, where: str) -> Path:
    """``make`` in the project copy ``src`` (its own Makefile, with CXX, CXXFLAGS and INCLUDES
    set for g++, the ap_types and the interface header); the shared library it made."""
    make = require_tool("make", "plugin projects are built with their own Makefile")
    cxx = require_tool("g++", "plugin projects are compiled with it")
    src = Path(src).resolve()
    before = set(src.glob("*.so"))
    for old in before:
        old.unlink()
    includes = " ".join([f"-I{src}", *include_flags()])
    _run([make, "-C", str(src), f"CXX={cxx}", f"CXXFLAGS={CXXFLAGS}", f"INCLUDES={includes}", "LD_FLAGS="],
         where, "building the plugin with its Makefile (g++)")
    made = sorted(src.glob("*.so"))
    if len(made) != 1:
        raise FirmwareError(f"{where}: its Makefile made {len(made)} shared libraries "
                            f"({', '.join(p.name for p in made) or 'none'}); expected one plugin .so")
    return made[0]


def pair_header(source: PluginSource) -> str:
    """The header the shim is compiled with: the project's includes and ``using`` lines, and
    ``darktrigger_pair_t``, the type the plugin's ``read_result`` fills."""
    lines = [f"// generated by darktrigger from {source.emulator.name}: the type its read_result fills",
             "#pragma once", *[ln for ln in source.includes if "emulator.h" not in ln],
             "#include <array>", "#include <utility>", *source.usings,
             f"typedef {source.pair_type} darktrigger_pair_t;", ""]
    return "\n".join(lines)


def compile_shim(source: PluginSource, src: Path, out: Path, where: str) -> Path:
    """g++ the batch shim for the plugin in ``src`` (the built project copy) into ``out``."""
    cxx = require_tool("g++", "the batch shim is compiled with it")
    src, out = Path(src).resolve(), Path(out).resolve()
    header = out.with_suffix(".h")
    header.write_text(pair_header(source))
    cmd = [cxx, *CXXFLAGS.split(), "-shared", f"-I{src}", *include_flags(),
           f'-DDARKTRIGGER_PAIR_HEADER="{header}"', str(SHIM_SOURCE), "-ldl", "-o", str(out)]
    _run(cmd, where, f"compiling darktrigger's batch shim for the result type {source.pair_type!r} "
                     f"(read from {source.emulator.name}'s read_result)")
    return out


def compile_driver(out: Path, result_type: str = CMSSW_SCALAR_RESULT) -> Path:
    """g++ the standalone CMSSW-style driver (``firmware/cmssw/driver.cc``) for plugins whose
    pair is ``std::pair<result_type, ap_ufixed<18,14>>``."""
    cxx = require_tool("g++", "the driver is compiled with it")
    _run([cxx, "-O2", "-std=c++17", *include_flags(), f"-DDRIVER_RESULT_T={result_type}",
          str(DRIVER_SOURCE), "-ldl", "-o", str(out)], str(DRIVER_SOURCE), "compiling the driver")
    return out


def run_driver(driver: Path, plugin: Path, counts: np.ndarray, workdir: Path) -> np.ndarray:
    """Run the driver on hardware counts int32 ``[N, 19, 3]``; loss × 16 per event, float64."""
    inp, outp = workdir / "counts.i32", workdir / "scores.f64"
    np.ascontiguousarray(counts, "<i4").tofile(inp)
    _run([str(driver), str(Path(plugin).resolve()), str(inp), str(outp)], str(plugin), "the driver")
    return np.fromfile(outp, "<f8")


# -- scoring through the shim -----------------------------------------------------------
class PluginRunner:
    """A plugin loaded through the batch shim: :meth:`score` takes CMSSW's 57 inputs as int32
    ``[N, 57]`` and gives ``loss × 16`` per event (float64), one C++ call per batch. Safe to
    use from several threads at once (each call makes its own model)."""

    def __init__(self, shim: Path, plugin: Path, where: str | None = None) -> None:
        self.where = where or str(plugin)
        try:
            lib = ctypes.CDLL(str(Path(shim).resolve()))
        except OSError as exc:
            raise ProjectError(f"{self.where}: cannot load the batch shim {shim} ({exc}); import "
                               "the plugin again") from None
        lib.darktrigger_open.restype = ctypes.c_void_p
        lib.darktrigger_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        lib.darktrigger_score.restype = ctypes.c_int
        lib.darktrigger_score.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                          ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.darktrigger_close.argtypes = [ctypes.c_void_p]
        lib.darktrigger_pair_type.restype = ctypes.c_char_p
        lib.darktrigger_input_type.restype = ctypes.c_char_p
        lib.darktrigger_loss_is_cmssw.restype = ctypes.c_int
        err = ctypes.create_string_buffer(2048)
        handle = lib.darktrigger_open(str(Path(plugin).resolve()).encode(), err, len(err))
        if not handle:
            raise ProjectError(f"{self.where}: {err.value.decode(errors='replace')}")
        self._lib, self._handle = lib, handle
        self.pair_type = lib.darktrigger_pair_type().decode()
        self.loss_is_cmssw = bool(lib.darktrigger_loss_is_cmssw())

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.int32)
        if x.ndim != 2 or x.shape[1] != N_INPUTS:
            raise ConfigError(f"{self.where}: expected CMSSW's inputs int32 [N, {N_INPUTS}], got {list(x.shape)}")
        out = np.empty(len(x), np.float64)
        if len(x):
            err = ctypes.create_string_buffer(2048)
            rc = self._lib.darktrigger_score(self._handle, x.ctypes.data, len(x), out.ctypes.data, err, len(err))
            if rc != 0:
                raise FirmwareError(f"{self.where}: {err.value.decode(errors='replace')}")
        return out

    def close(self) -> None:
        if self._handle:
            self._lib.darktrigger_close(self._handle)
            self._handle = None

    def __del__(self) -> None:  # the plugin stays loaded as long as the runner lives
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# -- the imported model directory -------------------------------------------------------
@dataclass(frozen=True)
class EmulatorManifest:
    """``darktrigger-emulator.json``: what :func:`import_emulator` built, written last."""

    name: str
    source: str
    source_sha256: str
    emulator: str
    plugin: str
    shim: str
    pair_type: str
    pair_type_resolved: str
    loss_is_cmssw: bool
    shim_sha256: str
    compiler: str
    cxxflags: str
    #: scores of a few fixed input patterns at the build (a later load must give the same)
    smoke: list[float]
    build_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": MANIFEST_VERSION, "complete": True, "input_type": INPUT_TYPE,
                "score": "loss * 16 (CMSSW's AXOL1TLCondition)", **dataclasses.asdict(self)}

    @classmethod
    def read(cls, directory: Path) -> EmulatorManifest:
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise ProjectError(f"{directory}: not an imported emulator (no {MANIFEST}); import one with "
                               "`darktrigger firmware import --emulator DIR --out MODEL_DIR`")
        try:
            data = json.loads(path.read_text())
            if data.get("version") != MANIFEST_VERSION or data.get("complete") is not True:
                raise ValueError(f"not a complete version-{MANIFEST_VERSION} manifest")
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except (ValueError, KeyError, TypeError) as exc:
            raise ProjectError(f"{path}: a damaged emulator manifest ({type(exc).__name__}: {exc}); "
                               "import the plugin again") from None


def smoke_inputs() -> np.ndarray:
    """A few fixed CMSSW input arrays int32 ``[4, 57]``: empty, a MET, a busy event, maxima."""
    x = np.zeros((4, N_INPUTS), np.int32)
    x[1, [0, 2]] = (20, 17)
    rng = np.random.default_rng(57)
    x[2, 0::3] = rng.integers(0, 120, 19)
    x[2, 1::3] = rng.integers(-60, 60, 19)
    x[2, 2::3] = rng.integers(0, 144, 19)
    x[2, 1] = 0
    x[3, 0::3] = 1023
    return x


def _prepare_out(out: Path, folder: Path) -> None:
    if Path(folder).resolve() == out.resolve() or out.resolve() in Path(folder).resolve().parents:
        raise ProjectError(f"{out}: the model directory cannot be the plugin project or a folder above it")
    if not out.exists():
        return
    if not out.is_dir():
        raise ProjectError(f"{out}: exists and is not a folder")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ProjectError(f"{out}: exists and is not an imported emulator; choose an empty or new --out")
    shutil.rmtree(out)


def import_emulator(folder: Path, out: Path, name: str | None = None, *,
                    progress: bool = False) -> EmulatorManifest:
    """Build the plugin project ``folder`` into the model directory ``out`` (module doc).

    ``out`` holds ``card.json``, ``backend.json`` (the ``emulator`` backend runs it), the
    manifest, ``README.md``, the plugin ``.so``, the shim and ``source/`` (the project copy it
    was built from). A failed import leaves nothing behind.
    """
    from darktrigger.replay.progress import Steps

    t0 = time.monotonic()
    folder, out = Path(folder), Path(out)
    source = inspect_project(folder)
    require_tool("g++", "plugin projects are compiled with it")
    ap_types_dir()
    _prepare_out(out, folder)
    name = name or folder.resolve().name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '_', '.' and '-'")
    steps = Steps(f"firmware import {folder}", 3, enabled=progress)
    out.mkdir(parents=True)
    try:
        manifest = _import(source, out, name, steps)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    manifest = dataclasses.replace(manifest, build_seconds=round(time.monotonic() - t0, 1))
    write_json(out / MANIFEST, manifest.to_dict())
    return manifest


def _import(source: PluginSource, out: Path, name: str, steps: Any) -> EmulatorManifest:
    folder = source.folder
    src = out / SOURCE_DIR
    shutil.copytree(folder, src, ignore=shutil.ignore_patterns("*.o", "*.so", ".git"))
    digest = _sha256_tree(src)
    steps(f"building the plugin with {folder.name}/Makefile (g++, hls4ml's ap_types)")
    built = build_plugin(src, str(folder))
    plugin = out / built.name
    shutil.copy2(built, plugin)
    steps(f"compiling the batch shim for read_result's {source.pair_type}")
    compile_shim(dataclasses.replace(source, emulator=src / source.emulator.name), src, out / SHIM_FILE,
                 str(folder))
    steps("loading the plugin through the interface; scoring test inputs")
    runner = PluginRunner(out / SHIM_FILE, plugin, str(folder))
    try:
        smoke = runner.score(smoke_inputs())
    except FirmwareError as exc:
        raise FirmwareError(f"{folder}: the plugin does not run as CMSSW calls it: {exc}") from None
    finally:
        runner.close()
    if not runner.loss_is_cmssw:
        log.warning("%s: read_result's loss is not CMSSW's %s (pair %s): CMSSW's condition could not "
                    "read it", folder, LOSS_TYPE, runner.pair_type)
    cxx = subprocess.run([require_tool("g++", ""), "--version"], capture_output=True, text=True).stdout
    manifest = EmulatorManifest(
        name=name, source=str(folder.resolve()), source_sha256=digest, emulator=source.emulator.name,
        plugin=plugin.name, shim=SHIM_FILE, pair_type=source.pair_type,
        pair_type_resolved=runner.pair_type, loss_is_cmssw=runner.loss_is_cmssw,
        shim_sha256=hashlib.sha256(SHIM_SOURCE.read_bytes()).hexdigest(),
        compiler=cxx.splitlines()[0] if cxx else "g++", cxxflags=CXXFLAGS, smoke=smoke.tolist())
    write_json(out / BACKEND_FILE, {"backend": "emulator",
                                    "why": "an imported hls4mlEmulator plugin: only the emulator backend runs it"})
    card = ModelCard(scorer=name, hyperparameters={
        "emulator": source.emulator.name, "pair_type": runner.pair_type, "input_type": INPUT_TYPE,
        "score": "loss * 16", "source": str(folder.resolve())},
        files=[BACKEND_FILE, MANIFEST, plugin.name, SHIM_FILE, "README.md"])
    (out / "README.md").write_text(model_card_text(manifest))
    card.save(out)
    return manifest


def model_card_text(m: EmulatorManifest) -> str:
    """The imported model's README.md: what it is, how it is fed, how to score with it."""
    from darktrigger.replay.l1units import input_table_markdown

    return f"""# `{m.name}`: an imported hls4mlEmulator plugin (darktrigger)

Imported by `darktrigger firmware import` from `{m.source}` (sources sha256
`{m.source_sha256[:16]}…`, copied into `{SOURCE_DIR}/`), built with its own Makefile by
{m.compiler} (`{m.cxxflags}`) against hls4ml's `ap_types` and darktrigger's
`hls4mlEmulator::Model` header: `{m.plugin}`.

Scoring (`--backend emulator`, or a menu model with `backend: emulator`) feeds every event as
CMSSW's `AXOL1TLCondition` does: the 57 inputs below as `{INPUT_TYPE}`, then
`prepare_input`, `predict`, `read_result` into `{m.pair_type_resolved}`; the score is
`loss × 16`, which a seed's threshold is compared with (≥). Loss type as CMSSW's
(`{LOSS_TYPE}`): {"yes" if m.loss_is_cmssw else "NO: CMSSW's condition could not read it"}.
The batch shim `{m.shim}` runs the event loop in C++ (one call per batch).

```
darktrigger score --model THIS_FOLDER --events zb.h5 --out zb_scored.h5
```

## The 57 inputs (CMSSW's order and units)

{input_table_markdown()}"""


class EmulatorScorer(ScoreOnlyScorer):
    """An imported hls4mlEmulator plugin: events → CMSSW's 57 inputs
    (:func:`darktrigger.replay.l1units.cmssw_inputs`) → the plugin → ``loss × 16``. Not
    registered as a scorer: it is the ``emulator`` backend. Safe to use from several threads."""

    name = "emulator"
    backend = "emulator"
    retrain_hint = "it is a fixed plugin; import another one"

    def __init__(self, directory: Path) -> None:
        from darktrigger.models.card import read_card

        self.directory = Path(directory)
        self.manifest = EmulatorManifest.read(self.directory)
        self.card = read_card(self.directory)
        self.variant = None
        self.hyperparameters = dict(self.card.hyperparameters)
        self.training, self.seed = self.card.training, self.card.seed
        if self.manifest.shim_sha256 != hashlib.sha256(SHIM_SOURCE.read_bytes()).hexdigest():
            log.warning("%s: its batch shim was built by another darktrigger version; import the "
                        "plugin again if scoring fails", self.directory)
        self.runner = PluginRunner(self.directory / self.manifest.shim, self.directory / self.manifest.plugin,
                                   str(self.directory))

    @property
    def spec(self) -> str:
        return self.manifest.name

    @property
    def where(self) -> str:
        return f"scorer {self.spec!r} (hls4mlEmulator plugin, {self.directory})"

    @classmethod
    def load(cls, directory: str | Path, variant: str | None = None) -> EmulatorScorer:
        if variant is not None:
            raise ConfigError(f"{directory}: an emulator computes one score; got variant {variant!r}")
        return cls(Path(directory))

    def score_inputs(self, x: np.ndarray) -> np.ndarray:
        """``loss × 16`` (float64) for CMSSW's inputs int32 ``[N, 57]``."""
        out = np.empty(len(x), np.float64)
        for start in range(0, len(x), CHUNK):
            out[start:start + CHUNK] = self.runner.score(x[start:start + CHUNK])
        return out

    def score(self, batch: BatchLike) -> np.ndarray:
        from darktrigger.replay.l1units import cmssw_inputs

        flat = as_flat(batch, self.where)
        out = np.empty(len(flat), np.float32)
        for start in range(0, len(flat), CHUNK):
            chunk = flat[start:start + CHUNK]
            out[start:start + len(chunk)] = self.runner.score(cmssw_inputs(chunk))
        return out


@register_backend("emulator", "an imported hls4mlEmulator plugin (CMSSW's AXOL1TL interface) via a C++ batch shim; scores only")
def _load(directory: Path, variant: str | None, *, threads: int) -> EmulatorScorer:
    return EmulatorScorer.load(directory, variant)


# -- writing plugin projects ------------------------------------------------------------
SCALINGS = ("axol1tl", "exact")
LOSSES = ("sum_squares", "output")
RESULTS = ("array", "scalar")


@dataclass(frozen=True)
class PluginLayout:
    """How :func:`write_plugin_project` writes the emulator class and ``scales.h``.

    * ``scaling``: ``"axol1tl"``, as AXOL1TL's emulators: ``(in − offset) >> shift`` in
      ``ap_fixed<18,13>``, assigned to the network's input type; ``"exact"``, darktrigger's
      quantised models (:class:`~darktrigger.models.quantised.preprocess.QPreprocessor`):
      ``floor(in · 2^(F − shift)) / 2^F`` saturated to ``input_type`` (offsets must be 0);
    * ``loss``: ``"sum_squares"`` (AXOL1TL v1: Σ result² in the loss type) or ``"output"``
      (v5 on: the network's first output is the score), then scaled: the loss is
      ``floor(output · 2^score_shift) / 16`` saturated to ``ap_ufixed<18,14>``, so that
      CMSSW's ``loss × 16`` is ``floor(output · 2^score_shift)`` (at most 2^18 − 1);
    * ``result``: the pair's first member: ``"array"`` (``std::array<result_t, N>``, as
      v3/v4) or ``"scalar"`` (``ap_fixed<18,14,AP_RND_CONV,AP_SAT>``, as CMSSW reads v5 on).
    """

    name: str
    shifts: tuple[int, ...]
    offsets: tuple[float, ...] = (0.0,) * N_INPUTS
    scaling: str = "exact"
    loss: str = "output"
    result: str = "scalar"
    namespace: str | None = None
    input_type: str | None = None
    score_shift: int = 0

    def __post_init__(self) -> None:
        if len(self.shifts) != N_INPUTS or len(self.offsets) != N_INPUTS:
            raise ConfigError(f"plugin {self.name}: {N_INPUTS} shifts and offsets needed, got "
                              f"{len(self.shifts)} and {len(self.offsets)}")
        for key, value, allowed in (("scaling", self.scaling, SCALINGS), ("loss", self.loss, LOSSES),
                                    ("result", self.result, RESULTS)):
            if value not in allowed:
                raise ConfigError(f"plugin {self.name}: {key} must be one of {', '.join(allowed)}, got {value!r}")
        if self.scaling == "exact" and (self.input_type is None or any(self.offsets)):
            raise ConfigError(f"plugin {self.name}: exact scaling needs input_type and no offsets")

    def pair_type(self, n_out: int) -> str:
        """The type ``read_result`` fills (written out: the shim reads it from the source)."""
        first = f"std::array<result_t, {n_out}>" if self.result == "array" else CMSSW_SCALAR_RESULT
        return f"std::pair<{first}, resultsq_t>"


def top_function(nn: Path, name: str) -> tuple[str, int, str, int]:
    """(input type, inputs, result type, outputs) of the hls4ml top function in ``nn/name.h``."""
    header = nn / f"{name}.h"
    m = _TOP.search(header.read_text()) if header.is_file() else None
    if m is None or m.group(1) != name:
        raise FirmwareError(f"{header}: no hls4ml top function {name}(input_t in[N], result_t out[M]) "
                            "(io_parallel, one input and one output)")
    return m.group(2), int(m.group(3)), m.group(4), int(m.group(5))


def _scales_h(layout: PluginLayout, top: str) -> str:
    ns_open = f"namespace {layout.namespace} {{\n" if layout.namespace else ""
    ns_close = f"}}  // namespace {layout.namespace}\n" if layout.namespace else ""
    offsets = ", ".join(f"{o:.1f}" for o in layout.offsets)
    shifts = ", ".join(str(int(s)) for s in layout.shifts)
    guard = f"{layout.name.upper()}_SCALES_H"
    return f"""// {layout.name}: the inputs' offsets and right shifts (written by darktrigger)
#ifndef {guard}
#define {guard}

#include "NN/{top}.h"

{ns_open}typedef ap_fixed<18, 13> unscaled_t;  // the inputs as CMSSW's AXOL1TLCondition passes them
typedef ap_ufixed<18, 14> resultsq_t;  // the loss as CMSSW reads it (its score is loss * 16)
typedef ap_fixed<18, 13> ad_offset_t;

static const int ad_shift[{N_INPUTS}] = {{{shifts}}};
static const ad_offset_t ad_offsets[{N_INPUTS}] = {{{offsets}}};
{ns_close}
#endif
"""


def _emulator_cpp(layout: PluginLayout, top: str, input_t: str, n_in: int, result_t: str, n_out: int) -> str:
    cls = f"{layout.name}_emulator"
    if layout.scaling == "axol1tl":
        scale = ("unscaled_t tmp0 = _unscaled_input[i] - ad_offsets[i];\n"
                 "      input_t tmp1 = tmp0 >> ad_shift[i];\n"
                 "      _scaled_input[i] = tmp1;")
    else:
        assert layout.input_type is not None
        sat = layout.input_type[:-1] + ", AP_TRN, AP_SAT>"
        scale = ("ap_fixed<18 + 32, 13> wide = _unscaled_input[i];  // exact: 37 fractional bits\n"
                 "      wide >>= ad_shift[i];\n"
                 f"      {sat} floored = wide;  // floor onto the input grid, saturate\n"
                 "      _scaled_input[i] = floored;")
    if layout.loss == "sum_squares":
        loss = ("resultsq_t squares[N_OUTPUTS];\n"
                "    for (int i = 0; i < N_OUTPUTS; i++) squares[i] = _result[i] * _result[i];\n"
                "    resultsq_t sum = 0;\n"
                "    for (int i = 0; i < N_OUTPUTS; i++) sum += squares[i];\n"
                "    return sum;")
    else:
        k = layout.score_shift - 4
        op = f"wide <<= {k};" if k >= 0 else f"wide >>= {-k};"
        loss = ("ap_fixed<96, 48> wide = _result[0];\n"
                f"    {op}  // loss * 16 = floor(score * 2^{layout.score_shift})\n"
                "    ap_ufixed<18, 14, AP_TRN, AP_SAT> loss = wide;\n"
                "    return loss;")
    fill = ("for (int i = 0; i < N_OUTPUTS; i++) p->first[i] = _result[i];" if layout.result == "array"
            else "p->first = _result[0];")
    using = f"using namespace {layout.namespace};\n\n" if layout.namespace else ""
    pair = layout.pair_type(n_out)
    return f"""// {layout.name}: an hls4mlEmulator plugin (written by darktrigger, firmware/emulator.py).
// CMSSW's AXOL1TLCondition passes its 57 inputs as ap_fixed<18,13>* to prepare_input, which
// scales them (scales.h); predict runs the hls4ml network (NN/) and computes the loss;
// read_result fills a {pair}; the trigger's score is loss * 16.
#include "NN/{top}.h"
#include "emulator.h"
#include "NN/nnet_utils/nnet_common.h"
#include <any>
#include <array>
#include <utility>
#include "ap_fixed.h"
#include "ap_int.h"
#include "scales.h"

{using}#define N_INPUTS {n_in}
#define N_OUTPUTS {n_out}

class {cls} : public hls4mlEmulator::Model {{
 private:
  unscaled_t _unscaled_input[N_INPUTS];
  {input_t} _scaled_input[N_INPUTS];
  {result_t} _result[N_OUTPUTS];
  resultsq_t _loss;

  void _scaleNNInputs() {{
    for (int i = 0; i < N_INPUTS; i++) {{
      {scale}
    }}
  }}

  resultsq_t _computeLoss() {{
    {loss}
  }}

 public:
  void prepare_input(std::any input) override {{
    unscaled_t* unscaled_input_p = std::any_cast<unscaled_t*>(input);
    for (int i = 0; i < N_INPUTS; i++) _unscaled_input[i] = unscaled_input_p[i];
    _scaleNNInputs();
  }}

  void predict() override {{
    {top}(_scaled_input, _result);
    _loss = _computeLoss();
  }}

  void read_result(std::any result) override {{
    {pair}* p = std::any_cast<{pair}*>(result);
    {fill}
    p->second = _loss;
  }}
}};

extern "C" hls4mlEmulator::Model* create_model() {{ return new {cls}; }}

extern "C" void destroy_model(hls4mlEmulator::Model* m) {{ delete m; }}
"""


def _makefile(name: str) -> str:
    return f""".PHONY: clean
# CXX, CXXFLAGS (with -fPIC), INCLUDES (ap_types, hls4mlEmulatorExtras' include/hls4ml) from the caller
{name}.so: {name}_emulator.o {name}.o
\t$(CXX) $(CXXFLAGS) $(LD_FLAGS) -shared $^ -o $@

%.o: NN/%.cpp
\t$(CXX) $(CXXFLAGS) $(INCLUDES) -c $< -o $@

%.o: %.cpp
\t$(CXX) $(CXXFLAGS) $(INCLUDES) -c $< -o $@

clean:
\trm -f {name}_emulator.o {name}.o {name}.so
"""


def write_plugin_project(hls_firmware: Path, out: Path, layout: PluginLayout) -> Path:
    """A plugin project in AXOL1TL's layout in ``out``: ``NN/`` (hls4ml's ``firmware/``
    sources, without its ``ap_types``; top function ``layout.name``), ``scales.h``,
    ``<name>_emulator.cpp`` and a ``Makefile``; ``out``."""
    nn = Path(out) / "NN"
    shutil.copytree(hls_firmware, nn, ignore=shutil.ignore_patterns("ap_types", "*.txt"))
    input_t, n_in, result_t, n_out = top_function(nn, layout.name)
    if n_in != N_INPUTS:
        raise FirmwareError(f"{nn}: the network takes {n_in} inputs; CMSSW passes {N_INPUTS}")
    (Path(out) / "scales.h").write_text(_scales_h(layout, layout.name))
    (Path(out) / f"{layout.name}_emulator.cpp").write_text(
        _emulator_cpp(layout, layout.name, input_t, n_in, result_t, n_out))
    (Path(out) / "Makefile").write_text(_makefile(layout.name))
    return Path(out)


# -- exporting a quantised model --------------------------------------------------------
EXPORT_DIR = "emulator"  #: the plugin's folder inside a firmware project
TB_COUNTS = "tb_counts.i32"  #: the test vectors' hardware counts int32 [N, 19, 3]
TB_EXPECTED = "tb_expected.f64"  #: CMSSW's score the plugin must give for them


def score_shift(high: float, frac: int) -> int:
    """The ``m`` of an exported plugin's score ``floor(score · 2^m)``: the score's own LSB
    (``m = frac``) unless its largest possible value would then pass 2^18 − 1, in which case
    ``m`` is lowered until it cannot (CMSSW's loss is ``ap_ufixed<18,14>``, its score loss × 16).

        >>> score_shift(30.0, 8), score_shift(1024.0, 10)
        (8, 7)
    """
    m = frac
    while max(high, 0.0) * 2.0**m > SCORE_MAX:
        m -= 1
    return m


def cmssw_score(score: np.ndarray, m: int) -> np.ndarray:
    """What CMSSW reads from an exported plugin (loss × 16) for software scores: ``floor(score ·
    2^m)`` saturated to [0, 2^18 − 1] (float64)."""
    return np.clip(np.floor(np.asarray(score, np.float64) * 2.0**m), 0, SCORE_MAX)


def plugin_name(spec: str) -> str:
    """``GTADModel_<spec>``: CMSSW loads ``"GTADModel_" + modelVersion + ".so"``.

        >>> plugin_name("qvae")
        'GTADModel_qvae'
    """
    return "GTADModel_" + re.sub(r"[^A-Za-z0-9_]", "_", spec)


def export_plugin(scorer: Any, keras_model: Any, precision: dict[str, dict[str, str]], out: Path,
                  tb_objects: np.ndarray, tb_scores: np.ndarray, *, backend: str = "Vitis",
                  where: str = "model") -> dict[str, Any]:
    """Write and build the hls4mlEmulator plugin of a quantised scorer in ``out`` (a
    :func:`write_plugin_project` project: the exact input shifts of its
    ``preprocess.json``, the score as the loss scaled by :func:`score_shift`, CMSSW's v5-on
    pair), with the driver, a copy of the interface header and test vectors (the hardware
    counts of ``tb_objects`` and the CMSSW scores ``tb_scores`` must give); its record."""
    from darktrigger.firmware import hls
    from darktrigger.replay.l1units import hardware_counts

    name = plugin_name(scorer.spec)
    score_range = scorer.ranges()[-1]
    m = score_shift(score_range.high, score_range.frac)
    namespace = f"hls4ml_{name.lower()}"
    layout = PluginLayout(name, tuple(int(s) for s in scorer.qpre.shifts), scaling="exact", loss="output",
                          result="scalar", namespace=namespace, input_type=scorer.input_fmt.ap, score_shift=m)
    with tempfile.TemporaryDirectory(prefix="darktrigger-plugin-") as tmp:
        hls.convert(keras_model, Path(tmp), precision=precision, backend=backend, where=where,
                    project_name=name, namespace=namespace, write_weights_txt=False)
        write_plugin_project(Path(tmp) / "firmware", out, layout)
    (out / "include" / "hls4ml").mkdir(parents=True)
    shutil.copy2(INCLUDE_DIR / "hls4ml" / "emulator.h", out / "include" / "hls4ml" / "emulator.h")
    shutil.copy2(DRIVER_SOURCE, out / "driver.cc")
    np.ascontiguousarray(hardware_counts(tb_objects), "<i4").tofile(out / TB_COUNTS)
    np.ascontiguousarray(cmssw_score(tb_scores, m), "<f8").tofile(out / TB_EXPECTED)
    plugin = build_plugin(out, where)
    return {"directory": out.name, "name": name, "plugin": plugin.name, "score_shift": m,
            "pair_type": layout.pair_type(1).replace("resultsq_t", "ap_ufixed<18, 14>"), "loss_type": LOSS_TYPE, "input_type": INPUT_TYPE,
            "tb_events": len(tb_scores)}


def load_export(project: Path, record: dict[str, Any], workdir: Path) -> PluginRunner:
    """The exported plugin of a firmware project, loaded through the shim (compiled into
    ``workdir``), as ``firmware verify`` checks it."""
    folder = Path(project) / record["directory"]
    source = inspect_project(folder)
    shim = compile_shim(source, folder, Path(workdir) / SHIM_FILE, str(folder))
    return PluginRunner(shim, folder / record["plugin"], str(folder))
