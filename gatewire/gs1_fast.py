"""Fast path for the common scanner line and RFID tag read, exactly equivalent to the slow path.

Almost every read at a gate is a GS1 element string made of AIs 01 (GTIN), 17 (expiry),
10 (batch) and 21 (serial), or an SGTIN-96 tag. Parsing those through biip and epcpy costs
70-280 µs, mostly in generic machinery; this module handles exactly those shapes in a few
microseconds and returns ``None`` ("defer") for everything else, including every input that
is invalid: the library path in :mod:`gatewire.identity` then decides, so results and error
messages for anything unusual stay the libraries'.

Covered (anything else defers):

* GS1 element strings, with no AIM symbology identifier or with ``]C1`` ``]d2`` ``]Q3``
  ``]e0``, and the bracketed HRI form ``(01)…(21)…``, made only of AIs 01 (GTIN-14, check
  digit verified), 10 and 21 (1-20 characters of GS1 character set 82), and the YYMMDD
  dates 11, 12, 13, 15, 16, 17 (validated as biip does: day 00 is the last day of the
  month, the century from biip's GS1 sliding window), each AI at most once, in any order.
  In an element string a variable-length field (10, 21) must be followed by GS or the end;
  GS after fixed-length fields is tolerated, as biip does.
* SGTIN-96 tag hex (header 30, 24 hex digits) for ``parse_epc_hex``.

Deferred, among others: other AIs and AIM identifiers; a variable-length field longer than
20 characters or with a character outside set 82 before the next GS (biip would read the
rest as further fields); wrong check digits; impossible dates; a repeated AI; no (01);
whitespace inside HRI; serials that trip an epcpy escaping quirk (see
``_EPCPY_ESCAPE_QUIRK_RE``); SGTIN-198, bad partitions and out-of-range SGTIN fields.

Equivalence with the library path is pinned by property tests in
``tests/gatewire/test_gs1_fast.py`` that compare against biip and epcpy directly.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
from typing import Any, Final
from urllib.parse import quote

# biip's bundled prefix tables, walked directly: GS1Prefix/GS1CompanyPrefix.extract build
# dataclasses on every call. biip is pinned to 5.x; the tests compare with Gtin.parse.
from biip.gs1_prefixes import _GS1_COMPANY_PREFIX_TRIE, _GS1_PREFIX_TRIE, GS1Prefix
from biip.rcn import RcnUsage

from gatewire.epc import SGTIN_URI_PREFIX
from gatewire.item import CanonicalItemId, IdKind

__all__ = [
    "AIM_PREFIXES",
    "CSET82",
    "canonical_item",
    "gtin_epc_prefix",
    "parse_gs1_fast",
    "parse_sgtin96_hex_fast",
]

GS: Final = "\x1d"
AIM_PREFIXES: Final = frozenset({"]C1", "]d2", "]Q3", "]e0"})
"""AIM symbology identifiers of GS1-128, GS1 DataMatrix, GS1 QR Code and GS1 DataBar."""
CSET82: Final = (
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
"""GS1 AI encodable character set 82: the characters allowed in AI (10) and (21)."""

_DIGITAL_LINK_BASE: Final = "https://id.gs1.org/01/"
_X: Final = f"[{re.escape(CSET82)}]"
_X_HRI: Final = f"[{re.escape(CSET82.replace('(', ''))}]"


def _line_re(elements: list[str], end: str) -> re.Pattern[str]:
    """A whole line as a run of ``elements``, each with one group and allowed at most once.

    ``(?(n)(?!)|…)`` fails element n once its group has matched, so a repeated AI fails the
    line (deferred). The AIs' first two characters all differ, so the split into elements is
    unique and the same as biip's left-to-right extraction; nothing is ever worth
    backtracking into, hence the possessive quantifiers.
    """
    once = (f"(?({n})(?!)|{element}{end})" for n, element in enumerate(elements, start=1))
    return re.compile(f"(?:{'|'.join(once)})++")


_DATE_AIS: Final = ("17", "11", "12", "13", "15", "16")  # YYMMDD dates biip validates
# Groups: 1 GTIN, 2 batch, 3 serial, 4-9 dates in _DATE_AIS order.
#
# Element string: fixed-length 01 and dates may be followed by GS (any number, as biip skips
# them); variable-length 10 and 21 must end at GS or the end of the text. biip cuts a
# variable field after 20 characters or at the first character outside set 82 and reads the
# rest as a new field; such text does not match here and is deferred.
_ELEMENT_RE: Final = _line_re(
    [
        r"01([0-9]{14})\x1d*+",
        rf"10({_X}{{1,20}}+)(?:\x1d++|\Z)",
        rf"21({_X}{{1,20}}+)(?:\x1d++|\Z)",
        *(rf"{ai}([0-9]{{6}})\x1d*+" for ai in _DATE_AIS),
    ],
    end="",
)
# Bracketed form: biip reads "(digits)" then everything up to the next "(", so a value never
# contains "(" and must fill its segment exactly.
_HRI_RE: Final = _line_re(
    [
        r"\(01\)([0-9]{14})",
        rf"\(10\)({_X_HRI}{{1,20}}+)",
        rf"\(21\)({_X_HRI}{{1,20}}+)",
        *(rf"\({ai}\)([0-9]{{6}})" for ai in _DATE_AIS),
    ],
    end=r"(?=\(|\Z)",
)
# TDS GS3A3 escaping of a serial in an EPC URI (the result of epcpy's revert_uri_escapes).
_TDS_ESCAPES: Final = str.maketrans(
    {"%": "%25", '"': "%22", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F"}
)
# urllib.parse.quote(value, safe="") for set-82 text: each ASCII character maps on its own.
_URI_ESCAPES: Final = str.maketrans({c: quote(c, safe="") for c in CSET82})
# epcpy 0.1.8 checks an escaped serial by splitting it at %22/%25/%26 and reading every
# other piece that starts with "%" as ONE hex number: "/0" -> "%2F0" -> chr(0x2F0) is
# rejected (gatewire.epc.sgtin_uri then gives None), a long piece overflows. That happens
# when / < > ? starts the serial or follows " % &; such serials are deferred.
_EPCPY_ESCAPE_QUIRK_RE: Final = re.compile(r'(?:^|["%&])[/<>?]')

_CACHE_LIMIT: Final = 1 << 16
"""Entries per lookup cache (GTINs, dates, SGTIN headers); a full cache starts afresh."""


# --- canonical item without pydantic validation -------------------------------------------

_FIELD_NAMES: Final = frozenset(
    ("gtin", "serial", "batch", "expiry", "epc_uri", "digital_link", "kind")
)
_new = object.__new__
_set = object.__setattr__


def canonical_item(
    gtin: str,
    serial: str | None,
    batch: str | None,
    expiry: dt.date | None,
    epc_uri: str | None,
    digital_link: str,
    kind: IdKind,
) -> CanonicalItemId:
    """A ``CanonicalItemId`` from fields the caller has validated, without re-validating.

    Does exactly what ``CanonicalItemId.model_construct(**all_fields)`` does for this model
    (no extras, no private attributes, no post-init hook; pinned by a test) at a fraction
    of its cost (which exceeds that of validation). Only for values that validation would
    accept unchanged: ``gtin`` 14 ASCII digits, ``expiry`` a ``date``, ``kind`` an ``IdKind``.
    """
    item: CanonicalItemId = _new(CanonicalItemId)
    _set(
        item,
        "__dict__",
        {
            "gtin": gtin,
            "serial": serial,
            "batch": batch,
            "expiry": expiry,
            "epc_uri": epc_uri,
            "digital_link": digital_link,
            "kind": kind,
        },
    )
    _set(item, "__pydantic_fields_set__", set(_FIELD_NAMES))
    _set(item, "__pydantic_extra__", None)
    _set(item, "__pydantic_private__", None)
    return item


# --- GS1 dates -----------------------------------------------------------------------------

_now = time.time  # tests replace this to move the sliding window


class _DateWindow:
    """biip's century rule for two-digit years, for one calendar year (UTC).

    biip (GS1 General Specifications 7.12) reads YY as the year from 49 years before to 50
    years after the current year, using ``datetime.now(UTC)``. The full years and decoded
    dates are worked out once per calendar year instead of on every read.
    """

    __slots__ = ("dates", "full_year", "valid_from", "valid_until")

    def __init__(self, now: float) -> None:
        year = dt.datetime.fromtimestamp(now, tz=dt.UTC).year
        century = year - year % 100
        this_yy = year - century
        full_year = []
        for yy in range(100):  # biip.gs1_element_strings._get_century, for every YY
            if 51 <= yy - this_yy <= 99:
                full_year.append(century - 100 + yy)
            elif -99 <= yy - this_yy <= -50:
                full_year.append(century + 100 + yy)
            else:
                full_year.append(century + yy)
        self.full_year: tuple[int, ...] = tuple(full_year)
        self.valid_from = dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp()
        self.valid_until = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC).timestamp()
        self.dates: dict[str, tuple[dt.date, str] | None] = {}


_window = _DateWindow(_now())


def _current_window() -> _DateWindow:
    global _window  # replaced once a year, read on every read that has a date
    now = _now()
    window = _window
    if not window.valid_from <= now < window.valid_until:
        window = _window = _DateWindow(now)
    return window


def _decode_date(yymmdd: str, window: _DateWindow) -> tuple[dt.date, str] | None:
    """(date, YYMMDD with day 00 resolved) for six ASCII digits; None if biip rejects it."""
    dates = window.dates
    try:
        return dates[yymmdd]
    except KeyError:
        pass
    year = window.full_year[int(yymmdd[:2])]
    month = int(yymmdd[2:4])
    day = int(yymmdd[4:])
    result: tuple[dt.date, str] | None = None
    if 1 <= month <= 12:
        last_day = calendar.monthrange(year, month)[1]
        if day == 0:  # GS1: day 00 means the last day of the month
            day = last_day
        if day <= last_day:
            result = (dt.date(year, month, day), f"{yymmdd[:4]}{day:02d}")
    if len(dates) >= _CACHE_LIMIT:
        dates.clear()
    dates[yymmdd] = result
    return result


# --- GTIN -> EPC URI prefix ------------------------------------------------------------------

_gtin_epc_prefixes: dict[str, tuple[bool, str | None]] = {}
"""Check-digit-valid GTIN-14 -> (True, its SGTIN URI prefix or None)."""


def _company_prefix_length(digits: str) -> int | None:
    """``len(GS1CompanyPrefix.extract(digits).value)``, None where that gives None."""
    node: Any = _GS1_COMPANY_PREFIX_TRIE
    for digit in digits:
        node = node.get(digit)
        if node is None:
            return None
        if isinstance(node, int):
            return None if node == 0 else min(node, len(digits))
    return None


def _rcn_prefixes() -> tuple[tuple[int, frozenset[str]], ...]:
    """Every GS1 Prefix biip classifies as a restricted circulation number, by length."""
    found: dict[int, set[str]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            length, usage = node
            if RcnUsage._from_prefix(GS1Prefix(value=path[:length], usage=usage)) is not None:
                found.setdefault(len(path), set()).add(path)
            return
        for digit, child in node.items():
            walk(child, path + digit)

    walk(_GS1_PREFIX_TRIE, "")
    return tuple((length, frozenset(paths)) for length, paths in sorted(found.items()))


_RCN_PREFIXES: Final = _rcn_prefixes()


def _is_rcn_prefix(digits: str) -> bool:
    """True if biip classifies a GTIN-12/13 with this prefixed value as an RCN.

    biip walks its prefix trie to the first leaf; the leaves are prefix-free, so the walk
    ends at an RCN leaf exactly when the digits start with that leaf's path.
    """
    return any(digits[:length] in paths for length, paths in _RCN_PREFIXES)


def _compute_epc_uri_prefix(gtin14: str) -> str | None:
    significant = len(gtin14.lstrip("0"))
    if significant <= 8:  # biip reads it as a GTIN-8: no company prefix
        return None
    digits = gtin14[1:13]  # biip's "prefixed value", the same for GTIN-12, -13 and -14
    if significant < 14 and _is_rcn_prefix(digits):  # only GTIN-12/13 can be RCNs
        return None
    length = _company_prefix_length(digits)
    if length is None or not 6 <= length <= 12:  # SGTIN partitions allow 6-12 digits
        return None
    return f"{SGTIN_URI_PREFIX}{gtin14[1 : 1 + length]}.{gtin14[0]}{gtin14[1 + length : 13]}."


def _check_digit(body13: str) -> int:
    """GS1 check digit of 13 ASCII digits (weights 3, 1, 3, … from the left)."""
    raw = body13.encode()  # byte value - 48 is the digit
    total = 3 * (sum(raw[0::2]) - 7 * 48) + (sum(raw[1::2]) - 6 * 48)
    return -total % 10


_BAD_CHECK_DIGIT: Final = (False, None)


def gtin_epc_prefix(gtin14: str) -> tuple[bool, str | None]:
    """(check digit ok, ``urn:epc:id:sgtin:{company prefix}.{indicator}{item ref}.``).

    The prefix is None when biip gives no company prefix of 6-12 digits (unknown to its
    tables, GTIN-8, restricted circulation numbers), exactly when ``gatewire.gs1`` yields no
    EPC URI. Cached per GTIN: a stream repeats products, not serials.
    """
    try:
        return _gtin_epc_prefixes[gtin14]
    except KeyError:
        pass
    if _check_digit(gtin14[:13]) != ord(gtin14[13]) - 48:
        return _BAD_CHECK_DIGIT  # not cached: the (slow) library path reports it
    result = (True, _compute_epc_uri_prefix(gtin14))
    if len(_gtin_epc_prefixes) >= _CACHE_LIMIT:
        _gtin_epc_prefixes.clear()
    _gtin_epc_prefixes[gtin14] = result
    return result


# --- GS1 element strings and HRI -------------------------------------------------------------


def parse_gs1_fast(text: str) -> CanonicalItemId | None:
    """The canonical item for a common GS1 read, or None to defer to the library path.

    ``text`` is the raw read as given to ``parse_item_id``. Never raises for str input.
    """
    s = text.strip()
    first = s[:1]
    if first == "]":
        if s[:3] not in AIM_PREFIXES:
            return None
        if "0" <= s[3:4] <= "9":
            return _item(_ELEMENT_RE.fullmatch(s, 3), IdKind.GS1_ELEMENT_STRING)
        # biip strips the message after the identifier again (GS, spaces)
        return _item(_ELEMENT_RE.fullmatch(s[3:].strip()), IdKind.GS1_ELEMENT_STRING)
    if first == "(":
        return _item(_HRI_RE.fullmatch(s), IdKind.GS1_BRACKETED)
    if "0" <= first <= "9":
        # Always over 14 characters (it has an (01)), so never read as a plain GTIN, and
        # 01 1x 21 are no EPC header bytes, so never as tag hex: parse_item_id reads it as
        # an element string too.
        return _item(_ELEMENT_RE.fullmatch(s), IdKind.GS1_ELEMENT_STRING)
    return None


def _item(m: re.Match[str] | None, kind: IdKind) -> CanonicalItemId | None:
    if m is None:
        return None
    gtin, batch, serial, d17, d11, d12, d13, d15, d16 = m.groups()
    if gtin is None:
        return None
    try:
        check_digit_ok, epc_prefix = _gtin_epc_prefixes[gtin]
    except KeyError:
        check_digit_ok, epc_prefix = gtin_epc_prefix(gtin)
        if not check_digit_ok:
            return None

    expiry = None
    expiry_query = ""
    other_dates = d11 or d12 or d13 or d15 or d16  # values are never empty
    if d17 is not None or other_dates:
        window = _window
        now = _now()
        if not window.valid_from <= now < window.valid_until:
            window = _current_window()
        if other_dates:
            for date in (d11, d12, d13, d15, d16):
                if date is not None and _decode_date(date, window) is None:
                    return None
        if d17 is not None:
            try:
                decoded = window.dates[d17]
            except KeyError:
                decoded = _decode_date(d17, window)
            if decoded is None:
                return None
            expiry = decoded[0]
            expiry_query = "?17=" + decoded[1]

    epc_uri = None
    batch_path = serial_path = ""
    if batch is not None:
        batch_path = "/10/" + (batch if batch.isalnum() else batch.translate(_URI_ESCAPES))
    if serial is not None:
        if serial.isalnum():
            serial_path = "/21/" + serial
            if epc_prefix is not None:
                epc_uri = epc_prefix + serial
        else:
            serial_path = "/21/" + serial.translate(_URI_ESCAPES)
            if epc_prefix is not None:
                if _EPCPY_ESCAPE_QUIRK_RE.search(serial):
                    return None
                epc_uri = epc_prefix + serial.translate(_TDS_ESCAPES)
    link = f"{_DIGITAL_LINK_BASE}{gtin}{batch_path}{serial_path}{expiry_query}"
    return canonical_item(gtin, serial, batch, expiry, epc_uri, link, kind)


# --- SGTIN-96 tag hex ------------------------------------------------------------------------

_SGTIN96_HEX_RE: Final = re.compile(r"30[0-9A-Fa-f]{22}")
# Partition value -> (company prefix bits, digits, item reference bits, digits); TDS 14.5.1.
_SGTIN_PARTITIONS: Final = (
    (40, 12, 4, 1),
    (37, 11, 7, 2),
    (34, 10, 10, 3),
    (30, 9, 14, 4),
    (27, 8, 17, 5),
    (24, 7, 20, 6),
    (20, 6, 24, 7),
)
_SERIAL96_MASK: Final = (1 << 38) - 1
_sgtin96_keys: dict[int, tuple[str, str] | None] = {}
"""Partition + company prefix + item reference bits -> (GTIN-14, URI prefix); None: invalid."""


def _decode_sgtin96_key(key: int) -> tuple[str, str] | None:
    """As epcpy's ``decode_partition_table`` and ``SGTIN.gtin``: None where epcpy raises."""
    partition = key >> 44
    if partition == 7:
        return None
    cp_bits, cp_digits, ir_bits, ir_digits = _SGTIN_PARTITIONS[partition]
    company_prefix = (key >> ir_bits) & ((1 << cp_bits) - 1)
    item_ref = key & ((1 << ir_bits) - 1)
    if company_prefix >= 10**cp_digits or item_ref >= 10**ir_digits:
        return None
    cp = f"{company_prefix:0{cp_digits}d}"
    ir = f"{item_ref:0{ir_digits}d}"
    body = ir[0] + cp + ir[1:]
    return f"{body}{_check_digit(body)}", f"{SGTIN_URI_PREFIX}{cp}.{ir}."


def parse_sgtin96_hex_fast(hex_text: str) -> CanonicalItemId | None:
    """The canonical item for SGTIN-96 tag hex (header 30), or None to defer to epcpy.

    Layout (TDS 1.x and 2.x alike): header 8 bits, filter 3, partition 3, company prefix and
    item reference 44 together (split as the partition says), serial 38. The filter does
    not enter the identity. Decoded once per product (partition + prefix + item reference).
    """
    text = hex_text.strip()
    if _SGTIN96_HEX_RE.fullmatch(text) is None:
        return None
    value = int(text, 16)
    key = (value >> 38) & ((1 << 47) - 1)
    try:
        decoded = _sgtin96_keys[key]
    except KeyError:
        decoded = _decode_sgtin96_key(key)
        if len(_sgtin96_keys) >= _CACHE_LIMIT:
            _sgtin96_keys.clear()
        _sgtin96_keys[key] = decoded
    if decoded is None:
        return None
    gtin, uri_prefix = decoded
    serial = str(value & _SERIAL96_MASK)
    return canonical_item(
        gtin,
        serial,
        None,
        None,
        uri_prefix + serial,
        f"{_DIGITAL_LINK_BASE}{gtin}/21/{serial}",
        IdKind.EPC_HEX,
    )
