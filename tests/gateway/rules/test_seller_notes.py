"""Seller bookkeeping written off the reply path: a verdict never waits for the write lock."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import seller_notes
from gateway.ledger.ledger import Ledger
from gateway.ledger.store import SqlStore, StoreError, open_store
from gateway.registry import Registry
from gateway.rules import Verifier
from gateway.seller_notes import SellerNotes
from gatewire.messages import Decision
from tests.gateway.rules.rules_support import NOW, SELLER, Facts, commission, item

UNKNOWN = 9


def test_a_reject_is_answered_while_another_writer_holds_the_lock_and_noted_after(
    ledger: Ledger,
    registry: Registry,
    make_verifier: Callable[..., Verifier],
    open_db: Callable[[], SqlStore],
) -> None:
    """Inline, the REJECT's note would wait for the lock (up to the 30 s busy timeout)
    before the verdict went out; handed to the notes' thread it waits there instead."""
    ledger.append(commission(1), "brand-acme")
    verifier = make_verifier(own_connection=True)
    verifier.verify_many([Facts(item(1))], gate="in-01", now=NOW)  # projection in step
    notes = SellerNotes(open_db)
    verifier.notes = notes
    blocker = open_db()
    try:
        with blocker.write():  # an ingest append in progress
            blocker.head()  # PostgreSQL takes the append lock with the first statement
            started = time.monotonic()
            outcome = verifier.verify_many(
                [Facts(item(UNKNOWN), seller=SELLER)], gate="in-01", now=NOW
            )
            answered_in = time.monotonic() - started
            assert registry.recent_rejects(SELLER, NOW - 60) == 0, "not written yet"
    finally:
        assert notes.close()
    assert outcome[0].decision is Decision.REJECT
    assert answered_in < 1.0
    assert registry.recent_rejects(SELLER, NOW - 60) == 1
    assert notes.written == 1  # the first verification registered SELLER, inline
    assert notes.failed == 0


def test_closed_notes_refuse_and_the_verifier_writes_inline(
    registry: Registry, make_verifier: Callable[..., Verifier], open_db: Callable[[], SqlStore]
) -> None:
    notes = SellerNotes(open_db)
    assert notes.close()
    assert not notes.submit([SELLER], [], NOW)
    verifier = make_verifier(own_connection=True)
    verifier.notes = notes
    outcome = verifier.verify_many([Facts(item(UNKNOWN), seller=SELLER)], gate="in-01", now=NOW)
    assert outcome[0].decision is Decision.REJECT
    assert registry.recent_rejects(SELLER, NOW - 60) == 1
    assert registry.seller(SELLER) is not None


def test_notes_that_cannot_open_the_database_refuse_so_nothing_is_lost() -> None:
    def cannot_open() -> SqlStore:
        raise StoreError("no database here")

    notes = SellerNotes(cannot_open)
    deadline = time.monotonic() + 5
    while notes.submit([SELLER], [], NOW) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not notes.submit([SELLER], [], NOW)
    assert notes.close()
    assert notes.written == 0


def test_notes_whose_thread_dies_refuse_and_close_does_not_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry cannot be opened (a busy lock at start-up): the notes stop taking notes
    (the verifier writes them itself) and closing returns at once."""
    path = str(tmp_path / "ledger.db")
    open_store(path).close()

    def unopenable(store: SqlStore) -> Registry:
        raise StoreError("database is locked")

    monkeypatch.setattr(seller_notes, "Registry", unopenable)
    notes = SellerNotes(lambda: open_store(path))
    deadline = time.monotonic() + 5
    while notes.submit([SELLER], [], NOW) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not notes.submit([SELLER], [], NOW)
    started = time.monotonic()
    assert notes.close(timeout=1.0)
    assert time.monotonic() - started < 1.0
