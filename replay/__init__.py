"""replay: the event model, readers, writers, generators and the replay iterator.

The bottom layer of darktrigger: it imports nothing else of ours.

    >>> from replay import EventBatch, open_events, Replay          # doctest: +SKIP
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("darktrigger")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from replay.errors import ConfigError, DarkTriggerError, InputFormatError, SchemaError  # noqa: E402
from replay.events import SCHEMA_VERSION, EventBatch  # noqa: E402

__all__ = [
    "SCHEMA_VERSION",
    "ConfigError",
    "DarkTriggerError",
    "EventBatch",
    "InputFormatError",
    "SchemaError",
    "__version__",
]
