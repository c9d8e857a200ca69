"""Event readers, registered by name. Importing this package registers them all.

Detection order matters: the native format is tried first (it is HDF5 with our
attributes), then the other HDF5 formats, then ROOT, then text.
"""

from replay.readers.base import (
    READERS,
    EventReader,
    SkipReport,
    detect_format,
    open_events,
    register_reader,
)
from replay.readers import native  # noqa: F401  (registers "native")
from replay.readers import adc2021  # noqa: F401  (registers "adc2021")
from replay.readers import nanoaod  # noqa: F401  (registers "nanoaod")
from replay.readers import darkmachines  # noqa: F401  (registers "darkmachines")

__all__ = ["READERS", "EventReader", "SkipReport", "detect_format", "open_events", "register_reader"]
