"""Item identity: every form of an item ID normalises to one CanonicalItemId."""

from __future__ import annotations

import datetime as dt

import pytest
from biip.checksums import gs1_standard_check_digit
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_messages import GS1Message
from hypothesis import given
from hypothesis import strategies as st

from gatewire.epc import EpcError, encode_sgtin_hex, sgtin_binary_scheme
from gatewire.identity import (
    MAX_INPUT_CHARS,
    ParseOutcome,
    digital_link_uri,
    parse_epc_hex,
    parse_item_id,
)
from gatewire.item import CanonicalItemId, IdKind

GS = "\x1d"

# GS1 General Specifications / GS1 Digital Link standard examples.
GS1_EXAMPLE_GTIN = "09506000134352"
DL_EXAMPLE = "https://id.gs1.org/01/09506000134352/10/ABC/21/12345"
HRI_EXAMPLE = "(01)09506000134352(17)201225(10)ABC123(21)XYZ"
ELEMENT_STRING_EXAMPLE = "0109506000134352" + "17201225" + "10ABC123" + GS + "21XYZ"

# GS1 EPC Tag Data Standard examples (SGTIN-96 and SGTIN-198, filter 3, partition 5).
TDS_SGTIN96_URI = "urn:epc:id:sgtin:0614141.812345.6789"
TDS_SGTIN96_HEX = "3074257BF7194E4000001A85"
TDS_SGTIN198_URI = "urn:epc:id:sgtin:0614141.812345.32a%2Fb"
TDS_SGTIN198_HEX = "3674257BF7194E59B2C2BF100000000000000000000000000000"
TDS_GTIN = "80614141123458"


def ok(text: str) -> CanonicalItemId:
    outcome = parse_item_id(text)
    assert outcome.ok, outcome.error
    assert outcome.error is None
    assert outcome.item is not None
    return outcome.item


def bad(text: str) -> str:
    outcome = parse_item_id(text)
    assert not outcome.ok
    assert outcome.item is None
    assert outcome.error
    assert "\n" not in outcome.error
    return outcome.error


def with_check_digit(body: str) -> str:
    return body + str(gs1_standard_check_digit(body))


# --- GS1 published examples ---------------------------------------------------------------


def test_gs1_digital_link_example_gives_gtin_batch_and_serial() -> None:
    item = ok(DL_EXAMPLE)
    assert (item.gtin, item.batch, item.serial, item.expiry) == (
        GS1_EXAMPLE_GTIN,
        "ABC",
        "12345",
        None,
    )
    assert item.kind is IdKind.GS1_DIGITAL_LINK
    assert item.digital_link == DL_EXAMPLE
    assert item.key == "09506000134352/12345"


def test_gs1_bracketed_example_gives_expiry_as_date() -> None:
    item = ok(HRI_EXAMPLE)
    assert item.gtin == GS1_EXAMPLE_GTIN
    assert item.serial == "XYZ"
    assert item.batch == "ABC123"
    assert item.expiry == dt.date(2020, 12, 25)
    assert item.kind is IdKind.GS1_BRACKETED
    assert item.digital_link == ("https://id.gs1.org/01/09506000134352/10/ABC123/21/XYZ?17=201225")


@pytest.mark.parametrize("aim", ["", "]C1", "]d2", "]Q3", "]e0"])
def test_element_string_with_or_without_aim_prefix_matches_bracketed_form(aim: str) -> None:
    item = ok(aim + ELEMENT_STRING_EXAMPLE)
    assert item.kind is IdKind.GS1_ELEMENT_STRING
    expected = ok(HRI_EXAMPLE).model_copy(update={"kind": IdKind.GS1_ELEMENT_STRING})
    assert item == expected


def test_gs_separator_ends_variable_length_batch_before_serial() -> None:
    item = ok("]C1" + "0109506000134352" + "10LOT7" + GS + "21S/N-1")
    assert (item.batch, item.serial) == ("LOT7", "S/N-1")


def test_trailing_gs_and_surrounding_whitespace_are_ignored() -> None:
    assert ok(" ]d20109506000134352" + "21XYZ" + GS + "\r\n").serial == "XYZ"


def test_tds_sgtin96_uri_and_hex_name_the_same_item() -> None:
    from_uri, from_hex = ok(TDS_SGTIN96_URI), ok(TDS_SGTIN96_HEX)
    assert from_uri.kind is IdKind.EPC_URI
    assert from_hex.kind is IdKind.EPC_HEX
    for item in (from_uri, from_hex):
        assert (item.gtin, item.serial, item.epc_uri) == (TDS_GTIN, "6789", TDS_SGTIN96_URI)
        assert item.digital_link == "https://id.gs1.org/01/80614141123458/21/6789"


