"""Gate events fold the item projection in their own transaction (SQLite and PostgreSQL):
the same records as a sync from the ledger, and verifiers that need no sync of their own."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from gateway.config import GateKind, GateSettings, GatewayConfig, HttpSettings, MqttSettings
from gateway.ingest import EventIngestor
from gateway.items import HEAD_SQL, ItemProjection, ItemRecord
from gateway.ledger.epcis import BizStep, Disposition
from gateway.ledger.ledger import Ledger
from gateway.ledger.pg_store import PostgresStore
from gateway.ledger.store import StoreError
from gateway.registry import Registry
from gateway.rules import Verifier
from gatewire.identity import parse_item_id
from gatewire.messages import Decision, GateEvent, new_message_id
from tests.gateway.rules.rules_support import (
    BRAND,
    NOW,
    SELLER,
    SITE,
    SITE_SGLN,
    Facts,
    commission,
    item,
    observe,
)

SITE_ID = "dc1"
GATES = {"in-01": GateKind.INBOUND, "out-01": GateKind.OUTBOUND, "insp-01": GateKind.INSPECTION}


def _config(url: str) -> GatewayConfig:
    return GatewayConfig(
        site=SITE_ID,
        site_org=SITE,
        location=SITE_SGLN,
        site_secret=bytes(range(32)).hex(),
        ledger_url=url,
        gates={g: GateSettings(kind=k) for g, k in GATES.items()},
        mqtt=MqttSettings(url="mqtt://127.0.0.1:1883"),
        http=HttpSettings(enabled=False),
    )


def _event(n: int, gate: str, decision: Decision, **fields: Any) -> GateEvent:
    values: dict[str, Any] = {
        "site": SITE_ID,
        "gate": gate,
        "event_id": new_message_id(),
        "item": item(n),
        "decision": decision,
        "reasons": ["ledger.ok"] if decision is Decision.PASS else ["seller.suspended"],
        "seller": SELLER,
        "scanned_at": NOW - 0.2,
        "decided_at": NOW - 0.1 + n / 1000,
    }
    return GateEvent(**(values | fields))


def _events() -> list[GateEvent]:
    """Every decision at every gate kind, with and without a seller, twice on some items."""
    link = parse_item_id(item(9).digital_link).item
    assert link is not None
    return [
        _event(1, "in-01", Decision.PASS),
        _event(2, "in-01", Decision.HOLD),
        _event(3, "in-01", Decision.REJECT),
        _event(4, "out-01", Decision.PASS, seller=None),
        _event(5, "insp-01", Decision.PASS),
        _event(1, "out-01", Decision.PASS),
        _event(3, "insp-01", Decision.PASS, decided_at=NOW),
        _event(9, "in-01", Decision.PASS, item=link.model_copy(update={"epc_uri": None})),
    ]


def _everything(projection: ItemProjection) -> tuple[list[ItemRecord], dict[str, list[str]]]:
    keys = [item(n).key for n in range(1, 10)]
    records = projection.lookup_many(keys)
    return sorted(records.values()), {k: projection.names_of(k) for k in keys}


def _refold(ledger: Ledger) -> ItemProjection:
    """A projection folded again from the ledger alone (what sync() makes of it)."""
    store = ledger.store
    with store.write():
        store._execute("DELETE FROM gw_items")
        store._execute("DELETE FROM gw_item_names")
        store._execute("UPDATE gw_items_hwm SET last_seq = 0 WHERE name = 'items'")
    projection = ItemProjection(store)
    projection.sync()
    return projection


def _prepared(ledger: Ledger) -> None:
    ledger.append_batch([commission(n) for n in range(1, 10)], BRAND)
    ledger.append_batch([observe(4, BizStep.RECEIVING)], SITE)


@pytest.mark.usefixtures("registry")
def test_ingest_folds_its_events_as_a_sync_from_the_ledger_would(ledger: Ledger) -> None:
    _prepared(ledger)
    ingestor = EventIngestor(ledger, _config(ledger.store.url))
    ingestor.projection.sync()
    for event in _events():  # one by one, as they usually come
        ingestor.ingest([event])
    ingestor.ingest(_events())  # and a batch
    head = ledger.store._execute("SELECT MAX(seq) FROM events")[0][0]
    assert ingestor.projection.high_water_mark() == head  # folded: nothing left to sync
    folded = _everything(ItemProjection(ledger.store))
    assert folded == _everything(_refold(ledger))
    assert folded[0]  # records were compared, not two empty lists


@pytest.mark.usefixtures("registry")
def test_a_verifier_reads_the_folded_projection_without_syncing(
    ledger: Ledger, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    _prepared(ledger)
    ingestor = EventIngestor(ledger, _config(ledger.store.url))
    verifier.verify_many([Facts(item(7))], gate="in-01", now=NOW)  # synced once
    syncs: list[int | None] = []
    real_sync = verifier.projection.sync

    def counted_sync(head: int | None = None) -> int:
        syncs.append(head)
        return real_sync(head)

    monkeypatch.setattr(verifier.projection, "sync", counted_sync)
    ingestor.ingest([_event(3, "in-01", Decision.REJECT)])
    rejected = verifier.verify_many([Facts(item(3))], gate="out-01", now=NOW)
    assert syncs == []
    assert rejected[0].decision is not Decision.PASS  # the REJECT quarantined it
    assert rejected == verifier.verify_many([Facts(item(3))], gate="out-01", now=NOW)


@pytest.mark.usefixtures("registry")
def test_events_appended_past_the_gateway_are_applied_by_sync_before_any_verdict(
    ledger: Ledger, verifier: Verifier
) -> None:
    _prepared(ledger)
    ingestor = EventIngestor(ledger, _config(ledger.store.url))
    ingestor.ingest([_event(1, "in-01", Decision.PASS)])
    stolen = observe(2, BizStep.RECEIVING, disposition=Disposition.STOLEN)
    ledger.append_batch([stolen], BRAND)  # the API's append: not folded
    ingestor.ingest([_event(2, "in-01", Decision.PASS)])  # so this one is not folded either
    mark = ingestor.projection.high_water_mark()
    assert mark < ledger.store._execute("SELECT MAX(seq) FROM events")[0][0]
    [outcome] = verifier.verify_many([Facts(item(2))], gate="in-01", now=NOW)
    assert "ledger.stolen" in outcome.reasons
    assert _everything(ItemProjection(ledger.store)) == _everything(_refold(ledger))


@pytest.mark.usefixtures("registry")
def test_head_sql_names_the_last_event_only_while_the_projection_lacks_it(
    ledger: Ledger,
) -> None:
    projection = ItemProjection(ledger.store)
    assert ledger.store._execute(HEAD_SQL) == [(None,)]  # empty ledger
    ledger.append_batch([commission(1), commission(2)], BRAND)
    assert ledger.store._execute(HEAD_SQL) == [(2,)]
    assert projection.behind(2)
    projection.sync()
    assert ledger.store._execute(HEAD_SQL) == [(None,)]
    assert not projection.behind(0)


@pytest.mark.usefixtures("registry")
def test_a_fold_that_cannot_read_the_records_leaves_them_to_sync_and_records_the_event(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _prepared(ledger)
    ingestor = EventIngestor(ledger, _config(ledger.store.url))
    ingestor.projection.sync()
    mark = ingestor.projection.high_water_mark()

    def unreadable(keys: object) -> dict[str, ItemRecord]:
        raise ValueError("gw_items holds a row this code cannot read")

    monkeypatch.setattr(ingestor.projection, "_fetch", unreadable)
    event = _event(1, "in-01", Decision.PASS)
    assert ingestor.ingest([event]).recorded == 1
    assert ingestor.recorded(event.event_id) is not None
    assert ingestor.projection.high_water_mark() == mark
    assert Registry(ledger.store).version() >= 0  # the transaction committed cleanly


def test_a_database_error_inside_the_fold_is_undone_alone_and_the_event_recorded(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a failed statement aborts the transaction and its COMMIT then rolls
    everything back, silently: the fold runs in a savepoint, so only it is undone."""
    _prepared(ledger)
    ingestor = EventIngestor(ledger, _config(ledger.store.url))
    ingestor.projection.sync()
    mark = ingestor.projection.high_water_mark()
    store = ledger.store

    def failing_read(keys: object) -> dict[str, ItemRecord]:
        store._execute("SELECT * FROM no_such_table")  # a server-side error
        return {}

    monkeypatch.setattr(ingestor.projection, "_fetch", failing_read)
    event = _event(1, "in-01", Decision.PASS)
    assert ingestor.ingest([event]).recorded == 1
    monkeypatch.undo()
    assert ingestor.recorded(event.event_id) is not None, "acknowledged and still there"
    assert ingestor.projection.high_water_mark() == mark  # left to the verifiers' sync


def test_a_commit_that_rolled_back_raises_instead_of_reporting_success(ledger: Ledger) -> None:
    """PostgreSQL answers the COMMIT of an aborted transaction with ROLLBACK, no error: the
    store must not pass that off as committed. (SQLite keeps a transaction usable after a
    failed statement, so there is nothing to guard.)"""
    if not isinstance(ledger.store, PostgresStore):
        pytest.skip("SQLite does not abort a transaction on a failed statement")
    _prepared(ledger)
    store = ledger.store
    before = store.event_count()

    def aborted_write() -> None:
        with store.write():
            ledger.append_batch([commission(40)], BRAND)
            with contextlib.suppress(StoreError):
                store._execute("SELECT * FROM no_such_table")

    with pytest.raises(StoreError, match="rolled back"):
        aborted_write()
    assert store.event_count() == before
