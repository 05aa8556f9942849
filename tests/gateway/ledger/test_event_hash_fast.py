"""The common-shape path of the CBV 2.0 event hash (_shape_prehash and its converters)
agrees with the general path on generated EPCs, event times and events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ledger import event_hash as eh
from gateway.ledger.event_hash import (
    DEFAULT_NAMESPACES,
    EventHashError,
    _general_prehash,
    _tree_prehash,
    event_hash,
    event_prehash,
    hash_prehash,
)

# --------------------------------------------------------------------------- EPC URIs

_digits = st.text("0123456789", min_size=0, max_size=14)
_serial_chars = st.sampled_from(
    [
        *"0123456789AZaz",
        "%2F",
        "%2f",
        "%25",
        "%20",
        "%7A",
        "%GG",
        "!",
        "(",
        ")",
        "*",
        "+",
        ",",
        ":",
        ";",
        "=",
        "'",
        ".",
        "_",
        "-",
        "/",
        " ",
        "\n",
        "é",
        "٣",  # an Arabic-Indic digit: \d in a str regex, not ASCII
        "%",
    ]
)
_serials = st.lists(_serial_chars, min_size=0, max_size=22).map("".join)


@st.composite
def _epc_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sgtin", "sscc", "sgln", "sgtin", "sgln", "grai", "SGTIN"]))
    prefix_size = draw(st.integers(4, 14))
    prefix = draw(st.text("0123456789", min_size=prefix_size, max_size=prefix_size))
    total = {"sgtin": 13, "SGTIN": 13, "sscc": 17, "sgln": 12, "grai": 12}[scheme]
    size = max(0, total - prefix_size + draw(st.sampled_from([0, 0, 0, 0, -1, 1])))
    reference = draw(st.text("0123456789", min_size=size, max_size=size))
    if draw(st.integers(0, 9)) == 0:
        reference = draw(_digits | st.sampled_from(["٣" * size, "1.2", "", "12a"]))
    uri = f"urn:epc:id:{scheme}:{prefix}.{reference}"
    if scheme != "sscc" or draw(st.integers(0, 9)) == 0:
        uri += "." + draw(st.sampled_from(["0", "1", "gate1"]) | _serials)
    if draw(st.integers(0, 19)) == 0:
        uri = draw(st.sampled_from([" ", "", "x"])) + uri + draw(st.sampled_from([" ", "", "."]))
    return uri


@settings(max_examples=400, deadline=None)
@given(uri=_epc_uris())
def test_fast_epcs_agree_with_the_general_path(uri: str) -> None:
    general = eh._str_text(uri, None, DEFAULT_NAMESPACES)
    for _ in range(2):  # the first time fills the key caches, the second reads them
        fast = eh._fast_epc(uri)
        if fast is not None:
            assert fast == general == eh.gs1_digital_link(uri)
    assert eh._shape_epcs([uri]) == eh._fast_epcs("epcList", [uri], {})
    assert eh._shape_epcs([uri]) == ("epcListepc=" + general if general else "")


def test_fast_epcs_take_the_usual_uris() -> None:
    assert eh._fast_epc("urn:epc:id:sgtin:0614141.107346.2017") == (
        "https://id.gs1.org/01/10614141073464/21/2017"
    )
    assert eh._fast_epc("urn:epc:id:sgtin:0614141.812345.6789!()") == (
        "https://id.gs1.org/01/80614141123458/21/6789%21%28%29"
    )
    assert eh._fast_epc("urn:epc:id:sscc:4012345.3111111111") == (
        "https://id.gs1.org/00/340123451111111111"
    )
    assert eh._fast_epc("urn:epc:id:sgln:4012345.00005.0") == "https://id.gs1.org/414/4012345000054"
    assert eh._fast_epc("urn:epc:id:sgln:4012345.00005.A%2Fb") == (
        "https://id.gs1.org/414/4012345000054/254/A%2Fb"
    )
    for other in ("urn:epc:id:sgtin:0614141.10734.2017", "urn:epc:id:grai:4012345.00005.1"):
        assert eh._fast_epc(other) is None


@settings(max_examples=200, deadline=None)
@given(digits=st.text("0123456789", min_size=1, max_size=20))
def test_check_digits_agree(digits: str) -> None:
    assert eh._check(digits) == eh._check_digit(digits)


# --------------------------------------------------------------------------- event times


@st.composite
def _event_times(draw: st.DrawFn) -> str:
    usual = draw(st.integers(0, 3)) > 0  # then every part is of the usual form

    def part(valid: st.SearchStrategy[Any], odd: list[Any]) -> Any:
        return draw(valid if usual else st.one_of(valid, st.sampled_from(odd)))

    year = part(st.integers(1970, 2100), [1, 999, 1000, 2000, 2024, 9998, 9999])
    month = part(st.integers(1, 12), [0, 2, 13])
    day = part(st.integers(1, 28), [0, 29, 30, 31, 32])
    hour = part(st.integers(0, 23), [0, 23, 24])
    minute = part(st.integers(0, 59), [59, 60])
    second = part(st.integers(0, 59), [59, 60, 61])
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    fraction = part(
        st.text("0123456789", max_size=9) | st.sampled_from(["9995", "999500", "9994999"]),
        ["", "1234567890", "9999999", "٣"],
    )
    if fraction or not usual:
        text += "." + fraction
    zone = part(
        st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", "-05:00", "+14:00", "-23:00"])
        | st.builds(
            lambda sign, hours, minutes: f"{sign}{hours:02d}:{minutes:02d}",
            st.sampled_from("+-"),
            st.integers(0, 23),
            st.sampled_from([0, 0, 30, 45]),
        ),
        ["", "z", "+0100", "+01", " Z", "Z ", "+24:00", "-25:00", "+01:60", "+01:99"],
    )
    text += zone
    if not usual and draw(st.booleans()):  # a malformed variant
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from([" ", "x", "٣", "", "T", ":"])) + text[at + 1 :]
    return str(text)


@settings(max_examples=250, deadline=None)
@given(text=_event_times())
def test_fast_event_times_agree_with_the_general_path(text: str) -> None:
    try:
        general: str | None = eh._utc_or_none(text)
    except OverflowError:  # years at the ends of the range; the fast path leaves them
        general = None
        assert eh._fast_utc(text) is None
    for _ in range(2):  # the hour cache: filled, then read
        fast = eh._fast_utc(text)
        if fast is not None:
            assert fast == general


@pytest.mark.parametrize("sign", "+-")
def test_every_whole_hour_offset_agrees(sign: str) -> None:
    for hours in range(30):
        for text in (
            f"2024-02-29T00:00:00.5{sign}{hours:02d}:00",
            f"2024-12-31T23:59:59.9994{sign}{hours:02d}:00",
            f"2023-03-01T05:07:09{sign}{hours:02d}:00",
        ):
            fast = eh._fast_utc(text)
            assert fast is None or fast == eh._utc_or_none(text), text
            assert fast is not None or hours > 23, text


# --------------------------------------------------------------------------- events

_EXTENSION_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-2, 2, allow_nan=False).map(lambda x: round(x, 3)),
    st.sampled_from([0.0, -0.0, 1.0, float("nan"), "", " ", "PASS", "+1.50", "cbv:Disp-x"]),
    st.lists(st.sampled_from(["VISION_LOW", "B", "A", ""]), max_size=3),
)


@st.composite
def _common_events(draw: st.DrawFn) -> dict[str, Any]:
    serial = draw(st.integers(0, 10**9))
    epc = draw(
        st.sampled_from(
            [
                f"urn:epc:id:sgtin:0614141.107346.{serial}",
                f"urn:epc:id:sgtin:9521141.569804.{serial}",
                f"urn:epc:id:sscc:0614141.1{serial:09d}",
                f"urn:epc:id:sgtin:4012345.011111.S%2F{serial}",
            ]
        )
        | _epc_uris()
    )
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(["ObjectEvent", " ObjectEvent ", "AggregationEvent"])),
        "eventTime": draw(
            st.sampled_from(
                [
                    f"2026-11-{1 + serial % 28:02d}T{serial % 24:02d}:{serial % 60:02d}:"
                    f"{serial // 60 % 60:02d}.000Z",
                    f"2026-01-05T08:{serial % 60:02d}:13.{serial % 1000:03d}+00:00",
                    f"2026-01-05T08:00:{serial % 60:02d}.{serial % 10**6:06d}+00:00",
                ]
            )
            | _event_times()
        ),
        "eventTimeZoneOffset": draw(st.sampled_from(["+00:00", "+01:00", "-05:00"])),
        "epcList": draw(
            st.sampled_from([[epc], [epc, "urn:epc:id:sgtin:0614141.107346.1"], [], [epc, 5]])
        ),
        "action": draw(st.sampled_from(["ADD", "OBSERVE", "DELETE"])),
        "bizStep": draw(st.sampled_from(["commissioning", "receiving", None, ""])),
        "disposition": draw(st.sampled_from(["active", "in_progress", "non_conformant"])),
        "readPoint": draw(
            st.sampled_from(
                [
                    {"id": "urn:epc:id:sgln:0614141.00777.0"},
                    {"id": "urn:epc:id:sgln:0614141.00888.gate1"},
                    {"id": "urn:epc:id:sgln:5012345.00005.1"},
                    {"id": ""},
                    {"id": "x", "pg:door": "3"},
                ]
            )
        ),
        "bizLocation": {"id": draw(st.sampled_from(["urn:epc:id:sgln:0614141.00777.0", "x"]))},
    }
    if draw(st.booleans()):
        seller = draw(st.integers(1, 12))
        event["bizTransactionList"] = draw(
            st.sampled_from(
                [
                    [
                        {
                            "type": "https://provgate.dev/epcis/BTT-seller",
                            "bizTransaction": f"https://provgate.dev/seller/s-{seller:02d}",
                        }
                    ],
                    [{"bizTransaction": "https://provgate.dev/seller/s-01", "type": "po"}],
                    [{"bizTransaction": "https://provgate.dev/seller/s-01"}],
                    [{"type": "po", "bizTransaction": "a"}, {"type": "po", "bizTransaction": "b"}],
                ]
            )
        )
    for key in draw(
        st.lists(
            st.sampled_from(
                [
                    "pg:visionScore",
                    "pg:modelVersion",
                    "pg:inspector",
                    "pg:verdict",
                    "pg:reasonCodes",
                    "other:x",
                    "eventID",
                    "recordTime",
                ]
            ),
            unique=True,
        )
    ):
        event[key] = draw(_EXTENSION_VALUES)
    order = draw(st.permutations(list(event)))
    return {key: event[key] for key in order}


def _expected(event: dict[str, Any]) -> str | type[EventHashError]:
    """The pre-hash by the per-property path (which the conformance and tree-walk tests of
    test_event_hash.py pin down), or EventHashError."""
    try:
        return _general_prehash(event)
    except EventHashError:
        return EventHashError


@settings(max_examples=200, deadline=None)
@given(event=_common_events())
def test_common_shapes_hash_as_the_general_path_does(event: dict[str, Any]) -> None:
    expected = _expected(event)
    for _ in range(2):  # the first time fills the shape caches, the second reads them
        if expected is EventHashError:
            with pytest.raises(EventHashError):
                event_hash(event)
            continue
        assert event_prehash(event) == expected
        assert event_hash(event) == hash_prehash(expected)
        pg = {"pg": "https://provgate.dev/epcis/"}
        assert event_prehash(event, pg) == _general_prehash(event, pg)
        assert event_hash(event, pg) == hash_prehash(expected)


def test_the_bench_and_demo_shapes_take_the_shape_path() -> None:
    from gateway.ledger.seed import demo_batches

    events = [e for _, batch, _ in demo_batches(30, 7) for e in batch]
    events.append(
        {
            "type": "ObjectEvent",
            "eventTime": "2026-11-05T13:25:45.000Z",
            "eventTimeZoneOffset": "+00:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.77"],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"},
            "bizLocation": {"id": "urn:epc:id:sgln:0614141.00777.0"},
        }
    )
    for event in events:
        for _ in range(2):
            assert eh._shape_prehash(event) == _general_prehash(event) == _tree_prehash(event)


def test_shape_caches_stay_bounded() -> None:
    for n in range(eh._CACHE_MAX + 50):
        event = {
            "type": "ObjectEvent",
            "eventTime": f"{1000 + n:04d}-01-01T00:00:00Z",
            "epcList": [f"urn:epc:id:sgtin:{1000000 + n}.107346.1"],
            "action": f"A{n}",
            f"pg:k{n % 300}": n,
            "readPoint": {"id": f"p{n}"},
            "bizTransactionList": [{"type": "t", "bizTransaction": f"b{n}"}],
        }
        assert eh._shape_prehash(event) == _general_prehash(event)
    for cache in (eh._UTC_HOURS, eh._GTINS, eh._SCALAR_RENDERED, eh._PLACE_RENDERED):
        assert 0 < len(cache) <= eh._CACHE_MAX
    assert 0 < len(eh._STATIC) <= eh._STATIC_MAX
    assert len(eh._PLANS) <= eh._PLANS_MAX
