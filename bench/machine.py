"""The machine and software a benchmark ran on, for the header of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata


def describe(packages: tuple[str, ...] = ("numpy", "h5py", "hdf5plugin", "pythia8mc", "fastjet")) -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for p in packages:
        try:
            versions.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{p} (absent)")
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {', '.join(versions)}",
        "- load average when the benchmarks started: {:.2f} {:.2f} {:.2f} (1, 5, 15 min; other work "
        "on the 2 cores lowers every figure)".format(*os.getloadavg()),
    ]
