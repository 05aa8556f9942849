"""Appending, chaining, sealing and looking up, on both backends."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from gateway.ledger.chain import GENESIS, next_chain
from gateway.ledger.ledger import Ledger, LedgerError
from gateway.ledger.store import StoreError, open_store
from tests.gateway.ledger.ledger_support import (
    BRAND,
    PALLET,
    SITE,
    aggregation,
    epc,
    event,
    fake_event_hash,
)


def test_appends_get_consecutive_seqs_and_cbv_style_ids(ledger: Ledger) -> None:
    first = ledger.append(event(1), BRAND)
    rest = ledger.append_batch([event(2), event(3)], BRAND)
    assert [a.seq for a in (first, *rest)] == [1, 2, 3]
    assert first.event_id == fake_event_hash(event(1))


def test_chain_value_is_sha256_of_previous_chain_and_event_id(ledger: Ledger) -> None:
    ledger.append_batch([event(1), event(2)], BRAND)
    history = ledger.history(epc(1)) + ledger.history(epc(2))
    c1 = hashlib.sha256(GENESIS + history[0].event_id.encode()).digest()
    assert history[0].chain == c1
    assert history[1].chain == next_chain(c1, history[1].event_id)
    assert hashlib.sha256(b"provgate/ledger/v1/genesis").digest() == GENESIS


def test_item_state_is_the_latest_event_and_unknown_items_have_none(ledger: Ledger) -> None:
    ledger.append(event(1), BRAND)
    ledger.append(event(1, "receiving", "in_progress", t=1), SITE)
    ledger.append(event(1, "inspecting", "non_conformant", t=2), SITE)
    state = ledger.item_state(epc(1))
    assert state is not None
    assert state.last_seq == 3
    assert state.state["disposition"] == "non_conformant"
    assert state.state["bizStep"] == "inspecting"
    assert ledger.item_state(epc(99)) is None


def test_history_lists_an_items_events_oldest_first(ledger: Ledger) -> None:
    ledger.append_batch([event(1), event(2)], BRAND)
    ledger.append(event(1, "shipping", "in_transit", t=5), SITE)
    history = ledger.history(epc(1))
    assert [(h.seq, h.signer, h.event["bizStep"]) for h in history] == [
        (1, BRAND, "commissioning"),
        (3, SITE, "shipping"),
    ]


def test_aggregation_event_indexes_parent_and_children(ledger: Ledger) -> None:
    agg = aggregation([epc(1), epc(2)])
    ledger.append(agg, SITE)
    assert ledger.item_state(PALLET) is not None
    assert [h.seq for h in ledger.history(epc(2))] == [1]


def test_block_seals_when_a_signer_has_block_size_events(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(3)], BRAND)
    assert ledger.store.blocks() == []
    ledger.append(event(3), BRAND)
    (block,) = ledger.store.blocks()
    assert (block.signer, block.first_seq, block.last_seq, block.leaf_count) == (BRAND, 1, 4, 4)


def test_blocks_hold_one_signer_even_when_signers_interleave(ledger: Ledger) -> None:
    for i in range(4):
        ledger.append(event(i), BRAND)
        ledger.append(event(i, "receiving", t=i), SITE)
    blocks = ledger.store.blocks()
    assert [(b.signer, b.first_seq, b.last_seq, b.leaf_count) for b in blocks] == [
        (BRAND, 1, 7, 4),
        (SITE, 2, 8, 4),
    ]


def test_blocks_follow_each_other_across_batches_bigger_than_a_block(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(2)], BRAND)  # seq 1–2, open
    ledger.append_batch([event(i, "receiving", t=i) for i in range(9)], SITE)  # seq 3–11
    ledger.append_batch([event(i) for i in range(2, 7)], BRAND)  # seq 12–16
    assert ledger.store.unsealed_signers() == [BRAND, SITE]
    ledger.seal()
    blocks = ledger.store.blocks()
    assert [(b.signer, b.first_seq, b.last_seq, b.leaf_count) for b in blocks] == [
        (SITE, 3, 6, 4),
        (SITE, 7, 10, 4),
        (BRAND, 1, 13, 4),
        (BRAND, 14, 16, 3),
        (SITE, 11, 11, 1),
    ]
    assert ledger.store.unsealed_signers() == []
    assert ledger.audit(strict=True).ok


def test_seal_flushes_partial_blocks_of_every_signer(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(6)], BRAND)
    ledger.append(event(1, "receiving"), SITE)
    sealed = ledger.seal()
    assert sorted((b.signer, b.leaf_count) for b in sealed) == [(BRAND, 2), (SITE, 1)]
    assert ledger.seal() == []
    assert ledger.audit(strict=True).ok


def test_a_failed_batch_stores_nothing(ledger: Ledger) -> None:
    bad: Any = {"type": "ObjectEvent", "epcList": [""]}
    with pytest.raises(LedgerError, match="event 1: epcList"):
        ledger.append_batch([event(1), bad], BRAND)
    assert ledger.store.event_count() == 0
    assert ledger.item_state(epc(1)) is None


def test_a_batch_failing_after_rows_reached_the_database_stores_nothing(ledger: Ledger) -> None:
    # PostgreSQL prepares events while it sends them: 250 events are ~75 KB of COPY data,
    # sent (and sealed into blocks) before the bad one is met.
    ledger.append_batch([event(i) for i in range(3)], BRAND)  # an open block of 3
    blocks_before = ledger.store.blocks()
    bad: Any = {"type": "ObjectEvent", "epcList": [""]}
    batch = [event(i) for i in range(3, 253)] + [bad] + [event(i) for i in range(253, 300)]
    with pytest.raises(LedgerError, match="event 250: epcList"):
        ledger.append_batch(batch, BRAND)
    assert ledger.store.event_count() == 3
    assert ledger.store.blocks() == blocks_before
    assert ledger.store.open_block(BRAND) == (1, 3)
    assert ledger.item_state(epc(3)) is None
    ledger.append_batch([event(i) for i in range(3, 300)], BRAND)  # the chain goes on
    assert ledger.store.event_count() == 300
    assert ledger.audit(strict=True).ok


def _refuse_block_inserts(ledger: Ledger, url: str) -> None:
    """Make the database refuse new block rows (a failure only the commit's writes meet)."""
    conn: Any = ledger.store.connection  # type: ignore[attr-defined]
    if url.startswith("postgresql"):
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'blocks refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON blocks FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    else:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON blocks "
            "BEGIN SELECT RAISE(ABORT, 'blocks refused'); END"
        )


