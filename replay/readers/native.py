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
        n = len(self._file)
        for start in range(0, n, self.chunk_size):
            stop = min(start + self.chunk_size, n)
            try:
                batch = self._file.read(start, stop)
            except InputFormatError as exc:  # an unreadable chunk (a truncated or corrupt file)
                if self.on_error == "fail":
                    raise
                self.skipped.add(f"rows {start}-{stop - 1}", f"expected readable data, got {exc.got}",
                                 n=stop - start)
                continue
            yield self.screen(batch, first_row=start)
