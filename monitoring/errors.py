"""The monitoring layer's one error.

``monitoring`` is a leaf (it imports nothing of the project), so it cannot subclass the
project's ``DarkTriggerError``; the DAQ layer wraps this where it needs to. It subclasses
``ValueError``: every case is a setting or an argument that cannot be used.
"""

from __future__ import annotations


class MonitoringError(ValueError):
    """A metrics setting or call that cannot be used; the message says what to change."""