def test_a_write_failing_at_commit_stores_nothing_and_the_ledger_stays_usable(
    ledger: Ledger, ledger_url: str
) -> None:
    ledger.append_batch([event(i) for i in range(2)], BRAND)
    _refuse_block_inserts(ledger, ledger_url)
    with pytest.raises(StoreError, match="blocks refused"):
        ledger.append_batch([event(i) for i in range(2, 5)], BRAND)  # fills a block
    assert ledger.store.event_count() == 2
    assert ledger.store.open_block(BRAND) == (1, 2)
    conn: Any = ledger.store.connection  # type: ignore[attr-defined]
    conn.execute(
        f"DROP TRIGGER refuse{' ON blocks' if ledger_url.startswith('postgresql') else ''}"
    )
    ledger.append_batch([event(i) for i in range(2, 5)], BRAND)
    assert [(b.first_seq, b.last_seq) for b in ledger.store.blocks()] == [(1, 4)]
    assert ledger.store.open_block(BRAND) == (5, 1)
    ledger.seal()
    assert ledger.audit(strict=True).ok


def test_a_transaction_of_writes_whose_results_nobody_reads_still_commits(
    ledger: Ledger,
) -> None:
    with ledger.store.write() as tx:  # PostgreSQL holds such writes back for the commit
        tx.set_open_block(BRAND, 7, 1)
    assert ledger.store.open_block(BRAND) == (7, 1)


def test_raw_connection_writes_inside_write_belong_to_the_transaction(ledger: Ledger) -> None:
    def insert(key: str, fail: bool) -> None:
        with ledger.store.write():
            conn: Any = ledger.store.connection  # type: ignore[attr-defined]
            conn.execute(f"INSERT INTO ledger_meta (key, value) VALUES ('{key}', 'x')")
            if fail:
                raise RuntimeError(key)

    with pytest.raises(RuntimeError):
        insert("rolled-back", fail=True)
    insert("committed", fail=False)
    rows = ledger.store._execute("SELECT key FROM ledger_meta WHERE value = 'x'")
    assert [r[0] for r in rows] == ["committed"]


def test_an_open_block_out_of_step_with_the_events_is_refused(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(2)], BRAND)
    ledger.store.connection.execute(  # type: ignore[attr-defined]
        "UPDATE open_blocks SET event_count = 3"
    )
    with pytest.raises(StoreError, match="out of step"):
        ledger.append_batch([event(i) for i in range(2, 4)], BRAND)
    assert ledger.store.event_count() == 2  # and the connection still reads


