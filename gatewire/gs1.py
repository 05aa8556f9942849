"""GS1 barcodes and Digital Link URIs, on top of biip.

Internal helpers for :mod:`gatewire.identity`: each parser takes one input form, calls the
matching biip parser directly (not ``biip.parse``, which tries several interpretations),
checks biip's error fields, and returns a :class:`Gs1Item`. Failures raise
:class:`Gs1Error` with a one-line reason.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from biip import ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.rcn import Rcn
from biip.symbology import GS1Symbology, SymbologyIdentifier
from biip.upc import Upc

from gatewire.item import IdKind

__all__ = [
    "Gs1Error",
    "Gs1Item",
    "digital_link_uri",
    "parse_aim",
    "parse_bracketed",
    "parse_digital_link",
    "parse_element_string",
    "parse_gtin",
]

_DIGITAL_LINK_BASE: Final = "https://id.gs1.org"
_DIGITS_RE: Final = re.compile(r"[0-9]+")
# What biip (and the stdlib it calls, e.g. urlsplit) raises on bad input.
_LIBRARY_ERRORS: Final = (ParseError, ValueError, IndexError, KeyError, TypeError)


class Gs1Error(ValueError):
    """GS1 data that is not a valid item ID; ``str(exc)`` is a one-line reason."""


@dataclass(frozen=True, slots=True)
class Gs1Item:
    """The identity-relevant fields of one GS1 read."""

    gtin14: str
    company_prefix_length: int | None
    """From biip's GS1 prefix tables; None when unknown, for GTIN-8 and for RCNs."""
    serial: str | None
    batch: str | None
    expiry: dt.date | None
    kind: IdKind


def is_url(s: str) -> bool:
    """True if ``s`` starts with an http(s) scheme (case-insensitive)."""
    return s[:8].lower().startswith(("http://", "https://"))


def parse_aim(s: str) -> Gs1Item:
    """Parse a read prefixed with an AIM symbology identifier (``]C1``, ``]d2``, ``]E0`` …)."""
    try:
        si = SymbologyIdentifier.extract(s)
    except _LIBRARY_ERRORS as exc:
        raise Gs1Error(f"bad AIM symbology identifier in {s[:8]!r}") from exc
    body = s[len(si.value) :]
    if not body:
        raise Gs1Error(f"no data after symbology identifier {si.value}")
    sym = si.gs1_symbology
    if is_url(body):  # Digital Link, usually in a plain QR (]Q1) or DataMatrix (]d1)
        return parse_digital_link(body)
    if sym in GS1Symbology.with_gs1_messages():
        return parse_element_string(body)
    if sym in GS1Symbology.with_gtin():
        return _parse_ean_upc(body, sym)
    raise Gs1Error(f"symbology {si.value} ({si.iso_symbology.name}) carries no GS1 data")


def _parse_ean_upc(body: str, sym: GS1Symbology) -> Gs1Item:
    if not _DIGITS_RE.fullmatch(body):
        raise Gs1Error(f"EAN/UPC data {body[:40]!r} is not all digits")
    if sym == GS1Symbology.EAN_13 and len(body) == 8:
        # ]E0 with 8 digits is UPC-E (EAN-8 has its own ]E4): expand to UPC-A.
        try:
            body = Upc.parse(body).as_upc_a()
        except _LIBRARY_ERRORS as exc:
            raise Gs1Error(f"invalid UPC-E: {exc}") from exc
    elif sym == GS1Symbology.EAN_13_WITH_ADD_ON and len(body) in (15, 18):
        body = body[:13]  # the 2/5-digit add-on is not part of the GTIN
    return parse_gtin(body)


def parse_gtin(digits: str) -> Gs1Item:
    """Parse a plain GTIN-8/12/13/14 scan (a product, no serial)."""
    if not _DIGITS_RE.fullmatch(digits):
        raise Gs1Error(f"GTIN {digits[:40]!r} is not all digits")
    try:
        gtin = Gtin.parse(digits)
    except _LIBRARY_ERRORS as exc:
        raise Gs1Error(str(exc)) from exc
    return _item(gtin, None, None, None, IdKind.GTIN)


