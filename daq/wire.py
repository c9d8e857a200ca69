"""The wire format: one ZeroMQ multipart message per batch, no pickle.

Frame 0 is a msgpack map (the header); frames 1..k are the columns' raw C-contiguous
buffers, in the order the header lists them::

    {"v": 1, "kind": "batch", "run": 1, "seq": 17, "count": 4096,
     "columns": [["objects", "<f4", [4096, 19, 3]], ["run", "<u4", [4096]], ...],
     "meta": {"t_emit": 1764000000.25}}

Decoding checks everything before it trusts it (the header is a map with the right
types, the schema version is known, every dtype is a plain little-endian number, the
buffer sizes match the shapes) and raises :class:`WireError` naming what is wrong, so a
stage can count the message, log it and go on. Received buffers are not copied: the
arrays are views on the ZeroMQ frames (``recv_multipart(copy=False)``).

    >>> import numpy as np
    >>> frames = encode("batch", run=1, seq=3, columns={"x": np.arange(4, dtype=np.float32)})
    >>> msg = decode(frames)
    >>> msg.kind, msg.run, msg.seq, msg.count, msg.columns["x"].tolist()
    ('batch', 1, 3, 4, [0.0, 1.0, 2.0, 3.0])
    >>> decode([frames[0], b""])  # a header that promises more than the frames hold
    Traceback (most recent call last):
    ...
    darktrigger.daq.wire.WireError: column 'x': shape (4,) of float32 needs 16 bytes, the frame has 0
    >>> decode([b"garbage"])
    Traceback (most recent call last):
    ...
    darktrigger.daq.wire.WireError: header frame: expected a msgpack map, got bytes that do not parse (ExtraData)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from darktrigger.replay.errors import DarkTriggerError
from darktrigger.replay.events import EventBatch

WIRE_VERSION = 1
#: Message kinds: data flows as ``batch`` (source → workers → trigger) and
#: ``decided`` (trigger → recorder); the rest is control.
KINDS = frozenset({"batch", "decided", "ready", "heartbeat", "ack", "end", "stop", "stats"})
#: dtypes a column may have on the wire: plain numbers, never objects.
ALLOWED_DTYPES = frozenset(np.dtype(t).str for t in (
    np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64, np.bool_))
MAX_COLUMNS = 256
MAX_DIMS = 4
#: The largest frame any stage accepts (ZeroMQ's ``MAXMSGSIZE`` on receiving sockets, and
#: :func:`decode`'s bound on a shape's size): a batch's column needs at most this per event.
MAX_BYTES_PER_EVENT = 4096
#: ... plus this much, for the header and small batches.
FRAME_SLACK_BYTES = 1 << 20


def max_frame_bytes(batch_size: int) -> int:
    """The largest frame a stage of a run with batches of ``batch_size`` events accepts.

        >>> max_frame_bytes(8192)
        34603008
    """
    return batch_size * MAX_BYTES_PER_EVENT + FRAME_SLACK_BYTES


class WireError(DarkTriggerError, ValueError):
    """A message that does not follow the wire format; the stage counts and drops it."""


@dataclass
class Message:
    """A decoded message: header fields, columns (views on the received frames), meta."""

    kind: str
    run: int = 0
    seq: int = 0
    count: int = 0
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def batch(self, prefix: str = "") -> EventBatch:
        """The columns (those starting with ``prefix``, prefix removed) as an EventBatch."""
        cols = {k[len(prefix):]: v for k, v in self.columns.items() if k.startswith(prefix)}
        return EventBatch(cols)


def encode(kind: str, *, run: int = 0, seq: int = 0, columns: Mapping[str, np.ndarray] | None = None,
           meta: Mapping[str, Any] | None = None, count: int | None = None) -> list[Any]:
    """The frames of one message: the header, then each column's buffer (not copied
    when already C-contiguous; send with ``copy=False``)."""
    if kind not in KINDS:
        raise WireError(f"unknown message kind {kind!r}; expected one of {sorted(KINDS)}")
    cols = columns or {}
    specs = []
    buffers: list[Any] = []
    for name, arr in cols.items():
        arr = np.ascontiguousarray(arr)
        specs.append([name, arr.dtype.str, list(arr.shape)])
        buffers.append(arr)
    if count is None:
        count = len(next(iter(cols.values()))) if cols else 0
    header = {"v": WIRE_VERSION, "kind": kind, "run": int(run), "seq": int(seq), "count": int(count),
              "columns": specs, "meta": dict(meta or {})}
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def encode_batch(kind: str, run: int, seq: int, batch: EventBatch,
                 meta: Mapping[str, Any] | None = None) -> list[Any]:
    """:func:`encode` of an EventBatch's columns."""
    return encode(kind, run=run, seq=seq, columns=batch.columns, meta=meta, count=len(batch))