@pytest.mark.parametrize(
    ("events", "signer", "message"),
    [
        ([event(1)], "nobody", "no signing key for organisation 'nobody'"),
        (["not an event"], BRAND, "event 0 is a str, not a JSON object"),
        ([{"type": "ObjectEvent", "x": {1, 2}}], BRAND, "not JSON-serialisable"),
        ([{"type": "ObjectEvent", "x": float("nan")}], BRAND, "not JSON-serialisable"),
        ([{"type": "ObjectEvent", "parentID": 5}], BRAND, "parentID must be a non-empty string"),
        ([event(1), event(2, items=["a\x00b"])], BRAND, "event 1: item ID 'a.x00b': not a"),
        ([event(1, items=["x\ud800"])], BRAND, "event 0 is not JSON.*lone surrogate .U.D800"),
        ([aggregation([epc(1)]) | {"parentID": "p\x00"}], BRAND, "event 0: item ID 'p.x00': not"),
        ({"type": "ObjectEvent"}, BRAND, "sequence of event objects"),
    ],
    ids=["signer", "str", "set", "nan", "parent-int", "nul-epc", "surrogate", "nul-parent", "map"],
)
def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(
    ledger: Ledger, events: Any, signer: str, message: str
) -> None:
    ledger.append(event(9), BRAND)
    with pytest.raises(LedgerError, match=message):
        ledger.append_batch(events, signer)
    assert ledger.store.event_count() == 1
    assert ledger.append(event(10), BRAND).seq == 2  # and the ledger goes on


def test_hash_function_failure_names_the_event(ledger_url: str, keys: dict[str, Any]) -> None:
    def broken(event: Any) -> str:
        raise KeyError("type")

    with (
        Ledger.open(ledger_url, keys.values(), event_hash=broken) as ledger,
        pytest.raises(LedgerError, match="event 0: cannot compute its event hash"),
    ):
        ledger.append(event(1), BRAND)


@pytest.mark.parametrize("bad", [[5], [""], [None], ["ok", b"bytes"]], ids=str)
def test_item_keys_of_a_custom_function_must_be_item_ids(
    ledger_url: str, keys: dict[str, Any], bad: list[Any]
) -> None:
    with Ledger.open(
        ledger_url, keys.values(), event_hash=fake_event_hash, item_keys_fn=lambda e: bad
    ) as ledger:
        with pytest.raises(LedgerError, match=r"event 0: item ID .*: not a non-empty string"):
            ledger.append(event(1), BRAND)
        assert ledger.store.event_count() == 0


def test_bad_block_size_and_item_keys_are_refused(ledger_url: str, ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="block_size"):
        Ledger.open(ledger_url, block_size=0)
    with pytest.raises(LedgerError, match="item key"):
        ledger.item_state("")


def test_appended_events_are_committed_before_append_returns(
    ledger_url: str, ledger: Ledger
) -> None:
    ledger.append(event(1), BRAND)
    with open_store(ledger_url) as other:
        assert other.event_count() == 1
        assert other.item_state(epc(1)) is not None


def test_concurrent_appenders_keep_the_chain_linear(
    open_ledger: Callable[[], Ledger],
) -> None:
    writers = [open_ledger() for _ in range(4)]
    errors: list[BaseException] = []

    def work(w: int, ledger: Ledger) -> None:
        try:
            for i in range(15):
                ledger.append_batch([event(1000 * w + i), event(1000 * w + i + 500)], SITE)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w, lg)) for w, lg in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = writers[0].audit()
    assert report.ok, report.summary()
    assert report.events == 120
    assert sum(b.leaf_count for b in writers[0].store.blocks()) == 120


def test_sqlite_url_forms_and_unknown_schemes(tmp_path: Any) -> None:
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        assert store.event_count() == 0
    with pytest.raises(StoreError, match="unsupported ledger URL"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(str(tmp_path / "missing-dir" / "a.db"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ledger:s3cret@db:5432/site", "postgresql://ledger:***@db:5432/site"),
        ("postgresql://ledger@db/site?password=s3cret&sslmode=require", "password=***&sslmode"),
        ("host=db password='s3 cret' user=ledger", "password=*** user=ledger"),
    ],
)
def test_postgres_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    from gateway.ledger.pg_store import _redact

    assert shown in _redact(url)
    assert "s3" not in _redact(url)
