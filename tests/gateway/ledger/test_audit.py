"""Audit: every direct change to the stored ledger fails it and names the first bad event.

Each test builds the same ledger: brand commissioning (seq 1–6) then site receiving
(seq 7–12), block size 4, sealed. Then it changes the database behind the ledger's back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from gateway.ledger.audit import _spans, audit
from gateway.ledger.chain import GENESIS, next_chain
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore, OrgKey, raw_public
from tests.gateway.ledger.ledger_support import (
    BRAND,
    SITE,
    aggregation,
    epc,
    event,
    fake_event_hash,
    tamper,
)


def build(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(6)], BRAND)
    ledger.append_batch([event(i, "receiving", "in_progress", t=i) for i in range(6)], SITE)
    ledger.seal()


def row(ledger: Ledger, seq: int) -> tuple[str, str]:
    for s, eid, text, _, _ in ledger.store.iter_events():
        if s == seq:
            return eid, text
    raise AssertionError(seq)


def rechain_from(ledger: Ledger, seq: int) -> None:
    """What a careful attacker does after editing an event: recompute every chain value."""
    chain = GENESIS
    rows = list(ledger.store.iter_events())
    for s, eid, _, _, _ in rows:
        chain = next_chain(chain, eid)
        if s >= seq:
            tamper(ledger.store, "UPDATE events SET chain = ? WHERE seq = ?", (chain, s))


def first(ledger: Ledger) -> tuple[int, str]:
    """The first failure; the same whether the audit reads the ledger as one range or in
    ranges of 3 events (so blocks of 4 straddle ranges)."""
    report = ledger.audit(workers=0)
    assert not report.ok
    failure = report.first
    assert failure is not None
    split = ledger.audit(workers=0, range_size=3).first
    assert split is not None
    assert (split.seq, split.block_range) == (failure.seq, failure.block_range)
    return failure.seq, failure.reason


def test_untouched_ledger_passes_audit_strictly(ledger: Ledger) -> None:
    build(ledger)
    report = ledger.audit(strict=True)
    assert report.ok, report.summary()
    assert (report.events, report.blocks, report.index_rows, report.unsealed) == (12, 4, 12, 0)
    assert "ledger OK" in report.summary()


def test_empty_ledger_passes_audit(ledger: Ledger) -> None:
    assert ledger.audit(strict=True).ok


def test_editing_an_events_json_is_named(ledger: Ledger) -> None:
    build(ledger)
    _, text = row(ledger, 3)
    forged = json.loads(text) | {"disposition": "recalled"}
    tamper(ledger.store, "UPDATE events SET event_json = ? WHERE seq = 3", (json.dumps(forged),))
    seq, reason = first(ledger)
    assert seq == 3
    assert "event hash of the stored JSON" in reason


def test_editing_json_and_its_event_id_is_named(ledger: Ledger) -> None:
    build(ledger)
    forged = event(2) | {"disposition": "recalled"}
    tamper(
        ledger.store,
        "UPDATE events SET event_json = ?, event_id = ? WHERE seq = 3",
        (json.dumps(forged), fake_event_hash(forged)),
    )
    seq, reason = first(ledger)
    assert seq == 3
    assert "chain value differs" in reason


def test_rewriting_event_id_and_whole_chain_is_caught_by_the_signed_block(
    ledger: Ledger,
) -> None:
    build(ledger)
    forged = event(2) | {"disposition": "recalled"}
    tamper(
        ledger.store,
        "UPDATE events SET event_json = ?, event_id = ? WHERE seq = 3",
        (json.dumps(forged), fake_event_hash(forged)),
    )
    rechain_from(ledger, 3)
    seq, reason = first(ledger)
    assert seq == 1  # the block of seq 1–4: a root cannot say which of its leaves changed
    assert "Merkle root" in reason


def test_deleting_an_event_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "DELETE FROM events WHERE seq = 5")
    seq, reason = first(ledger)
    assert seq == 5
    assert "deleted" in reason


def test_deleting_an_event_and_its_index_rows_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "DELETE FROM events WHERE seq = 12")
    tamper(ledger.store, "DELETE FROM item_events WHERE seq = 12")
    seq, reason = first(ledger)
    assert seq == 12
    assert "deleted" in reason
    report = ledger.audit()
    assert any("signs 2 events" in f.reason for f in report.failures)


def test_inserting_an_event_in_the_middle_is_named(ledger: Ledger) -> None:
    build(ledger)
    for s in range(12, 6, -1):
        tamper(ledger.store, "UPDATE events SET seq = seq + 1 WHERE seq = ?", (s,))
    forged = event(99, "receiving")
    eid = fake_event_hash(forged)
    tamper(
        ledger.store,
        "INSERT INTO events (seq, event_id, event_json, signer, chain) VALUES (7, ?, ?, ?, ?)",
        (eid, json.dumps(forged), SITE, b"\0" * 32),
    )
    seq, _ = first(ledger)
    assert seq == 7


def test_appending_an_unsigned_event_fails_a_strict_audit(ledger: Ledger) -> None:
    build(ledger)
    forged = event(99, "receiving")
    eid = fake_event_hash(forged)
    _, _, _, _, head = list(ledger.store.iter_events())[-1]
    tamper(
        ledger.store,
        "INSERT INTO events (seq, event_id, event_json, signer, chain, item_key) "
        "VALUES (13, ?, ?, ?, ?, ?)",
        (eid, json.dumps(forged), SITE, next_chain(head, eid), epc(99)),
    )
    lenient = ledger.audit()
    assert lenient.ok
    assert lenient.unsealed == 1
    strict = ledger.audit(strict=True)
    assert strict.first is not None
    assert strict.first.seq == 13
    assert "not in any signed block" in strict.first.reason


def test_reordering_events_is_named(ledger: Ledger) -> None:
    build(ledger)
    id2, text2 = row(ledger, 2)
    id4, text4 = row(ledger, 4)
    tamper(
        ledger.store, "UPDATE events SET event_id = ?, event_json = ? WHERE seq = 2", (id4, text4)
    )
    tamper(
        ledger.store, "UPDATE events SET event_id = ?, event_json = ? WHERE seq = 4", (id2, text2)
    )
    seq, reason = first(ledger)
    assert seq == 2
    assert "chain" in reason


def test_pointing_an_item_at_an_event_that_does_not_name_it_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "INSERT INTO item_events (item_key, seq) VALUES (?, 4)", (epc(5),))
    assert ledger.item_state(epc(5)) is not None
    seq, reason = first(ledger)
    assert seq == 4
    assert "item index" in reason


def test_an_index_row_beyond_the_last_event_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "INSERT INTO item_events (item_key, seq) VALUES (?, 40)", (epc(5),))
    seq, reason = first(ledger)
    assert seq == 40
    assert "outside 1–12" in reason


def test_removing_an_items_key_from_its_event_row_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE events SET item_key = NULL WHERE seq = 8")
    assert ledger.item_state(epc(1)) is not None  # its commissioning still names it
    seq, reason = first(ledger)
    assert seq == 8
    assert "item index" in reason


def test_pointing_an_event_rows_key_at_another_item_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE events SET item_key = ? WHERE seq = 9", (epc(5),))
    seq, reason = first(ledger)
    assert seq == 9
    assert "item index" in reason


def test_a_single_items_key_in_item_events_passes_as_a_schema_2_writer_left_it(
    ledger: Ledger,
) -> None:
    # a schema 2 appender still running while another process moved the ledger to
    # schema 3 writes the key there; the lookups read both places
    build(ledger)
    tamper(ledger.store, "UPDATE events SET item_key = NULL WHERE seq = 3")
    tamper(ledger.store, "INSERT INTO item_events (item_key, seq) VALUES (?, 3)", (epc(2),))
    assert ledger.audit(strict=True).ok
    assert [h.seq for h in ledger.history(epc(2))] == [3, 9]


def test_a_single_items_key_both_in_its_row_and_in_item_events_is_named(
    ledger: Ledger,
) -> None:
    build(ledger)
    tamper(ledger.store, "INSERT INTO item_events (item_key, seq) VALUES (?, 3)", (epc(2),))
    seq, reason = first(ledger)
    assert seq == 3
    assert "item index" in reason


def test_removing_an_aggregations_item_events_row_is_named(ledger: Ledger) -> None:
    build(ledger)
    ledger.append(aggregation([epc(1), epc(2)]), SITE)  # seq 13: three items
    assert ledger.audit().ok
    tamper(ledger.store, "DELETE FROM item_events WHERE seq = 13 AND item_key = ?", (epc(2),))
    seq, reason = first(ledger)
    assert seq == 13
    assert "item index" in reason


def test_a_key_in_the_row_of_an_event_naming_several_items_is_named(ledger: Ledger) -> None:
    build(ledger)
    ledger.append(aggregation([epc(1), epc(2)]), SITE)
    tamper(ledger.store, "UPDATE events SET item_key = ? WHERE seq = 13", (epc(1),))
    seq, reason = first(ledger)
    assert seq == 13
    assert "item index" in reason


def test_a_blob_item_key_is_named_as_a_wrong_column_type(ledger: Ledger, ledger_url: str) -> None:
    if ledger_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL TEXT column holds only text")
    build(ledger)
    tamper(ledger.store, "UPDATE events SET item_key = x'41' WHERE seq = 6")  # SQLite keeps it
    seq, reason = first(ledger)
    assert seq == 6
    assert "wrong column types" in reason


def test_changing_the_signer_column_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE events SET signer = ? WHERE seq = 2", (SITE,))
    seq, _ = first(ledger)
    assert seq <= 2


def test_a_forged_block_signature_fails(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE blocks SET signature = ? WHERE block_no = 2", (b"\1" * 64,))
    seq, reason = first(ledger)
    assert seq == 7  # block 2 is the site's seq 7–10
    assert "signature" in reason


def test_re_signing_with_a_rogue_key_fails_against_pinned_keys(
    ledger: Ledger, keys: dict[str, OrgKey], tmp_path: object
) -> None:
    build(ledger)
    rogue = Keystore(f"{tmp_path}/rogue").generate(BRAND)
    tamper(
        ledger.store,
        "UPDATE org_keys SET public_key = ? WHERE org = ?",
        (raw_public(rogue.public_key), BRAND),
    )
    pinned = {k.key_id: raw_public(k.public_key) for k in keys.values()}
    assert not ledger.audit().ok  # the key ID no longer matches the stored key
    assert ledger.audit(trusted_keys=pinned).ok


@pytest.mark.parametrize("junk", ["not json", "[1, 2]"])
def test_unparseable_stored_event_is_named_not_crashed_on(ledger: Ledger, junk: str) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE events SET event_json = ? WHERE seq = 6", (junk,))
    seq, reason = first(ledger)
    assert seq == 6
    assert "does not parse" in reason


def test_parallel_audit_reaches_the_same_verdict(ledger: Ledger) -> None:
    build(ledger)
    clean = ledger.audit(workers=2, range_size=5)
    assert clean.ok, clean.summary()
    assert (clean.events, clean.index_rows, clean.blocks) == (12, 12, 4)
    tamper(ledger.store, "UPDATE events SET event_json = ? WHERE seq = 9", ("[]",))
    tamper(ledger.store, "DELETE FROM events WHERE seq = 3")
    inline, parallel = ledger.audit(workers=0), ledger.audit(workers=2, range_size=5)
    assert set(inline.failures) == set(parallel.failures)
    assert parallel.first is not None
    assert parallel.first.seq == 3


def test_a_changed_stored_merkle_tree_is_named(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE blocks SET tree = ? WHERE block_no = 3", (b"\0" * 96,))
    seq, reason = first(ledger)
    assert seq == 5  # block 3 is the brand's seq 5–6
    assert "stored Merkle tree" in reason


def test_a_block_claiming_no_events_is_named_not_crashed_on(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE blocks SET leaf_count = 0, first_seq = 2000, last_seq = 2001")
    assert not ledger.audit().ok


def test_a_stored_value_of_the_wrong_type_is_named_not_crashed_on(ledger: Ledger) -> None:
    build(ledger)
    # SQLite keeps the text as text in the BLOB column; PostgreSQL casts it to bytes.
    tamper(ledger.store, "UPDATE events SET chain = 'not a hash' WHERE seq = 5")
    seq, _ = first(ledger)
    assert seq == 5


@pytest.mark.parametrize("field", ["childEPCs", "inputEPCList", "outputEPCList", "parentID"])
def test_a_row_key_naming_only_the_epclist_item_of_an_event_naming_two_is_named(
    ledger: Ledger, field: str
) -> None:
    # the event names epc(1) in its epcList and epc(2) in another field: its index is two
    # item_events rows; moved into its row as the epcList's key alone, it must fail
    build(ledger)
    other: str | list[str] = epc(2) if field == "parentID" else [epc(2)]
    ledger.append(event(1, "receiving") | {field: other}, SITE)  # seq 13
    assert ledger.audit().ok
    tamper(ledger.store, "DELETE FROM item_events WHERE seq = 13")
    tamper(ledger.store, "UPDATE events SET item_key = ? WHERE seq = 13", (epc(1),))
    seq, reason = first(ledger)
    assert seq == 13
    assert "item index" in reason


def test_an_event_with_a_null_item_field_passes(ledger: Ledger) -> None:
    build(ledger)
    ledger.append(event(1, "receiving") | {"childEPCs": None, "parentID": None}, SITE)
    report = ledger.audit()
    assert report.ok, report.summary()
    assert report.index_rows == 13


def test_the_audit_checks_the_index_with_the_item_keys_function_it_is_given(
    ledger: Ledger,
) -> None:
    build(ledger)

    def two_keys(e: Mapping[str, Any]) -> list[str]:
        return sorted([*e["epcList"], "urn:example:also"])

    report = audit(ledger.store, fake_event_hash, item_keys_fn=two_keys, workers=0)
    assert {f.seq for f in report.failures if "item index" in f.reason} == set(range(1, 13))


def test_an_audit_reading_more_rows_than_one_stream_chunk_passes(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(2_100)], BRAND)
    ledger.append(aggregation([epc(1), epc(2)]), SITE)
    ledger.append_batch([event(i, "receiving", t=i) for i in range(900)], SITE)
    ledger.seal()
    for workers, range_size in ((0, 25_000), (0, 1_234), (2, 1_234)):
        report = ledger.audit(strict=True, workers=workers, range_size=range_size)
        assert report.ok, report.summary()
        assert (report.events, report.index_rows) == (3_001, 3_003)


def test_a_forged_signature_is_named_while_workers_audit_the_events(ledger: Ledger) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE blocks SET signature = ? WHERE block_no = 2", (b"\1" * 64,))
    report = ledger.audit(workers=2, range_size=5)
    assert report.first is not None
    assert report.first.seq == 7
    assert "signature" in report.first.reason
    assert report.events == 12


def test_an_event_stream_left_unfinished_leaves_the_store_usable(ledger: Ledger) -> None:
    # (on PostgreSQL closing it early cancels the query: the snapshot's transaction may be
    # aborted, so the store is usable again once the snapshot ends)
    ledger.append_batch([event(i) for i in range(2_500)], BRAND)
    with ledger.store.snapshot():
        rows = ledger.store.raw_events_between(1, 2_500)
        assert next(iter(rows))[0] == 1
        rows.close()  # type: ignore[attr-defined]
    assert ledger.store.max_seq() == 2_500
    assert ledger.audit().ok


@pytest.mark.parametrize(
    ("last", "size", "workers"),
    [
        (0, 5, 2),
        (12, 5, 2),
        (12, 5, 0),
        (60_000, 25_000, 2),
        (30_000, 25_000, 2),
        (9_999, 4_000, 3),
    ],
)
def test_audit_ranges_cover_every_seq_once_in_order(last: int, size: int, workers: int) -> None:
    spans = _spans(last, size, workers)
    assert [seq for a, b in spans for seq in range(a, b + 1)] == list(range(1, last + 1))
    assert all(b - a + 1 <= size for a, b in spans)


def test_a_parallel_audit_ends_on_quarter_ranges() -> None:
    spans = _spans(1_000_000, 25_000, 2)
    assert spans[:38] == [(a, a + 24_999) for a in range(1, 950_001, 25_000)]
    assert spans[38:] == [(a, a + 6_249) for a in range(950_001, 1_000_001, 6_250)]
    assert _spans(1_000_000, 25_000, 1) == [(a, a + 24_999) for a in range(1, 1_000_001, 25_000)]
