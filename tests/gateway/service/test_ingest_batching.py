"""The gate-event path's speed-ups keep its meaning: the EPCIS object written directly is the
model's, and events that arrive together are recorded together, each once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.config import GateKind, GateSettings
from gateway.ingest import GATE_NAMESPACE, GATE_PREFIX, EventIngestor, IngestResult, epcis_of
from gateway.ledger.epcis import SELLER_BTT, BizStep, Disposition, object_event, to_jsonld
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore
from gateway.registry import Registry
from gateway.rules import Verifier
from gateway.service import GatewayService, StatusSink
from gatewire.identity import parse_item_id
from gatewire.messages import Decision, GateEvent
from simulators.broker import MosquittoBroker
from tests.gateway.service.support import (
    OUT_GATE,
    SELLER,
    SITE_ORG,
    Gate,
    Site,
    gateway_config,
    item,
)
from tests.support.waiting import wait_until

_STEPS = {
    GateKind.INBOUND: (BizStep.RECEIVING, Disposition.IN_PROGRESS),
    GateKind.OUTBOUND: (BizStep.SHIPPING, Disposition.IN_TRANSIT),
    GateKind.INSPECTION: (BizStep.INSPECTING, Disposition.CONFORMANT),
}


def _through_the_model(event: GateEvent, kind: GateKind, read_point: str, location: str) -> str:
    """What ingest wrote before it wrote the object directly: the EPCIS model's JSON-LD."""
    if event.decision is Decision.PASS:
        step, disposition = _STEPS[kind]
    elif event.decision is Decision.HOLD:
        step, disposition = BizStep.HOLDING, Disposition.NON_SELLABLE_OTHER
    else:
        step, disposition = BizStep.INSPECTING, Disposition.NON_CONFORMANT
    built = object_event(
        [event.item.epc_uri or event.item.digital_link],
        action="OBSERVE",
        biz_step=step,
        disposition=disposition,
        read_point=read_point,
        biz_location=location,
        transactions=[] if event.seller is None else [(SELLER_BTT, event.seller)],
        event_time=datetime.fromtimestamp(event.decided_at, UTC),
        event_time_zone_offset="+00:00",
        reason_codes=event.reasons,
        verdict=event.decision.value,
    )

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")

    gate: dict[str, Any] = {
        f"{GATE_PREFIX}:gateEventId": event.event_id,
        f"{GATE_PREFIX}:gate": event.gate,
        f"{GATE_PREFIX}:scannedAt": iso(event.scanned_at),
        f"{GATE_PREFIX}:late": event.late,
    }
    if event.actuated_at is not None:
        gate[f"{GATE_PREFIX}:actuatedAt"] = iso(event.actuated_at)
    if event.request_id is not None:
        gate[f"{GATE_PREFIX}:requestId"] = event.request_id
    doc = {"@context": [{GATE_PREFIX: GATE_NAMESPACE}], **to_jsonld(built), **gate}
    return json.dumps(doc)


def test_epcis_of_writes_what_the_epcis_model_writes(site: Site, gate: Gate) -> None:
    config = gateway_config(
        site,
        "mqtt://127.0.0.1:1883",
        site_id=gate.site,
        gates={
            gate.gate: GateSettings(kind="inbound", read_point="urn:epc:id:sgln:5012345.00005.7"),
            OUT_GATE: GateSettings(kind="outbound"),
            "insp-01": GateSettings(kind="inspection"),
        },
    )
    link = parse_item_id(item(3).digital_link).item
    assert link is not None
    variants: list[dict[str, Any]] = [
        {},
        {"seller": SELLER, "reasons": ["ledger.ok"], "request_id": "r" * 32},
        {"decision": Decision.HOLD, "reasons": ["vision.suspect", "inspect.random"]},
        {"decision": Decision.REJECT, "late": True, "actuated_at": 1_780_000_000.1234},
        {"gate": OUT_GATE, "decided_at": 1_780_000_000.000_001, "scanned_at": 1_780_000_000.0},
        {"gate": "insp-01", "item": link.model_copy(update={"epc_uri": None})},
        {"gate": "unlisted-7", "seller": " spaced seller "},
        {"decided_at": 1_780_000_000.5, "reasons": []},
    ]
    for fields in variants:
        event = gate.gate_event(1, fields.pop("decision", Decision.PASS), **fields)
        settings = config.gate(event.gate)
        expected = _through_the_model(
            event, settings.kind, config.read_point(event.gate), config.location
        )
        assert json.dumps(epcis_of(event, config)) == expected, fields


