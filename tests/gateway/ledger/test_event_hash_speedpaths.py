"""The speed paths of the CBV 2.0 event hash added for gate events agree with the general
path: events with their own @context (the gateway's ``pgate`` prefix), extension strings
taken as they are, the SGTIN head cache, canonical Digital Link EPCs, the millisecond
event-time branch; and every shape they must not take still falls back to it."""

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

GATE_CONTEXT = {"pgate": "https://provgate.dev/epcis/gate/"}

# --------------------------------------------------------------------------- as-is strings

_tricky = st.sampled_from(
    [
        *"0123456789",
        *"+-._eEiInNfFaAtTyY",
        *"bcdxzBZ",
        ":",
        "/",
        " ",
        "\t",
        "\x1c",
        "\x00",
        "\x7f",
        "é",
        "٣",  # an Arabic-Indic digit: float() reads it
        "urn:epc:id:sgtin:0614141.107346.1",
        "urn:epcglobal:cbv:disp:active",
        "https://id.gs1.org/01/10614141073464/21/1",
        "http://x",
        "pg:",
        "cbv:",
        "gs1:",
        "pgate:",
        "inf",
        "nan",
        "1_000",
    ]
)
_strings = st.one_of(st.lists(_tricky, max_size=6).map("".join), st.text(max_size=12))


@settings(max_examples=500, deadline=None)
@given(value=_strings)
def test_a_string_taken_as_it_is_renders_as_itself(value: str) -> None:
    if eh._renders_as_is(value):
        assert eh._str_text(value, None, DEFAULT_NAMESPACES) == value


@pytest.mark.parametrize(
    "value",
    [
        "9e3779b97f4a7c15a1b2c3d4e5f60718",  # a gate event id
        "2026-05-28T20:26:40.050+00:00",  # scannedAt
        "PASS",
        "in-01",
        "inf",  # float() reads it, but _numeric leaves text not starting as a number
        "pgate:x",  # a prefix that _str_text does not expand
    ],
)
def test_the_usual_extension_values_are_taken_as_they_are(value: str) -> None:
    assert eh._renders_as_is(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " PASS",
        "PASS ",
        "0042",  # a number: "42"
        "1e5",
        "-inf",
        "+1.50",
        "urn:epcglobal:cbv:disp:active",
        "urn:epc:id:sgtin:0614141.107346.1",
        "https://id.gs1.org/01/10614141073464/21/1",
        "cbv:Disp-active",
        "pg:x",
        "é",
    ],
)
def test_values_that_may_render_otherwise_are_rendered(value: str) -> None:
    assert not eh._renders_as_is(value)


# --------------------------------------------------------------------------- EPCs and times


@settings(max_examples=300, deadline=None)
@given(
    gtin=st.text("0123456789", min_size=12, max_size=15) | st.sampled_from(["1061414107346٣"]),
    serial=st.lists(_tricky, max_size=5).map("".join) | st.text("aZ09", max_size=22),
    path=st.sampled_from(["/21/", "/10/", "/21", "/22/"]),
)
def test_digital_link_epcs_agree_with_the_general_path(gtin: str, serial: str, path: str) -> None:
    uri = "https://id.gs1.org/01/" + gtin + path + serial
    fast = eh._fast_epc(uri)
    if fast is not None:
        assert fast == eh._str_text(uri, None, DEFAULT_NAMESPACES) == eh.gs1_digital_link(uri)
    assert eh._shape_epcs([uri]) == eh._fast_epcs("epcList", [uri], {})


def test_a_canonical_digital_link_epc_takes_the_fast_path() -> None:
    uri = "https://id.gs1.org/01/10614141073464/21/ABC123"
    assert eh._fast_epc(uri) == uri
    assert eh._fast_epc("https://id.gs1.org/01/1061414107346/21/1") is None  # 13 digits


@pytest.mark.parametrize(
    "serial", ["1", "", "%2F", "a.b", "é", "x" * 20, "x" * 21, "٣", "A!", "1 ", "\n"]
)
def test_the_sgtin_head_cache_keeps_every_serial_as_the_general_path(serial: str) -> None:
    head = "urn:epc:id:sgtin:0614141.107346."
    assert eh._shape_epcs([head + "7"]) == "epcListepc=https://id.gs1.org/01/10614141073464/21/7"
    assert head in eh._SGTIN_HEADS  # (so the next EPC takes it)
    uri = head + serial
    text = eh._str_text(uri, None, DEFAULT_NAMESPACES)
    assert eh._shape_epcs([uri]) == ("epcListepc=" + text if text else "")