def test_tds_sgtin198_uri_and_hex_name_the_same_item_with_unescaped_serial() -> None:
    from_uri, from_hex = ok(TDS_SGTIN198_URI), ok(TDS_SGTIN198_HEX)
    for item in (from_uri, from_hex):
        assert (item.gtin, item.serial, item.epc_uri) == (TDS_GTIN, "32a/b", TDS_SGTIN198_URI)
        assert item.digital_link == "https://id.gs1.org/01/80614141123458/21/32a%2Fb"


def test_tds_examples_encode_back_to_their_published_hex() -> None:
    assert encode_sgtin_hex(TDS_SGTIN96_URI, filter_value=3) == TDS_SGTIN96_HEX
    assert encode_sgtin_hex(TDS_SGTIN198_URI, filter_value=3) == TDS_SGTIN198_HEX


def test_parse_epc_hex_accepts_lower_case_hex() -> None:
    outcome = parse_epc_hex(TDS_SGTIN96_HEX.lower())
    assert outcome.ok
    assert outcome.item is not None
    assert outcome.item.epc_uri == TDS_SGTIN96_URI
    assert outcome.raw == TDS_SGTIN96_HEX.lower()


def test_sgtin_tag_uri_is_accepted_as_epc_uri() -> None:
    item = ok("urn:epc:tag:sgtin-96:3.0614141.812345.6789")
    assert (item.epc_uri, item.kind) == (TDS_SGTIN96_URI, IdKind.EPC_URI)


# --- every form of one item agrees --------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "forms"),
    [
        (
            "6789",
            [
                "(01)80614141123458(21)6789",
                "]d2" + "0180614141123458" + "216789",
                "0180614141123458" + "10L1" + GS + "216789",
                "https://id.gs1.org/01/80614141123458/21/6789",
                "https://brand.example.com/p/01/80614141123458/21/6789?17=291231&x=1",
                TDS_SGTIN96_URI,
                TDS_SGTIN96_HEX,
            ],
        ),
        (
            "32a/b",
            [
                "(01)80614141123458(21)32a/b",
                "]Q3" + "0180614141123458" + "2132a/b",
                "https://id.gs1.org/01/80614141123458/21/32a%2Fb",
                TDS_SGTIN198_URI,
                TDS_SGTIN198_HEX,
            ],
        ),
    ],
)
def test_all_forms_of_one_item_agree_on_key_and_epc_uri(serial: str, forms: list[str]) -> None:
    items = [ok(form) for form in forms]
    assert {item.key for item in items} == {f"{TDS_GTIN}/{serial}"}
    # biip knows 0614141 is a 7-digit company prefix, so GS1 forms name the same EPC.
    assert len({item.epc_uri for item in items}) == 1


def test_gtin_only_forms_agree_on_product_key() -> None:
    forms = ["9506000134352", GS1_EXAMPLE_GTIN, "(01)09506000134352", "]e00109506000134352"]
    forms.append("https://id.gs1.org/01/9506000134352")
    assert {ok(form).key for form in forms} == {GS1_EXAMPLE_GTIN}


def test_digital_link_matches_biip_canonical_uri() -> None:
    for text in (HRI_EXAMPLE, "(01)80614141123458(10)A/1(21)x%y&z"):
        item = ok(text)
        expected = GS1Message.parse_hri(text).as_gs1_digital_link_uri().as_canonical_uri()
        assert item.digital_link == expected


def test_digital_link_uri_orders_lot_before_serial_and_puts_expiry_in_query() -> None:
    uri = digital_link_uri("09506000134352", "S 1", "L/1", dt.date(2031, 1, 31))
    assert uri == "https://id.gs1.org/01/09506000134352/10/L%2F1/21/S%201?17=310131"


# --- plain GTIN scans -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gtin14"),
    [
        ("96385074", "00000096385074"),  # GTIN-8
        ("614141123452", "00614141123452"),  # GTIN-12 (UPC-A)
        ("9506000134352", "09506000134352"),  # GTIN-13 (EAN-13)
        ("09506000134352", "09506000134352"),  # GTIN-14 stays a GTIN
        ("]E09506000134352", "09506000134352"),  # EAN-13 with AIM prefix
        ("]E004252614", "00042100005264"),  # ]E0 with 8 digits is UPC-E
        ("]E496385074", "00000096385074"),  # EAN-8
        ("]I109506000134352", "09506000134352"),  # ITF-14
        ("]E3950600013435212", "09506000134352"),  # EAN-13 + 2-digit add-on
    ],
)
def test_plain_gtin_scan_is_product_level_with_gtin14(text: str, gtin14: str) -> None:
    item = ok(text)
    assert item.gtin == gtin14
    assert item.kind is IdKind.GTIN
    assert (item.serial, item.batch, item.expiry, item.epc_uri) == (None, None, None, None)
    assert not item.is_serialised
    assert item.key == gtin14
    assert item.digital_link == f"https://id.gs1.org/01/{gtin14}"


