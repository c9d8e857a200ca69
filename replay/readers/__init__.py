"""Event readers, registered by name. Importing this package registers them all.

Each reader's ``sniff`` recognises only its own format (the native and ADC2021
files are both HDF5, told apart by the native format tag and the ``Particles``
dataset), so the order they are tried in does not matter.
"""

from darktrigger.replay.readers import (
    adc2021,  # noqa: F401  (registers "adc2021")
    darkmachines,  # noqa: F401  (registers "darkmachines")
    lhco,  # noqa: F401  (registers "lhco")
    nanoaod,  # noqa: F401  (registers "nanoaod")
    native,  # noqa: F401  (registers "native")
)
from darktrigger.replay.readers.base import (
    READERS,
    EventReader,
    SkipReport,
    detect_format,
    open_events,
    register_reader,
)

__all__ = ["READERS", "EventReader", "SkipReport", "detect_format", "open_events", "register_reader"]