@pytest.mark.parametrize(
    ("text", "fast"),
    [
        ("2026-11-05T13:25:45.123Z", True),
        ("2026-11-05T13:25:45.123+00:00", True),
        ("2026-11-05T13:25:45.123-05:00", True),
        ("2026-11-05T13:25:45.12٣Z", False),
        ("2026-11-05T13:25:45.12aZ", False),
        ("2026-11-05T13:25:45,123Z", False),
        ("2026-11-05T13:25:60.123Z", False),
        ("2026-11-05T13:60:45.123Z", False),
        ("2026-02-30T13:25:45.123Z", False),
        ("2026-11-05T13:25:45.1234Z", True),
        ("2026-11-05T13:25:45.123+05:30", False),
        ("2026-11-05T13:25Z", False),
    ],
)
def test_the_millisecond_time_branch_agrees_with_the_general_path(text: str, fast: bool) -> None:
    for _ in range(2):  # the hour cache filled, then read
        utc = eh._fast_utc(text)
        assert utc is None or utc == eh._utc_or_none(text)
        assert (utc is not None) == fast


# --------------------------------------------------------------------------- contexts


def _gate_events() -> list[dict[str, Any]]:
    """What gateway.ingest.epcis_of writes, in the variants it has."""
    from gateway.config import GateSettings, GatewayConfig
    from gateway.ingest import epcis_of
    from gatewire.identity import parse_item_id
    from gatewire.messages import Decision, GateEvent

    config = GatewayConfig(
        site="dc1",
        site_org="site-dc1",
        location="urn:epc:id:sgln:0614141.00777.0",
        site_secret="ab" * 32,
        ledger_url="sqlite:///unused.db",
        gates={
            "in-01": GateSettings(kind="inbound", read_point="urn:epc:id:sgln:0614141.00888.1"),
            "insp-01": GateSettings(kind="inspection"),
        },
    )
    epc = parse_item_id("urn:epc:id:sgtin:0614141.107346.2017").item
    link = parse_item_id("https://id.gs1.org/01/10614141073464/21/X9").item
    assert epc is not None
    assert link is not None
    link = link.model_copy(update={"epc_uri": None})
    variants: list[dict[str, Any]] = [
        {},
        {"seller": "seller-3", "reasons": ["ledger.ok"], "request_id": "r" * 32},
        {"decision": Decision.HOLD, "reasons": ["vision.suspect", "inspect.random"]},
        {"decision": Decision.REJECT, "late": True, "actuated_at": 1_780_000_000.1234},
        {"gate": "insp-01", "item": link, "decided_at": 1_780_000_000.000_001},
        {"gate": "unlisted-7", "seller": " spaced seller ", "event_id": "0000000042"},
    ]
    events = []
    for fields in variants:
        values: dict[str, Any] = {
            "site": "dc1",
            "gate": "in-01",
            "event_id": "9e3779b97f4a7c15",
            "item": epc,
            "decision": Decision.PASS,
            "scanned_at": 1_780_000_000.25,
            "decided_at": 1_780_000_000.262,
        }
        values.update(fields)
        events.append(epcis_of(GateEvent(**values), config))
    return events


def test_gate_events_take_the_shape_path_under_their_context() -> None:
    for event in _gate_events():
        found = eh._context_plans(event["@context"])
        assert found is not None
        for _ in range(2):  # caches filled, then read
            assert eh._shape_prehash(event, *found) == _general_prehash(event)
            assert _general_prehash(event) == _tree_prehash(event)
            assert event_hash(event) == hash_prehash(_tree_prehash(event))
        assert "{https://provgate.dev/epcis/gate/}gate=" in _tree_prehash(event)


_CONTEXTS = st.sampled_from(
    [
        [GATE_CONTEXT],
        GATE_CONTEXT,
        ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", GATE_CONTEXT],
        [{"pg": "https://other.example/"}],  # our prefix bound elsewhere
        [{"x": "https://gs1.org/voc/"}],  # a GS1 vocabulary under another prefix
        [{"cbv": "https://example.com/cbv/"}],  # a GS1 prefix bound elsewhere
        [{"urn": "https://example.com/urn/"}],
        [{"https": "https://ref.gs1.org/cbv/"}],
        [{"pgate": 5}],
        [{"pgate": ["a"]}],
        [[GATE_CONTEXT]],
        [],
        None,
    ]
)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    _strings,
    st.sampled_from(["x:Angle", "gs1:Angle", "cbv:Disp-active", "pgate:y", "0x1F", "١٢"]),
    st.lists(_strings, max_size=3),
    st.just({"id": "a"}),
)


