"""The fast path agrees exactly with the biip/epcpy path, and takes the common reads.

Every property compares ``parse_item_id``/``parse_epc_hex`` without their cache (fast path
first) against ``identity._parse_slow``/``_parse_epc_hex_slow`` (biip and epcpy only): the
outcome must be equal, field types included, whether the fast path took the read or
deferred it. Separate properties check that well-formed common reads are taken.
"""

from __future__ import annotations

import datetime as dt
import re
import types
from urllib.parse import quote

import biip.gs1_element_strings as biip_element_strings
import pytest
from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_element_strings import _get_century, _parse_date_and_datetime
from biip.gs1_prefixes import GS1Prefix
from biip.gtin import Gtin, GtinFormat
from biip.rcn import Rcn, RcnUsage
from biip.symbology import GS1Symbology, SymbologyIdentifier
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gatewire import gs1_fast, identity
from gatewire.epc import escape_serial, sgtin_uri
from gatewire.gs1_fast import (
    AIM_PREFIXES,
    CSET82,
    canonical_item,
    gtin_epc_prefix,
    parse_gs1_fast,
    parse_sgtin96_hex_fast,
)
from gatewire.identity import ParseOutcome
from gatewire.item import CanonicalItemId, IdKind

GS = "\x1d"
DIGITS = "0123456789"
# Serials for which epcpy's escaping check misfires (see gs1_fast._EPCPY_ESCAPE_QUIRK_RE).
EPCPY_QUIRK = re.compile(r'(?:^|["%&])[/<>?]')
PROPERTY = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def uncached(text: str) -> ParseOutcome:
    """parse_item_id as callers see it (fast path first), minus the LRU cache."""
    return identity._parse_item_id_cached.__wrapped__(text)


def uncached_hex(text: str) -> ParseOutcome:
    return identity._parse_epc_hex_cached.__wrapped__(text)


def assert_same(outcome: ParseOutcome, expected: ParseOutcome) -> None:
    """Equal outcomes, and items identical down to field types and the fields-set."""
    assert outcome == expected
    if outcome.item is not None and expected.item is not None:
        got, want = outcome.item, expected.item
        assert {k: type(v) for k, v in got.__dict__.items()} == {
            k: type(v) for k, v in want.__dict__.items()
        }
        assert list(got.__dict__) == list(want.__dict__)
        assert got.model_fields_set == want.model_fields_set
        assert got.model_dump_json() == want.model_dump_json()


def with_check_digit(body13: str) -> str:
    return body13 + str(gs1_standard_check_digit(body13))


# --- strategies ------------------------------------------------------------------------------

# Start of a GTIN-14 body: known company prefixes of every length, unknown prefixes (760),
# restricted circulation numbers (02, 04, 2x), leading zeros that make biip read a GTIN-8 or
# GTIN-12, Bookland, indicator digits 1-9 (a GTIN-14 is never an RCN).
GTIN_STARTS = [
    "0614141",  # 7-digit company prefix (TDS examples)
    "09506000134",  # 11-digit prefix (GS1 examples)
    "0890000000000",  # 12-digit prefix
    "0300000",  # 6-digit prefix
    "0760",  # GS1 Switzerland: no company prefix lengths in biip's tables
    "002",
    "004",
    "020",
    "0200",
    "0250",
    "0978",
    "000001",
    "0000001",
    "00000001",
    "000000000",
    "10000000",  # GTIN-14 whose company prefix is 0000000
    "1",
    "2",
    "3",
    "9",
    "",
]


@st.composite
def gtin_bodies(draw: st.DrawFn) -> str:
    start = draw(st.sampled_from(GTIN_STARTS))
    return start + draw(st.text(DIGITS, min_size=13 - len(start), max_size=13 - len(start)))


@st.composite
def gtins(draw: st.DrawFn) -> str:
    gtin = with_check_digit(draw(gtin_bodies()))
    if draw(st.integers(0, 9)) == 0:  # wrong check digit
        gtin = gtin[:13] + str((int(gtin[13]) + draw(st.integers(1, 9))) % 10)
    return gtin


