"""darktrigger: emulate a collider's real-time anomaly-detection trigger, end to end.

The sub-packages are the layers, each importing only those below it:
:mod:`darktrigger.replay` (events, readers, generators; the bottom),
:mod:`darktrigger.models` (scorers, training, thresholds, the CWoLa hunt),
:mod:`darktrigger.firmware` (hls4ml and da4ml firmware, co-simulation),
:mod:`darktrigger.daq` (the pipeline, the trigger menu, the command line; the top) and
:mod:`darktrigger.monitoring` (metrics and pages; a leaf that the DAQ layer feeds).
``docs/ARCHITECTURE.md`` in the repository walks through them.

Importing ``darktrigger`` imports none of them.

    >>> import darktrigger
    >>> darktrigger.__version__ != ""
    True
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("darktrigger")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
