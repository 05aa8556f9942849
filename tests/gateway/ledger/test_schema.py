"""Schema versions: a schema 2 ledger is moved to schema 3 on open, losing nothing; an
unknown version is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.ledger.ledger import Ledger
from gateway.ledger.store import StoreError
from tests.gateway.ledger.ledger_support import (
    BRAND,
    PALLET,
    SITE,
    aggregation,
    epc,
    event,
    tamper,
)


def _as_schema_2(ledger: Ledger) -> None:
    """Rewrite the tables the way schema 2 kept them: every item key in item_events."""
    store = ledger.store
    tamper(
        store,
        "INSERT INTO item_events (item_key, seq) "
        "SELECT item_key, seq FROM events WHERE item_key IS NOT NULL",
    )
    tamper(store, "DROP INDEX events_item_key_seq")
    tamper(store, "ALTER TABLE events DROP COLUMN item_key")
    tamper(store, "UPDATE ledger_meta SET value = '2' WHERE key = 'schema'")


def test_a_schema_2_ledger_is_moved_to_schema_3_on_open(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    ledger.append_batch([event(i) for i in range(6)], BRAND)
    ledger.append(aggregation([epc(1), epc(2)]), SITE)
    ledger.append(event(1, "receiving", "in_progress", t=3), SITE)
    ledger.seal()
    histories = {key: ledger.history(key) for key in (epc(1), epc(2), epc(5), PALLET)}
    _as_schema_2(ledger)
    ledger.close()

    moved = open_ledger()
    assert moved.store._execute("SELECT value FROM ledger_meta WHERE key = 'schema'") == [("3",)]
    assert {key: moved.history(key) for key in histories} == histories
    state = moved.item_state(epc(1))
    assert state is not None
    assert state.last_seq == 8
    # single-item events carry their key; only the aggregation's three stay in item_events
    index = moved.store._execute("SELECT seq, item_key FROM item_events ORDER BY item_key")
    assert [(int(s), str(k)) for s, k in index] == [(7, epc(1)), (7, epc(2)), (7, PALLET)]
    assert moved.audit(strict=True).ok


def test_an_unknown_schema_version_is_refused(
    open_ledger: Callable[[], Ledger], ledger_url: str
) -> None:
    ledger = open_ledger()
    tamper(ledger.store, "UPDATE ledger_meta SET value = '9' WHERE key = 'schema'")
    ledger.close()
    with pytest.raises(StoreError, match="schema version 9, this code reads 3"):
        Ledger.open(ledger_url)


def test_a_writer_refuses_a_ledger_moved_to_another_version_since_it_opened(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    ledger.append(event(1), BRAND)
    tamper(ledger.store, "UPDATE ledger_meta SET value = '4' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="schema version 4, this code writes 3"):
        ledger.append(event(2), BRAND)
    assert ledger.store.event_count() == 1