def test_gs1_string_with_only_gtin_is_valid_but_not_serialised() -> None:
    item = ok("]d2" + "0109506000134352")
    assert item.kind is IdKind.GS1_ELEMENT_STRING
    assert item.serial is None
    assert item.epc_uri is None
    assert not item.is_serialised
    assert item.key == GS1_EXAMPLE_GTIN


def test_batch_and_expiry_without_serial_stay_product_level() -> None:
    item = ok("(01)09506000134352(10)B1(17)290600")
    assert item.serial is None
    assert item.batch == "B1"
    assert item.expiry == dt.date(2029, 6, 30)  # day 00 = last day of the month


# --- EPC URI from GTIN + serial ---------------------------------------------------------------


def test_epc_uri_escapes_serial_characters_per_tds() -> None:
    item = ok('(01)80614141123458(21)a%b&c/d<e>f?g"h')
    assert item.epc_uri == "urn:epc:id:sgtin:0614141.812345.a%25b%26c%2Fd%3Ce%3Ef%3Fg%22h"
    assert ok(item.epc_uri).key == item.key


def test_epc_uri_is_none_when_company_prefix_length_is_unknown() -> None:
    # biip's prefix table has no company prefix length for GS1 Switzerland (760).
    item = ok("(01)07600000000005(21)1")
    assert item.serial == "1"
    assert item.epc_uri is None


def test_epc_uri_is_none_for_restricted_circulation_numbers() -> None:
    assert ok("(01)00200000000004(21)1").epc_uri is None


def test_lower_case_escape_in_epc_uri_is_normalised() -> None:
    item = ok("urn:epc:id:sgtin:0614141.812345.32a%2fb")
    assert item.serial == "32a/b"
    assert item.epc_uri == TDS_SGTIN198_URI


@pytest.mark.parametrize(
    ("serial", "scheme"),
    [
        ("6789", "sgtin-96"),
        ("0", "sgtin-96"),
        (str(2**38 - 1), "sgtin-96"),
        (str(2**38), "sgtin-198"),
        ("0123", "sgtin-198"),
        ("32a/b", "sgtin-198"),
    ],
)
def test_sgtin_binary_scheme_uses_sgtin96_only_for_numeric_serials_it_can_hold(
    serial: str, scheme: str
) -> None:
    assert sgtin_binary_scheme(serial) == scheme


def test_alphanumeric_serial_round_trips_through_sgtin198_hex() -> None:
    item = ok("(01)80614141123458(21)AB-12/x")
    assert item.epc_uri is not None
    tag_hex = encode_sgtin_hex(item.epc_uri)
    assert len(tag_hex) == 52
    assert parse_epc_hex(tag_hex).item == item.model_copy(
        update={"kind": IdKind.EPC_HEX, "batch": None, "expiry": None}
    )


def test_encode_sgtin_hex_rejects_a_non_sgtin_uri() -> None:
    with pytest.raises(EpcError, match="sgtin required"):
        encode_sgtin_hex("urn:epc:id:sscc:0614141.1234567890")


# --- bad input: a result that says what is wrong, never an exception -----------------------


@pytest.mark.parametrize(
    "text",
    [
        "0109506000134353",  # element string
        "(01)09506000134353(21)X",  # bracketed
        "https://id.gs1.org/01/09506000134353/21/X",  # Digital Link
        "]d2" + "0109506000134353" + "21X",  # with AIM prefix
        "9506000134353",  # plain EAN-13
        "09506000134353",  # plain GTIN-14
    ],
)
def test_wrong_gtin_check_digit_is_rejected_in_every_form(text: str) -> None:
    assert "check digit" in bad(text)


@pytest.mark.parametrize(
    "text",
    [
        "(01)09506000134352(23)5",
        "0109506000134352" + "2369",
        "]C1" + "0109506000134352" + "21X" + GS + "2369",
    ],
)
def test_unknown_application_identifier_is_rejected(text: str) -> None:
    error = bad(text)
    assert "Application Identifier" in error
    assert "23" in error


