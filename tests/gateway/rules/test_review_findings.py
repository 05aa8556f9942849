"""Ways a wrong item passed, found in review: each provoked through the real ledger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from gateway.items import ItemProjection, ItemStatus
from gateway.ledger.epcis import BizStep, Disposition
from gateway.ledger.ledger import Ledger
from gateway.policy import Policy
from gateway.registry import InspectionResult, Registry
from gateway.rules import Outcome, Verifier
from gatewire.identity import parse_item_id
from gatewire.messages import Decision
from tests.gateway.rules.rules_support import (
    BRAND,
    NOW,
    OTHER_BRAND,
    OTHER_SELLER,
    OTHER_SGLN,
    OTHER_SITE,
    SECRET,
    SELLER,
    SITE,
    SITE_SGLN,
    Facts,
    commission,
    item,
    observe,
)

LOT = {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2030-01-01"}


def verdict(
    verifier: Verifier, facts: Any, gate: str = "out-01"
) -> tuple[Decision, tuple[str, ...]]:
    outcome: Outcome = verifier.verify_many([facts], gate=gate, now=NOW)[0]
    return outcome.decision, outcome.reasons


# ---- 2: late events ----------------------------------------------------------------------


def test_late_receiving_event_does_not_unship_an_item(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.SHIPPING, hours_ago=5), SITE)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=6), SITE)  # from an outbox, late
    assert verdict(verifier, Facts(item(1))) == (Decision.REJECT, ("ledger.already_shipped",))


def test_lifted_flag_resumes_where_the_item_was(ledger: Ledger, registry: Registry) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=48), SITE)
    ledger.append(observe(1, BizStep.SHIPPING, hours_ago=24), SITE)
    ledger.append(
        observe(1, "inspecting", disposition=Disposition.STOLEN, hours_ago=12), OTHER_SITE
    )
    ledger.append(
        observe(1, "inspecting", disposition=Disposition.ACTIVE, hours_ago=6, location=OTHER_SGLN),
        BRAND,
    )
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.SHIPPED


# ---- 3: recalls and expiry whatever the gate reads ---------------------------------------


def test_ledger_lot_is_recalled_whatever_the_label_says(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    ledger.append(commission(1, ilmd=LOT), BRAND)
    registry.add_recall(item(1).gtin, "L1", "allergen", NOW)
    assert verdict(verifier, Facts(item(1, batch="L2"))) == (
        Decision.REJECT,
        ("read.mismatch", "item.recalled"),
    )


def test_batch_recall_holds_an_item_whose_lot_nobody_knows(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    ledger.append(commission(1), BRAND)
    registry.add_recall(item(1).gtin, "L1", "allergen", NOW)
    assert verdict(verifier, Facts(item(1))) == (Decision.HOLD, ("item.lot_unknown",))
    assert verdict(verifier, Facts(item(1, batch="L7")))[0] is Decision.PASS


def test_lot_and_expiry_of_every_read_count(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    ledger.append(commission(1), BRAND)
    registry.add_recall(item(1).gtin, "L1", "allergen", NOW)
    barcode = item(1, batch="L1", expiry=dt.date(2020, 1, 1))
    assert verdict(verifier, Facts(item(1), also_read=[barcode])) == (
        Decision.REJECT,
        ("item.recalled", "item.expired"),
    )


def test_read_expiry_other_than_the_ledgers_is_a_mismatch(
    ledger: Ledger, verifier: Verifier
) -> None:
    ledger.append(commission(1, ilmd=LOT), BRAND)
    assert verdict(verifier, Facts(item(1, expiry=dt.date(2031, 1, 1)))) == (
        Decision.HOLD,
        ("read.mismatch",),
    )
    assert verdict(verifier, Facts(item(1, batch="L1", expiry=dt.date(2030, 1, 1))))[0] is (
        Decision.PASS
    )


# ---- 4: who may change lot, expiry and seller --------------------------------------------


def test_another_orgs_ilmd_does_not_change_lot_or_expiry(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    ledger.append(
        commission(1, ilmd={"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2026-01-01"}),
        BRAND,
    )
    registry.add_recall(item(1).gtin, "L1", "allergen", NOW)
    event = observe(1, BizStep.SHIPPING, hours_ago=10, location=OTHER_SGLN)
    event["ilmd"] = {"cbvmda:lotNumber": "L9", "cbvmda:itemExpirationDate": "2031-01-01"}
    ledger.append(event, OTHER_SITE)
    assert verdict(verifier, Facts(item(1))) == (
        Decision.REJECT,
        ("item.recalled", "item.expired"),
    )


def test_only_the_brand_or_a_site_may_name_the_seller(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING), SITE)
    ledger.append(observe(1, "inspecting", seller=OTHER_SELLER, hours_ago=5), OTHER_BRAND)
    registry.suspend_seller(SELLER, "fraud", NOW - 60)
    assert verdict(verifier, Facts(item(1))) == (Decision.HOLD, ("seller.suspended",))
    record = verifier.projection.lookup(item(1).key)
    assert record is not None
    assert record.seller == SELLER


# ---- 6: clone signals ----------------------------------------------------------------------


def test_item_in_stock_at_another_site_is_held(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=10, location=OTHER_SGLN), OTHER_SITE)
    assert verdict(verifier, Facts(item(1))) == (Decision.HOLD, ("ledger.in_stock_elsewhere",))


def test_item_shipped_from_here_and_received_elsewhere_is_held_here(
    ledger: Ledger, verifier: Verifier
) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=48), SITE)
    ledger.append(observe(1, BizStep.SHIPPING, hours_ago=40), SITE)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=30, location=OTHER_SGLN), OTHER_SITE)
    assert verdict(verifier, Facts(item(1))) == (Decision.HOLD, ("ledger.in_stock_elsewhere",))


def test_inbound_read_of_an_item_received_here_is_held(ledger: Ledger, registry: Registry) -> None:
    verifier = Verifier(
        ledger.store,
        Policy(),
        site=SITE,
        inspection_secret=SECRET,
        aliases=[SITE_SGLN],
        inbound=lambda gate: gate.startswith("in-"),
    )
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=2), SITE)
    assert verdict(verifier, Facts(item(1)), gate="in-01") == (
        Decision.HOLD,
        ("ledger.already_received",),
    )
    assert verdict(verifier, Facts(item(1)), gate="out-01")[0] is Decision.PASS


def test_same_item_twice_in_one_batch_is_held(ledger: Ledger, verifier: Verifier) -> None:
    ledger.append_batch([commission(1), commission(2)], BRAND)
    outcomes = verifier.verify_many(
        [Facts(item(1)), Facts(item(2)), Facts(item(1))], gate="out-01", now=NOW
    )
    assert [(o.decision, o.reasons) for o in outcomes] == [
        (Decision.HOLD, ("read.duplicate",)),
        (Decision.PASS, ("ledger.ok",)),
        (Decision.HOLD, ("read.duplicate",)),
    ]


# ---- 8: prefix ownership by GTIN -----------------------------------------------------------


def test_item_named_with_another_prefix_split_is_its_owners(
    ledger: Ledger, verifier: Verifier
) -> None:
    split = "urn:epc:id:sgtin:40123450.01234.1"  # same GTIN as item(1), 8-digit "prefix"
    named = parse_item_id(split).item
    assert named is not None
    assert named.key == item(1).key
    ledger.append(commission(1, epcs=[split]), BRAND)
    assert verdict(verifier, Facts(item(1)))[0] is Decision.PASS


# ---- 9: bookkeeping does not make workers reload the registry ------------------------------


def test_rejects_and_new_sellers_keep_the_registry_version(
    ledger: Ledger, registry: Registry, make_verifier: Callable[..., Verifier]
) -> None:
    ledger.append(commission(1), BRAND)
    first, second = make_verifier(), make_verifier(own_connection=True)
    before = registry.version()
    facts = [Facts(item(1), seller=SELLER), Facts(item(9), seller=OTHER_SELLER)]
    assert [o.decision for o in first.verify_many(facts, gate="out-01", now=NOW)] == [
        Decision.PASS,
        Decision.REJECT,
    ]
    assert registry.version() == before
    assert registry.recent_rejects(OTHER_SELLER, NOW - 60) == 1
    second.verify_many(facts, gate="out-01", now=NOW)  # learns both sellers without a write
    registry.record_inspection(
        item(1).key, "ann", InspectionResult.COUNTERFEIT, seller_id=SELLER, now=NOW
    )
    for worker in (first, second):  # the strike still reaches every worker at once
        assert verdict(worker, Facts(item(1))) == (Decision.HOLD, ("seller.suspended",))


# ---- 10: unavailable, seller IDs, no-seller items ------------------------------------------


def test_unavailable_can_reject_but_never_pass(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    strict = make_verifier(Policy(decisions={"ledger.unavailable": "REJECT"}))
    ledger.store._execute("DROP TABLE gw_items")
    assert verdict(strict, Facts(item(1))) == (Decision.REJECT, ("ledger.unavailable",))
    with pytest.raises(ValueError, match="REJECT"):
        Policy.model_validate({"decisions": {"ledger.unavailable": "PASS"}})


def test_seller_ids_are_stripped_in_requests_and_ledger(
    ledger: Ledger, verifier: Verifier, registry: Registry
) -> None:
    ledger.append(commission(1, seller=f" {SELLER} "), BRAND)
    ledger.append(commission(2, seller=None), BRAND)
    registry.suspend_seller(SELLER, "fraud", NOW - 60)
    assert verdict(verifier, Facts(item(1))) == (Decision.HOLD, ("seller.suspended",))
    assert verdict(verifier, Facts(item(2), seller=f"{SELLER}\t")) == (
        Decision.HOLD,
        ("seller.suspended",),
    )
    assert verdict(verifier, Facts(item(2), seller="   "))[0] is Decision.PASS
    assert [s.seller_id for s in registry.sellers()] == [SELLER]


def test_items_without_seller_get_the_new_seller_rate(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    numbers = range(200)
    ledger.append_batch([commission(n, seller=None) for n in numbers], BRAND)
    policy = Policy.model_validate({"inspection": {"base_rate": 0.0, "new_seller_rate": 1.0}})
    outcomes = make_verifier(policy).verify_many(
        [Facts(item(n)) for n in numbers], gate="out-01", now=NOW
    )
    assert all(o.inspect for o in outcomes)