@st.composite
def yymmdd(draw: st.DrawFn) -> str:
    tricky = ["251301", "250230", "250231", "250200", "240229", "250229", "000229", "500230"]
    if draw(st.booleans()):
        return draw(st.sampled_from(tricky))
    yy, mm, dd = draw(st.integers(0, 99)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    return f"{yy:02d}{mm:02d}{dd:02d}"


SET82_VALUES = st.text(CSET82, min_size=1, max_size=20)
# Values that break the X..20 rules: outside set 82, empty, over-long.
ODD_VALUES = st.one_of(
    st.text(CSET82 + " #$@[\\]^`{|}~\t", min_size=0, max_size=24),
    st.text(CSET82, min_size=21, max_size=26),
    st.just(""),
)
DATE_AIS = ["17", "11", "12", "13", "15", "16"]


@st.composite
def elements(draw: st.DrawFn) -> tuple[str, str]:
    """(AI, value): mostly the fast path's AIs, sometimes wrong, sometimes other AIs."""
    kind = draw(st.integers(0, 19))
    if kind <= 5:
        return "01", draw(gtins())
    if kind == 6:
        return "01", draw(st.text(DIGITS, min_size=12, max_size=15))
    if kind <= 9:
        return draw(st.sampled_from(DATE_AIS)), draw(yymmdd())
    if kind == 10:
        return draw(st.sampled_from(DATE_AIS)), draw(st.text(DIGITS, min_size=4, max_size=7))
    if kind <= 17:
        return draw(st.sampled_from(["10", "21"])), draw(SET82_VALUES)
    if kind == 18:
        return draw(st.sampled_from(["10", "21"])), draw(ODD_VALUES)
    other = draw(st.sampled_from(["22", "30", "37", "00", "02", "240", "7003", "14", "18"]))
    return other, draw(st.text(DIGITS + "AB", min_size=0, max_size=18))


@st.composite
def valid_element_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    """(01) and up to four other fast-path AIs, each once, valid values, any order."""
    ais = draw(st.lists(st.sampled_from(["10", "21", *DATE_AIS]), unique=True, max_size=4))
    items: list[tuple[str, str]] = [("01", with_check_digit(draw(gtin_bodies())))]
    for ai in ais:
        if ai in ("10", "21"):
            items.append((ai, draw(SET82_VALUES)))
        else:
            yymm = f"{draw(st.integers(0, 99)):02d}{draw(st.integers(1, 12)):02d}"
            items.append((ai, yymm + f"{draw(st.sampled_from([0, 1, 9, 10, 19, 28])):02d}"))
    return list(draw(st.permutations(items)))


@st.composite
def subtly_invalid_element_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A valid list with one thing wrong (or, for a few mutations, still valid)."""
    items = draw(valid_element_lists())
    at = draw(st.integers(0, len(items) - 1))
    ai, value = items[at]
    mutation = draw(st.integers(0, 8))
    if mutation == 0 and ai == "01":  # wrong check digit
        items[at] = (ai, value[:13] + str((int(value[13]) + draw(st.integers(1, 9))) % 10))
    elif mutation == 0:  # impossible or borderline date
        bad = ["251301", "250230", "250231", "250000", "251232", "250229", "240229", "250200"]
        items[at] = (draw(st.sampled_from(DATE_AIS)), draw(st.sampled_from(bad)))
    elif mutation == 1:  # a character outside set 82 in a batch or serial
        odd = draw(st.sampled_from([" ", "#", "$", "@", "[", "\\", "^", "`", "{", "~", "\t", "é"]))
        value = draw(SET82_VALUES)
        cut = draw(st.integers(0, len(value)))
        items[at] = (draw(st.sampled_from(["10", "21"])), value[:cut] + odd + value[cut:])
    elif mutation == 2:  # over-long or empty batch or serial
        value = draw(st.text(CSET82, min_size=21, max_size=26) | st.just(""))
        items[at] = (draw(st.sampled_from(["10", "21"])), value)
    elif mutation == 3:  # the same AI again, with the same or another value
        items.insert(draw(st.integers(0, len(items))), (ai, draw(st.sampled_from([value, "1"]))))
    elif mutation == 4:  # no GTIN
        items = [item for item in items if item[0] != "01"]
    elif mutation == 5:  # an AI the fast path does not take
        other = draw(st.sampled_from(["22", "30", "37", "00", "02", "240", "7003", "14"]))
        items.insert(at, (other, draw(st.text(DIGITS + "AB", min_size=0, max_size=18))))
    elif mutation == 6:  # a fixed-length value one digit short or long
        items[at] = (ai, value[:-1] if draw(st.booleans()) else value + "1")
    return items


@st.composite
def element_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    choice = draw(st.integers(0, 9))
    if choice <= 2:
        return draw(valid_element_lists())
    if choice <= 7:
        return draw(subtly_invalid_element_lists())
    items = draw(st.lists(elements(), min_size=0, max_size=5))
    if draw(st.integers(0, 4)) and not any(ai == "01" for ai, _ in items):
        items.insert(draw(st.integers(0, len(items))), ("01", draw(gtins())))
    return items


@st.composite
def element_strings(draw: st.DrawFn) -> str:
    """Element string with mostly-correct GS placement, an AIM prefix, stray whitespace."""
    items = draw(element_lists())
    out = []
    for i, (ai, value) in enumerate(items):
        last = i == len(items) - 1
        variable = ai in ("10", "21", "22", "30", "37", "240", "7003")
        if variable and not last:
            sep = draw(st.sampled_from([GS, GS, GS, GS, "", GS + GS]))
        else:
            sep = draw(st.sampled_from(["", "", "", "", GS, GS + GS, " "]))
        out.append(ai + value + sep)
    prefix = draw(st.sampled_from(["", "", "]d2", "]C1", "]Q3", "]e0", "]d1", "]C0", "]E0", GS]))
    around = draw(st.sampled_from(["", "", " ", "\r\n", GS, "\t"]))
    return around + prefix + draw(st.sampled_from(["", "", " ", GS])) + "".join(out) + around


@st.composite
def hri_strings(draw: st.DrawFn) -> str:
    items = draw(element_lists())
    parts = [f"({ai}){value}" for ai, value in items]
    text = "".join(parts)
    mutation = draw(st.integers(0, 9))
    if mutation == 0 and text:  # whitespace inside (biip removes it all)
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([" ", "\t", GS])) + text[at:]
    elif mutation == 1:  # a stray parenthesis
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["(", ")", "()", "(0)"])) + text[at:]
    return text


@st.composite
def well_formed_lines(draw: st.DrawFn) -> tuple[str, str | None]:
    """A valid common read the fast path must take: (text, serial)."""
    items = draw(valid_element_lists())
    serial = dict(items).get("21")
    if draw(st.booleans()) and all("(" not in value for _, value in items):
        return "".join(f"({ai}){value}" for ai, value in items), serial
    body = "".join(
        ai + value + (GS if ai in ("10", "21") and i < len(items) - 1 else "")
        for i, (ai, value) in enumerate(items)
    )
    return draw(st.sampled_from(["", *sorted(AIM_PREFIXES)])) + body, serial


# --- equivalence properties ----------------------------------------------------------------


@PROPERTY
@given(element_strings())
def test_element_strings_give_the_same_outcome_as_biip(text: str) -> None:
    event("fast path took it" if parse_gs1_fast(text) is not None else "deferred")
    assert_same(uncached(text), identity._parse_slow(text))


@PROPERTY
@given(hri_strings())
def test_bracketed_strings_give_the_same_outcome_as_biip(text: str) -> None:
    event("fast path took it" if parse_gs1_fast(text) is not None else "deferred")
    assert_same(uncached(text), identity._parse_slow(text))


@PROPERTY
@given(well_formed_lines())
def test_well_formed_common_reads_are_taken_by_the_fast_path(line: tuple[str, str | None]) -> None:
    text, serial = line
    fast = parse_gs1_fast(text)
    slow = identity._parse_slow(text)
    assert slow.ok, slow.error
    if fast is None:  # only the epcpy escaping quirk is deferred
        assert serial is not None
        assert EPCPY_QUIRK.search(serial)
        return
    assert_same(ParseOutcome(fast, None, text), slow)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.text("0123456789()]dCQe1" + GS + CSET82, max_size=60))
def test_fast_path_never_raises_and_only_takes_what_biip_reads_the_same(text: str) -> None:
    fast = parse_gs1_fast(text)
    if fast is not None:
        assert_same(ParseOutcome(fast, None, text), identity._parse_slow(text))


@settings(max_examples=300, deadline=None)
@given(gtins())
def test_gtin_check_digit_and_epc_prefix_match_biip_gtin_parse(gtin: str) -> None:
    ok, epc_prefix = gtin_epc_prefix(gtin)
    try:
        parsed = Gtin.parse(gtin)
    except ParseError:
        assert not ok
        return
    assert ok
    if parsed.format in (GtinFormat.GTIN_12, GtinFormat.GTIN_13):
        assert gs1_fast._is_rcn_prefix(gtin[1:13]) is isinstance(parsed, Rcn)
    company_prefix = None if isinstance(parsed, Rcn) else parsed.company_prefix
    length = None if company_prefix is None else len(company_prefix.value)
    expected = sgtin_uri(gtin, "S1", length)
    assert (None if epc_prefix is None else epc_prefix + "S1") == expected


@pytest.mark.parametrize("filler", ["000000000", "123456789", "999999999"])
def test_restricted_circulation_prefixes_are_those_biip_finds(filler: str) -> None:
    for first3 in range(1000):
        digits = f"{first3:03d}{filler}"
        for candidate in (digits, digits[:3] + "0000" + digits[7:]):
            prefix = GS1Prefix.extract(candidate)
            expected = prefix is not None and RcnUsage._from_prefix(prefix) is not None
            assert gs1_fast._is_rcn_prefix(candidate) is expected, candidate


# --- SGTIN-96 ---------------------------------------------------------------------------------

# Partition -> (company prefix bits, company prefix digits); the item reference gets the rest
# of 44 bits and 13 digits.
PARTITIONS = [(40, 12), (37, 11), (34, 10), (30, 9), (27, 8), (24, 7), (20, 6)]


def sgtin96(partition: int, company_prefix: int, item_ref: int, serial: int, filt: int = 1) -> str:
    cp_bits = PARTITIONS[min(partition, 6)][0]
    value = (0x30 << 88) | (filt << 85) | (partition << 82)
    value |= (company_prefix << (82 - cp_bits)) | (item_ref << 38) | serial
    return f"{value:024X}"


@st.composite
def sgtin96_hex(draw: st.DrawFn) -> str:
    partition = draw(st.integers(0, 7))
    cp_bits, cp_digits = PARTITIONS[min(partition, 6)]
    ir_bits = 44 - cp_bits
    if draw(st.integers(0, 4)):  # mostly in range
        cp = draw(st.integers(0, min(10**cp_digits, 2**cp_bits) - 1))
        ir = draw(st.integers(0, min(10 ** (13 - cp_digits), 2**ir_bits) - 1))
    else:
        cp = draw(st.integers(0, 2**cp_bits - 1))
        ir = draw(st.integers(0, 2**ir_bits - 1))
    serial = draw(st.integers(0, 2**38 - 1) | st.sampled_from([0, 1, 2**38 - 1]))
    text = sgtin96(partition, cp, ir, serial, draw(st.integers(0, 7)))
    if draw(st.booleans()):
        text = text.lower()
    mutation = draw(st.integers(0, 7))
    if mutation == 0:
        text = draw(st.sampled_from([" ", "\t", "\r\n"])) + text + " "
    elif mutation == 1:
        at = draw(st.integers(0, 24))
        junk = draw(st.sampled_from(["_", "+", "-", " ", "G", "0", "00", "é"]))
        text = text[:at] + junk + text[at:]
    elif mutation == 2:
        text = draw(st.sampled_from(["31", "36", "0x", "3"])) + text[2:]
    return text


@PROPERTY
@given(sgtin96_hex())
def test_sgtin96_hex_gives_the_same_outcome_as_epcpy(text: str) -> None:
    event("fast path took it" if parse_sgtin96_hex_fast(text) is not None else "deferred")
    assert_same(uncached_hex(text), identity._parse_epc_hex_slow(text))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 6), st.integers(0, 7), st.data())
def test_valid_sgtin96_tags_are_taken_by_the_fast_path(
    partition: int, filter_value: int, data: st.DataObject
) -> None:
    cp_digits = PARTITIONS[partition][1]
    cp = data.draw(st.integers(0, 10**cp_digits - 1))
    ir = data.draw(st.integers(0, 10 ** (13 - cp_digits) - 1))
    serial = data.draw(st.integers(0, 2**38 - 1))
    text = sgtin96(partition, cp, ir, serial, filter_value)
    fast = parse_sgtin96_hex_fast(text)
    assert fast is not None
    assert_same(ParseOutcome(fast, None, text), identity._parse_epc_hex_slow(text))
    assert fast.epc_uri == f"urn:epc:id:sgtin:{cp:0{cp_digits}d}.{ir:0{13 - cp_digits}d}.{serial}"


def test_tds_sgtin96_example_is_decoded_by_the_fast_path() -> None:
    item = parse_sgtin96_hex_fast("3074257BF7194E4000001A85")
    assert item is not None
    assert (item.gtin, item.serial, item.epc_uri, item.kind) == (
        "80614141123458",
        "6789",
        "urn:epc:id:sgtin:0614141.812345.6789",
        IdKind.EPC_HEX,
    )


@pytest.mark.parametrize(
    "text",
    [
        "307C257BF7194E4000001A85",  # partition 7
        sgtin96(0, 10**12, 0, 1),  # company prefix over 12 digits
        sgtin96(6, 0, 10**7, 1),  # item reference over 7 digits
        "3674257BF7194E59B2C2BF100000000000000000000000000000",  # SGTIN-198: epcpy
        "3074257BF7194E4000001A8",  # truncated
        "0x74257BF7194E4000001A85",
    ],
)
def test_sgtin96_reads_the_fast_path_cannot_vouch_for_are_deferred(text: str) -> None:
    assert parse_sgtin96_hex_fast(text) is None
    assert_same(uncached_hex(text), identity._parse_epc_hex_slow(text))


# --- examples: what the fast path takes and what it defers ---------------------------------

GTIN = "09506000134352"  # GS1 example, 11-digit company prefix in biip's tables
TDS_GTIN = "80614141123458"  # TDS example, 7-digit company prefix


@pytest.mark.parametrize(
    ("text", "taken"),
    [
        ("]d2" + f"01{GTIN}17201225" + "10ABC123" + GS + "21XYZ0001", True),
        (f"01{GTIN}" + "21XYZ" + GS + f"10LOT{GS}17201225", True),
        (f"]C1{GS}01{GTIN}{GS}{GS}17291200" + "21X" + GS, True),  # leading/trailing GS
        (f"(01){GTIN}(17)201225(10)ABC123(21)XYZ", True),
        (f"(01){TDS_GTIN}(21)" + 'a%b&c/d<e>f?g"h', True),  # TDS escapes
        (f"01{GTIN}" + "11250101" + "13250102" + "15250103" + "16250104" + "12250105", True),
        (f"01{GTIN}17250200", True),  # day 00: last day of February
        (f"01{GTIN}" + "10ABC21XYZ", True),  # no GS: biip reads batch 'ABC21XYZ' too
        (f"01{GTIN[:13]}3", False),  # wrong check digit
        (f"01{GTIN}17251301", False),  # month 13
        (f"01{GTIN}17250230", False),  # 30 February
        (f"01{GTIN}17250000", False),  # month 00
        (f"01{GTIN}" + "21" + "S" * 21, False),  # over-long serial: biip splits it
        (f"01{GTIN}" + "21AB CD", False),  # space is not in set 82
        (f"01{GTIN}" + "21" + GS + "10L", False),  # empty serial
        (f"01{GTIN}" + "21A" + GS + "21A", False),  # repeated AI (same value is valid)
        (f"01{GTIN}" + "21A" + GS + "21B", False),  # conflicting values
        (f"01{GTIN}" + "2369", False),  # unknown AI
        (f"01{GTIN}" + "3012", False),  # AI outside the fast path
        ("]d1" + f"01{GTIN}" + "21X", False),  # not a GS1 symbology
        (f"(01){GTIN} (21)X", False),  # whitespace inside HRI
        (f"(01){GTIN}(21)X(", False),  # stray parenthesis (biip ignores it)
        (f"(01){TDS_GTIN}(21)/0", False),  # epcpy escaping quirk
        ("10ABC" + GS + "21XYZ", False),  # no GTIN
    ],
)
def test_example_reads_are_taken_or_deferred_and_agree_with_biip(text: str, taken: bool) -> None:
    assert (parse_gs1_fast(text) is not None) is taken
    assert_same(uncached(text), identity._parse_slow(text))


@pytest.mark.parametrize("char", list(CSET82))
def test_every_set82_character_is_escaped_as_biip_and_epcpy_do(char: str) -> None:
    serial = "x" + char
    text = f"(01){TDS_GTIN}(10){serial}(21){serial}"
    if char != "(":
        assert parse_gs1_fast(text) is not None
    assert_same(uncached(text), identity._parse_slow(text))
    assert serial.translate(gs1_fast._URI_ESCAPES) == quote(serial, safe="")
    assert serial.translate(gs1_fast._TDS_ESCAPES) == escape_serial(serial)


def test_epcpy_escaping_quirk_is_left_to_the_library_path() -> None:
    # epcpy rejects '/0' (so no EPC URI) and overflows on a long piece: both deferred.
    for serial in ("/0", "&/x", "/ABCDEF0123456789AB"):
        text = f"(01){TDS_GTIN}(21){serial}"
        assert parse_gs1_fast(text) is None
        assert_same(uncached(text), identity._parse_slow(text))
    assert parse_gs1_fast(f"(01){TDS_GTIN}(21)a/0") is not None


# --- dates --------------------------------------------------------------------------------------


def test_every_yymmdd_decodes_as_biip_decodes_it() -> None:
    window = gs1_fast._current_window()
    for yy in range(100):
        for mm in range(14):
            for dd in range(33):
                text = f"{yy:02d}{mm:02d}{dd:02d}"
                try:
                    expected: tuple[dt.date, str] | None = (
                        _parse_date_and_datetime(text)[0],
                        f"{_parse_date_and_datetime(text)[0]:%y%m%d}",
                    )
                except ValueError:
                    expected = None
                assert gs1_fast._decode_date(text, window) == expected, text


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Move both biip's and the fast path's clock to a chosen instant (UTC)."""
    clock = types.SimpleNamespace(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))

    class FrozenDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> FrozenDatetime:
            instant: dt.datetime = clock.now
            return cls.fromtimestamp(instant.timestamp(), tz)

    fake_dt = types.SimpleNamespace(datetime=FrozenDatetime, date=dt.date, UTC=dt.UTC)
    monkeypatch.setattr(biip_element_strings, "dt", fake_dt)
    monkeypatch.setattr(gs1_fast, "_now", lambda: clock.now.timestamp())
    monkeypatch.setattr(gs1_fast, "_window", gs1_fast._DateWindow(0.0))
    return clock


