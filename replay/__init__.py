"""The replay layer: the event model, readers, writers, generators and the replay iterator.

The bottom layer of darktrigger: it imports nothing else of ours. The event model is
:class:`~darktrigger.replay.events.EventBatch`; :func:`~darktrigger.replay.readers.open_events`
reads any supported file, :class:`~darktrigger.replay.stream.Replay` streams files or a
mixture, and :data:`~darktrigger.replay.generators.GENERATORS` makes events.

    >>> import numpy as np
    >>> from darktrigger.replay import EventBatch
    >>> batch = EventBatch.from_objects(np.zeros((3, 19, 3), np.float32))
    >>> len(batch), batch.flat.shape
    (3, (3, 57))
"""

from __future__ import annotations

from darktrigger.replay.errors import ConfigError, DarkTriggerError, InputFormatError, SchemaError
from darktrigger.replay.events import SCHEMA_VERSION, EventBatch

__all__ = [
    "SCHEMA_VERSION",
    "ConfigError",
    "DarkTriggerError",
    "EventBatch",
    "InputFormatError",
    "SchemaError",
]
