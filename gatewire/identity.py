"""Normalise every way an item ID reaches a gate to one :class:`CanonicalItemId`.

Accepted forms (see ``docs/identity.md``): GS1 element strings with or without an AIM
symbology identifier, bracketed HRI, GS1 Digital Link URIs, EPC pure-identity URIs,
SGTIN-96/198 tag hex, and plain GTIN-8/12/13/14 scans. Parsing is done by biip (GS1) and
epcpy (EPC); this module picks the one interpretation that fits the input's shape, checks
the libraries' error fields, and never lets an exception escape for bad input.

The commonest reads (GS1 strings of AIs 01/10/17/21 and SGTIN-96 tags) first go through
:mod:`gatewire.gs1_fast`, which gives exactly the library result in a few microseconds
and defers everything else, invalid input included, to the library path (``_parse_slow``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from pydantic import ValidationError

from gatewire import gs1, gs1_fast
from gatewire.epc import (
    EPC_HEX_HEADERS,
    EpcError,
    SgtinParts,
    decode_epc_uri,
    decode_sgtin_hex,
    sgtin_uri,
)
from gatewire.gs1 import Gs1Error, Gs1Item, digital_link_uri
from gatewire.item import CanonicalItemId, IdKind

__all__ = [
    "MAX_INPUT_CHARS",
    "ParseOutcome",
    "clear_parse_cache",
    "digital_link_uri",
    "parse_epc_hex",
    "parse_item_id",
]

MAX_INPUT_CHARS: Final = 2048
"""Longer input is rejected unparsed (no barcode or tag carries an item ID this long)."""

_CACHE_SIZE: Final = 256  # small: a 4,096-entry LRU cost ~2.5 µs on every new read
# Text that looks like EPC tag memory: all hex, an EPC header byte, and a hex letter or
# the exact SGTIN-96 (24) / SGTIN-198 (52) length.
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]{2,}")
_EPC_HEX_LENGTHS: Final = (24, 52)
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_MAX_ERROR_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    """Result of parsing one read: the canonical item, or a one-line reason it is invalid."""

    item: CanonicalItemId | None
    error: str | None
    """One line saying what is wrong; None when ok."""
    raw: str
    """The input exactly as given."""

    @property
    def ok(self) -> bool:
        """True when ``item`` holds a valid canonical ID."""
        return self.item is not None


class _InvalidIdError(ValueError):
    """Internal: a one-line reason the input is not an item ID."""


def parse_item_id(text: str) -> ParseOutcome:
    """Parse any supported item ID form; never raises for bad input.

    Recent results are cached by raw text (scanners and readers repeat codes).
    """
    if not isinstance(text, str):
        return ParseOutcome(None, f"expected text, got {type(text).__name__}", repr(text)[:100])
    if len(text) > MAX_INPUT_CHARS:
        return ParseOutcome(None, f"input too long ({len(text)} > {MAX_INPUT_CHARS} chars)", text)
    return _parse_item_id_cached(text)


def parse_epc_hex(hex_text: str) -> ParseOutcome:
    """Parse SGTIN-96 / SGTIN-198 EPC memory read from an RFID tag, as hex; never raises."""
    if not isinstance(hex_text, str):
        return ParseOutcome(
            None, f"expected text, got {type(hex_text).__name__}", repr(hex_text)[:100]
        )
    if len(hex_text) > MAX_INPUT_CHARS:
        return ParseOutcome(
            None, f"input too long ({len(hex_text)} > {MAX_INPUT_CHARS} chars)", hex_text
        )
    return _parse_epc_hex_cached(hex_text)


def clear_parse_cache() -> None:
    """Drop cached results (for benchmarks and tests)."""
    _parse_item_id_cached.cache_clear()
    _parse_epc_hex_cached.cache_clear()


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_item_id_cached(text: str) -> ParseOutcome:
    try:
        item = gs1_fast.parse_gs1_fast(text)
    except Exception:  # a fast-path bug must not cost a read: the library path decides
        item = None
    if item is not None:
        return ParseOutcome(item, None, text)
    return _parse_slow(text)


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_epc_hex_cached(text: str) -> ParseOutcome:
    try:
        item = gs1_fast.parse_sgtin96_hex_fast(text)
    except Exception:  # as above
        item = None
    if item is not None:
        return ParseOutcome(item, None, text)
    return _parse_epc_hex_slow(text)


def _parse_slow(text: str) -> ParseOutcome:
    """``parse_item_id`` through biip and epcpy only; the fast path must agree with it."""
    return _guarded(text, _dispatch)


def _parse_epc_hex_slow(text: str) -> ParseOutcome:
    """``parse_epc_hex`` through epcpy only; the fast path must agree with it."""
    return _guarded(text, lambda t: _from_sgtin(decode_sgtin_hex(t), IdKind.EPC_HEX))


def _guarded(text: str, parse: Callable[[str], CanonicalItemId]) -> ParseOutcome:
    try:
        return ParseOutcome(parse(text), None, text)
    except (_InvalidIdError, EpcError, Gs1Error) as exc:
        return ParseOutcome(None, _one_line(str(exc)), text)
    except ValidationError as exc:
        return ParseOutcome(
            None, _one_line(f"invalid canonical ID: {exc.errors()[0]['msg']}"), text
        )
    except Exception as exc:  # last line of defence: a bad read must never crash a gate
        return ParseOutcome(
            None, _one_line(f"internal error parsing ID: {type(exc).__name__}: {exc}"), text
        )


def _one_line(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= _MAX_ERROR_CHARS else line[: _MAX_ERROR_CHARS - 1] + "…"


# --- dispatch on the shape of the input --------------------------------------------------


def _dispatch(text: str) -> CanonicalItemId:
    s = text.strip()  # also drops a leading/trailing GS (0x1D counts as whitespace)
    if not s:
        raise _InvalidIdError("empty input")
    if not s.isascii():
        raise _InvalidIdError("non-ASCII characters in input (item IDs are ASCII)")
    if s.startswith("]"):
        return _from_gs1(gs1.parse_aim(s))
    if gs1.is_url(s):
        return _from_gs1(gs1.parse_digital_link(s))
    if s[:8].lower().startswith("urn:epc:"):
        return _from_sgtin(decode_epc_uri(s), IdKind.EPC_URI)
    if s.startswith("("):
        return _from_gs1(gs1.parse_bracketed(s))
    if _looks_like_epc_hex(s):
        return _parse_hex_shaped(s)
    if _DIGITS_RE.fullmatch(s) and len(s) in (8, 12, 13, 14):
        return _from_gs1(gs1.parse_gtin(s))  # a 14-digit GTIN stays a GTIN
    if s[:2].isdigit():
        return _from_gs1(gs1.parse_element_string(s))
    raise _InvalidIdError(
        f"unrecognised ID {s[:40]!r}: not a GS1 element string, bracketed GS1 string, "
        "Digital Link, EPC URI, EPC hex or GTIN"
    )


def _looks_like_epc_hex(s: str) -> bool:
    """All hex, an EPC header byte, and a hex letter or the SGTIN-96/198 length."""
    return (
        _HEX_RE.fullmatch(s) is not None
        and s[:2].upper() in EPC_HEX_HEADERS
        and (len(s) in _EPC_HEX_LENGTHS or not s.isdigit())
    )


def _parse_hex_shaped(s: str) -> CanonicalItemId:
    """Text shaped like EPC tag hex: accept it only if it is not also a valid GS1 string.

    A GS1 element string can be all hex (say a 52-digit ``36nn…(01)…(17)…(21)…``), so
    both readings are tried and a text valid as both is rejected as ambiguous; RFID
    drivers call :func:`parse_epc_hex`, which has no such ambiguity.
    """
    as_epc: CanonicalItemId | None = None
    as_gs1: CanonicalItemId | None = None
    epc_error = ""
    try:
        as_epc = _from_sgtin(decode_sgtin_hex(s), IdKind.EPC_HEX)
    except EpcError as exc:
        epc_error = str(exc)
    with contextlib.suppress(Gs1Error):
        as_gs1 = _from_gs1(gs1.parse_element_string(s))
    if as_epc is not None and as_gs1 is not None:
        raise _InvalidIdError(
            "ambiguous: valid both as EPC hex and as a GS1 element string "
            "(use parse_epc_hex for tag reads, or add an AIM prefix such as ]C1)"
        )
    if as_epc is not None:
        return as_epc
    if as_gs1 is not None:
        return as_gs1
    raise _InvalidIdError(epc_error)


# --- building the canonical ID -----------------------------------------------------------


def _from_gs1(item: Gs1Item) -> CanonicalItemId:
    # GS1 data does not carry the company prefix length; biip's prefix tables supply it
    # when they know it, otherwise the EPC URI cannot be named and is left None.
    epc_uri = None
    if item.serial is not None:
        epc_uri = sgtin_uri(item.gtin14, item.serial, item.company_prefix_length)
    return _model(item.gtin14, item.serial, item.batch, item.expiry, epc_uri, item.kind)


def _from_sgtin(parts: SgtinParts, kind: IdKind) -> CanonicalItemId:
    # The EPC carries its own company prefix length, so its URI is authoritative.
    return _model(parts.gtin, parts.serial, None, None, parts.epc_uri, kind)


def _model(
    gtin14: str,
    serial: str | None,
    batch: str | None,
    expiry: dt.date | None,
    epc_uri: str | None,
    kind: IdKind,
) -> CanonicalItemId:
    return CanonicalItemId(
        gtin=gtin14,
        serial=serial,
        batch=batch,
        expiry=expiry,
        epc_uri=epc_uri,
        digital_link=digital_link_uri(gtin14, serial, batch, expiry),
        kind=kind,
    )
