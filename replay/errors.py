"""The project's exceptions: one base, specific errors that also subclass the builtin.

Every message names where (file, stage, model), what was expected and what arrived.

    >>> err = InputFormatError("bad.csv", "line 7", "a number for MET", "'abc'")
    >>> str(err)
    "bad.csv, line 7: expected a number for MET, got 'abc'"
    >>> isinstance(err, DarkTriggerError), isinstance(err, ValueError)
    (True, True)
"""

from __future__ import annotations


class DarkTriggerError(Exception):
    """Base of every error darktrigger raises on purpose."""


class SchemaError(DarkTriggerError, ValueError):
    """An event batch whose columns do not match the event model (DESIGN.md)."""


class InputFormatError(DarkTriggerError, ValueError):
    """A file (or one line/row of it) that does not follow its published format."""

    def __init__(self, path: str, where: str, expected: str, got: str | None = None) -> None:
        self.path = str(path)
        self.where = where
        self.expected = expected
        self.got = got
        msg = f"{self.path}"
        if where:
            msg += f", {where}"
        msg += f": expected {expected}"
        if got is not None:
            msg += f", got {got}"
        super().__init__(msg)


class UnknownNameError(DarkTriggerError, KeyError):
    """A name looked up in a registry (reader, generator, scorer, seed) that is not there."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(DarkTriggerError, ValueError):
    """A command-line option or configuration value that cannot be used."""


class GenerationError(DarkTriggerError, RuntimeError):
    """An event generator that failed (e.g. too many events Pythia could not make)."""