@pytest.mark.parametrize(
    "instant",
    [
        dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        dt.datetime(2050, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2051, 7, 1, tzinfo=dt.UTC),
        dt.datetime(2099, 12, 31, tzinfo=dt.UTC),
    ],
)
def test_century_window_follows_biip_in_any_year(
    frozen_clock: types.SimpleNamespace, instant: dt.datetime
) -> None:
    frozen_clock.now = instant
    window = gs1_fast._current_window()
    assert window.valid_from <= instant.timestamp() < window.valid_until
    assert list(window.full_year) == [yy + _get_century(yy) for yy in range(100)]
    for yy in (0, 25, 49, 50, 51, 75, 99):
        text = f"01{GTIN}17{yy:02d}0615"
        assert_same(uncached(text), identity._parse_slow(text))


def test_century_window_is_rebuilt_when_the_year_changes(
    frozen_clock: types.SimpleNamespace,
) -> None:
    expiries = []
    for instant in (
        dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    ):
        frozen_clock.now = instant
        text = f"01{GTIN}17760101"
        assert_same(uncached(text), identity._parse_slow(text))
        item = parse_gs1_fast(text)
        assert item is not None
        expiries.append(item.expiry)
    # Fifty years ahead is this century from 2026 on, 51 years ahead is the last one.
    assert expiries == [dt.date(1976, 1, 1), dt.date(2076, 1, 1)]


