"""Every rule of docs/rules.md, provoked by a real request through the broker."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger.epcis import BizStep, Disposition
from gateway.policy import InspectionPolicy, Policy, Reason
from gateway.registry import InspectionResult
from gateway.service import GatewayService
from gatewire.auth import Accepted, open_sealed
from gatewire.messages import (
    BatchItem,
    BatchVerdict,
    Decision,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
    VisionVerdict,
)
from gatewire.topics import GateTopics
from tests.gateway.service.support import (
    BRAND,
    OTHER_BRAND,
    OTHER_SGLN,
    OTHER_SITE_ORG,
    OUT_GATE,
    SELLER,
    SITE_ORG,
    Gate,
    Site,
    commission,
    gate_client,
    item,
    observe,
)
from tests.support.waiting import wait_until


def verdict_of(gate: Gate, n: int, **fields: Any) -> tuple[Decision, list[str]]:
    reply = gate.verify(item(n, **fields.pop("item_fields", {})), **fields)
    assert isinstance(reply, Verdict), reply
    return reply.decision, reply.reasons


@pytest.mark.usefixtures("gateway")
def test_unknown_serial_is_rejected(gate: Gate) -> None:
    assert verdict_of(gate, 404) == (Decision.REJECT, ["ledger.unknown_serial"])


def test_item_seen_but_never_commissioned_is_rejected(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.append(SITE_ORG, observe(5, BizStep.RECEIVING))
    with gate_client(gateway.config.mqtt.url, gate.site, OUT_GATE) as outbound:
        assert verdict_of(outbound, 5) == (Decision.REJECT, ["ledger.not_commissioned"])


@pytest.mark.usefixtures("gateway")
def test_item_commissioned_by_a_brand_that_does_not_own_its_prefix_is_rejected(
    site: Site, gate: Gate
) -> None:
    site.append(OTHER_BRAND, commission(6))
    assert verdict_of(gate, 6) == (Decision.REJECT, ["ledger.prefix_not_owned"])


@pytest.mark.usefixtures("gateway")
def test_item_already_shipped_from_this_site_is_rejected_as_a_clone(site: Site, gate: Gate) -> None:
    site.received(7)
    site.append(SITE_ORG, observe(7, BizStep.SHIPPING, disposition="in_transit", hours_ago=24))
    assert verdict_of(gate, 7) == (Decision.REJECT, ["ledger.already_shipped"])


@pytest.mark.usefixtures("gateway")
def test_decommissioned_item_is_rejected(site: Site, gate: Gate) -> None:
    site.commissioned(8)
    site.append(BRAND, observe(8, BizStep.DECOMMISSIONING, disposition="inactive", hours_ago=24))
    assert verdict_of(gate, 8) == (Decision.REJECT, ["ledger.decommissioned"])


@pytest.mark.usefixtures("gateway")
def test_item_seen_at_another_site_an_hour_ago_is_held_for_impossible_travel(
    site: Site, gate: Gate
) -> None:
    site.append(BRAND, commission(9))
    site.append(
        OTHER_SITE_ORG,
        observe(9, BizStep.SHIPPING, disposition="in_transit", location=OTHER_SGLN, hours_ago=1),
    )
    assert verdict_of(gate, 9) == (Decision.HOLD, ["travel.impossible"])


@pytest.mark.usefixtures("gateway")
def test_barcode_and_rfid_naming_different_items_are_held(site: Site, gate: Gate) -> None:
    site.commissioned(10, 11)
    assert verdict_of(gate, 10, also_read=[item(11)]) == (Decision.HOLD, ["read.mismatch"])
    assert verdict_of(gate, 10, also_read=[item(10)]) == (Decision.PASS, ["ledger.ok"])


@pytest.mark.usefixtures("gateway")
def test_recalled_gtin_is_rejected(site: Site, gate: Gate) -> None:
    site.commissioned(12)
    site.registry.add_recall(item(12).gtin, None, "contaminated", time.time())
    assert verdict_of(gate, 12) == (Decision.REJECT, ["item.recalled"])


@pytest.mark.usefixtures("gateway")
def test_expired_item_is_rejected(site: Site, gate: Gate) -> None:
    site.commissioned(13)
    yesterday = dt.date.today() - dt.timedelta(days=2)
    decision = verdict_of(gate, 13, item_fields={"expiry": yesterday})
    assert decision == (Decision.REJECT, ["item.expired"])


@pytest.mark.usefixtures("gateway")
def test_stolen_item_is_held(site: Site, gate: Gate) -> None:
    site.commissioned(14)
    site.append(BRAND, observe(14, "storing", disposition=Disposition.STOLEN, hours_ago=24))
    assert verdict_of(gate, 14) == (Decision.HOLD, ["ledger.stolen"])


@pytest.mark.usefixtures("gateway")
def test_suspect_vision_verdict_from_the_gate_holds_the_item(site: Site, gate: Gate) -> None:
    site.commissioned(15)
    decision = verdict_of(gate, 15, vision_verdict=VisionVerdict.SUSPECT, vision_score=0.1)
    assert decision == (Decision.HOLD, ["vision.suspect"])


@pytest.mark.usefixtures("gateway")
def test_item_rejected_at_a_gate_is_quarantined_for_the_next_verification(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(16)
    gate.send_event(gate.gate_event(16, Decision.REJECT, reasons=["vision.suspect"]))
    assert wait_until(lambda: gateway.counts().get("events.recorded") == 1)
    assert verdict_of(gate, 16) == (Decision.HOLD, ["ledger.quarantined"])


@pytest.mark.usefixtures("gateway")
def test_unreadable_ledger_fails_closed_with_a_hold(site: Site, gate: Gate) -> None:
    site.commissioned(17)
    site.ledger.store._execute("DROP TABLE gw_items")
    assert verdict_of(gate, 17) == (Decision.HOLD, ["ledger.unavailable"])


def test_one_strike_holds_the_next_item_of_the_seller_at_every_gate(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(20, 21, 22)
    assert verdict_of(gate, 21) == (Decision.PASS, ["ledger.ok"])
    site.registry.record_inspection(
        item(20).key, "qa-7", InspectionResult.COUNTERFEIT, seller_id=SELLER, now=time.time()
    )
    assert verdict_of(gate, 21) == (Decision.HOLD, ["seller.suspended"])
    with gate_client(gateway.config.mqtt.url, gate.site, OUT_GATE) as outbound:
        assert verdict_of(outbound, 22) == (Decision.HOLD, ["seller.suspended"])


def test_site_policy_decides_what_a_reason_does(
    site: Site, start_gateway: Callable[..., GatewayService], gate: Gate
) -> None:
    start_gateway(policy=Policy(decisions={"vision.suspect": "REJECT"}))
    site.commissioned(30)
    decision = verdict_of(gate, 30, vision_verdict=VisionVerdict.SUSPECT)
    assert decision == (Decision.REJECT, ["vision.suspect"])


def test_inspection_rate_of_the_policy_asks_the_gate_to_pull_passing_items(
    site: Site, start_gateway: Callable[..., GatewayService], gate: Gate
) -> None:
    start_gateway(policy=Policy(inspection=InspectionPolicy(base_rate=1.0)))
    site.commissioned(31)
    reply = gate.verify(item(31))
    assert isinstance(reply, Verdict)
    assert (reply.decision, reply.inspect) == (Decision.PASS, True)


def test_verdict_topic_is_the_asking_gates_own(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(32)
    with gate_client(gateway.config.mqtt.url, gate.site, "in-02") as other:
        assert verdict_of(other, 32) == (Decision.PASS, ["ledger.ok"])
    assert gate.raw.empty()
    assert GateTopics(gate.site, "in-02").verdict != gate.topics.verdict


def test_anomalous_vision_score_raises_the_inspection_rate(
    site: Site, start_gateway: Callable[..., GatewayService], gate: Gate
) -> None:
    rates = InspectionPolicy(base_rate=0.0, new_seller_rate=0.0, vision_anomaly_rate=1.0)
    start_gateway(policy=Policy(inspection=rates))
    site.commissioned(33, 34)
    low = gate.verify(item(33), vision_score=0.3)
    high = gate.verify(item(34), vision_score=0.95)
    assert isinstance(low, Verdict)
    assert isinstance(high, Verdict)
    assert (low.decision, low.inspect) == (Decision.PASS, True)
    assert (high.decision, high.inspect) == (Decision.PASS, False)


def test_item_already_received_here_is_held_at_an_inbound_gate_but_ships(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.received(40)
    assert verdict_of(gate, 40) == (Decision.HOLD, ["ledger.already_received"])
    with gate_client(gateway.config.mqtt.url, gate.site, OUT_GATE) as outbound:
        assert verdict_of(outbound, 40) == (Decision.PASS, ["ledger.ok"])


@pytest.mark.usefixtures("gateway")
def test_item_in_stock_at_another_site_is_held(site: Site, gate: Gate) -> None:
    site.append(BRAND, commission(41))
    site.append(OTHER_SITE_ORG, observe(41, BizStep.RECEIVING, location=OTHER_SGLN))
    assert verdict_of(gate, 41) == (Decision.HOLD, ["ledger.in_stock_elsewhere"])


@pytest.mark.usefixtures("gateway")
def test_an_item_twice_in_one_batch_is_held_but_two_requests_for_it_are_not(
    site: Site, gate: Gate
) -> None:
    site.commissioned(42, 43)
    batch = VerifyBatchRequest(
        site=gate.site,
        gate=gate.gate,
        items=[BatchItem(index=i, item=item(n)) for i, n in enumerate([42, 43, 42])],
    )
    reply = gate.ask(batch)
    assert isinstance(reply, BatchVerdict)
    assert [(r.decision, r.reasons) for r in reply.results] == [
        (Decision.HOLD, ["read.duplicate"]),
        (Decision.PASS, ["ledger.ok"]),
        (Decision.HOLD, ["read.duplicate"]),
    ]
    # Several single requests about one item, in flight together, are answered one by one.
    gate.next_raw()  # the batch verdict, seen again on the raw feed
    requests = [VerifyRequest(site=gate.site, gate=gate.gate, item=item(43)) for _ in range(6)]
    for request in requests:
        gate.client.publish(gate.topics.verify_request, gate.verifier.seal_request(request), qos=1)
    decisions = set()
    for _ in requests:
        opened = open_sealed(gate.next_raw(), gate.key)
        assert isinstance(opened, Accepted)
        assert isinstance(opened.message, Verdict)
        decisions.add((opened.message.decision, tuple(opened.message.reasons)))
    assert decisions == {(Decision.PASS, ("ledger.ok",))}


@pytest.mark.usefixtures("gateway")
def test_item_of_a_gtin_with_batch_recalls_and_no_known_lot_is_held(site: Site, gate: Gate) -> None:
    site.commissioned(44)
    site.registry.add_recall(item(44).gtin, "L7", "mislabelled lot", time.time())
    assert verdict_of(gate, 44) == (Decision.HOLD, ["item.lot_unknown"])
    assert verdict_of(gate, 44, item_fields={"batch": "L7"}) == (Decision.REJECT, ["item.recalled"])
    assert verdict_of(gate, 44, item_fields={"batch": "L8"}) == (Decision.PASS, ["ledger.ok"])


def test_every_reason_code_of_the_rules_is_provoked_in_this_file() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    assert [r.value for r in Reason if f'"{r.value}"' not in source] == []
