"""The agent's framing, fed the way sockets deliver it: frames split anywhere, several per read."""

import pytest

from rock.agent import protocol


def _stream():
    return b"".join(protocol.encode({"id": i, "n": "m" * i}, b"b" * (i * 997)) for i in range(1, 40))


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096, 65536, 10**7])
def test_frames_come_back_whole_and_in_order_whatever_the_read_sizes(chunk):
    stream, reader, frames = _stream(), protocol.FrameReader(), []
    for i in range(0, len(stream), chunk):
        frames += reader.feed(stream[i:i + chunk])
    assert [(m["id"], m["n"], b) for m, b in frames] == [(i, "m" * i, b"b" * (i * 997)) for i in range(1, 40)]
    assert all(type(body) is bytes for _, body in frames)
    assert reader.feed(b"") == []


def test_a_bad_frame_raises_and_carries_the_good_frames_before_it():
    oversized = protocol.HEADER.pack(protocol.MAX_META + 1, 0)
    with pytest.raises(protocol.ProtocolError, match="frame too large") as caught:
        protocol.FrameReader().feed(protocol.encode({"id": 1}) + protocol.encode({"id": 2}, b"x") + oversized)
    assert [(m["id"], b) for m, b in caught.value.frames] == [(1, b""), (2, b"x")]
    with pytest.raises(protocol.ProtocolError, match="integer id"):
        protocol.FrameReader().feed(protocol.encode({"id": "one"}))
