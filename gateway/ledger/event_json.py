"""The JSON text an event is stored as: compact, UTF-8, no NaN or infinities.

orjson writes it (about a fifth of the standard library's time for a gate event; the
ledger encodes every appended event) when the event holds plain JSON values only. For
anything else — NaN and ±Infinity (orjson writes ``null``), integers beyond 64 bits,
keys that are not strings, nesting deeper than 254, subclasses of dict, list, str, int or
float (orjson reads a dict's storage, not its ``items()``) — the standard library's
strict encoder decides: it refuses NaN and writes the rest. Either way the text is what
``json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)``
accepts and means; floats may be spelt differently (``1e16`` for ``1e+16``), the same
numbers when read back. orjson also writes tuples, enums and UUIDs where the standard
library refuses the last two; the CBV event hash refuses all three, so with it such an
event is never appended.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any, Final

import orjson

__all__ = ["encode_event"]

#: Left to the standard library's encoder: datetimes and dataclasses (it refuses them),
#: subclasses of the JSON types (it writes what their methods say).
_ORJSON_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)

# Built once: json.dumps with options builds a new encoder on every call.
_EVENT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _one_shot_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode`` without its per-call set-up (same bytes out).

    ``JSONEncoder.encode`` builds a new C encoder object on every call, which costs about
    as much as encoding a small event; this builds it once. Without circular-reference
    markers a self-containing object raises RecursionError instead of ValueError (the
    callers treat both alike). Falls back to ``encoder.encode`` without the C accelerator.
    """
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has _json
        return encoder.encode
    fast = make(
        None,
        encoder.default,
        json.encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    join = "".join

    def encode(obj: Any) -> str:
        if isinstance(obj, str):  # what JSONEncoder.encode special-cases
            return encoder.encode(obj)
        return join(fast(obj, 0))

    return encode


_strict_encode = _one_shot_encoder(_EVENT_JSON)


def encode_event(event: Any) -> tuple[str, bool]:
    """``event`` as compact JSON text, and whether it held plain JSON values only (then
    reading the text back gives an object equal to ``event``; otherwise what is read back
    is what the ledger stores and audits). TypeError, ValueError or RecursionError if it
    is not JSON (a set, NaN, an object containing itself…)."""
    try:
        text = orjson.dumps(event, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:  # big ints, non-string keys, deep nesting, lone surrogates…
        return _strict(event), False
    if b"null" in text:  # NaN and ±Infinity come out as null: the strict encoder judges
        return _strict(event), True
    return text.decode(), True


def _strict(event: Any) -> str:
    """The strict encoder's text of ``event``; ValueError if it is not Unicode text (a lone
    surrogate, which no UTF-8 database column takes and orjson refuses)."""
    text = _strict_encode(event)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            char = ord(exc.object[exc.start])
            raise ValueError(f"it holds a lone surrogate (U+{char:04X}): not Unicode") from None
    return text
