"""How the env host encodes what env code returns, and the few shims env packages need offline.

A sibling of ``host.py``, loaded by path the same way (see ``host._sibling``); runs in the env
host, with site-packages (orjson is used when the env's python has it).
"""

import functools
import json
import sys


def jsonable(value):
    """json.dumps fallback: numpy scalars/arrays, tuples of them, anything else as its str."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_encode = json.JSONEncoder(default=jsonable, separators=(",", ":")).encode  # made once: json.dumps makes one a call

try:  # optional, when the env's python has it: encodes a batch's text ~6x faster than json
    import orjson

    _fast_encode = functools.partial(orjson.dumps, default=jsonable,
                                     option=orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME)
except ImportError:
    _fast_encode = None


def dumps(obj):
    """JSON text of ``obj``: the fast encoder where it can, else the standard library (NaN and big ints
    kept as JSON writes them)."""
    if _fast_encode is not None:
        try:
            data = _fast_encode(obj)
        except TypeError:  # non-str keys, huge ints, lone surrogates: json's rules apply
            pass
        else:
            # orjson writes NaN and Infinity as null, where json keeps them (the SDK reads both):
            # with any null in it, the batch is encoded again by json, which is exact.
            if b"null" not in data:
                return data
    return _encode(obj).encode()


def offline_nltk():
    """gem's word games call nltk.download('words') in their constructors. There is no network
    at run time: answer from the local data (NLTK_DATA) instead of trying the internet."""
    nltk = sys.modules.get("nltk")
    if nltk is None or getattr(nltk.download, "_rock_offline", False):
        return

    def download(info_or_id=None, *args, **kwargs):
        for kind in ("corpora", "tokenizers", "taggers", "models", "misc"):
            try:
                nltk.data.find("%s/%s" % (kind, info_or_id))
                return True
            except LookupError:
                continue
        return False

    download._rock_offline = True
    nltk.download = download


def columns(rows, fields, errors):
    """Tuples of ``fields`` (None for a failed row) as one list per field, plus the errors."""
    if errors:
        blank = (None,) * len(fields)
        rows = [blank if row is None else row for row in rows]
    cols = dict(zip(fields, map(list, zip(*rows)))) if rows else {f: [] for f in fields}
    if errors:
        cols["errors"] = errors
    return cols