def parse_element_string(s: str) -> Gs1Item:
    """Parse a GS1 element string (AIs run together, GS after variable-length fields)."""
    try:
        message = GS1Message.parse(s)
    except _LIBRARY_ERRORS as exc:
        raise Gs1Error(f"bad GS1 element string: {exc}") from exc
    return _from_elements(message.element_strings, IdKind.GS1_ELEMENT_STRING)


def parse_bracketed(s: str) -> Gs1Item:
    """Parse the bracketed human-readable form, ``(01)…(21)…``."""
    try:
        message = GS1Message.parse_hri(s)
    except _LIBRARY_ERRORS as exc:
        raise Gs1Error(f"bad bracketed GS1 string: {exc}") from exc
    return _from_elements(message.element_strings, IdKind.GS1_BRACKETED)


def parse_digital_link(s: str) -> Gs1Item:
    """Parse a GS1 Digital Link URI on any domain (``…/01/{gtin}[/10/…][/21/…]?17=…``)."""
    try:
        uri = GS1DigitalLinkURI.parse(s)
    except _LIBRARY_ERRORS as exc:
        raise Gs1Error(f"bad GS1 Digital Link: {exc}") from exc
    return _from_elements(uri.element_strings, IdKind.GS1_DIGITAL_LINK)


def _from_elements(elements: list[GS1ElementString], kind: IdKind) -> Gs1Item:
    by_ai: dict[str, GS1ElementString] = {}
    for el in elements:
        # biip reports a bad check digit in these fields instead of raising.
        for err in (el.gtin_error, el.sscc_error, el.gln_error):
            if err:
                raise Gs1Error(f"AI ({el.ai.ai}): {err}")
        seen = by_ai.setdefault(el.ai.ai, el)
        if seen.value != el.value:
            raise Gs1Error(
                f"conflicting values for AI ({el.ai.ai}): {seen.value!r} and {el.value!r}"
            )
    gtin_el = by_ai.get("01")
    if gtin_el is None or gtin_el.gtin is None:
        if "00" in by_ai:
            raise Gs1Error("SSCC (00) names a logistic unit, not an item (GTIN (01) required)")
        if "02" in by_ai:
            raise Gs1Error("(02) names contents of a logistic unit (GTIN (01) required)")
        found = ", ".join(f"({ai})" for ai in by_ai) or "none"
        raise Gs1Error(f"no GTIN (01) in GS1 data (AIs found: {found}); not an item ID")
    serial = by_ai["21"].value if "21" in by_ai else None
    batch = by_ai["10"].value if "10" in by_ai else None
    expiry = by_ai["17"].date if "17" in by_ai else None
    return _item(gtin_el.gtin, serial, batch, expiry, kind)


def _item(
    gtin: Gtin, serial: str | None, batch: str | None, expiry: dt.date | None, kind: IdKind
) -> Gs1Item:
    # RCNs (restricted circulation, prefixes 02/04/2x) are not globally unique: no EPC.
    prefix = None if isinstance(gtin, Rcn) else gtin.company_prefix
    return Gs1Item(
        gtin14=gtin.as_gtin_14(),
        company_prefix_length=None if prefix is None else len(prefix.value),
        serial=serial,
        batch=batch,
        expiry=expiry,
        kind=kind,
    )


def digital_link_uri(
    gtin14: str, serial: str | None, batch: str | None = None, expiry: dt.date | None = None
) -> str:
    """Canonical GS1 Digital Link on id.gs1.org: ``/01/{gtin}[/10/{lot}][/21/{ser}][?17=…]``.

    Same layout and escaping as biip's ``GS1DigitalLinkURI.as_canonical_uri()``.
    """
    uri = f"{_DIGITAL_LINK_BASE}/01/{gtin14}"
    if batch is not None:
        uri += f"/10/{quote(batch, safe='')}"
    if serial is not None:
        uri += f"/21/{quote(serial, safe='')}"
    if expiry is not None:
        uri += f"?17={expiry:%y%m%d}"
    return uri
