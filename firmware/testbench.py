"""The hls4ml project's own C++ testbench (``myproject_test.cpp``), compiled with g++ and run.

The testbench reads ``tb_data/tb_input_features.dat`` (one event a line) and writes
``tb_data/csim_results.log``. hls4ml's template prints results with the stream's
default 6 significant digits, which rounds a fixed-point score; :func:`patch` sets
17 digits (enough to carry any double exactly) so the log can be compared bit for bit.
It is the only change made to the generated testbench.

    >>> import numpy as np
    >>> write_dat(tmp_path / "in.dat", np.array([[0.1, -2.0], [1 / 3, 0.0]]))
    >>> print((tmp_path / "in.dat").read_text(), end="")
    0.10000000000000001 -2
    0.33333333333333331 0
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from darktrigger.firmware.errors import FirmwareError
from darktrigger.firmware.hls import PROJECT_NAME, require_cxx

TB_SOURCE = f"{PROJECT_NAME}_test.cpp"
PATCH_MARK = "// darktrigger: full precision"


def patch(project: Path) -> None:
    """Make the testbench log every result with 17 significant digits (idempotent)."""
    path = project / TB_SOURCE
    text = path.read_text()
    if PATCH_MARK in text:
        return
    anchor = "std::ofstream fout(RESULTS_LOG);"
    if anchor not in text:
        raise FirmwareError(f"{path}: the hls4ml testbench has changed shape (no {anchor!r}); "
                            "cannot set its output precision")
    text = text.replace("#include <algorithm>", "#include <algorithm>\n#include <iomanip>", 1)
    text = text.replace(anchor, f"{anchor}\n    fout << std::setprecision(17);  {PATCH_MARK}", 1)
    path.write_text(text)


def write_dat(path: Path, values: np.ndarray) -> None:
    """One event a line, space separated, every value written exactly (``%.17g``)."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, values, fmt="%.17g", delimiter=" ")


def compile_testbench(project: Path, binary: Path) -> Path:
    """g++ the testbench with the project's firmware sources into ``binary``.

    The weights folder is compiled in as an absolute path (``-DWEIGHTS_DIR``), so the
    binary runs in any folder (:func:`run` runs it in a temporary one) whatever the
    current folder was when ``project`` was given relative to it.
    """
    cxx = require_cxx()
    project, binary = Path(project).resolve(), Path(binary).resolve()
    flags = ["-O2", "-std=c++17", f"-I{project / 'firmware' / 'ap_types'}", f"-I{project / 'firmware'}",
             f"-I{project}", f'-DWEIGHTS_DIR="{project / "firmware" / "weights"}"']
    # one translation unit a call, then the link: a compiler cache (ccache, as `make test` uses)
    # can then reuse each object when the same project is verified again
    objects = []
    for source in (project / TB_SOURCE, project / "firmware" / f"{PROJECT_NAME}.cpp"):
        obj = binary.parent / f"{binary.name}-{source.stem}.o"
        _gxx([cxx, *flags, "-c", str(source), "-o", str(obj)], project)
        objects.append(str(obj))
    _gxx([cxx, *objects, "-o", str(binary)], project)
    return binary


def _gxx(cmd: list[str], project: Path) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise FirmwareError(f"{project}: g++ could not compile the testbench {TB_SOURCE}:\n"
                            f"{res.stderr[-4000:]}")


def run(binary: Path, x: np.ndarray, expected: np.ndarray, workdir: Path | None = None) -> np.ndarray:
    """Run the testbench on inputs ``x`` (with ``expected`` as its predictions file); outputs [N]."""
    binary = Path(binary).resolve()  # run from another folder (cwd=wd)
    with tempfile.TemporaryDirectory(prefix="darktrigger-tb-") as tmp:
        wd = Path(workdir or tmp)
        write_dat(wd / "tb_data" / "tb_input_features.dat", x)
        write_dat(wd / "tb_data" / "tb_output_predictions.dat", expected)
        res = subprocess.run([str(binary)], cwd=wd, capture_output=True, text=True)
        if res.returncode != 0:
            raise FirmwareError(f"testbench {binary} failed (exit {res.returncode}): {res.stderr[-2000:]}")
        log = wd / "tb_data" / "csim_results.log"
        out = np.loadtxt(log, dtype=np.float64, ndmin=2)
    if out.shape[0] != len(x):
        raise FirmwareError(f"testbench {binary} wrote {out.shape[0]} results for {len(x)} events")
    return out[:, 0]