@pytest.mark.parametrize("text", [TDS_SGTIN96_HEX[:-2], TDS_SGTIN198_HEX[:-4]])
def test_truncated_epc_hex_is_rejected_with_its_expected_length(text: str) -> None:
    for outcome in (parse_epc_hex(text), parse_item_id(text)):
        assert not outcome.ok
        assert outcome.error is not None
        assert "hex digits" in outcome.error
        assert "truncated" in outcome.error


def test_epc_hex_longer_than_its_header_allows_is_rejected() -> None:
    assert "must be 24 hex digits" in str(parse_epc_hex(TDS_SGTIN96_HEX + "0000").error)


@pytest.mark.parametrize("text", ["3174257BF7194E4000001A85", "urn:epc:id:sscc:0614141.1234567890"])
def test_sscc_epc_is_not_an_item_id(text: str) -> None:
    assert "not an item ID (sgtin required)" in bad(text)
    if not text.startswith("urn:"):
        assert "not an item ID (sgtin required)" in str(parse_epc_hex(text).error)


def test_sscc_barcode_is_not_an_item_id() -> None:
    assert "SSCC (00)" in bad("(00)106141412345678908")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty input"),
        ("   \t", "empty input"),
        ("hello world", "unrecognised ID"),
        ("!!!", "unrecognised ID"),
        ("0109506000134352é", "non-ASCII"),
        ("٠٩٥٠٦٠٠٠١٣٤٣٥٢", "non-ASCII"),  # Arabic-Indic digits are not GTIN digits
        ("]", "symbology identifier"),
        ("]Y", "symbology identifier"),
        ("]d2", "no data after symbology identifier"),
        ("]C0ABC123", "carries no GS1 data"),
        ("]E0ABCDEFGHIJKLM", "not all digits"),
        ("http://[", "Digital Link"),
        ("https://id.gs1.org/414/9506000134352", "not an item ID"),
        ("https://example.com/no/identifier", "Digital Link"),
        ("https://id.gs1.org/01/09506000134352/ser/123", "qualifier"),  # no short names
        ("(01)09506000134352(17)201345", "(17)"),
        ("(01)09506000134352(17)210230", "date"),
        ("(01)09506000134352(21)A(21)B", "conflicting values for AI (21)"),
        ("(02)09506000134352(37)5", "(02)"),
        ("(10)ABC", "no GTIN (01)"),
        ("urn:epc:id:sgtin:0614141.812345.%41", "escape"),
        ("urn:epc:id:sgtin:0614141.81234.6789", "SGTIN URI"),
        ("urn:epc:id:nothing:1.2.3", "unknown EPC URI"),
        ("urn:epc:", "unknown EPC URI"),
        ("URN:EPC:ID:SGTIN:0614141.812345.6789", "unknown EPC URI"),
        ("307C257BF7194E4000001A85", "partition"),  # partition 7 does not exist
        ("3074257BF7194E4000001A85" + "0" * MAX_INPUT_CHARS, "too long"),
    ],
)
def test_bad_input_returns_a_one_line_reason(text: str, reason: str) -> None:
    assert reason in bad(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("zz", "not hexadecimal"),
        ("0x3074257BF7194E4000001A85", "not hexadecimal"),
        ("3", "too short"),
        ("E2801160600002", "unknown EPC header E2"),
        # TDS SGTIN-198 example with an 'A' two characters after the serial's terminator
        ("3674257BF7194E59B2C2BF100010400000000000000000000000", "after its terminating zero"),
    ],
)
def test_parse_epc_hex_reports_bad_tag_data(text: str, reason: str) -> None:
    outcome = parse_epc_hex(text)
    assert not outcome.ok
    assert reason in str(outcome.error)


def test_non_text_input_is_an_error_not_an_exception() -> None:
    assert parse_item_id(None).error == "expected text, got NoneType"  # type: ignore[arg-type]
    assert parse_epc_hex(b"30").error == "expected text, got bytes"  # type: ignore[arg-type]


def test_hex_shaped_text_that_is_a_valid_gs1_string_is_read_as_gs1() -> None:
    # All hex, starts like an SGTIN-96 header, but it is (30) count + (01) + (21).
    item = ok("3012345678" + "0109506000134352" + "21ABC")
    assert (item.kind, item.serial) == (IdKind.GS1_ELEMENT_STRING, "ABC")


def test_outcome_keeps_raw_text_and_repeated_reads_hit_the_cache() -> None:
    text = "]d2" + "0109506000134352" + "21CACHE"
    first = parse_item_id(text)
    assert first.raw == text
    assert parse_item_id(text) is first


def test_outcome_ok_reflects_item_presence() -> None:
    assert not ParseOutcome(item=None, error="x", raw="").ok
    assert ParseOutcome(item=ok(HRI_EXAMPLE), error=None, raw=HRI_EXAMPLE).ok


