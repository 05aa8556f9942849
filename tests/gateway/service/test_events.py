"""Gate events into the ledger (once each), heartbeats and statuses into the gate table,
and the gateway's own availability."""

from __future__ import annotations

import json
from collections.abc import Callable

from gateway.ingest import GATE_NAMESPACE, EventIngestor
from gateway.ledger.epcis import SELLER_BTT, from_jsonld
from gateway.ledger.event_hash import event_hash
from gateway.registry import Registry
from gateway.service import GatewayService
from gatewire.messages import Availability, Decision, Heartbeat, decode
from gatewire.topics import SiteTopics
from simulators.broker import MosquittoBroker
from tests.gateway.service.support import (
    OUT_GATE,
    SELLER,
    SITE_ORG,
    SITE_SGLN,
    Gate,
    Site,
    gate_client,
    item,
)
from tests.support.mqtt import Inbox, running_client
from tests.support.waiting import wait_until


def test_a_gate_event_becomes_one_signed_epcis_event_even_when_resent(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(1)
    event = gate.gate_event(
        1,
        Decision.PASS,
        reasons=["ledger.ok"],
        seller=SELLER,
        actuated_at=None,
        request_id="r" * 32,
    )
    for _ in range(3):
        gate.send_event(event)
    assert wait_until(lambda: gateway.counts().get("events.duplicate", 0) == 2)
    assert gateway.counts()["events.recorded"] == 1
    history = site.ledger.history(item(1).epc_uri or "")
    recorded = [e for e in history if e.event.get("pgate:gateEventId") == event.event_id]
    assert len(recorded) == 1
    stored = recorded[0]
    assert stored.signer == SITE_ORG
    doc = stored.event
    assert doc["bizStep"] == "receiving"
    assert doc["disposition"] == "in_progress"
    assert doc["bizLocation"] == {"id": SITE_SGLN}
    assert doc["readPoint"] == {"id": f"urn:provgate:gate:{gate.site}:{gate.gate}"}
    assert doc["bizTransactionList"] == [{"type": SELLER_BTT, "bizTransaction": SELLER}]
    assert (doc["pg:verdict"], doc["pg:reasonCodes"]) == ("PASS", ["ledger.ok"])
    assert doc["@context"] == [{"pgate": GATE_NAMESPACE}]
    assert doc["pgate:requestId"] == "r" * 32
    assert stored.event_id == event_hash(doc)
    assert from_jsonld(doc).other["pgate:late"] is False


def test_decision_and_gate_kind_pick_the_business_step(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(1)
    with gate_client(gateway.config.mqtt.url, gate.site, OUT_GATE) as out:
        out.send_event(out.gate_event(1, Decision.PASS))
    gate.send_event(gate.gate_event(1, Decision.HOLD))
    gate.send_event(gate.gate_event(1, Decision.REJECT))
    assert wait_until(lambda: gateway.counts().get("events.recorded", 0) == 3)
    steps = {
        e.event["pg:verdict"]: (e.event["bizStep"], e.event["disposition"])
        for e in site.ledger.history(item(1).epc_uri or "")
        if "pg:verdict" in e.event
    }
    assert steps == {
        "PASS": ("shipping", "in_transit"),
        "HOLD": ("holding", "non_sellable_other"),
        "REJECT": ("inspecting", "non_conformant"),
    }


def test_two_ingestors_on_one_database_record_a_resent_event_once(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    from gateway.ledger.ledger import Ledger
    from gateway.ledger.signing import Keystore

    event = gate.gate_event(1, Decision.PASS)
    key = Keystore(site.keys_dir).load_or_generate(SITE_ORG)
    with Ledger.open(site.url, [key]) as one, Ledger.open(site.url, [key]) as two:
        first = EventIngestor(one, gateway.config).ingest([event, event])
        second_ingestor = EventIngestor(two, gateway.config)
        second = second_ingestor.ingest([event])
        seq = second_ingestor.recorded(event.event_id)
        history = one.history(item(1).epc_uri or "")
    assert (first.recorded, first.duplicates, second.recorded, second.duplicates) == (1, 1, 0, 1)
    assert [e.seq for e in history] == [seq]


def test_heartbeats_and_gate_statuses_land_in_the_gate_table(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    gate.send_event(
        Heartbeat(
            site=gate.site,
            gate=gate.gate,
            uptime_s=12.5,
            counters={"items": 40, "rejects": 2},
            health={"scanner": "ok", "rfid": "down"},
        )
    )
    offline = Availability(site=gate.site, gate="in-07", online=False, who="gate")
    gate.publish_raw(
        json.dumps(offline.model_dump(mode="json", exclude={"mac"})).encode(),
        f"provgate/v1/{gate.site}/in-07/status",
    )
    registry = Registry(site.ledger.store)

    def reported() -> bool:
        gates = {g.gate: g for g in registry.gates() if g.site == gate.site}
        return "in-01" in gates and "in-07" in gates

    assert wait_until(reported)
    gates = {g.gate: g for g in registry.gates() if g.site == gate.site}
    assert gates["in-01"].counters == {"items": 40, "rejects": 2}
    assert gates["in-01"].health == {"scanner": "ok", "rfid": "down"}
    assert gates["in-01"].online
    assert not gates["in-07"].online


def test_gateway_reports_its_own_counters_in_the_gate_table(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    gate.publish_raw(b"junk")
    registry = Registry(site.ledger.store)

    def own() -> dict[str, int]:
        rows = [g for g in registry.gates() if (g.site, g.gate) == (gate.site, "gateway")]
        return rows[0].counters if rows else {}

    assert wait_until(lambda: own().get("w1.refused.request.malformed") == 1)


def test_availability_is_retained_online_and_offline_after_stop(
    mosquitto: MosquittoBroker, start_gateway: Callable[..., GatewayService], site_id: str
) -> None:
    service = start_gateway()
    topic = SiteTopics(site_id).gateway_status

    def retained() -> Availability:
        inbox = Inbox()
        with running_client(mosquitto.url, f"probe-{site_id}", [topic], inbox.on_message):
            msg = decode(bytes(inbox.get().payload))
        assert isinstance(msg, Availability)
        return msg

    assert retained().online
    service.stop()
    status = retained()
    assert (status.online, status.who, status.gate) == (False, "gateway", "gateway")