# --- what the fast path relies on in biip and pydantic ----------------------------------------


@pytest.mark.parametrize("prefix", sorted(AIM_PREFIXES))
def test_aim_prefixes_are_the_gs1_message_symbologies_biip_knows(prefix: str) -> None:
    si = SymbologyIdentifier.extract(prefix + "01")
    assert si.value == prefix
    assert si.gs1_symbology in GS1Symbology.with_gs1_messages()


ASCII = [chr(c) for c in range(128)]


@pytest.mark.parametrize("ai", ["10", "21"])
def test_batch_and_serial_are_1_to_20_set82_characters_for_biip(ai: str) -> None:
    extracted = GS1ApplicationIdentifier.extract(ai + "ABC")
    assert (extracted.ai, extracted.separator_required) == (ai, True)
    assert {c for c in ASCII if re.fullmatch(extracted.pattern, ai + c)} == set(CSET82)
    assert re.fullmatch(extracted.pattern, ai + "A" * 20)
    assert not re.fullmatch(extracted.pattern, ai + "A" * 21)
    assert not re.fullmatch(extracted.pattern, ai)


@pytest.mark.parametrize(("ai", "digits"), [("01", 14), *((ai, 6) for ai in DATE_AIS)])
def test_gtin_and_dates_are_fixed_length_digits_for_biip(ai: str, digits: int) -> None:
    extracted = GS1ApplicationIdentifier.extract(ai + "0" * 20)
    assert (extracted.ai, extracted.separator_required) == (ai, False)
    value = "0" * (digits - 2) + "11"  # a valid YYMMDD too
    assert re.fullmatch(extracted.pattern, ai + value)
    assert not re.fullmatch(extracted.pattern, ai + value[1:])
    assert not re.fullmatch(extracted.pattern, ai + value + "1")
    assert not re.fullmatch(extracted.pattern, ai + value[:-1] + "A")


