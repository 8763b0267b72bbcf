"""The agent's framing, fed the way sockets deliver it: frames split anywhere, several per read."""

import asyncio

import pytest

from rock.agent import protocol
from rock.worker.agent_client import AgentClient


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


async def _run_frame(tmp_path, **run) -> bytes:
    """The raw meta of the frame ``AgentClient.run`` writes, read by a scripted agent on a real Unix
    socket that answers it."""
    seen: list[bytes] = []

    async def agent(reader, writer):
        header = await reader.readexactly(protocol.HEADER.size)
        meta_len, body_len = protocol.parse_header(header)
        raw = await reader.readexactly(meta_len + body_len)
        seen.append(raw[:meta_len])
        rid = protocol.loads(raw[:meta_len])["id"]
        writer.write(protocol.encode({"id": rid, "ok": True, "result": {"output": "hi\n", "exit_code": 0,
                                                                        "status": "completed"}}))
        await writer.drain()

    path = str(tmp_path / "agent.sock")
    server = await asyncio.start_unix_server(agent, path)
    client = await AgentClient.connect(path)
    try:
        result = await client.run("s", run.pop("command", "echo hi"), **run)
        assert result.output == "hi\n" and result.exit_code == 0
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    return seen[0]


async def test_run_frames_mean_what_the_protocol_encoder_writes(tmp_path):
    """The fast encoder of a command's frame writes the same JSON values as the protocol's own, and
    leaves to it what it would write otherwise: an infinite timeout is Infinity (not null, which
    would mean none), a lone surrogate is escaped."""
    raw = await _run_frame(tmp_path, timeout=2.5, max_output=10)
    assert protocol.loads(raw)["args"] == {"session": "s", "command": "echo hi", "timeout": 2.5, "idle_timeout": None,
                                           "max_output": 10, "stream": False}
    assert b"Infinity" in await _run_frame(tmp_path, timeout=float("inf"))
    assert protocol.loads(await _run_frame(tmp_path, command="echo \ud800"))["args"]["command"] == "echo \ud800"
