"""The wire format: round trips without copies, and garbage always a WireError."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq

from darktrigger.daq.wire import WireError, decode, decode_batch, encode, encode_batch
from darktrigger.replay.testing import random_batch


def test_batch_round_trip_over_a_socket_without_copies() -> None:
    batch = random_batch(5000, seed=1).with_columns(**{"score/ae": np.arange(5000, dtype=np.float32)})
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    try:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        push.send_multipart(encode_batch("batch", 4, 17, batch, meta={"t_emit": 1.5}), copy=False)
        assert pull.poll(5000)
        frames = pull.recv_multipart(copy=False)
        msg, got = decode_batch(frames)
    finally:
        pull.close(linger=0)
        push.close(linger=0)
        ctx.term()
    assert (msg.kind, msg.run, msg.seq, msg.count, msg.meta) == ("batch", 4, 17, 5000, {"t_emit": 1.5})
    assert set(got.columns) == set(batch.columns)
    for name, arr in batch.columns.items():
        assert got.columns[name].dtype == arr.dtype
        np.testing.assert_array_equal(got.columns[name], arr)
    # views on the received frame, not copies
    assert not got.columns["objects"].flags.owndata
    assert got.columns["objects"].base is not None


def _garbage(rng: np.random.Generator, good: list[bytes]) -> list[bytes]:
    kind = rng.integers(0, 7)
    if kind == 0:  # random bytes
        return [rng.bytes(int(rng.integers(0, 64)))]
    if kind == 1:  # a valid message with a byte flipped in the header
        head = bytearray(good[0])
        head[int(rng.integers(0, len(head)))] ^= int(rng.integers(1, 256))
        return [bytes(head), *good[1:]]
    if kind == 2:  # frames missing or extra
        return good[: int(rng.integers(0, len(good)))] + ([b"x"] if rng.random() < 0.5 else [])
    if kind == 3:  # a column buffer cut short
        cut = int(rng.integers(1, len(good)))
        return [*good[:cut], good[cut][:-4], *good[cut + 1:]]
    if kind == 4:  # header of the wrong type or with bad fields
        choices: list[object] = [[1, 2, 3], {"v": 2}, {"v": 1, "kind": "pickle"}, "text",
                          {"v": 1, "kind": "batch", "run": -1, "seq": 0, "count": 0, "columns": []},
                          {"v": 1, "kind": "batch", "run": 0, "seq": 0, "count": 1,
                           "columns": [["x", "|O", [1]]]}]
        return [msgpack.packb(choices[int(rng.integers(0, len(choices)))]), *good[1:]]
    if kind == 5:  # a shape that does not fit the buffer
        head = msgpack.unpackb(good[0])
        head["columns"][0][2] = [int(rng.integers(0, 100)), 19, 3]
        return [msgpack.packb(head), *good[1:]]
    return [b""]


def test_ten_thousand_garbled_messages_are_each_a_wire_error() -> None:
    rng = np.random.default_rng(0)
    good = [np.ascontiguousarray(f).tobytes() if not isinstance(f, bytes) else f
            for f in encode_batch("batch", 1, 2, random_batch(10, seed=2))]
    decode(good)  # the unmodified message is fine
    errors = 0
    for _ in range(10_000):
        frames = _garbage(rng, good)
        try:
            decode_batch(frames)
        except WireError:
            errors += 1
    # a flipped byte can land in a string and leave a valid message: nearly all are errors
    assert errors >= 9_500


def test_messages_name_what_is_wrong() -> None:
    frames = encode("batch", run=1, seq=2, columns={"x": np.zeros(4, np.float32)})
    with pytest.raises(WireError, match="1 column.* but 0 buffer"):
        decode(frames[:1])
    with pytest.raises(WireError, match="needs 16 bytes, the frame has 12"):
        decode([frames[0], b"\0" * 12])
    with pytest.raises(WireError, match="unknown kind 'pickle'"):
        decode([msgpack.packb({"v": 1, "kind": "pickle"})])
    with pytest.raises(WireError, match="dtype '|O' is not allowed"):
        decode([msgpack.packb({"v": 1, "kind": "batch", "run": 0, "seq": 0, "count": 1,
                               "columns": [["x", "|O", [1]]]}), b"\0" * 8])


@pytest.mark.parametrize("shape", [[2**32, 2**32], [2**62, 4], [2**21, 2**21, 2**21]])
def test_a_shape_whose_size_overflows_int64_is_a_wire_error(shape: list[int]) -> None:
    """Sizes are Python integers: a shape whose byte count wraps to 0 in int64 is not an empty
    frame (issue 17: it used to pass and make reshape raise a ValueError)."""
    head = msgpack.packb({"v": 1, "kind": "batch", "run": 1, "seq": 0, "count": 0,
                          "columns": [["x", "<f4", shape]], "meta": {}})
    needed = 4 * int(np.prod(np.array(shape, dtype=object)))
    with pytest.raises(WireError, match=f"needs {needed} bytes, the frame has 0"):
        decode([head, b""])
