"""Reader of darktrigger's own HDF5 files (see :mod:`darktrigger.replay.storage`).

    >>> from darktrigger.replay.generators.toy import ToyGenerator
    >>> from darktrigger.replay.readers import open_events
    >>> from darktrigger.replay.storage import write_events
    >>> gen = ToyGenerator()
    >>> write_events("toy_qcd.h5", gen.generate("qcd", 100, seed=1), provenance=gen.provenance("qcd", 1))
    100
    >>> reader = open_events("toy_qcd.h5")
    >>> reader.name, reader.count(), reader.metadata()["provenance"]["generator"]
    ('native', 100, 'toy')

Any range of rows can be read alone (:meth:`NativeReader.iter_rows`), so offline jobs split a
native file into ranges (:mod:`darktrigger.daq.offline`); the other formats are read whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from darktrigger.replay.errors import InputFormatError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.readers.base import EventReader, register_reader
from darktrigger.replay.storage import FORMAT_TAG, HDF5_MAGIC, NativeFile, open_hdf5


@register_reader("native")
class NativeReader(EventReader):
    """darktrigger's native HDF5 event files."""

    description = "darktrigger native HDF5 (chunked, compressed, with provenance)"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._file = NativeFile(self.path)

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if not head.startswith(HDF5_MAGIC):
            return False
        with open_hdf5(path) as f:
            return bool(f.attrs.get("darktrigger_format") == FORMAT_TAG)

    def count(self) -> int:
        return len(self._file)

    def metadata(self) -> dict[str, Any]:
        return {"provenance": self._file.provenance, "columns": self._file.columns}

    def __iter__(self) -> Iterator[EventBatch]:
        yield from self.iter_rows(0, len(self._file))

    def iter_rows(self, start: int, stop: int) -> Iterator[EventBatch]:
        """Rows ``start:stop`` in batches of ``chunk_size`` (from ``start``), screened as a
        whole pass is: random access, so that a job can split a file into ranges (batches
        of rows 10-39, 40-69, 70-99 for ``iter_rows(10, 100)`` with ``chunk_size=30``)."""
        stop = min(stop, len(self._file))
        for a in range(start, stop, self.chunk_size):
            b = min(a + self.chunk_size, stop)
            try:
                batch = self._file.read(a, b)
            except InputFormatError as exc:  # an unreadable chunk (a truncated or corrupt file)
                if self.on_error == "fail":
                    raise
                self.skipped.add(f"rows {a}-{b - 1}", f"expected readable data, got {exc.got}", n=b - a)
                continue
            yield self.screen(batch, first_row=a)
