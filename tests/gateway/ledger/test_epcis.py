"""EPCIS 2.0 event model: building gate events, JSON-LD round trips, stable hashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger.epcis import (
    EPCIS_CONTEXT,
    PG_NAMESPACE,
    SELLER_BTT,
    Action,
    AggregationEvent,
    BizStep,
    BizTransaction,
    Disposition,
    EpcisError,
    EpcisEvent,
    ObjectEvent,
    aggregation_event,
    epcis_document,
    event_id,
    from_jsonld,
    object_event,
    to_jsonld,
)
from gateway.ledger.event_hash import (
    DEFAULT_NAMESPACES,
    document_event_hashes,
    document_events,
    document_ignore_fields,
    event_hash,
    event_prehash,
    namespaces_from_context,
)
from gateway.ledger.jsonld import read_document, write_document

CONFORMANCE = Path(__file__).resolve().parents[3].parent / "shared/conformance/epcis-event-hash"
CET = timezone(timedelta(hours=1))
WHEN = datetime(2026, 11, 28, 20, 0, 0, 123000, tzinfo=CET)
ITEM = "urn:epc:id:sgtin:4012345.011111.9876"
GATE = "urn:epc:id:sgln:4012345.00005.1"
SITE = "urn:epc:id:sgln:4012345.00005.0"
ORDER = "urn:epcglobal:cbv:bt:4012345000009:PO-4711"
SELLER = "https://provgate.dev/seller/s-17"


def _rejected() -> ObjectEvent:
    return object_event(
        [ITEM],
        biz_step=BizStep.INSPECTING,
        disposition=Disposition.NON_CONFORMANT,
        read_point=GATE,
        biz_location=SITE,
        transactions=[("po", ORDER), (SELLER_BTT, SELLER)],
        event_time=WHEN,
        vision_score=0.12,
        model_version="label-v3",
        reason_codes=["VISION_LOW", "SELLER_SUSPENDED"],
        verdict="REJECT",
    )


#: Pinned: a change here means every stored event ID would change.
GOLDEN_ID = (
    "ni:///sha-256;92a7095d7ce624c932e8a9762d20015bb66dc6ab1c86b3eaf739b052f502e75d?ver=CBV2.0"
)

HAND_WRITTEN: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2026-11-28T19:00:00.123Z",
    "eventTimeZoneOffset": "+01:00",
    "epcList": ["https://id.gs1.org/01/04012345111118/21/9876"],
    "action": "OBSERVE",
    "bizStep": "https://ref.gs1.org/cbv/BizStep-inspecting",
    "disposition": "non_conformant",
    "readPoint": {"id": "https://id.gs1.org/414/4012345000054/254/1"},
    "bizLocation": {"id": "urn:epc:id:sgln:4012345.00005.0"},
    "bizTransactionList": [
        {"type": SELLER_BTT, "bizTransaction": SELLER},
        {"type": "po", "bizTransaction": ORDER},
    ],
    "pg:reasonCodes": ["SELLER_SUSPENDED", "VISION_LOW"],
    "pg:verdict": "REJECT",
    "pg:modelVersion": "label-v3",
    "pg:visionScore": 0.120,
}


def test_gate_event_serialises_to_epcis_jsonld() -> None:
    assert to_jsonld(_rejected()) == {
        "type": "ObjectEvent",
        "eventTime": "2026-11-28T20:00:00.123+01:00",
        "eventTimeZoneOffset": "+01:00",
        "epcList": [ITEM],
        "action": "OBSERVE",
        "bizStep": "inspecting",
        "disposition": "non_conformant",
        "readPoint": {"id": GATE},
        "bizLocation": {"id": SITE},
        "bizTransactionList": [
            {"type": "po", "bizTransaction": ORDER},
            {"type": SELLER_BTT, "bizTransaction": SELLER},
        ],
        "pg:visionScore": 0.12,
        "pg:modelVersion": "label-v3",
        "pg:reasonCodes": ["VISION_LOW", "SELLER_SUSPENDED"],
        "pg:verdict": "REJECT",
    }


def test_hash_of_a_built_event_is_stable() -> None:
    assert event_id(_rejected()) == event_id(_rejected()) == GOLDEN_ID


def test_hash_of_our_event_equals_the_same_event_written_by_hand() -> None:
    assert event_id(_rejected()) == event_hash(HAND_WRITTEN, {"pg": PG_NAMESPACE})


def test_our_prefix_needs_no_context_when_hashing() -> None:
    assert DEFAULT_NAMESPACES["pg"] == PG_NAMESPACE
    assert event_hash(to_jsonld(_rejected())) == event_id(_rejected())
    renamed = {k.replace("pg:", "gate:"): v for k, v in HAND_WRITTEN.items()}
    assert event_hash(renamed, {"gate": PG_NAMESPACE}) == event_id(_rejected())


def test_our_extensions_change_the_hash() -> None:
    other = _rejected().model_copy(
        update={"gate": _rejected().gate.model_copy(update={"vision_score": 0.13})}
    )
    assert event_id(other) != event_id(_rejected())


def test_model_round_trips_through_jsonld() -> None:
    event = _rejected()
    assert from_jsonld(to_jsonld(event)) == event
    packed = aggregation_event(
        "urn:epc:id:sscc:4012345.0111111111", [ITEM], read_point=GATE, event_time=WHEN
    )
    assert from_jsonld(to_jsonld(packed)) == packed


def test_hand_written_event_reads_into_the_model_with_the_same_hash() -> None:
    event = from_jsonld(HAND_WRITTEN)
    assert isinstance(event, ObjectEvent)
    assert event.biz_step == "inspecting"
    assert event.disposition == "non_conformant"
    assert event.gate.reason_codes == ("SELLER_SUSPENDED", "VISION_LOW")
    assert event_id(event) == event_id(_rejected())


def test_sub_millisecond_event_times_keep_their_hash() -> None:
    written = {**HAND_WRITTEN, "eventTime": "2026-11-28T19:00:00.1225Z"}
    assert event_id(from_jsonld(written)) == event_hash(written, {"pg": PG_NAMESPACE})


def test_aggregation_event_packs_children_into_a_parent() -> None:
    packed = aggregation_event(
        "urn:epc:id:sscc:4012345.0111111111",
        [ITEM, "urn:epc:id:sgtin:4012345.011111.9877"],
        read_point=GATE,
        event_time=WHEN,
    )
    data = to_jsonld(packed)
    assert data["parentID"] == "urn:epc:id:sscc:4012345.0111111111"
    assert data["action"] == "ADD"
    assert data["bizStep"] == "packing"
    assert "parentID=https://id.gs1.org/00/040123451111111110childEPCs" in event_prehash(data)


def test_event_time_zone_offset_defaults_to_the_event_times() -> None:
    assert _rejected().event_time_zone_offset == "+01:00"
    west = object_event(
        [ITEM], event_time=datetime(2026, 1, 1, tzinfo=timezone(-timedelta(hours=5, minutes=30)))
    )
    assert west.event_time_zone_offset == "-05:30"


def test_event_time_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    event = object_event([ITEM])
    assert before <= event.event_time <= datetime.now(UTC)
    assert event.event_time_zone_offset == "+00:00"


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        ({"biz_step": "teleporting"}, "biz_step"),
        ({"disposition": "lost"}, "disposition"),
        ({"action": "MOVE"}, "action"),
        ({"event_time": datetime(2026, 1, 1)}, "UTC offset"),
        ({"event_time_zone_offset": "+1:00"}, "HH:MM"),
        ({"vision_score": 1.5}, "vision_score"),
        ({"verdict": "MAYBE"}, "verdict"),
    ],
)
def test_invalid_values_raise_epcis_error(changes: dict[str, Any], fault: str) -> None:
    arguments: dict[str, Any] = {"event_time": WHEN, **changes}
    with pytest.raises(EpcisError, match=fault):
        object_event([ITEM], **arguments)


def test_user_vocabulary_uris_are_accepted() -> None:
    event = object_event(
        [ITEM], biz_step="https://provgate.dev/epcis/BizStep-relabelling", event_time=WHEN
    )
    assert event.biz_step == "https://provgate.dev/epcis/BizStep-relabelling"
    web = object_event([ITEM], biz_step="https://ref.gs1.org/cbv/BizStep-shipping", event_time=WHEN)
    assert web.biz_step == BizStep.SHIPPING


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        ({"type": "TransformationEvent"}, "not 'TransformationEvent'"),
        ([], "JSON object"),
        ({**HAND_WRITTEN, "pg:mood": "grumpy"}, "unknown provgate extension"),
        ({**HAND_WRITTEN, "eventTime": "soon"}, "event_time"),
        ({**HAND_WRITTEN, "pg:reasonCodes": 5}, "reason_codes"),
    ],
)
def test_from_jsonld_refuses_what_it_cannot_model(data: Any, fault: str) -> None:
    with pytest.raises(EpcisError, match=fault):
        from_jsonld(data)


def test_document_wraps_events_with_context_and_hashes_alike() -> None:
    events = [_rejected(), object_event([ITEM], action=Action.ADD, event_time=WHEN)]
    doc = epcis_document(events, creation_date=WHEN)
    assert doc["@context"] == [EPCIS_CONTEXT, {"pg": PG_NAMESPACE}]
    assert doc["type"] == "EPCISDocument"
    assert doc["schemaVersion"] == "2.0"
    assert doc["creationDate"] == "2026-11-28T20:00:00.123+01:00"
    assert document_event_hashes(json.loads(json.dumps(doc))) == [event_id(e) for e in events]


def test_business_transaction_without_type_is_written_without_type() -> None:
    event = object_event([ITEM], transactions=[BizTransaction(id=ORDER)], event_time=WHEN)
    assert to_jsonld(event)["bizTransactionList"] == [{"bizTransaction": ORDER}]


def _conformance_events() -> list[Any]:
    if not CONFORMANCE.is_dir():
        return [
            pytest.param(
                None,
                None,
                marks=pytest.mark.skip(reason=f"conformance examples not found at {CONFORMANCE}"),
            )
        ]
    cases = []
    for path in sorted(CONFORMANCE.glob("*.jsonld")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for index, event in enumerate(document_events(doc)):
            if event["type"] in ("ObjectEvent", "AggregationEvent"):
                cases.append(pytest.param(path.stem, index, id=f"{path.stem}[{index}]"))
    return cases


@pytest.mark.parametrize(("name", "index"), _conformance_events())
def test_reference_events_import_and_keep_their_hash(name: str, index: int) -> None:
    doc = json.loads((CONFORMANCE / f"{name}.jsonld").read_text(encoding="utf-8"))
    expected = document_event_hashes(doc)[index]
    event = from_jsonld(document_events(doc)[index], namespaces_from_context(doc.get("@context")))
    assert isinstance(event, ObjectEvent | AggregationEvent)
    again = from_jsonld(to_jsonld(event), event.namespaces)
    assert again == event
    context = {"pg": PG_NAMESPACE, **event.namespaces}
    ignore = document_ignore_fields(doc)
    assert event_hash(to_jsonld(event), context, ignore=ignore) == expected


# --------------------------------------------------------------------------- documents


def test_written_document_reads_back_to_the_same_events() -> None:
    events: list[EpcisEvent] = [
        _rejected(),
        aggregation_event("urn:epc:id:sscc:4012345.0111111111", [ITEM]),
    ]
    text = write_document(events, creation_date=WHEN, indent=2)
    assert read_document(text) == events
    assert document_event_hashes(json.loads(text)) == [event_id(e) for e in events]


def test_reference_document_imports_with_foreign_extensions() -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"conformance examples not found at {CONFORMANCE}")
    raw = (CONFORMANCE / "ralfsChaosExample.jsonld").read_bytes()
    (event,) = read_document(raw)
    assert event.namespaces["abc"] == "https://ns.abc.de/epcis/"
    expected = (CONFORMANCE / "ralfsChaosExample.hashes").read_text().split()
    assert [event_id(event)] == expected


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"\xff", "not JSON"),
        ("[1]", "JSON object"),
        ('{"type": "Thing"}', "not an EPCIS document"),
        ('{"type": "EPCISDocument"}', "epcisBody"),
        (
            '{"type": "EPCISDocument", "epcisBody": {"eventList": '
            '[{"type": "ObjectEvent", "eventTime": "2026-01-01T00:00:00Z", "action": "ADD"},'
            ' {"type": "TransformationEvent"}]}}',
            "event 1",
        ),
    ],
)
def test_bad_documents_raise_epcis_error(data: str | bytes, fault: str) -> None:
    with pytest.raises(EpcisError, match=fault):
        read_document(data)