def test_canonical_item_builds_what_validation_builds() -> None:
    fields = (
        GTIN,
        "XYZ",
        "ABC",
        dt.date(2020, 12, 25),
        "urn:epc:id:sgtin:95060001343.05.XYZ",
        "https://id.gs1.org/01/09506000134352/10/ABC/21/XYZ?17=201225",
        IdKind.GS1_ELEMENT_STRING,
    )
    fast = canonical_item(*fields)
    names = ("gtin", "serial", "batch", "expiry", "epc_uri", "digital_link", "kind")
    as_dict = dict(zip(names, fields, strict=True))
    validated = CanonicalItemId.model_validate(as_dict)
    constructed = CanonicalItemId.model_construct(None, **as_dict)  # type: ignore[arg-type]
    for expected in (validated, constructed):
        assert fast == expected
        assert fast.__dict__ == expected.__dict__
        assert list(fast.__dict__) == list(expected.__dict__)
        assert fast.model_fields_set == expected.model_fields_set
        assert fast.__pydantic_extra__ == expected.__pydantic_extra__
        assert fast.__pydantic_private__ == expected.__pydantic_private__
        assert hash(fast) == hash(expected)
        assert fast.model_dump_json() == expected.model_dump_json()
    copy = fast.model_copy(update={"kind": IdKind.EPC_HEX})
    assert copy.kind is IdKind.EPC_HEX
    assert fast.kind is IdKind.GS1_ELEMENT_STRING
    assert fast.model_fields_set is not canonical_item(*fields).model_fields_set


def test_canonical_item_model_has_nothing_that_construction_would_skip() -> None:
    # canonical_item is only equivalent while the model has no hooks, privates or extras.
    assert set(CanonicalItemId.model_fields) == gs1_fast._FIELD_NAMES
    assert CanonicalItemId.__private_attributes__ == {}
    assert not CanonicalItemId.__pydantic_post_init__
    assert not CanonicalItemId.__pydantic_root_model__
    assert CanonicalItemId.model_config.get("extra") == "forbid"
    decorators = CanonicalItemId.__pydantic_decorators__
    assert not decorators.field_validators
    assert not decorators.model_validators
    assert not decorators.field_serializers
    assert not decorators.model_serializers


def test_repeated_reads_of_a_fast_path_line_hit_the_cache() -> None:
    text = f"]d201{GTIN}21CACHEFAST"
    first = identity.parse_item_id(text)
    assert first.ok
    assert identity.parse_item_id(text) is first
