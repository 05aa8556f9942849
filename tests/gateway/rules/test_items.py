"""The item projection follows the ledger: statuses, sellers, sites, sync across workers."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.items import ItemProjection, ItemStatus, item_key_of
from gateway.ledger.epcis import BizStep, Disposition, aggregation_event, to_jsonld
from gateway.ledger.ledger import Ledger
from gateway.ledger.seed import SITE as DEMO_SITE
from gateway.ledger.seed import demo_batches, demo_orgs, seller_id
from gateway.ledger.signing import OrgKey
from gateway.ledger.store import SqlStore
from gateway.registry import Registry
from gatewire.identity import parse_item_id
from tests.gateway.rules.conftest import ORGS
from tests.gateway.rules.rules_support import (
    BRAND,
    OTHER_SGLN,
    OTHER_SITE,
    SELLER,
    SITE,
    SITE_SGLN,
    ago,
    commission,
    epc,
    item,
    observe,
)


def test_life_cycle_commissioned_received_shipped(ledger: Ledger, registry: Registry) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1, seller=None), BRAND)
    assert projection.sync() == 1
    record = projection.lookup(item(1).key)
    assert record is not None
    assert (record.status, record.commissioned_by, record.company_prefix) == (
        ItemStatus.COMMISSIONED,
        BRAND,
        "4012345",
    )
    assert record.seller is None
    assert record.last_seen is None  # a brand's commissioning is no site observation

    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=48), SITE)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert (record.status, record.seller, record.last_site, record.last_signer) == (
        ItemStatus.RECEIVED,
        SELLER,
        SITE_SGLN,
        SITE,
    )
    assert record.last_seen == ago(48).timestamp()

    ledger.append(observe(1, BizStep.SHIPPING, hours_ago=24), SITE)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.SHIPPED
    assert record.last_seq == 3


def test_sync_applies_only_new_events_and_keeps_its_mark(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append_batch([commission(n) for n in range(5)], BRAND)
    assert projection.sync() == 5
    assert projection.sync() == 0
    assert projection.high_water_mark() == 5
    ledger.append(observe(2, BizStep.RECEIVING), SITE)
    assert projection.sync() == 1
    assert projection.high_water_mark() == 6
    assert projection.count() == 5


def test_two_workers_share_one_projection_without_applying_twice(
    ledger: Ledger, open_db: Callable[[], SqlStore]
) -> None:
    first = ItemProjection(ledger.store)
    second = ItemProjection(open_db())
    ledger.append_batch([commission(n) for n in range(3)], BRAND)
    assert first.sync() == 3
    assert second.sync() == 0  # the first worker already applied them
    ledger.append(observe(1, BizStep.RECEIVING), SITE)
    assert second.sync() == 1
    assert first.sync() == 0
    record = first.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.RECEIVED


def test_terminal_status_is_lifted_only_by_the_commissioning_brand(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, "holding", disposition=Disposition.STOLEN), SITE)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=200), SITE)  # a gate saw it again
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.STOLEN
    ledger.append(observe(1, "holding", disposition=Disposition.ACTIVE, hours_ago=100), BRAND)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.RECEIVED  # back on site, where it was last seen


def test_gate_reject_quarantines_until_a_conforming_inspection(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    ledger.append(
        observe(1, BizStep.RECEIVING, disposition=Disposition.IN_PROGRESS, verdict="REJECT"),
        SITE,
    )
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.QUARANTINED
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=100), SITE)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.QUARANTINED
    ledger.append(
        observe(1, BizStep.INSPECTING, disposition=Disposition.CONFORMANT, hours_ago=90), SITE
    )
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.RECEIVED


def test_decommissioning_delete_and_destroying_end_the_life_cycle(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append_batch([commission(n) for n in (1, 2, 3)], BRAND)
    ledger.append_batch(
        [
            observe(1, BizStep.DECOMMISSIONING, disposition=Disposition.INACTIVE),
            observe(2, BizStep.DESTROYING, disposition=None),
            observe(3, "retail_selling", disposition="retail_sold"),
        ],
        SITE,
    )
    projection.sync()
    found = projection.lookup_many([item(n).key for n in (1, 2, 3)])
    assert [found[item(n).key].status for n in (1, 2, 3)] == [
        ItemStatus.DECOMMISSIONED,
        ItemStatus.DESTROYED,
        ItemStatus.SOLD,
    ]


def test_item_seen_without_commissioning_is_recorded_uncommissioned(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(observe(7, BizStep.RECEIVING), SITE)
    projection.sync()
    record = projection.lookup(item(7).key)
    assert record is not None
    assert record.commissioned_by is None
    assert record.status is ItemStatus.RECEIVED


def test_batch_and_expiry_come_from_the_commissioning_ilmd(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ilmd = {"cbvmda:lotNumber": "LOT-7", "cbvmda:itemExpirationDate": "2027-03-31"}
    ledger.append(commission(1, ilmd=ilmd), BRAND)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert (record.batch, record.expiry) == ("LOT-7", dt.date(2027, 3, 31))


def test_an_older_event_does_not_move_the_last_site_back(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=10, location=SITE_SGLN), SITE)
    ledger.append(observe(1, "storing", hours_ago=50, location=OTHER_SGLN), OTHER_SITE)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert (record.last_site, record.last_signer) == (SITE_SGLN, SITE)


def test_aggregation_children_are_items_and_the_case_is_not(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append_batch([commission(n) for n in (1, 2)], BRAND)
    packing = to_jsonld(
        aggregation_event(
            "urn:epc:id:sscc:4012345.0000000001",
            [epc(1), epc(2)],
            read_point=SITE_SGLN,
            biz_location=SITE_SGLN,
            event_time=ago(5),
        )
    )
    ledger.append(packing, SITE)
    projection.sync()
    assert projection.count() == 2
    record = projection.lookup(item(2).key)
    assert record is not None
    assert record.last_seq == 3


@pytest.mark.parametrize("asked", [500, 1200])
def test_lookup_many_returns_the_known_items_among_the_keys(ledger: Ledger, asked: int) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append_batch([commission(n) for n in range(0, 1200, 2)], BRAND)
    projection.sync()
    keys = [item(n).key for n in range(asked)]
    found = projection.lookup_many(keys + keys[:10])  # repeated keys are fine
    assert set(found) == set(keys[::2])
    assert all(found[k].key == k for k in found)
    assert projection.lookup_many([]) == {}


def test_items_of_seller_lists_its_items_optionally_at_one_site(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append_batch([commission(n) for n in range(4)], BRAND)
    ledger.append_batch([observe(n, BizStep.RECEIVING) for n in (0, 1)], SITE)
    ledger.append(observe(2, BizStep.RECEIVING, location=OTHER_SGLN), OTHER_SITE)
    ledger.append(commission(9, seller="https://provgate.dev/seller/s-99"), BRAND)
    projection.sync()
    assert [r.key for r in projection.items_of_seller(SELLER)] == sorted(
        item(n).key for n in range(4)
    )
    assert [r.key for r in projection.items_of_seller(SELLER, site=SITE_SGLN)] == sorted(
        item(n).key for n in (0, 1)
    )


def test_demo_seed_projects_every_item_with_its_seller(ledger: Ledger) -> None:
    for org in demo_orgs():
        if org.org not in ORGS:
            ledger.add_signer(OrgKey(org.org, Ed25519PrivateKey.generate()))
    projection = ItemProjection(ledger.store)
    events = 0
    for signer, batch, _ in demo_batches(120, seed=3, batch_size=50):
        ledger.append_batch(batch, signer)
        events += len(batch)
    assert projection.sync() == events
    records = [r for n in range(1, 13) for r in projection.items_of_seller(seller_id(n))]
    assert len(records) == 120
    received = [r for r in records if r.last_signer == DEMO_SITE.org]
    assert received
    assert all(r.status in (ItemStatus.RECEIVED, ItemStatus.QUARANTINED) for r in received)
    assert all(r.commissioned_by is not None for r in records)


@pytest.mark.parametrize(
    "uri",
    [
        "urn:epc:id:sgtin:4012345.012345.1",
        "urn:epc:id:sgtin:0614141.112345.400",
        "urn:epc:id:sgtin:061414112.3456.AB-c_9'(x)",
        "urn:epc:id:sgtin:952114.1000000.12345678901234567890",
        "urn:epc:id:sgtin:4012345.012345.a%2Fb",  # escaped: decoded by gatewire.epc
    ],
)
def test_item_key_of_an_epc_matches_the_canonical_id(uri: str) -> None:
    canonical = parse_item_id(uri).item
    assert canonical is not None
    found = item_key_of(uri)
    assert found is not None
    assert (found[0], found[1]) == (canonical.key, canonical.serial)
    assert found[2] == uri.split(":")[4].split(".")[0]


@pytest.mark.parametrize(
    "name",
    [
        "urn:epc:id:sscc:4012345.0000000001",
        "urn:epc:id:sgtin:4012345.01234.1",  # 12 digits: not an SGTIN
        "https://id.gs1.org/01/04012345012347",  # a product, not an item
    ],
)
def test_names_that_are_no_item_give_none(name: str) -> None:
    assert item_key_of(name) is None


def test_item_held_at_the_outbound_gate_is_not_shipped(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING, hours_ago=48), SITE)
    ledger.append(observe(1, BizStep.SHIPPING, hours_ago=24, verdict="HOLD"), SITE)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.RECEIVED
    assert record.last_seen == ago(24).timestamp()


def test_workers_syncing_while_events_are_appended_agree(
    ledger: Ledger, open_db: Callable[[], SqlStore]
) -> None:
    projections = [ItemProjection(open_db()) for _ in range(2)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(projection: ItemProjection) -> None:
        try:
            while not stop.is_set():
                projection.sync()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in projections]
    for thread in threads:
        thread.start()
    try:
        for start in range(0, 60, 10):
            numbers = range(start, start + 10)
            ledger.append_batch([commission(n) for n in numbers], BRAND)
            ledger.append_batch([observe(n, BizStep.RECEIVING) for n in numbers], SITE)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    first, second = projections
    first.sync()
    second.sync()
    assert first.high_water_mark() == second.high_water_mark() == 120
    records = first.lookup_many([item(n).key for n in range(60)])
    assert len(records) == 60
    assert {r.status for r in records.values()} == {ItemStatus.RECEIVED}
    assert {r.commissioned_by for r in records.values()} == {BRAND}


def test_cbv_uris_mean_the_same_as_short_names(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    shipped = observe(1, BizStep.SHIPPING)
    shipped["bizStep"] = "https://ref.gs1.org/cbv/BizStep-shipping"
    stolen = observe(1, "holding", hours_ago=5)
    stolen["disposition"] = "urn:epcglobal:cbv:disp:stolen"
    ledger.append(shipped, SITE)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.SHIPPED
    ledger.append(stolen, SITE)
    projection.sync()
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.STOLEN
