"""Appending a stream of batches (``Ledger.append_batches``), on both backends, and the
store's commit with work beside it (``SqlStore.write(while_committing=…)``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from gateway.ledger.ledger import Appended, Ledger, LedgerError, item_keys
from gateway.ledger.signing import OrgKey
from gateway.ledger.store import SqlStore, StoreError, open_store
from tests.gateway.ledger.conftest import BLOCK_SIZE
from tests.gateway.ledger.ledger_support import BRAND, aggregation, epc, event, fake_event_hash
from tests.support.postgres import PostgresServer

BATCHES: list[list[dict[str, Any]]] = [
    [event(i) for i in range(3)],
    [],
    [aggregation([epc(0), epc(1)])] + [event(i) for i in range(3, 8)],
    [event(8)],
    [event(i, "receiving", "in_progress", t=1) for i in range(9)],
]


def _drain(stream: Iterator[list[Appended]], into: list[list[Appended]]) -> None:
    """Consume ``stream``, keeping what it yields in ``into`` (kept when it raises)."""
    for appended in stream:
        into.append(appended)


def _contents(store: SqlStore) -> tuple[list[Any], ...]:
    """Everything an append writes, in order (block rows without their sealing time)."""
    events = store._execute(
        "SELECT seq, event_id, event_json, signer, chain, item_key FROM events ORDER BY seq"
    )
    index = store._execute("SELECT seq, item_key FROM item_events ORDER BY seq, item_key")
    blocks = store._execute(
        "SELECT block_no, signer, key_id, first_seq, last_seq, leaf_count, root, head_chain, "
        "signature, tree FROM blocks ORDER BY block_no"
    )
    open_blocks = store._execute("SELECT signer, first_seq, event_count FROM open_blocks")
    return tuple(
        [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
        for rows in (events, index, blocks, open_blocks)
    )


def test_a_stream_of_batches_stores_what_append_batch_calls_would(
    ledger: Ledger, twin_url: str, keys: dict[str, OrgKey]
) -> None:
    streamed = list(ledger.append_batches(BATCHES, BRAND))
    with Ledger.open(
        twin_url, keys.values(), event_hash=fake_event_hash, block_size=BLOCK_SIZE
    ) as twin:
        called = [twin.append_batch(batch, BRAND) for batch in BATCHES]
        assert streamed == called
        assert _contents(ledger.store) == _contents(twin.store)
    assert [len(a) for a in streamed] == [len(b) for b in BATCHES]
    ledger.seal()
    assert ledger.audit(strict=True).ok


def test_each_batch_is_committed_before_it_is_yielded(ledger: Ledger, ledger_url: str) -> None:
    stored = 0
    with open_store(ledger_url) as reader:
        for appended, batch in zip(ledger.append_batches(BATCHES, BRAND), BATCHES, strict=True):
            stored += len(batch)
            assert len(appended) == len(batch)
            assert reader.event_count() == stored


def test_a_bad_event_fails_its_own_batch_and_the_batches_before_it_stay(ledger: Ledger) -> None:
    bad: Any = {"type": "ObjectEvent", "epcList": [""]}
    batches = [[event(i) for i in range(5)], [event(5), bad, event(6)], [event(7)]]
    yielded: list[list[Appended]] = []
    with pytest.raises(LedgerError, match="event 1: epcList"):
        _drain(ledger.append_batches(batches, BRAND), yielded)
    assert [len(a) for a in yielded] == [5]
    assert ledger.store.event_count() == 5
    assert ledger.item_state(epc(5)) is None
    ledger.append_batch([event(5), event(6)], BRAND)  # the chain goes on
    ledger.seal()
    assert ledger.audit(strict=True).ok


def test_an_error_of_the_next_batch_does_not_cost_the_current_one_its_result(
    ledger_url: str, keys: dict[str, OrgKey]
) -> None:
    # On PostgreSQL the next batch is prepared while the current one commits: whatever an
    # event raises then (here a caller's item_keys_fn's KeyError) waits for its own turn.
    def keys_of(doc: Mapping[str, Any]) -> list[str]:
        if doc["epcList"] == [epc(6)]:
            raise KeyError("no keys for item 6")
        return item_keys(doc)

    batches = [[event(i) for i in range(5)], [event(5), event(6)]]
    yielded: list[list[Appended]] = []
    with (
        Ledger.open(
            ledger_url, keys.values(), event_hash=fake_event_hash, item_keys_fn=keys_of
        ) as ledger,
        pytest.raises(LedgerError, match=r"event 1: cannot compute its item IDs: .no keys for"),
    ):
        _drain(ledger.append_batches(batches, BRAND), yielded)
    assert [len(a) for a in yielded] == [5]
    with open_store(ledger_url) as reader:
        assert reader.event_count() == 5


def test_bad_batches_in_the_stream_are_refused_like_append_batch_refuses_them(
    ledger: Ledger,
) -> None:
    stream = ledger.append_batches([[event(1)], {"type": "ObjectEvent"}], BRAND)  # type: ignore[list-item]
    assert len(next(stream)) == 1
    with pytest.raises(LedgerError, match="sequence of event objects"):
        next(stream)
    with pytest.raises(LedgerError, match="no signing key for organisation 'nobody'"):
        next(ledger.append_batches([[event(2)]], "nobody"))
    assert list(ledger.append_batches([], BRAND)) == []


def test_postgres_prepares_the_next_batch_while_the_commit_is_in_flight(
    postgres: PostgresServer, keys: dict[str, OrgKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []

    def counting_hash(doc: Mapping[str, Any]) -> str:
        hashed.append(doc["epcList"][0])
        return fake_event_hash(doc)

    with Ledger.open(postgres.new_url(), keys.values(), event_hash=counting_hash) as ledger:
        store: Any = ledger.store
        await_commit = store._await_commit
        hashed_when_awaited: list[int] = []

        def spy(*args: Any) -> None:
            hashed_when_awaited.append(len(hashed))
            await_commit(*args)

        monkeypatch.setattr(store, "_await_commit", spy)
        batches = [[event(i) for i in range(n, n + 40)] for n in (0, 40, 80)]
        for appended in ledger.append_batches(batches, BRAND):
            assert len(appended) == 40
        # The last batch has no next one: its commit is the plain one.
        assert len(hashed_when_awaited) == 2
        assert hashed_when_awaited[0] >= 40 + 16  # batch 2's first events during commit 1
        assert hashed_when_awaited[1] >= 80 + 16
        assert sorted(hashed) == sorted(epc(i) for i in range(120))  # each hashed once
        ledger.seal()
        assert ledger.audit(strict=True).ok


def _meta_rows(store: SqlStore) -> list[str]:
    rows = store._execute("SELECT key FROM ledger_meta WHERE value = 'x' ORDER BY key")
    return [str(r[0]) for r in rows]


def _insert_meta(store: SqlStore, key: str) -> None:
    store._execute(store._q("INSERT INTO ledger_meta (key, value) VALUES (?, 'x')"), (key,))


def test_work_beside_a_commit_sees_it_finish_on_postgres_and_is_not_run_on_sqlite(
    ledger: Ledger, ledger_url: str
) -> None:
    polls: list[bool] = []

    def work(committed: Callable[[], bool]) -> None:
        for _ in range(100_000):
            polls.append(committed())
            if polls[-1]:
                return

    with ledger.store.write(while_committing=work):
        _insert_meta(ledger.store, "a")
    if ledger_url.startswith("postgresql"):
        assert polls
        assert polls[-1] is True
    else:
        assert polls == []
    with open_store(ledger_url) as reader:
        assert _meta_rows(reader) == ["a"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_of_the_work_comes_once_the_transaction_is_committed(
    postgres: PostgresServer, error: type[BaseException]
) -> None:
    url = postgres.new_url()

    def work(committed: Callable[[], bool]) -> None:
        raise error("work failed")

    with open_store(url) as store:
        with pytest.raises(error, match="work failed"), store.write(while_committing=work):
            _insert_meta(store, "a")
        assert _meta_rows(store) == ["a"]  # committed, and the connection still works
        with store.write(while_committing=lambda committed: None):
            _insert_meta(store, "b")
    with open_store(url) as reader:
        assert _meta_rows(reader) == ["a", "b"]


def test_a_commit_that_fails_beside_its_work_stores_nothing_and_the_stream_stops(
    postgres: PostgresServer, keys: dict[str, OrgKey]
) -> None:
    url = postgres.new_url()
    with Ledger.open(url, keys.values(), event_hash=fake_event_hash, block_size=4) as ledger:
        conn: Any = ledger.store.connection  # type: ignore[attr-defined]
        conn.execute(  # checked at COMMIT: only the commit meets it
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.event_json LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned event'; END IF; "
            "RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON events DEFERRABLE INITIALLY "
            "DEFERRED FOR EACH ROW EXECUTE FUNCTION poison()"
        )
        poisoned = event(4) | {"pg:note": "poison"}
        batches = [[event(i) for i in range(4)], [poisoned, event(5)], [event(6)]]
        yielded: list[list[Appended]] = []
        with pytest.raises(StoreError, match="commit failed: poisoned event"):
            _drain(ledger.append_batches(batches, BRAND), yielded)
        assert [len(a) for a in yielded] == [4]
        assert ledger.store.event_count() == 4
        conn.execute("DROP TRIGGER poison ON events")
        ledger.append_batch([event(4), event(5)], BRAND)
        ledger.seal()
        assert ledger.audit(strict=True).ok
