"""What a client may send comes back encodable: an integer past 64 bits (orjson refuses it, JSON
allows it) was a 500 on /gem/register under Schemathesis; a lone surrogate the same."""

from __future__ import annotations

import json

from rock.jsonutil import dumps


def test_big_integers_and_lone_surrogates_encode():
    value = {"kwargs": {"n": 2**70, "m": -(2**64)}, "name": "\udc80x", "plain": "é"}
    assert json.loads(dumps(value)) == value
    assert dumps({"a": 1}) == b'{"a":1}'
