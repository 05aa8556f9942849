"""Each counterfeit rule, provoked by real ledger events and registry data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from gateway.ledger.epcis import BizStep, Disposition
from gateway.ledger.ledger import Ledger
from gateway.policy import Policy
from gateway.registry import InspectionResult, Registry
from gateway.rules import Outcome, Verifier
from gatewire.identity import parse_item_id
from gatewire.messages import BatchItem, Decision, VerifyRequest, VisionVerdict
from tests.gateway.rules.rules_support import (
    BRAND,
    BRAND_PREFIX,
    NOW,
    OTHER_BRAND,
    OTHER_PREFIX,
    OTHER_SELLER,
    OTHER_SGLN,
    OTHER_SITE,
    SELLER,
    SITE,
    Facts,
    commission,
    epc,
    item,
    observe,
)


def check(verifier: Verifier, facts: Any) -> Outcome:
    return verifier.verify_many([facts], gate="in-01", now=NOW)[0]


def received(ledger: Ledger, *numbers: int, prefix: str = BRAND_PREFIX) -> None:
    """Items commissioned by their brand and received at SITE ten days ago."""
    brand = BRAND if prefix == BRAND_PREFIX else OTHER_BRAND
    ledger.append_batch([commission(n, prefix=prefix) for n in numbers], brand)
    ledger.append_batch([observe(n, BizStep.RECEIVING, prefix=prefix) for n in numbers], SITE)


def test_item_received_from_its_brand_passes(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    outcome = check(verifier, Facts(item(1), seller=SELLER))
    assert outcome == Outcome(Decision.PASS, ("ledger.ok",), outcome.inspect, "received")


def test_gate_messages_are_accepted_as_facts(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1, 2)
    single = VerifyRequest(site="demo", gate="in-01", item=item(1))
    batch = [BatchItem(index=0, item=item(2)), BatchItem(index=1, item=item(3))]
    assert check(verifier, single).decision is Decision.PASS
    outcomes = verifier.verify_many(batch, gate="in-01", now=NOW)
    assert [o.decision for o in outcomes] == [Decision.PASS, Decision.REJECT]


def test_unknown_serial_is_rejected(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    outcome = check(verifier, Facts(item(2)))
    assert (outcome.decision, outcome.reasons, outcome.ledger_state) == (
        Decision.REJECT,
        ("ledger.unknown_serial",),
        "unknown",
    )


def test_product_level_barcode_without_serial_is_unknown(
    ledger: Ledger, verifier: Verifier
) -> None:
    received(ledger, 1)
    gtin_only = parse_item_id(item(1).gtin).item
    assert gtin_only is not None
    assert check(verifier, Facts(gtin_only)).reasons == ("ledger.unknown_serial",)


def test_item_seen_but_never_commissioned_is_rejected(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append(observe(1, BizStep.RECEIVING), OTHER_SITE)
    outcome = check(verifier, Facts(item(1)))
    assert outcome.decision is Decision.REJECT
    assert outcome.reasons == ("ledger.not_commissioned",)


def test_item_commissioned_under_another_brands_prefix_is_rejected(
    ledger: Ledger, verifier: Verifier
) -> None:
    # Borealis commissions a serial under Acme's company prefix.
    ledger.append(commission(1), OTHER_BRAND)
    ledger.append(observe(1, BizStep.RECEIVING), SITE)
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons) == (Decision.REJECT, ("ledger.prefix_not_owned",))


def test_prefix_rule_reads_the_gtin_owner_for_digital_link_names(
    ledger: Ledger, verifier: Verifier
) -> None:
    genuine, forged = item(1), item(2)
    ledger.append(commission(1, epcs=[genuine.digital_link]), BRAND)
    ledger.append(commission(2, epcs=[forged.digital_link]), OTHER_BRAND)
    assert check(verifier, Facts(genuine)).decision is Decision.PASS
    assert check(verifier, Facts(forged)).reasons == ("ledger.prefix_not_owned",)


def test_prefix_registered_after_commissioning_is_honoured(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    prefix = "7654321"
    ledger.append(commission(1, prefix=prefix), BRAND)
    assert check(verifier, Facts(item(1, prefix))).reasons == ("ledger.prefix_not_owned",)
    registry.add_prefix(BRAND, prefix)
    assert check(verifier, Facts(item(1, prefix))).decision is Decision.PASS


def test_item_already_shipped_from_this_site_is_a_clone(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    ledger.append(observe(1, BizStep.SHIPPING, hours_ago=24 * 5), SITE)
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons, outcome.ledger_state) == (
        Decision.REJECT,
        ("ledger.already_shipped",),
        "shipped",
    )


def test_item_shipped_by_another_site_may_arrive_here(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.SHIPPING, hours_ago=48, location=OTHER_SGLN), OTHER_SITE)
    assert check(verifier, Facts(item(1))).decision is Decision.PASS


@pytest.mark.parametrize(
    ("step", "disposition"),
    [
        (BizStep.DECOMMISSIONING, Disposition.INACTIVE),
        (BizStep.DESTROYING, Disposition.DESTROYED),
        ("retail_selling", "retail_sold"),
    ],
)
def test_decommissioned_destroyed_or_sold_item_is_rejected(
    ledger: Ledger, verifier: Verifier, step: str, disposition: str
) -> None:
    received(ledger, 1)
    ledger.append(observe(1, step, disposition=disposition, hours_ago=24 * 5), SITE)
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons) == (Decision.REJECT, ("ledger.decommissioned",))


def test_item_seen_at_another_site_an_hour_ago_cannot_be_here(
    ledger: Ledger, verifier: Verifier
) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, "departing", hours_ago=1, location=OTHER_SGLN), OTHER_SITE)
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons) == (Decision.HOLD, ("travel.impossible",))


def test_travel_after_the_minimum_time_is_fine(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, "departing", hours_ago=5, location=OTHER_SGLN), OTHER_SITE)
    assert check(verifier, Facts(item(1))).decision is Decision.PASS


def test_minimum_travel_time_is_policy(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, "departing", hours_ago=5, location=OTHER_SGLN), OTHER_SITE)
    strict = make_verifier(Policy(min_travel_hours=12))
    assert check(strict, Facts(item(1))).reasons == ("travel.impossible",)


def test_seen_here_an_hour_ago_is_no_travel(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=1), SITE)
    assert check(verifier, Facts(item(1))).decision is Decision.PASS


def test_barcode_and_rfid_naming_different_items_disagree(
    ledger: Ledger, verifier: Verifier
) -> None:
    received(ledger, 1, 2)
    outcome = check(verifier, Facts(item(1), also_read=[item(2)]))
    assert (outcome.decision, outcome.reasons) == (Decision.HOLD, ("read.mismatch",))
    label = item(1, batch="LOT-1")
    assert check(verifier, Facts(label, also_read=[item(1, batch="LOT-2")])).reasons == (
        "read.mismatch",
    )


def test_barcode_and_rfid_of_the_same_item_agree(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    barcode = parse_item_id(f"(01){item(1).gtin}(21)1(10)LOT-1").item
    assert barcode is not None
    assert barcode.key == item(1).key
    outcome = check(verifier, Facts(barcode, also_read=[item(1)]))
    assert outcome.decision is Decision.PASS


def test_recalled_batch_in_the_registry_is_rejected(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    received(ledger, 1, 2)
    registry.add_recall(item(1).gtin, "LOT-1", "contaminated", NOW - 3600)
    outcome = check(verifier, Facts(item(1, batch="LOT-1")))
    assert (outcome.decision, outcome.reasons) == (Decision.REJECT, ("item.recalled",))
    assert check(verifier, Facts(item(2, batch="LOT-2"))).decision is Decision.PASS


def test_recall_of_a_whole_gtin_covers_every_batch(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    received(ledger, 1)
    registry.add_recall(item(1).gtin, None, "labelling error", NOW - 3600)
    assert check(verifier, Facts(item(1))).reasons == ("item.recalled",)


def test_recall_reads_the_batch_from_the_ledger(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    ledger.append(commission(1, ilmd={"cbvmda:lotNumber": "LOT-9"}), BRAND)
    registry.add_recall(item(1).gtin, "LOT-9", "contaminated", NOW - 3600)
    assert check(verifier, Facts(item(1))).reasons == ("item.recalled",)


def test_item_with_recalled_disposition_in_the_ledger_is_rejected(
    ledger: Ledger, verifier: Verifier
) -> None:
    received(ledger, 1)
    ledger.append(observe(1, "holding", disposition=Disposition.RECALLED, hours_ago=24), BRAND)
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons, outcome.ledger_state) == (
        Decision.REJECT,
        ("item.recalled",),
        "recalled",
    )


def test_expired_item_is_rejected(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1, 2)
    yesterday = dt.date(2026, 11, 27)
    outcome = check(verifier, Facts(item(1, expiry=yesterday)))
    assert (outcome.decision, outcome.reasons) == (Decision.REJECT, ("item.expired",))
    today = dt.date(2026, 11, 28)
    assert check(verifier, Facts(item(2, expiry=today))).decision is Decision.PASS


def test_expiry_from_the_ledger_counts(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append(commission(1, ilmd={"cbvmda:itemExpirationDate": "2026-11-01"}), BRAND)
    assert check(verifier, Facts(item(1))).reasons == ("item.expired",)


def test_minimum_shelf_life_is_policy(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    received(ledger, 1)
    strict = make_verifier(Policy(expiry_min_days_left=30))
    in_ten_days = dt.date(2026, 12, 8)
    assert check(strict, Facts(item(1, expiry=in_ten_days))).reasons == ("item.expired",)


def test_stolen_item_is_held(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    ledger.append(observe(1, "holding", disposition=Disposition.STOLEN, hours_ago=24), SITE)
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons, outcome.ledger_state) == (
        Decision.HOLD,
        ("ledger.stolen",),
        "stolen",
    )


def test_suspended_seller_of_the_ledger_holds_the_item(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    received(ledger, 1)
    registry.suspend_seller(SELLER, "fraud", NOW - 60)
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons) == (Decision.HOLD, ("seller.suspended",))


def test_suspended_seller_named_by_the_request_holds_the_item(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    received(ledger, 1)
    registry.suspend_seller(OTHER_SELLER, "fraud", NOW - 60)
    assert check(verifier, Facts(item(1))).decision is Decision.PASS
    assert check(verifier, Facts(item(1), seller=OTHER_SELLER)).reasons == ("seller.suspended",)


def test_suspect_vision_verdict_holds_the_item(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    outcome = check(verifier, Facts(item(1), vision_verdict=VisionVerdict.SUSPECT))
    assert (outcome.decision, outcome.reasons) == (Decision.HOLD, ("vision.suspect",))
    genuine = Facts(item(1), vision_verdict=VisionVerdict.GENUINE)
    assert check(verifier, genuine).decision is Decision.PASS


def test_item_rejected_at_a_gate_is_held_until_inspected(
    ledger: Ledger, verifier: Verifier
) -> None:
    received(ledger, 1)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=24, verdict="REJECT"), SITE)
    assert check(verifier, Facts(item(1))).reasons == ("ledger.quarantined",)
    ledger.append(
        observe(1, BizStep.INSPECTING, disposition=Disposition.CONFORMANT, hours_ago=20), SITE
    )
    assert check(verifier, Facts(item(1))).decision is Decision.PASS


def test_reasons_come_most_important_first_and_reject_beats_hold(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    registry.suspend_seller(SELLER, "fraud", NOW - 60)
    facts = Facts(
        item(5, expiry=dt.date(2020, 1, 1)),
        seller=SELLER,
        vision_verdict=VisionVerdict.SUSPECT,
        also_read=[item(6)],
    )
    outcome = check(verifier, facts)
    assert outcome.decision is Decision.REJECT
    assert outcome.reasons == (
        "ledger.unknown_serial",
        "read.mismatch",
        "item.expired",
        "seller.suspended",
        "vision.suspect",
    )
    assert not outcome.inspect


def test_site_policy_decides_what_each_reason_does(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    received(ledger, 1)
    strict = make_verifier(Policy(decisions={"vision.suspect": "REJECT"}))
    lenient = make_verifier(Policy(decisions={"ledger.unknown_serial": "HOLD"}))
    assert check(strict, Facts(item(1), vision_verdict=VisionVerdict.SUSPECT)).decision is (
        Decision.REJECT
    )
    assert check(lenient, Facts(item(2))).decision is Decision.HOLD


def test_commission_is_visible_to_the_next_verification_in_another_worker(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    worker = make_verifier(own_connection=True)
    assert check(worker, Facts(item(1))).reasons == ("ledger.unknown_serial",)
    ledger.append(commission(1), BRAND)
    assert check(worker, Facts(item(1))).decision is Decision.PASS


def test_one_strike_holds_every_other_item_of_the_seller(
    ledger: Ledger, registry: Registry, make_verifier: Callable[..., Verifier]
) -> None:
    received(ledger, 1, 2, 3)
    ledger.append_batch([commission(4, seller=OTHER_SELLER)], BRAND)
    workers = [make_verifier(), make_verifier(own_connection=True)]
    for worker in workers:  # both have the registry cached before the strike
        assert check(worker, Facts(item(2))).decision is Decision.PASS
    registry.record_inspection(
        item(1).key, "inspector-7", InspectionResult.COUNTERFEIT, seller_id=SELLER, now=NOW
    )
    for worker in workers:
        outcomes = worker.verify_many(
            [Facts(item(2)), Facts(item(3)), Facts(item(4))], gate="out-01", now=NOW
        )
        assert [(o.decision, o.reasons) for o in outcomes] == [
            (Decision.HOLD, ("seller.suspended",)),
            (Decision.HOLD, ("seller.suspended",)),
            (Decision.PASS, ("ledger.ok",)),
        ]


def test_rejects_are_counted_per_seller(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    received(ledger, 1)
    outcomes = verifier.verify_many(
        [Facts(item(1), seller=SELLER), Facts(item(8), seller=SELLER), Facts(item(9))],
        gate="in-01",
        now=NOW,
    )
    assert [o.decision for o in outcomes] == [Decision.PASS, Decision.REJECT, Decision.REJECT]
    assert registry.recent_rejects(SELLER, NOW - 60) == 1


def test_first_seen_seller_is_registered(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    received(ledger, 1)
    assert registry.seller(SELLER) is None
    check(verifier, Facts(item(1)))
    seller = registry.seller(SELLER)
    assert seller is not None
    assert seller.first_seen == NOW


def test_unreadable_projection_fails_closed(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    assert check(verifier, Facts(item(1))).decision is Decision.PASS
    ledger.store._execute("DROP TABLE gw_items")
    outcomes = verifier.verify_many([Facts(item(1)), Facts(item(2))], gate="in-01", now=NOW)
    assert [(o.decision, o.reasons, o.ledger_state) for o in outcomes] == [
        (Decision.HOLD, ("ledger.unavailable",), None)
    ] * 2


def test_corrupt_projection_row_fails_closed(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1)
    verifier.projection.sync()
    ledger.store._execute(
        ledger.store._q("UPDATE gw_items SET status = ? WHERE item_key = ?"),
        ("bogus", item(1).key),
    )
    outcome = check(verifier, Facts(item(1)))
    assert (outcome.decision, outcome.reasons) == (Decision.HOLD, ("ledger.unavailable",))


def test_rfid_epc_and_verifier_key_agree(ledger: Ledger, verifier: Verifier) -> None:
    received(ledger, 1, prefix=OTHER_PREFIX)
    tag = parse_item_id(epc(1, OTHER_PREFIX)).item
    assert tag is not None
    assert check(verifier, Facts(tag)).decision is Decision.PASS


def test_seller_id_the_registry_refuses_does_not_lose_other_bookkeeping(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    received(ledger, 1)
    refused = "s" * 501  # longer than the registry takes
    ledger.append(commission(2, seller=refused), BRAND)
    outcomes = verifier.verify_many(
        [Facts(item(2)), Facts(item(9), seller=SELLER)], gate="in-01", now=NOW
    )
    assert [o.decision for o in outcomes] == [Decision.PASS, Decision.REJECT]
    assert registry.recent_rejects(SELLER, NOW - 60) == 1
    assert registry.seller(SELLER) is not None
