"""How the projection stores items: names_of (every name of an item) and rebuilds."""

from __future__ import annotations

import pytest

from gateway import items as items_module
from gateway.items import ItemProjection, ItemStatus
from gateway.ledger.epcis import BizStep
from gateway.ledger.ledger import Ledger
from tests.gateway.ledger.ledger_support import aggregation
from tests.gateway.rules.rules_support import BRAND, SITE, commission, epc, item, observe

DIGITAL_LINK = item(1).digital_link


def test_names_of_lists_every_alias_oldest_first(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1, seller=None), BRAND)
    received = observe(1, BizStep.RECEIVING)
    received["epcList"] = [DIGITAL_LINK]
    ledger.append(received, SITE)
    ledger.append(observe(1, BizStep.SHIPPING), SITE)
    projection.sync()
    assert projection.names_of(item(1).key) == [epc(1), DIGITAL_LINK]
    assert projection.names_of(item(2).key) == []


def test_names_of_is_filled_for_events_applied_before_the_table_existed(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    projection.sync()
    with ledger.store.write():
        ledger.store._execute("DROP TABLE gw_item_names")
        ledger.store._execute("DELETE FROM gw_items_hwm WHERE name = 'names'")
    reopened = ItemProjection(ledger.store)
    assert reopened.names_of(item(1).key) == [epc(1)]


def test_names_of_backfill_keeps_every_name_of_an_event_naming_several(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # seven rows a query: before windows of whole seqs, the first read stopped after the
    # first of the packing event's three names and the other two were never read
    monkeypatch.setattr(items_module, "SYNC_CHUNK", 7)
    projection = ItemProjection(ledger.store)
    ledger.append_batch([commission(n) for n in (1, 2, 3, 4, 5)], BRAND)
    packing = aggregation([item(4).digital_link, item(5).digital_link])  # names seen only here
    ledger.append_batch([observe(3, BizStep.RECEIVING), packing], SITE)  # seqs 6 and 7
    projection.sync()
    with ledger.store.write():
        ledger.store._execute("DROP TABLE gw_item_names")
        ledger.store._execute("DELETE FROM gw_items_hwm WHERE name = 'names'")
    reopened = ItemProjection(ledger.store)
    for n in (1, 2, 3):
        assert reopened.names_of(item(n).key) == [epc(n)]
    for n in (4, 5):
        assert reopened.names_of(item(n).key) == [epc(n), item(n).digital_link]


def test_names_of_survives_a_rebuild_without_duplicates(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append_batch([commission(1), commission(2)], BRAND)
    projection.sync()
    with ledger.store.write():
        ledger.store._execute("DELETE FROM gw_items")
        ledger.store._execute("UPDATE gw_items_hwm SET last_seq = 0 WHERE name = 'items'")
    ItemProjection(ledger.store).sync()
    assert projection.names_of(item(2).key) == [epc(2)]


def test_projection_folded_by_older_code_is_folded_again(ledger: Ledger) -> None:
    ledger.append(commission(1), BRAND)
    ledger.append(observe(1, BizStep.RECEIVING), SITE)
    with ledger.store.write():  # gw_items as the previous version of the fold left it
        ledger.store._execute(
            "CREATE TABLE gw_items (item_key TEXT PRIMARY KEY, gtin TEXT NOT NULL, "
            "serial TEXT NOT NULL, company_prefix TEXT, batch TEXT, expiry TEXT, "
            "commissioned_by TEXT, status TEXT NOT NULL, seller TEXT, last_site TEXT, "
            "last_signer TEXT, last_seen DOUBLE PRECISION, last_seq INTEGER NOT NULL)"
        )
        ledger.store._execute("CREATE TABLE gw_items_hwm (name TEXT PRIMARY KEY, last_seq INTEGER)")
        ledger.store._execute("INSERT INTO gw_items_hwm VALUES ('items', 2)")
    projection = ItemProjection(ledger.store)
    assert projection.sync() == 2
    record = projection.lookup(item(1).key)
    assert record is not None
    assert record.status is ItemStatus.RECEIVED
