"""The firmware layer's errors: each names the project or model, what was expected and what to do.

Each is a :class:`~darktrigger.replay.errors.DarkTriggerError` and the matching builtin:

    >>> issubclass(ToolMissingError, FileNotFoundError), issubclass(ProjectError, ValueError)
    (True, True)
"""

from __future__ import annotations

from darktrigger.replay.errors import ConfigError, DarkTriggerError


class FirmwareError(DarkTriggerError, RuntimeError):
    """A firmware step (conversion, compilation, simulation) that failed."""


class UnsupportedModelError(FirmwareError, ValueError):
    """A model that the firmware flow cannot take (not quantised, or a layer hls4ml lacks)."""


class ToolMissingError(FirmwareError, FileNotFoundError):
    """A tool the step needs (g++, Verilator, a vendor HLS tool) that is not installed."""


class ProjectError(ConfigError):
    """A firmware project folder that is incomplete, damaged, or made for another model."""


class MismatchError(FirmwareError):
    """Implementations of one model that do not agree bit for bit."""
