"""The bytes both E2B planes answer with: a JSON body, and Connect's envelope
(``[flags u8][len u32 BE][json]``; flags 2 marks the end of a stream). What is said with them is
``connect.py``'s (RPCs) and ``errors.py``'s (failures)."""

from __future__ import annotations

import json
import struct

from starlette.responses import Response

from rock.jsonutil import dumps

END_STREAM = 0x02


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(obj), status_code=status, media_type="application/json", headers=headers)


def envelope(obj, flags: int = 0) -> bytes:
    data = dumps(obj)
    return struct.pack(">BI", flags, len(data)) + data
