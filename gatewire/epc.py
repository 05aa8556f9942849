"""SGTIN EPCs (GS1 EPC Tag Data Standard), on top of epcpy.

Internal helpers for :mod:`gatewire.identity`: decode EPC pure-identity URIs and SGTIN-96 /
SGTIN-198 tag hex into (GTIN-14, serial, normalised URI), and name a GTIN + serial as an
SGTIN URI. Failures raise :class:`EpcError` with a one-line reason; the public parsers in
``gatewire.identity`` turn that into a ``ParseOutcome``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote

from biip.checksums import gs1_standard_check_digit

with warnings.catch_warnings():
    # epcpy 0.1.8 has non-raw regex strings ("\d"); compiling it without a cached .pyc
    # emits DeprecationWarning (SyntaxWarning on 3.12+), which pytest turns into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", SyntaxWarning)
    from epcpy.epc_schemes.sgtin import SGTIN
    from epcpy.utils.common import ConvertException, revert_uri_escapes
    from epcpy.utils.parsers import EPC_SCHEME_IDENTIFIERS, TAG_ENCODABLE_HEX_HEADERS

__all__ = [
    "EPC_HEX_HEADERS",
    "EpcError",
    "SgtinParts",
    "decode_epc_uri",
    "decode_sgtin_hex",
    "encode_sgtin_hex",
    "sgtin_binary_scheme",
    "sgtin_uri",
]

SGTIN_URI_PREFIX: Final = "urn:epc:id:sgtin:"
SGTIN_TAG_URI_PREFIX: Final = "urn:epc:tag:sgtin-"

# Header byte -> (scheme, exact hex length as read from EPC memory, word aligned).
# SGTIN-96 is 96 bits = 24 hex; SGTIN-198 is 198 bits, padded to 13 words = 52 hex.
_SGTIN_HEADERS: Final[dict[str, tuple[str, int]]] = {
    "30": ("sgtin-96", 24),
    "36": ("sgtin-198", 52),
}
EPC_HEX_HEADERS: Final = frozenset(str(h).upper() for h in TAG_ENCODABLE_HEX_HEADERS)
"""First byte (two hex digits) of every EPC binary encoding epcpy knows."""
_SGTIN96_MAX_SERIAL: Final = 2**38
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]+")
# TDS: in a GS3A3 component only these seven characters are %-escaped (Table A-1).
_ESCAPE_RE: Final = re.compile(r"%(?!(?:22|25|26|2[Ff]|3[CcEeFf]))")
# TDS GS3A3 component: URI-safe characters or the seven allowed %-escapes.
_SGTIN_URI_RE: Final = re.compile(r"urn:epc:id:sgtin:(\d{6,12})\.(\d{1,7})\.(.+)")
_GS3A3_RE: Final = re.compile(r"(?:[-!'()*+,.0-9:;=A-Z_a-z]|%(?:22|25|26|2[Ff]|3[CcEeFf]))+")


class EpcError(ValueError):
    """An EPC that is not a valid SGTIN; ``str(exc)`` is a one-line reason."""


@dataclass(frozen=True, slots=True)
class SgtinParts:
    """An SGTIN split into the parts the canonical item ID needs."""

    gtin: str
    """GTIN-14, check digit computed from the EPC."""
    serial: str
    """Serial as in GS1 AI (21), URI escapes removed."""
    epc_uri: str
    """Pure-identity URI with normalised escapes."""


def escape_serial(serial: str) -> str:
    """Escape an AI (21) serial for a GS3A3 URI component (TDS: ``/`` -> ``%2F`` …)."""
    return str(revert_uri_escapes(serial))


def sgtin_uri(gtin14: str, serial: str, company_prefix_length: int | None) -> str | None:
    """Name GTIN-14 + serial as ``urn:epc:id:sgtin:…``; None if it cannot be named.

    The company prefix length is not in the GTIN: without it (``None``), or outside the
    6-12 digits SGTIN partitions allow, there is no single correct URI, so None.
    """
    if company_prefix_length is None or not 6 <= company_prefix_length <= 12:
        return None
    # Composed directly (TDS §6.3.1): epcpy's own serial check misreads serials that start
    # with "/", "<", ">" or "?" and can raise OverflowError on them.
    company_prefix = gtin14[1 : 1 + company_prefix_length]
    indicator_and_item_ref = gtin14[0] + gtin14[1 + company_prefix_length : 13]
    return f"{SGTIN_URI_PREFIX}{company_prefix}.{indicator_and_item_ref}.{escape_serial(serial)}"


def _unescape_serial(component: str) -> str:
    if _ESCAPE_RE.search(component):
        raise EpcError(
            f"invalid %-escape in EPC serial {component!r} "
            "(only %22 %25 %26 %2F %3C %3E %3F are allowed)"
        )
    return unquote(component)


def _scheme_name_of_uri(text: str) -> str:
    parts = text.split(":")
    return parts[3].lower() if len(parts) > 3 else ""


def decode_epc_uri(text: str) -> SgtinParts:
    """Decode an SGTIN pure-identity URI (or SGTIN tag URI) into its parts.

    Raises:
        EpcError: not an SGTIN URI, or malformed.
    """
    if text.startswith(SGTIN_TAG_URI_PREFIX):
        try:
            text = str(SGTIN.from_tag_uri(text).epc_uri)
        except (ConvertException, ValueError, IndexError) as exc:
            raise EpcError(f"invalid SGTIN tag URI {text!r}") from exc
    if not text.startswith(SGTIN_URI_PREFIX):
        scheme = _scheme_name_of_uri(text)
        if text.startswith(("urn:epc:id:", "urn:epc:tag:")) and (
            scheme.split("-")[0] in EPC_SCHEME_IDENTIFIERS
        ):
            raise EpcError(f"EPC scheme {scheme!r} is not an item ID (sgtin required)")
        raise EpcError(f"unknown EPC URI {text[:60]!r} (urn:epc:id:sgtin:… required)")
    # Parsed here rather than by epcpy's SGTIN(), which refuses valid escaped serials
    # such as "%3C0" (a serial starting with "<").
    match = _SGTIN_URI_RE.fullmatch(text)
    if match is None:
        raise EpcError(f"invalid SGTIN URI {text!r}: malformed")
    company_prefix, indicator_and_item_ref, raw_serial = match.groups()
    if len(company_prefix) + len(indicator_and_item_ref) != 13:
        raise EpcError(
            f"invalid SGTIN URI {text!r}: company prefix and item reference must total 13 digits"
        )
    serial = _unescape_serial(raw_serial)
    if _GS3A3_RE.fullmatch(raw_serial) is None:
        raise EpcError(f"invalid SGTIN URI {text!r}: serial has characters an EPC URI forbids")
    if len(serial) > 20:
        raise EpcError(f"invalid SGTIN URI {text!r}: serial longer than 20 characters")
    body = indicator_and_item_ref[0] + company_prefix + indicator_and_item_ref[1:]
    gtin = body + str(gs1_standard_check_digit(body))
    uri = sgtin_uri(gtin, serial, len(company_prefix))
    if uri is None:  # pragma: no cover - the pattern already bounds the prefix length
        raise EpcError(f"invalid SGTIN URI {text!r}")
    return SgtinParts(gtin=gtin, serial=serial, epc_uri=uri)


# TDS SGTIN partition table: partition -> (company prefix bits, item reference bits).
_PARTITION_BITS: Final = {
    12: (0, 40, 4),
    11: (1, 37, 7),
    10: (2, 34, 10),
    9: (3, 30, 14),
    8: (4, 27, 17),
    7: (5, 24, 20),
    6: (6, 20, 24),
}


def _check_sgtin198_padding(bits: str) -> None:
    """TDS: after the first all-zero 7-bit character, the serial field must be all zero."""
    serial_bits = bits[58:198]
    chars = [serial_bits[i : i + 7] for i in range(0, len(serial_bits), 7)]
    if "0000000" in chars and "1" in "".join(chars[chars.index("0000000") :]):
        raise EpcError("SGTIN-198 serial has data after its terminating zero character")


def decode_sgtin_hex(hex_text: str) -> SgtinParts:
    """Decode SGTIN-96 (24 hex) or SGTIN-198 (52 hex) EPC memory into its parts.

    Raises:
        EpcError: not hex, not an SGTIN header, wrong length for the header, bad partition.
    """
    text = hex_text.strip()
    if not text:
        raise EpcError("empty EPC hex")
    if not _HEX_RE.fullmatch(text):
        raise EpcError(f"EPC {text[:60]!r} is not hexadecimal")
    if len(text) < 2:
        raise EpcError(f"EPC hex {text!r} is too short to hold a header")
    header = text[:2].upper()
    if header not in _SGTIN_HEADERS:
        other = TAG_ENCODABLE_HEX_HEADERS.get(header)
        if other is not None:
            name = other.__name__.lower()
            raise EpcError(f"EPC header {header} is {name}, not an item ID (sgtin required)")
        raise EpcError(f"unknown EPC header {header} (SGTIN-96 is 30, SGTIN-198 is 36)")
    scheme, length = _SGTIN_HEADERS[header]
    if len(text) != length:
        raise EpcError(
            f"{scheme.upper()} EPC must be {length} hex digits, got {len(text)} (truncated?)"
        )
    bits = f"{int(text, 16):0{len(text) * 4}b}"
    if scheme == "sgtin-198":
        _check_sgtin198_padding(bits)
    # Decoded here (TDS §14.5.1) rather than by epcpy, which refuses SGTIN-198 serials that
    # start with characters such as "<" or "/".
    partition = int(bits[11:14], 2)
    if partition == 7:
        raise EpcError(f"invalid {scheme.upper()} EPC {text}: partition 7 is reserved")
    cp_digits = 12 - partition
    _, cp_bits, _ = _PARTITION_BITS[cp_digits]
    company_prefix = int(bits[14 : 14 + cp_bits], 2)
    item_ref = int(bits[14 + cp_bits : 58], 2)
    if company_prefix >= 10**cp_digits or item_ref >= 10 ** (partition + 1):
        raise EpcError(f"invalid {scheme.upper()} EPC {text}: field out of range")
    if scheme == "sgtin-96":
        serial = str(int(bits[58:96], 2))
    else:
        codes = [int(bits[i : i + 7], 2) for i in range(58, 198, 7)]
        serial = "".join(chr(c) for c in codes[: codes.index(0) if 0 in codes else 20])
        if not serial:
            raise EpcError(f"{scheme.upper()} EPC {text} has an empty serial")
        if _GS3A3_RE.fullmatch(escape_serial(serial)) is None:
            raise EpcError(f"{scheme.upper()} EPC {text} has characters a serial may not hold")
    cp_text = f"{company_prefix:0{cp_digits}d}"
    ir_text = f"{item_ref:0{partition + 1}d}"
    body = ir_text[0] + cp_text + ir_text[1:]
    gtin = body + str(gs1_standard_check_digit(body))
    uri = sgtin_uri(gtin, serial, cp_digits)
    if uri is None:  # pragma: no cover - the partition bounds the prefix length
        raise EpcError(f"invalid {scheme.upper()} EPC {text}")
    return SgtinParts(gtin=gtin, serial=serial, epc_uri=uri)


def sgtin_binary_scheme(serial: str) -> Literal["sgtin-96", "sgtin-198"]:
    """The smallest SGTIN binary scheme that can carry this serial.

    SGTIN-96 holds only a decimal serial without leading zeros below 2**38.
    """
    if (
        serial.isascii()
        and serial.isdigit()
        and (serial == "0" or not serial.startswith("0"))
        and int(serial) < _SGTIN96_MAX_SERIAL
    ):
        return "sgtin-96"
    return "sgtin-198"


def encode_sgtin_hex(epc_uri: str, filter_value: int = 1) -> str:
    """Encode an SGTIN pure-identity URI as tag hex (SGTIN-96 when the serial fits).

    Used by simulators and tests; ``filter_value`` 1 is "point of sale trade item".
    Encoded here (TDS §14.5.1) rather than by epcpy, whose encoder rejects serials that
    start with ``<``, ``/`` and similar characters.

    Raises:
        EpcError: not a valid SGTIN URI or filter value.
    """
    if not 0 <= filter_value <= 7:
        raise EpcError(f"filter value must be 0-7, got {filter_value}")
    parts = decode_epc_uri(epc_uri)
    company_prefix, item_ref, _ = parts.epc_uri[len(SGTIN_URI_PREFIX) :].split(".", 2)
    partition, cp_bits, ir_bits = _PARTITION_BITS[len(company_prefix)]
    scheme = sgtin_binary_scheme(parts.serial)
    if scheme == "sgtin-96":
        header, serial_bits = 0x30, f"{int(parts.serial):038b}"
    else:
        header = 0x36
        serial_bits = "".join(f"{ord(c):07b}" for c in parts.serial).ljust(140, "0")
    bits = (
        f"{header:08b}{filter_value:03b}{partition:03b}"
        f"{int(company_prefix):0{cp_bits}b}{int(item_ref):0{ir_bits}b}{serial_bits}"
    )
    bits = bits.ljust(-(-len(bits) // 16) * 16, "0")  # EPC memory is whole 16-bit words
    return f"{int(bits, 2):0{len(bits) // 4}X}"
