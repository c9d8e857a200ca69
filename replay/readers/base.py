"""What every event reader is: registered by name, chosen by content, streaming in chunks.

    >>> from darktrigger.replay.readers import open_events
    >>> from darktrigger.replay.testing import random_dm_lines, write_darkmachines
    >>> lines = random_dm_lines(100, seed=1)
    >>> lines[7] = "7;ttbar;1;not-a-number;0.5;"
    >>> path = write_darkmachines("background.csv", lines)
    >>> reader = open_events(path, on_error="skip", chunk_size=40)
    >>> reader.name, [len(batch) for batch in reader]
    ('darkmachines', [39, 40, 20])
    >>> reader.skipped.summary()
    "background.csv: skipped 1 bad event(s): line 8: expected a number for MET, got 'not-a-number'"
    >>> open_events(path).read_all()
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.InputFormatError: background.csv, line 8: expected a number for MET, got 'not-a-number'

``on_error="fail"`` (the default) stops at the first bad line or row with an
:class:`~darktrigger.replay.errors.InputFormatError` naming the file, the line/row and what was
expected; ``on_error="skip"`` drops bad lines/rows, reads the rest, and counts them
in :attr:`EventReader.skipped`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from darktrigger.replay.errors import ConfigError, InputFormatError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.registry import Registry

log = logging.getLogger(__name__)

OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES = ("fail", "skip")
DEFAULT_CHUNK = 65536


@dataclass
class SkipReport:
    """What a reader in ``skip`` mode left out: a count and the first few places."""

    path: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 10

    def add(self, where: str, reason: str, n: int = 1) -> None:
        self.count += n
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where}: {reason}")

    def summary(self) -> str:
        if not self.count:
            return f"{self.path}: nothing skipped"
        shown = "; ".join(self.examples)
        more = "" if self.count <= len(self.examples) else f"; and {self.count - len(self.examples)} more"
        return f"{self.path}: skipped {self.count} bad event(s): {shown}{more}"


class EventReader(ABC):
    """Base of the readers. Subclasses set ``description``, implement :meth:`sniff` and
    :meth:`__iter__`, and call :meth:`screen` on each batch they build."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: how a row is called in messages ("row" for arrays, "line" for text)
    unit: ClassVar[str] = "row"

    def __init__(self, path: str | Path, *, chunk_size: int = DEFAULT_CHUNK,
                 on_error: OnError = "fail", **options: Any) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ConfigError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        if chunk_size <= 0:
            raise ConfigError(f"chunk_size must be positive, got {chunk_size}")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        self.chunk_size = int(chunk_size)
        self.on_error: OnError = on_error
        self.options = options
        self.skipped = SkipReport(str(self.path))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__iter__" in cls.__dict__:  # each pass over the file counts its skips afresh
            inner = cls.__dict__["__iter__"]

            def __iter__(self: EventReader) -> Iterator[EventBatch]:
                self.skipped = SkipReport(str(self.path))
                yield from inner(self)

            __iter__.__doc__ = inner.__doc__
            cls.__iter__ = __iter__  # type: ignore[method-assign]

    @classmethod
    @abstractmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        """True when the file (whose first bytes are ``head``) is in this format."""

    @abstractmethod
    def __iter__(self) -> Iterator[EventBatch]:
        """Yield batches of at most ``chunk_size`` events."""

    def count(self) -> int | None:
        """Number of events in the file when it can be known without reading it all."""
        return None

    def metadata(self) -> dict[str, Any]:
        """Provenance and format details worth showing in ``darktrigger inspect``."""
        return {}

    def read_all(self) -> EventBatch:
        """Every event in one batch (small files and tests only)."""
        batches = list(self)
        return EventBatch.concat(batches) if batches else EventBatch.empty()

    # -- error handling shared by all readers ----------------------------------------
    def bad(self, where: str, expected: str, got: str | None = None) -> None:
        """Report one bad line/row: raise in ``fail`` mode, count it in ``skip`` mode."""
        err = InputFormatError(str(self.path), where, expected, got)
        if self.on_error == "fail":
            raise err
        self.skipped.add(where, f"expected {expected}" + (f", got {got}" if got is not None else ""))

    def screen(self, batch: EventBatch, first_row: int = 0,
               locations: np.ndarray | None = None) -> EventBatch:
        """Check a batch's values (NaN/inf, φ range, negative pT): raise or drop bad rows.

        ``locations`` gives each row's line/row number in the file; by default row
        ``first_row + i``.
        """
        found = batch.problems()
        if not found:
            return batch
        keep = np.ones(len(batch), dtype=bool)
        for row, why in found:
            where_no = int(locations[row]) if locations is not None else first_row + row
            self.bad(f"{self.unit} {where_no}", why.split(", expected ")[-1] if ", expected " in why else "valid values", why)
            keep[row] = False
        return batch[keep]

    def log_skips(self) -> None:
        if self.skipped.count:
            log.warning("%s", self.skipped.summary())


READERS: Registry[type[EventReader]] = Registry("reader")
register_reader = READERS.register

_HEAD_BYTES = 4096


def read_head(path: str | Path, n: int = _HEAD_BYTES) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def detect_format(path: str | Path) -> str:
    """The name of the reader for this file, decided by its content."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    head = read_head(path)
    for name, cls in READERS.items():
        try:
            if cls.sniff(path, head):
                return name
        except Exception as exc:  # a sniffer must never hide the real answer
            log.debug("reader %s could not sniff %s: %s", name, path, exc)
    raise InputFormatError(
        str(path), "", f"one of the formats {', '.join(READERS.names())}",
        "a file none of them recognises (is it truncated or of another kind?)",
    )


def open_events(path: str | Path, format: str | None = None, **options: Any) -> EventReader:
    """A reader for ``path``: the named ``format``, or the one its content says."""
    name = format or detect_format(path)
    return READERS.get(name)(path, **options)
