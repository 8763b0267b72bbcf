"""Framing shared by the in-sandbox agent and the worker's client.

Standard library only: this module runs inside arbitrary images (Python 3.8+).

A frame is an 8-byte header ``>II`` (meta length, body length), then ``meta`` as
UTF-8 JSON, then ``body`` as raw bytes. JSON carries the small structured part,
the body carries payloads (file contents, output chunks, tar streams) without
base64, so large transfers stay binary and cheap.

Every frame's meta has an ``id`` chosen by the client. One connection carries many
requests at once; replies may interleave.

client -> agent
    {"id", "op", "args"}        start a request (body: optional payload)
    {"id", "chunk": true}        more payload for a streaming request (body)
    {"id", "eof": true}          end of the payload stream
    {"id", "cancel": true}       abandon the request
agent -> client
    {"id", "event": name, ...}   a non-final event (body: e.g. an output chunk)
    {"id", "ok": true, "result"} final success (body: optional payload)
    {"id", "ok": false, "error": {"type", "message"}}   final failure
    {"id": 0, "event": name, ...}   a notice of the agent's own, to the worker (clients number from 1)
"""

import struct

try:  # the C half of json: importing json itself pulls in re and enum, ~7 ms per sandbox start
    import _json
except ImportError:  # pragma: no cover - Pythons without the accelerator
    _json = None

HEADER = struct.Struct(">II")
MAX_META = 16 << 20
MAX_BODY = 256 << 20
# Payload streams (uploads, downloads, output) are cut into chunks of this size.
CHUNK = 256 << 10
# The fields of an env's reset and step results, in gem's order. A batch reply over many envs
# has one list per field (``envhost/host.py``, ``Host.op_batch``); the SDK joins them back.
RESET_FIELDS = ("observation", "info")
STEP_FIELDS = ("observation", "reward", "terminated", "truncated", "info")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


class _DecodeContext:
    """What _json's scanner reads from a JSONDecoder, without importing json.decoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = {}

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


if _json is not None:
    _scan = _json.make_scanner(_DecodeContext())
    _encoder = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",", False, False, True)

    def dumps(obj):
        return "".join(_encoder(obj, 0))

    def loads(text):
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        try:
            obj, end = _scan(text, 0)
        except (StopIteration, SystemError, RecursionError):
            # The scanner reports most errors through json.decoder, which is not imported here
            # (it would cost every sandbox start): it then fails with a SystemError instead.
            # Every failure is a ValueError with json's own message, found only on this path.
            raise ValueError(_why_invalid(text)) from None
        if text[end:].strip():
            raise ValueError("extra data after JSON value")
        return obj

    def _why_invalid(text):
        import json

        try:
            json.loads(text)
        except RecursionError:
            return "invalid JSON: nested too deeply"
        except ValueError as exc:
            return "invalid JSON: %s" % exc
        return "invalid JSON"
else:  # pragma: no cover
    import json

    def dumps(obj):
        return json.dumps(obj, separators=(",", ":"))

    loads = json.loads


def encode(meta, body=b""):
    """One frame: the header (meta and body lengths), the meta as JSON, the body."""
    raw = dumps(meta).encode()
    return HEADER.pack(len(raw), len(body)) + raw + body if len(body) < 65536 else b"".join(
        (HEADER.pack(len(raw), len(body)), raw, body)
    )


def parse_header(header, offset=0):
    """The meta and body lengths of a frame header; ``ProtocolError`` past the limits."""
    meta_len, body_len = HEADER.unpack_from(header, offset)
    if meta_len > MAX_META or body_len > MAX_BODY:
        raise ProtocolError("frame too large: meta %d, body %d bytes" % (meta_len, body_len))
    return meta_len, body_len


def decode_meta(raw):
    try:
        meta = loads(raw)
    except ValueError as exc:
        raise ProtocolError("bad frame meta: %s" % exc)
    if not isinstance(meta, dict) or not isinstance(meta.get("id"), int):
        raise ProtocolError("frame meta must be an object with an integer id")
    return meta


class FrameReader:
    """Incremental decoder: feed bytes, get complete (meta, body) frames.

    Each frame's meta and body are sliced once out of what was received; only an incomplete
    tail is kept, in a growing buffer, until it holds the whole frame. A bad frame raises
    ProtocolError, which carries the good frames before it in ``frames``.
    """

    def __init__(self):
        self._rest = bytearray()
        self._need = 0  # bytes the kept tail must reach before it holds its next frame

    def missing(self):
        """Bytes the frame being received still lacks (0 between frames)."""
        return self._need - len(self._rest) if self._rest else 0

    def feed(self, data):
        """Take bytes read from the socket: the whole frames they complete, as (meta, body)."""
        if self._rest:
            self._rest += data
            if len(self._rest) < self._need:
                return []
            data, self._rest = bytes(self._rest), bytearray()
        elif not isinstance(data, bytes):
            data = bytes(data)
        frames = []
        pos, size, need = 0, len(data), 0
        try:
            while size - pos >= HEADER.size:
                meta_len, body_len = parse_header(data, pos)
                start = pos + HEADER.size
                end = start + meta_len + body_len
                if end > size:
                    need = end - pos
                    break
                frames.append((decode_meta(data[start : start + meta_len]), data[start + meta_len : end]))
                pos = end
        except ProtocolError as exc:
            exc.frames = frames
            raise
        if pos < size:
            self._rest = bytearray(data[pos:])
            self._need = need or HEADER.size
        return frames


def listen_unix(path, backlog, os_module):
    """A listening Unix socket at ``path`` (a stale one removed first), owner-only (umask 0177).
    Shared by the agent and the env host, which both bind again at the same path after a
    checkpoint; ``_socket``, not ``socket``: the wrapper pulls in enum and selectors (~5 ms at
    the agent's start-up). ``os_module``: the caller's (the agent's is ``fastos``)."""
    import _socket

    try:
        os_module.unlink(path)
    except FileNotFoundError:
        pass
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    old = os_module.umask(0o177)
    listener.bind(path)
    os_module.umask(old)
    listener.listen(backlog)
    return listener