# --- property tests ---------------------------------------------------------------------------

GS1_ISH = st.lists(
    st.sampled_from([*"0123456789()]dCQe/%:.?=&ABCXYZabcf", GS, "http", "urn:epc:", "21", "17"]),
    max_size=40,
).map("".join)
PREFIXES = st.sampled_from(
    ["", "]d2", "]C1", "]E0", "]Q1", "(01)", "01", "https://id.gs1.org/01/", "urn:epc:id:sgtin:"]
)
# CSET 82, the characters allowed in AI (21) and (10).
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def assert_never_raises(outcome: ParseOutcome) -> None:
    assert outcome.ok != (outcome.error is not None)
    if outcome.error is not None:
        assert "\n" not in outcome.error
        assert not outcome.error.startswith("internal error"), outcome.error


@given(st.text())
def test_parse_item_id_never_raises_on_arbitrary_text(text: str) -> None:
    assert_never_raises(parse_item_id(text))


@given(PREFIXES, GS1_ISH)
def test_parse_item_id_never_raises_on_gs1_like_text(prefix: str, body: str) -> None:
    assert_never_raises(parse_item_id(prefix + body))


@given(
    st.sampled_from(["30", "36", "31", "3f", ""]), st.text("0123456789abcdefABCDEF", max_size=60)
)
def test_parse_epc_hex_never_raises_on_hex_text(header: str, body: str) -> None:
    assert_never_raises(parse_epc_hex(header + body))
    assert_never_raises(parse_item_id(header + body))


@given(
    st.text("0123456789", min_size=13, max_size=13),
    st.text(CSET82.replace("(", "").replace(")", ""), min_size=1, max_size=20),
)
def test_gs1_forms_and_epc_of_any_item_agree_on_key(body: str, serial: str) -> None:
    gtin = with_check_digit(body)
    forms = [
        f"(01){gtin}(21){serial}",
        f"]d201{gtin}21{serial}",
        f"01{gtin}21{serial}{GS}10LOT",
        digital_link_uri(gtin, serial),
    ]
    items = [ok(form) for form in forms]
    assert {item.key for item in items} == {f"{gtin}/{serial}"}
    assert len({item.epc_uri for item in items}) == 1
    epc_uri = items[0].epc_uri
    if epc_uri is not None:
        assert ok(epc_uri).key == items[0].key
        assert parse_epc_hex(encode_sgtin_hex(epc_uri)).item == ok(epc_uri).model_copy(
            update={"kind": IdKind.EPC_HEX}
        )


def test_digital_link_parsed_by_biip_gives_back_the_same_item() -> None:
    item = ok(HRI_EXAMPLE)
    uri = GS1DigitalLinkURI.parse(item.digital_link)
    assert uri.as_gs1_message().as_hri() == "(01)09506000134352(10)ABC123(21)XYZ(17)201225"


@pytest.mark.parametrize("serial", ["/0", "/ABCDEF0123456789AB", "?x", "<a>"])
def test_serial_with_uri_reserved_first_character_gets_an_escaped_epc_uri(serial: str) -> None:
    outcome = parse_item_id(f"(01)80614141123458(21){serial}")
    assert outcome.item is not None, outcome.error
    assert outcome.item.epc_uri is not None
    round_trip = parse_item_id(outcome.item.epc_uri)
    assert round_trip.item is not None, round_trip.error
    assert round_trip.item.key == outcome.item.key


@given(
    st.text("0123456789", min_size=13, max_size=13),
    st.integers(6, 12),
    st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20
    ),
    st.integers(0, 7),
)
def test_own_sgtin_binary_codec_agrees_with_epcpy(
    body: str, cp_len: int, serial: str, filter_value: int
) -> None:
    from epcpy.epc_schemes.sgtin import SGTIN, SGTINFilterValue

    from gatewire.epc import decode_sgtin_hex, sgtin_uri

    uri = sgtin_uri(with_check_digit(body), serial, cp_len)
    assert uri is not None
    ours = encode_sgtin_hex(uri, filter_value)
    scheme = "sgtin-96" if ours.startswith("30") else "sgtin-198"
    theirs = SGTIN(uri).hex(
        binary_coding_scheme=SGTIN.BinaryCodingScheme(scheme),
        filter_value=SGTINFilterValue(str(filter_value)),
    )
    assert ours == str(theirs).upper().zfill(len(ours))
    decoded = decode_sgtin_hex(ours)
    assert decoded.epc_uri == str(SGTIN.from_binary(f"{int(ours, 16):0{len(ours) * 4}b}").epc_uri)
