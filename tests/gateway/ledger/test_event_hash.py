"""CBV 2.0 event hash: the reference conformance documents and the normalisation rules."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ledger.event_hash import (
    EventHashError,
    _tree_prehash,
    document_event_hashes,
    document_event_prehashes,
    document_events,
    document_ignore_fields,
    event_hash,
    event_prehash,
    gs1_digital_link,
    hash_prehash,
    namespaces_from_context,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONFORMANCE = PROJECT_ROOT.parent / "shared" / "conformance" / "epcis-event-hash"
ABSENT = f"conformance examples not found at {CONFORMANCE} (they live beside the project)"

#: Lines of the shipped .prehashes files that do not hash to the hash listed beside them
#: (garbled, truncated, or another event's text), so no implementation can match both. Our
#: hash matches the listed hash for these events; the test below checks they stay defective.
KNOWN_BAD_PREHASH_LINES = {
    ("epcisDocWithAllGS1Keys", 0),  # characters interleaved ("epc=httpspc=…")
    ("epcisDocWithCustomSchemaInContext", 1),  # text of event 0 with its extension moved
    ("epcisDocWithDefaultSchemaInContext", 1),  # truncated after "…cbv:bt:06141410734"
}
PAIRED_TYPES = ("ObjectEvent", "AggregationEvent")


def _document_names() -> list[Any]:
    if not CONFORMANCE.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=ABSENT))]
    return sorted(p.stem for p in CONFORMANCE.glob("*.jsonld"))


def _lines(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _load(name: str) -> tuple[dict[str, Any], list[str], list[str] | None]:
    doc = json.loads((CONFORMANCE / f"{name}.jsonld").read_text(encoding="utf-8"))
    hashes = _lines(CONFORMANCE / f"{name}.hashes")
    assert hashes is not None, f"{name}.hashes is missing"
    return doc, hashes, _lines(CONFORMANCE / f"{name}.prehashes")


def _sha(prehash: str) -> str:
    return "ni:///sha-256;" + hashlib.sha256(prehash.encode()).hexdigest() + "?ver=CBV2.0"


# --------------------------------------------------------------------------- conformance


def test_conformance_folder_holds_the_22_reference_documents() -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip(ABSENT)
    assert len(list(CONFORMANCE.glob("*.jsonld"))) == 22


@pytest.mark.parametrize("name", _document_names())
def test_every_event_hash_matches_the_reference(name: str) -> None:
    doc, hashes, _ = _load(name)
    assert document_event_hashes(doc) == hashes


@pytest.mark.parametrize("name", _document_names())
def test_every_prehash_matches_the_reference_where_the_file_is_consistent(name: str) -> None:
    doc, hashes, prehashes = _load(name)
    if prehashes is None:
        pytest.skip(f"{name} ships no .prehashes file (its hash is checked)")
    ours = document_event_prehashes(doc)
    events = document_events(doc)
    assert len(prehashes) == len(ours) == len(hashes)
    for index, (expected, got) in enumerate(zip(prehashes, ours, strict=True)):
        if (name, index) in KNOWN_BAD_PREHASH_LINES:
            assert _sha(expected) != hashes[index], f"{name}[{index}] was fixed: drop it"
            assert _sha(got) == hashes[index]
            continue
        assert _sha(expected) == hashes[index], f"{name}[{index}]: new inconsistent line"
        assert got == expected, f"{name}[{index}] ({events[index]['type']})"


def test_every_object_and_aggregation_event_is_covered() -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip(ABSENT)
    counts: dict[str, int] = {}
    for name in _document_names():
        doc, _, _ = _load(name)
        for event in document_events(doc):
            counts[event["type"]] = counts.get(event["type"], 0) + 1
    assert counts["ObjectEvent"] == 33
    assert counts["AggregationEvent"] == 4
    assert sum(counts.values()) == 43


# --------------------------------------------------------------------------- rules


def _gate_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-28T20:00:00.123+01:00",
        "eventTimeZoneOffset": "+01:00",
        "epcList": ["urn:epc:id:sgtin:4012345.011111.9876"],
        "action": "OBSERVE",
        "bizStep": "inspecting",
        "disposition": "in_progress",
        "readPoint": {"id": "urn:epc:id:sgln:4012345.00005.1"},
        "bizLocation": {"id": "urn:epc:id:sgln:4012345.00005.0"},
    }
    event.update(changes)
    return event


def test_prehash_of_a_gate_event_is_canonical() -> None:
    assert event_prehash(_gate_event()) == (
        "eventType=ObjectEventeventTime=2026-11-28T19:00:00.123ZeventTimeZoneOffset=+01:00"
        "epcListepc=https://id.gs1.org/01/04012345111118/21/9876action=OBSERVE"
        "bizStep=https://ref.gs1.org/cbv/BizStep-inspecting"
        "disposition=https://ref.gs1.org/cbv/Disp-in_progress"
        "readPointid=https://id.gs1.org/414/4012345000054/254/1"
        "bizLocationid=https://id.gs1.org/414/4012345000054"
    )


def test_hash_is_sha256_of_the_prehash_in_ni_form() -> None:
    event = _gate_event()
    assert event_hash(event) == _sha(event_prehash(event)) == hash_prehash(event_prehash(event))


def test_property_and_list_order_do_not_change_the_hash() -> None:
    event = _gate_event(
        epcList=["urn:epc:id:sgtin:4012345.011111.1", "urn:epc:id:sgtin:4012345.011111.2"]
    )
    shuffled = dict(reversed(list(event.items())))
    shuffled["epcList"] = list(reversed(event["epcList"]))
    assert event_hash(shuffled) == event_hash(event)


def test_equivalent_spellings_hash_alike() -> None:
    plain = _gate_event()
    spelled = _gate_event(
        eventTime="2026-11-28T19:00:00.1234Z",
        epcList=["https://example.com/01/04012345111118/21/9876?linkType=all"],
        bizStep="urn:epcglobal:cbv:bizstep:inspecting",
        disposition="cbv:Disp-in_progress",
    )
    assert event_hash(spelled) == event_hash(plain)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eventTime", "2026-11-28T20:00:00.124+01:00"),
        ("action", "ADD"),
        ("bizStep", "shipping"),
        ("epcList", ["urn:epc:id:sgtin:4012345.011111.9877"]),
        ("readPoint", {"id": "urn:epc:id:sgln:4012345.00005.2"}),
        ("pg:visionScore", 0.5),
    ],
)
def test_any_relevant_change_changes_the_hash(field: str, value: Any) -> None:
    context = {"pg": "https://provgate.dev/epcis/"}
    changed = _gate_event(**{field: value})
    assert event_hash(changed, context) != event_hash(_gate_event(), context)


def test_ignored_fields_take_no_part() -> None:
    noisy = _gate_event(
        eventID="urn:uuid:1",
        recordTime="2026-11-28T20:00:01Z",
        errorDeclaration={"declarationTime": "2026-11-29T00:00:00Z", "reason": "incorrect_data"},
        comment="a comment",
        **{"rdfs:comment": "another", "x:hash": "abc"},
    )
    context = {"x": "https://repo.example.com/"}
    assert event_hash(noisy, context, ignore=["x:hash"]) == event_hash(_gate_event())
    assert event_hash(noisy, context) != event_hash(_gate_event())


def test_extensions_are_named_by_namespace_and_sorted() -> None:
    event = _gate_event(**{"pg:zeta": "1", "pg:alpha": {"pg:b": "2", "pg:a": "+3.0"}})
    prehash = event_prehash(event, {"pg": "https://provgate.dev/epcis/"})
    assert prehash.endswith(
        "{https://provgate.dev/epcis/}alpha{https://provgate.dev/epcis/}a=3"
        "{https://provgate.dev/epcis/}b=2{https://provgate.dev/epcis/}zeta=1"
    )


def test_event_context_declares_prefixes_too() -> None:
    event = _gate_event(**{"@context": [{"pg": "https://provgate.dev/epcis/"}], "pg:x": "1"})
    assert event_prehash(event).endswith("{https://provgate.dev/epcis/}x=1")


def test_business_transactions_render_type_first_and_sorted() -> None:
    event = _gate_event(
        bizTransactionList=[
            {"bizTransaction": "urn:epcglobal:cbv:bt:4012345000009:PO-2", "type": "po"},
            {"type": "desadv", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000009:ASN-1"},
        ]
    )
    assert event_prehash(event).endswith(
        "bizTransactionListtype=https://ref.gs1.org/cbv/BTT-desadv"
        "bizTransaction=urn:epcglobal:cbv:bt:4012345000009:ASN-1"
        "type=https://ref.gs1.org/cbv/BTT-pobizTransaction=urn:epcglobal:cbv:bt:4012345000009:PO-2"
    )


@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("2023-02-02T11:04:03.1415Z", "2023-02-02T11:04:03.142Z"),
        ("2023-02-02T11:04:03.1414Z", "2023-02-02T11:04:03.141Z"),
        ("2023-02-02T11:04:03.9996Z", "2023-02-02T11:04:04.000Z"),
        ("2022-02-16T20:33:31.116000-06:00", "2022-02-17T02:33:31.116Z"),
        ("2020-03-04T11:00:30+01:00", "2020-03-04T10:00:30.000Z"),
        ("2020-03-04T10:00:30", "2020-03-04T10:00:30.000Z"),
    ],
)
def test_event_time_is_utc_milliseconds(written: str, utc: str) -> None:
    assert f"eventTime={utc}eventTimeZoneOffset" in event_prehash(_gate_event(eventTime=written))


@pytest.mark.parametrize(
    ("uri", "link"),
    [
        ("urn:epc:id:sgtin:0614141.107346.2017", "https://id.gs1.org/01/10614141073464/21/2017"),
        (
            "urn:epc:id:sgtin:0614141.812345.6789!()",
            "https://id.gs1.org/01/80614141123458/21/6789%21%28%29",
        ),
        ("urn:epc:id:sscc:4012345.3111111111", "https://id.gs1.org/00/340123451111111111"),
        ("urn:epc:id:sgln:4012345.00005.0", "https://id.gs1.org/414/4012345000054"),
        ("urn:epc:id:sgln:4012345.00005.122", "https://id.gs1.org/414/4012345000054/254/122"),
        ("urn:epc:id:pgln:4000001.00000", "https://id.gs1.org/417/4000001000005"),
        ("urn:epc:id:giai:4012345.ABC345", "https://id.gs1.org/8004/4012345ABC345"),
        (
            "urn:epc:class:lgtin:4012345.012345.Lot987",
            "https://id.gs1.org/01/04012345123456/10/Lot987",
        ),
        ("urn:epc:idpat:sgtin:4012345.066666.*", "https://id.gs1.org/01/04012345666663"),
        ("https://id.gs1.org/gtin/09780345418913", "https://id.gs1.org/01/09780345418913"),
        (
            "https://example.com/01/9780345418913/10/L1/21/7?x=1",
            "https://id.gs1.org/01/09780345418913/21/7",
        ),
        (
            "https://id.gs1.org/01/04012345111118/22/2A/21/5",
            "https://id.gs1.org/01/04012345111118/21/5",
        ),
    ],
)
def test_gs1_keys_become_canonical_digital_links(uri: str, link: str) -> None:
    assert gs1_digital_link(uri) == link


@pytest.mark.parametrize(
    "uri",
    [
        "urn:epc:id:sgtin:0614141.10734.2017",  # 12 digits, not 13
        "urn:epc:id:unknown:1.2",
        "https://example.com/product/123",
        "geo:50.9,6.9",
        "shipping",
    ],
)
def test_other_values_are_not_digital_links(uri: str) -> None:
    assert gs1_digital_link(uri) is None


@pytest.mark.parametrize(
    ("event", "fault"),
    [
        ([], "must be a JSON object"),
        ({"eventTime": "2026-01-01T00:00:00Z"}, "no 'type'"),
        ({"type": ""}, "no 'type'"),
        ({"type": "ObjectEvent", "eventTime": "yesterday"}, "not an ISO 8601"),
        ({"type": "ObjectEvent", "pg:x": {1, 2}}, "unsupported value of type set"),
        ({"type": "ObjectEvent", 3: "x"}, "property name 3"),
    ],
)
def test_malformed_events_raise_one_error_naming_the_fault(event: Any, fault: str) -> None:
    with pytest.raises(EventHashError, match=fault):
        event_hash(event)


def test_absurdly_deep_nesting_is_refused() -> None:
    deep: dict[str, Any] = {"x:leaf": "1"}
    for _ in range(100):
        deep = {"x:level": deep}
    with pytest.raises(EventHashError, match="nested deeper"):
        event_hash({"type": "ObjectEvent", **deep})


def test_malformed_documents_raise_event_hash_error() -> None:
    with pytest.raises(EventHashError, match="epcisBody"):
        document_event_hashes({"type": "EPCISDocument"})
    with pytest.raises(EventHashError, match="event 1"):
        document_event_hashes({"epcisBody": {"eventList": [_gate_event(), {"type": 5}]}})


def test_documents_of_each_shape_yield_their_events_in_order() -> None:
    first, second = _gate_event(), _gate_event(action="ADD")
    expected = [event_hash(first), event_hash(second)]
    assert document_event_hashes({"epcisBody": {"eventList": [first, second]}}) == expected
    query = {"epcisBody": {"queryResults": {"resultsBody": {"eventList": [first, second]}}}}
    assert document_event_hashes(query) == expected
    assert document_event_hashes({"epcisBody": {"event": first}}) == expected[:1]


# --------------------------------------------------------------------------- fast paths


@pytest.mark.parametrize("name", _document_names())
def test_fast_paths_agree_with_the_general_tree_walk(name: str) -> None:
    doc, _, _ = _load(name)
    context = namespaces_from_context(doc.get("@context"))
    ignore = document_ignore_fields(doc)
    for event in document_events(doc):
        assert event_prehash(event, context, ignore=ignore) == _tree_prehash(
            event, context, ignore=ignore
        )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"epcList": []},
        {"epcList": "urn:epc:id:sgtin:4012345.011111.1"},
        {"epcList": ["cbv:x", " ", 5]},
        {"readPoint": {"id": ""}},
        {"readPoint": {"id": "x", "pg:door": "3"}},
        {"readPoint": {"pg:door": "3"}},
        {"bizLocation": "urn:epc:id:sgln:4012345.00005.0"},
        {"bizStep": ""},
        {"bizStep": None},
        {"action": ["ADD", "OBSERVE"]},
        {"disposition": {"#text": "active"}},
        {"bizTransactionList": [{"type": "", "bizTransaction": "x"}, {}]},
        {"bizTransactionList": [{"bizTransaction": "x", "pg:note": "y"}]},
        {"sourceList": [{"type": "owning_party", "source": "urn:epc:id:pgln:4000001.00000"}]},
        {"bizTransactionList": "x"},
        {"pg:codeList": ["a", "b"]},
        {"pg:codes": ["b", "a", True, None, 2.50]},
        {"pg:nested": {"pg:inner": [{"pg:a": "1"}, {"pg:a": "0"}]}},
        {"eventID": "x", "recordTime": "y", "comment": "z", "@context": []},
    ],
)
def test_fast_paths_agree_on_unusual_shapes(changes: dict[str, Any]) -> None:
    event = _gate_event(**changes)
    context = {"pg": "https://provgate.dev/epcis/"}
    assert event_prehash(event, context) == _tree_prehash(event, context)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            " ",
            "shipping",
            "cbv:Disp-active",
            "gs1:Angle",
            "pg:x",
            "urn:epc:id:sgtin:4012345.011111.9876",
            "urn:epc:id:sgln:4012345.00005.0",
            "https://example.com/01/9780345418913?x=1",
            "urn:epcglobal:cbv:bizstep:shipping",
            "+007.50",
            "2026-11-28T20:00:00.1234+01:00",
        ]
    ),
    st.text(max_size=5),
)
_keys = st.sampled_from(
    [
        "eventTimeZoneOffset",
        "certificationInfo",
        "epcList",
        "parentID",
        "childEPCs",
        "quantityList",
        "action",
        "bizStep",
        "disposition",
        "persistentDisposition",
        "readPoint",
        "bizLocation",
        "bizTransactionList",
        "sourceList",
        "destinationList",
        "sensorElementList",
        "ilmd",
        "id",
        "type",
        "set",
        "bizTransaction",
        "source",
        "pg:a",
        "pg:bList",
        "other:c",
        "time",
        "comment",
        "eventID",
    ]
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(extra=st.dictionaries(_keys, _json, max_size=6))
def test_fast_paths_agree_with_the_tree_walk_on_generated_events(extra: dict[str, Any]) -> None:
    event = _gate_event(**extra)
    context = {"pg": "https://provgate.dev/epcis/"}
    try:
        expected = _tree_prehash(event, context, ignore=["other:c"])
    except EventHashError:
        with pytest.raises(EventHashError):
            event_prehash(event, context, ignore=["other:c"])
        return
    assert event_prehash(event, context, ignore=["other:c"]) == expected


@pytest.mark.parametrize("event_time", [None, 5, "", "2026-13-01T00:00:00Z"])
def test_both_paths_refuse_a_bad_event_time(event_time: Any) -> None:
    event = _gate_event(eventTime=event_time)
    with pytest.raises(EventHashError, match="eventTime"):
        event_prehash(event)
    with pytest.raises(EventHashError, match="eventTime"):
        _tree_prehash(event)


def test_ignored_names_drop_leftovers_on_both_paths() -> None:
    event = _gate_event(readPoint={"pg:door": "3"})
    assert event_prehash(event, ignore=["readPoint"]) == _tree_prehash(event, ignore=["readPoint"])


@settings(max_examples=300, deadline=None)
@given(extra=st.dictionaries(_keys, _json, max_size=6))
def test_cached_renderings_agree_with_the_tree_walk(extra: dict[str, Any]) -> None:
    # no context and nothing ignored: the bounded caches of the default namespaces serve
    event = _gate_event(**extra)
    try:
        expected = _tree_prehash(event)
    except EventHashError:
        with pytest.raises(EventHashError):
            event_prehash(event)
        return
    assert event_prehash(event) == expected
    assert event_prehash(event) == expected  # again, now from the caches


@pytest.mark.parametrize("key", ["pg:a", "bizStep", "action"])
def test_cached_renderings_tell_equal_values_of_other_types_apart(key: str) -> None:
    for value in [True, 1, 1.0, "1", False, 0, 0.0, -0.0, "0", None, ["1"], [True]]:
        event = _gate_event(**{key: value})
        assert event_prehash(event) == _tree_prehash(event)
        assert event_prehash(event, {"pg": "https://provgate.dev/epcis/"}) == _tree_prehash(event)


@pytest.mark.parametrize(
    "epc",
    [
        "urn:epc:id:sgtin:4012345.011111.9876",
        "urn:epc:id:sgtin:4012345.01111.9876",  # 12 digits: not an SGTIN
        "urn:epc:id:sgtin:4012345.011111.A%2Fb",
        " urn:epc:id:sgtin:4012345.011111.9876",
    ],
)
def test_plain_sgtins_agree_with_the_tree_walk(epc: str) -> None:
    event = _gate_event(epcList=[epc, "urn:epc:id:sgtin:4012345.011111.1"])
    assert event_prehash(event) == _tree_prehash(event)
    assert event_prehash(event, {"urn": "https://example.com/"}) == _tree_prehash(
        event, {"urn": "https://example.com/"}
    )


@pytest.mark.parametrize(
    "event_time",
    [
        "2026-11-28T20:26:37.176058+00:00",
        "2026-11-28T20:26:37.176500+00:00",
        "2026-11-28T20:26:37.177500-05:30",
        "2026-12-31T23:59:59.999499+00:00",
        "2026-12-31T23:59:59.999500+00:00",
        "2026-12-31T23:59:59.999999-01:00",
        "2026-01-01T00:00:00.000000+14:00",
        "2026-11-28T20:26:37.176058Z00:00",
        "2026-11-28T20:26:60.176058+00:00",
        "2026-11-28 20:26:37.176058+00:00",
        "2026-11-28T20:26:37.17605x+00:00",
        "2026-11-28T20:26:37.176058+0000 ",
        " 2026-11-28T20:26:37.17605+00:00",
    ],
)
def test_usual_event_times_agree_with_the_tree_walk(event_time: str) -> None:
    event = _gate_event(eventTime=event_time)
    try:
        expected = _tree_prehash(event)
    except EventHashError:
        with pytest.raises(EventHashError):
            event_prehash(event)
        return
    assert event_prehash(event) == expected
    assert event_prehash(event, {"pg": "https://provgate.dev/epcis/"}) == expected