class _CountingSink:
    """An ingestor that remembers how many events each call recorded; one whose
    ``event_id`` is in ``refused`` makes its whole call fail (as a database would)."""

    def __init__(self, ingestor: EventIngestor) -> None:
        self.ingestor = ingestor
        self.calls: list[int] = []
        self.refused: set[str] = set()

    def ingest(self, events: Sequence[GateEvent]) -> IngestResult:
        if any(e.event_id in self.refused for e in events):
            raise RuntimeError("the database refused an event of this batch")
        result = self.ingestor.ingest(events)
        self.calls.append(len(events))
        return result


@pytest.fixture
def counting_gateway(
    site: Site, mosquitto: MosquittoBroker, site_id: str
) -> Iterator[Callable[[float], tuple[GatewayService, _CountingSink]]]:
    """Starts a gateway whose event sink counts what each ingest call records."""
    started: list[GatewayService] = []

    def start(linger_s: float) -> tuple[GatewayService, _CountingSink]:
        config = gateway_config(site, mosquitto.url, site_id=site_id)
        key = Keystore(site.keys_dir).load_or_generate(SITE_ORG)
        sinks: list[_CountingSink] = []

        def background() -> tuple[_CountingSink, StatusSink, Callable[[], None]]:
            ledger = Ledger.open(config.ledger_url, [key])
            sinks.append(_CountingSink(EventIngestor(ledger, config)))
            return sinks[0], Registry(ledger.store), ledger.close

        verifier = Verifier(
            site.ledger.store, config.policy, site=SITE_ORG, inspection_secret=b"s" * 32
        )
        service = GatewayService(config, verifier, background, linger_s=linger_s)
        service.start()
        started.append(service)
        return service, sinks[0]

    yield start
    for service in started:
        service.stop()


def test_events_arriving_together_are_recorded_in_one_transaction_each_once(
    site: Site,
    counting_gateway: Callable[[float], tuple[GatewayService, _CountingSink]],
    gate: Gate,
) -> None:
    service, sink = counting_gateway(0.5)
    site.commissioned(*range(1, 6))
    events = [gate.gate_event(n, Decision.PASS) for n in range(1, 6)]
    for event in events:
        gate.send_event(event)
    gate.send_event(events[0])  # a resend, in the same group
    assert wait_until(lambda: sum(sink.calls) == 6, timeout=10)
    assert sink.calls == [6]
    assert service.counts()["events.recorded"] == 5
    assert service.counts()["events.duplicate"] == 1
    for event in events:
        assert sink.ingestor.recorded(event.event_id) is not None


def test_events_held_back_by_the_linger_are_recorded_when_the_gateway_stops(
    site: Site,
    counting_gateway: Callable[[float], tuple[GatewayService, _CountingSink]],
    gate: Gate,
) -> None:
    service, sink = counting_gateway(2.0)
    site.commissioned(1)
    event = gate.gate_event(1, Decision.PASS)
    gate.send_event(event)
    assert wait_until(lambda: service._queue.qsize() == 0, timeout=5)  # taken, lingering
    service.stop()
    assert sink.calls == [1]
    assert EventIngestor(site.ledger, service.config).recorded(event.event_id) is not None


def test_an_event_the_database_refuses_does_not_take_the_others_of_its_batch_with_it(
    site: Site,
    counting_gateway: Callable[[float], tuple[GatewayService, _CountingSink]],
    gate: Gate,
) -> None:
    service, sink = counting_gateway(0.5)
    site.commissioned(*range(1, 4))
    events = [gate.gate_event(n, Decision.PASS) for n in range(1, 4)]
    sink.refused.add(events[1].event_id)
    for event in events:
        gate.send_event(event)
    counts = service.counts
    assert wait_until(
        lambda: (counts().get("events.failed"), counts().get("events.recorded")) == (1, 2),
        timeout=10,
    )
    assert sink.calls == [1, 1]  # the batch failed, then each event alone
    assert sink.ingestor.recorded(events[0].event_id) is not None
    assert sink.ingestor.recorded(events[2].event_id) is not None


def test_an_event_with_control_characters_is_refused_and_never_stored(
    site: Site,
    counting_gateway: Callable[[float], tuple[GatewayService, _CountingSink]],
    gate: Gate,
) -> None:
    """PostgreSQL refuses NUL in text: stored, such an event would fail every later fold."""
    service, sink = counting_gateway(0.0)
    site.commissioned(1, 2)
    bad = gate.gate_event(1, Decision.PASS, seller="s\x00x")
    good = gate.gate_event(2, Decision.PASS)
    gate.send_event(bad)
    gate.send_event(good)
    assert wait_until(lambda: service.counts().get("events.recorded") == 1, timeout=10)
    assert service.counts()["refused.event.malformed"] == 1
    assert sink.ingestor.recorded(bad.event_id) is None