@st.composite
def _context_events(draw: st.DrawFn) -> dict[str, Any]:
    serial = draw(st.integers(0, 10**6))
    event: dict[str, Any] = {
        "@context": draw(_CONTEXTS),
        "type": "ObjectEvent",
        "eventTime": draw(
            st.sampled_from(
                [
                    f"2026-01-05T08:{serial % 60:02d}:13.{serial % 1000:03d}+00:00",
                    f"2026-01-05T08:00:{serial % 60:02d}.{serial:06d}+00:00"[:32],
                    "2026-01-05T08:00:13.5+05:30",
                    "2026-01-05T08:00:13Z",
                    "2026-02-30T08:00:13Z",
                    "٢٠٢٦-01-05T08:00:13Z",
                ]
            )
        ),
        "eventTimeZoneOffset": "+00:00",
        "epcList": draw(
            st.sampled_from(
                [
                    [f"urn:epc:id:sgtin:0614141.107346.{serial}"],
                    [f"https://id.gs1.org/01/10614141073464/21/{serial}"],
                    [f"urn:epc:id:grai:0614141.00005.{serial}"],
                    ["urn:epc:id:sgtin:0614141.107346.é"],
                    [],
                ]
            )
        ),
        "action": "OBSERVE",
        "bizStep": draw(st.sampled_from(["receiving", "cbv:BizStep-shipping", "x:y"])),
        "disposition": "in_progress",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00888.1"},
        "bizLocation": {"id": "urn:epc:id:sgln:0614141.00777.0"},
    }
    if draw(st.booleans()):
        event["bizTransactionList"] = [
            {"type": "https://provgate.dev/epcis/BTT-seller", "bizTransaction": f"s-{serial % 5}"}
        ]
    names = [
        "pgate:gateEventId",
        "pgate:scannedAt",
        "pgate:codesList",
        "pg:verdict",
        "x:Angle",
        "cbv:bizStep",
        "other:y",
        "plain",
        "recordTime",
    ]
    for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=5)):
        event[name] = draw(_VALUES)
    if event["@context"] is None:
        del event["@context"]
    order = draw(st.permutations(list(event)))
    return {key: event[key] for key in order}


def _reference(event: dict[str, Any], context: dict[str, str] | None = None) -> str | None:
    try:
        return _general_prehash(event, context)
    except EventHashError:
        return None


@settings(max_examples=300, deadline=None)
@given(event=_context_events())
def test_events_with_a_context_hash_as_the_general_path_does(event: dict[str, Any]) -> None:
    expected = _reference(event)
    for _ in range(2):  # the first time fills the caches, the second reads them
        if expected is None:
            with pytest.raises(EventHashError):
                event_hash(event)
            continue
        assert event_hash(event) == hash_prehash(expected)
        assert event_prehash(event) == expected
    extra = {"pgate": "https://provgate.dev/epcis/gate/", "y": "https://gs1.org/voc/"}
    for context in (GATE_CONTEXT, extra):
        expected = _reference(event, context)
        if expected is not None:
            assert event_prehash(event, context) == expected
            assert event_hash(event, context) == hash_prehash(expected)


def test_contexts_that_may_change_a_value_take_the_general_path() -> None:
    assert eh._plans_for({**DEFAULT_NAMESPACES, "x": "https://gs1.org/voc/"}) is None
    assert eh._plans_for({**DEFAULT_NAMESPACES, "cbv": "https://example.com/"}) is None
    assert eh._plans_for({**DEFAULT_NAMESPACES, "pgate": 5}) is None  # type: ignore[dict-item]
    assert eh._plans_for({**DEFAULT_NAMESPACES, **GATE_CONTEXT}) is not None
    assert eh._context_plans([{"pgate": ["a"]}]) is None
    assert eh._context_plans([[GATE_CONTEXT]]) is None
    event = {
        "@context": [{"x": "https://gs1.org/voc/"}],
        "type": "ObjectEvent",
        "eventTime": "2026-01-05T08:00:13Z",
        "epcList": [],
        "x:Angle": "x:Degree",  # expands: a GS1 vocabulary
    }
    assert "{https://gs1.org/voc/}Angle=https://gs1.org/voc/Degree" in event_prehash(event)
    assert event_hash(event) == hash_prehash(_tree_prehash(event))


def test_list_named_extensions_render_as_lists() -> None:
    event = {
        "@context": [GATE_CONTEXT],
        "type": "ObjectEvent",
        "eventTime": "2026-01-05T08:00:13Z",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.1"],
        "pgate:codesList": "x",
    }
    text = "{https://provgate.dev/epcis/gate/}codesList{https://provgate.dev/epcis/gate/}codes=x"
    assert event_prehash(event).endswith(text)
    assert event_hash(event) == hash_prehash(_tree_prehash(event))


def test_context_caches_stay_bounded() -> None:
    for n in range(eh._NS_PLANS_MAX + 20):
        event = {
            "@context": [{f"p{n}": f"https://example.com/{n}/"}],
            "type": "ObjectEvent",
            "eventTime": "2026-01-05T08:00:13Z",
            "epcList": [f"urn:epc:id:sgtin:{1000000 + n}.107346.1"],
            f"p{n}:x": "y",
        }
        assert event_hash(event) == hash_prehash(_tree_prehash(event))
    assert 0 < len(eh._NS_PLANS) <= eh._NS_PLANS_MAX
    assert 0 < len(eh._CONTEXT_PLANS) <= eh._NS_PLANS_MAX
    assert 0 < len(eh._SGTIN_HEADS) <= eh._CACHE_MAX