def _buffer(frame: Any) -> memoryview:
    if isinstance(frame, zmq.Frame):
        return frame.buffer  # its memory, no copy
    return memoryview(frame)  # bytes, or what encode() made (arrays): a message sent in-process


def _header(frame: Any) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(_buffer(frame), raw=False, strict_map_key=True,
                                 max_str_len=1 << 16, max_bin_len=0, max_array_len=1 << 12,
                                 max_map_len=1 << 10, max_ext_len=0)
    except Exception as exc:  # msgpack raises several types for garbage
        raise WireError(f"header frame: expected a msgpack map, got bytes that do not parse "
                        f"({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise WireError(f"header frame: expected a msgpack map, got {type(header).__name__}")
    if header.get("v") != WIRE_VERSION:
        raise WireError(f"header: expected wire version {WIRE_VERSION}, got {header.get('v')!r}")
    if header.get("kind") not in KINDS:
        raise WireError(f"header: unknown kind {header.get('kind')!r}; expected one of {sorted(KINDS)}")
    for key in ("run", "seq", "count"):
        value = header.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise WireError(f"header: {key!r} must be an integer >= 0, got {value!r}")
    if not isinstance(header.get("columns"), list) or len(header["columns"]) > MAX_COLUMNS:
        raise WireError(f"header: 'columns' must be a list of at most {MAX_COLUMNS} [name, dtype, shape]")
    if not isinstance(header.get("meta", {}), dict):
        raise WireError("header: 'meta' must be a map")
    return header


def peek_kind(frames: Sequence[Any]) -> str | None:
    """The kind a message's header names, if the header parses; None if it does not."""
    try:
        return str(_header(frames[0])["kind"]) if frames else None
    except WireError:
        return None


def decode(frames: Sequence[Any]) -> Message:
    """Parse one message (frames as bytes or ``zmq.Frame``), or raise :class:`WireError`."""
    if not frames:
        raise WireError("empty message: expected a header frame")
    header = _header(frames[0])
    specs = header["columns"]
    if len(frames) != 1 + len(specs):
        raise WireError(f"{header['kind']} message: header lists {len(specs)} column(s) but "
                        f"{len(frames) - 1} buffer frame(s) arrived")
    columns: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[1:], strict=True):
        if (not isinstance(spec, list) or len(spec) != 3 or not isinstance(spec[0], str)
                or not isinstance(spec[1], str) or not isinstance(spec[2], list)):
            raise WireError(f"header: column spec must be [name, dtype, shape], got {spec!r}")
        name, dtype_str, shape = spec
        if dtype_str not in ALLOWED_DTYPES:
            raise WireError(f"column {name!r}: dtype {dtype_str!r} is not allowed; expected one of "
                            f"{sorted(ALLOWED_DTYPES)}")
        if (len(shape) == 0 or len(shape) > MAX_DIMS
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise WireError(f"column {name!r}: bad shape {shape!r}")
        if name in columns:
            raise WireError(f"column {name!r} appears twice")
        dtype = np.dtype(dtype_str)
        buf = _buffer(frame)
        expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow, whatever the shape
        if buf.nbytes != expected:
            raise WireError(f"column {name!r}: shape {tuple(shape)} of {dtype} needs {expected} bytes, "
                            f"the frame has {buf.nbytes}")
        columns[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return Message(kind=header["kind"], run=header["run"], seq=header["seq"], count=header["count"],
                   columns=columns, meta=header.get("meta", {}))


def decode_batch(frames: Sequence[Any], prefix: str = "") -> tuple[Message, EventBatch]:
    """Decode a data message and build its EventBatch; a schema problem is a WireError."""
    msg = decode(frames)
    try:
        batch = msg.batch(prefix)
    except DarkTriggerError as exc:
        raise WireError(f"{msg.kind} run {msg.run} seq {msg.seq}: {exc}") from None
    if len(batch) != msg.count:
        raise WireError(f"{msg.kind} run {msg.run} seq {msg.seq}: header says {msg.count} events, "
                        f"the columns hold {len(batch)}")
    return msg, batch
