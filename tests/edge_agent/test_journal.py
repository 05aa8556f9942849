"""The gate journal: durable items and decisions, events enqueued with them, clear errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.journal import (
    AlreadyDecidedError,
    CorruptRowError,
    DuplicateItemError,
    Journal,
    JournalBusyError,
    JournalError,
    OutboxFullError,
    SchemaTooNewError,
    UnknownItemError,
)
from gatewire.auth import Accepted, open_sealed
from gatewire.messages import Decision, GateEvent, VisionVerdict
from tests.edge_agent.conftest import IDENTITY, item_id, record

ROOT = Path(__file__).resolve().parents[2]


def outbox_rows(path: Path) -> list[tuple[int, str, str, bytes]]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT seq, event_id, topic, payload FROM outbox ORDER BY seq")
        return [(int(s), str(e), str(t), bytes(p)) for s, e, t, p in rows]


def test_opens_in_wal_mode_with_full_fsync(journal: Journal, journal_path: Path) -> None:
    with closing(sqlite3.connect(journal_path, isolation_level=None)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Journal.open(journal_path, IDENTITY, durability="normal") as relaxed:
        assert relaxed._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_counts_add_up_to_the_items(journal: Journal) -> None:
    for n in range(7):
        record(journal, n, decide=n != 6)
    counts = journal.counts()
    assert (counts.items, counts.passed, counts.rejected, counts.held) == (7, 2, 2, 2)
    assert counts.undecided == 1
    assert counts.items == counts.passed + counts.rejected + counts.held + counts.undecided
    assert counts.outbox == 6


def test_item_reads_back_as_recorded(journal: Journal) -> None:
    journal.record_item(
        "w1",
        scanned_at=10.0,
        deadline=11.5,
        reads={"barcode": ["A"], "rfid": ["B", "C"]},
        item=item_id("S1"),
        vision_verdict=VisionVerdict.SUSPECT,
        vision_score=0.12,
        request_id="5f0c2a9e7b3d4c1a8e6f2b9d0a7c3e51",
    )
    journal.record_decision("w1", Decision.REJECT, ["vision.suspect"], decided_at=10.02)
    journal.record_actuation("w1", 11.4)
    got = journal.item("w1")
    assert got is not None
    assert got.reads == {"barcode": ["A"], "rfid": ["B", "C"]}
    assert (got.vision_verdict, got.vision_score) == (VisionVerdict.SUSPECT, 0.12)
    assert (got.decision, got.reasons, got.actuated_at) == (
        Decision.REJECT,
        ("vision.suspect",),
        11.4,
    )
    assert journal.item("nope") is None


def test_decision_enqueues_its_sealed_gate_event(journal: Journal, journal_path: Path) -> None:
    record(journal, 1, decide=False)
    event_id = journal.record_decision(
        "w1", Decision.REJECT, ["ledger.unknown_serial"], decided_at=5.0, late=True
    )
    [(_, stored_id, topic, payload)] = outbox_rows(journal_path)
    assert stored_id == event_id
    assert topic == "provgate/v1/demo/in-01/event"
    opened = open_sealed(payload, IDENTITY.key)
    assert isinstance(opened, Accepted)
    event = opened.message
    assert isinstance(event, GateEvent)
    assert (event.event_id, event.decision, event.reasons) == (
        event_id,
        Decision.REJECT,
        ["ledger.unknown_serial"],
    )
    assert (event.decided_at, event.late, event.item.serial) == (5.0, True, "S1")


def test_item_without_an_id_is_decided_without_an_event(
    journal: Journal, journal_path: Path
) -> None:
    journal.record_item("w1", scanned_at=1.0, deadline=2.0, reads={})
    assert journal.record_decision("w1", Decision.HOLD, ["read.none"], decided_at=1.1) is None
    assert outbox_rows(journal_path) == []
    assert journal.counts().held == 1


def test_a_decision_is_never_overwritten(journal: Journal, journal_path: Path) -> None:
    record(journal, 0)
    with pytest.raises(AlreadyDecidedError, match="w0 was decided PASS"):
        journal.record_decision("w0", Decision.REJECT, [], decided_at=9.0)
    with pytest.raises(UnknownItemError):
        journal.record_decision("w9", Decision.PASS, [], decided_at=9.0)
    with pytest.raises(DuplicateItemError):
        record(journal, 0, decide=False)
    assert len(outbox_rows(journal_path)) == 1
    assert journal.counts().passed == 1


def test_a_batch_commits_all_its_writes_at_once(journal: Journal, journal_path: Path) -> None:
    """Group commit: another connection (the outbox) sees nothing until the batch ends."""
    with journal.batch():
        for n in range(3):
            record(journal, n)
        assert outbox_rows(journal_path) == []
    assert len(outbox_rows(journal_path)) == 3
    assert journal.counts().items == 3


def test_a_batch_that_writes_nothing_takes_no_lock_and_commits_nothing(
    journal: Journal, journal_path: Path
) -> None:
    with journal.batch():
        assert not journal.uncommitted
        with closing(sqlite3.connect(journal_path, timeout=0.1)) as other:
            other.execute("INSERT INTO meta (key, value) VALUES ('probe', '1')")  # not locked
            other.commit()
        record(journal, 0)
        assert journal.uncommitted
    assert not journal.uncommitted


def test_a_decision_of_an_item_whose_batch_was_rolled_back_is_refused(
    journal: Journal, journal_path: Path
) -> None:
    def fail_after_recording() -> None:
        with journal.batch():
            record(journal, 1, decide=False)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_after_recording()
    with pytest.raises(UnknownItemError):
        journal.record_decision("w1", Decision.PASS, [], decided_at=1.0)
    assert outbox_rows(journal_path) == []


def test_the_outbox_is_counted_only_when_it_could_be_full(journal_path: Path) -> None:
    with Journal.open(journal_path, IDENTITY, max_backlog=4) as journal:
        counts: list[str] = []
        journal._conn.set_trace_callback(
            lambda sql: counts.append(sql) if "count(*) FROM outbox" in sql else None
        )
        for n in range(4):
            record(journal, n)  # 4 events: the first count saw 0, then up to 3 enqueued
        assert len(counts) == 1
        with pytest.raises(OutboxFullError):
            record(journal, 4, decide=False)  # could be full now: counted, and it is
        assert len(counts) == 2
        journal._conn.execute("DELETE FROM outbox")  # the publisher drained it
        record(journal, 5)
        record(journal, 6)
        assert len(counts) == 3  # counted once (it was at the limit), then not again


def test_a_failing_write_in_a_batch_is_undone_alone(journal: Journal, journal_path: Path) -> None:
    with journal.batch():
        record(journal, 0)
        record(journal, 1, decide=False)
        with pytest.raises(ValueError, match="reasons"):
            journal.record_decision("w1", Decision.PASS, ["Not A Code"], decided_at=1.0)
        record(journal, 2)
    counts = journal.counts()
    assert (counts.items, counts.undecided) == (3, 1)
    assert len(outbox_rows(journal_path)) == 2


def test_an_error_escaping_a_batch_keeps_none_of_it(journal: Journal, journal_path: Path) -> None:
    def fail_inside_a_batch() -> None:
        with journal.batch():
            record(journal, 0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_inside_a_batch()
    assert journal.counts().items == 0
    assert outbox_rows(journal_path) == []
    record(journal, 1)  # the journal is usable afterwards
    assert journal.counts().items == 1


def test_bad_reasons_roll_the_decision_back(journal: Journal, journal_path: Path) -> None:
    record(journal, 1, decide=False)
    with pytest.raises(ValueError, match="reasons"):
        journal.record_decision("w1", Decision.PASS, ["Not A Code"], decided_at=1.0)
    assert journal.counts().undecided == 1
    assert outbox_rows(journal_path) == []


def test_actuation_needs_a_decided_item_and_is_recorded_once(journal: Journal) -> None:
    record(journal, 1, decide=False)
    with pytest.raises(UnknownItemError):
        journal.record_actuation("w1", 3.0)
    journal.record_decision("w1", Decision.REJECT, [], decided_at=2.0)
    journal.record_actuation("w1", 3.0)
    with pytest.raises(UnknownItemError):
        journal.record_actuation("w1", 4.0)
    assert journal.counts().actuated == 1


def test_restart_holds_undecided_items_and_reports_them(
    journal: Journal, journal_path: Path
) -> None:
    record(journal, 0)
    record(journal, 1, decide=False, t0=0.0)  # deadline 2.5
    record(journal, 2, decide=False, t0=100.0)  # deadline 103.5
    assert [r.window_id for r in journal.undecided()] == ["w1", "w2"]
    assert journal.hold_undecided(decided_at=50.0) == ["w1", "w2"]
    assert journal.undecided() == []
    w1, w2 = journal.item("w1"), journal.item("w2")
    assert w1 is not None
    assert w2 is not None
    assert (w1.decision, w1.reasons, w1.late) == (Decision.HOLD, ("agent.restart",), True)
    assert (w2.decision, w2.late) == (Decision.HOLD, False)
    assert [e for _, e, _, _ in outbox_rows(journal_path)][1:] == [w1.event_id, w2.event_id]


def test_outbox_at_its_limit_refuses_new_items(journal_path: Path) -> None:
    with Journal.open(journal_path, IDENTITY, max_backlog=2) as journal:
        record(journal, 0)
        record(journal, 1, decide=False)
        journal.record_decision("w1", Decision.HOLD, [], decided_at=1.0)  # decisions pass
        with pytest.raises(OutboxFullError, match="outbox holds 2 events"):
            record(journal, 2, decide=False)
        assert journal.counts().items == 2


def test_outbox_full_is_logged_once_until_it_drains(
    journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Journal.open(journal_path, IDENTITY, max_backlog=1) as journal:
        record(journal, 0)
        for n in (1, 2):
            with pytest.raises(OutboxFullError):
                record(journal, n, decide=False)
        assert [r.message for r in caplog.records].count(
            "journal: outbox holds 1 events (limit 1): admitting no new items until the "
            "gateway is reachable again"
        ) == 1
        journal._conn.execute("DELETE FROM outbox")  # what the publisher does on each ack
        record(journal, 3)
        assert "admitting items again" in caplog.records[-1].message


def test_full_disk_fails_whole_transactions_and_loses_no_event(
    journal: Journal, journal_path: Path
) -> None:
    pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count = {pages + 3}")
    with pytest.raises(JournalError, match="full"):  # noqa: PT012
        for n in range(10_000):
            record(journal, n)
    counts = journal.counts()
    assert 0 < counts.items < 10_000
    decided = counts.items - counts.undecided
    assert counts.outbox == decided  # every decision has its event, and only those
    assert counts.undecided <= 1


def test_a_full_disk_inside_a_batch_fails_the_batch_and_writes_nothing_alone(
    journal: Journal, journal_path: Path
) -> None:
    pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count = {pages + 3}")
    failures = 0
    with pytest.raises(JournalError), journal.batch():  # noqa: PT012
        for n in range(10_000):
            try:
                record(journal, n)
            except JournalError:
                failures += 1
                if failures > 3:
                    break
    counts = journal.counts()
    assert counts.items == counts.outbox + counts.undecided  # every decision has its event
    assert counts.items == 0  # nothing of the failed batch was committed on its own


def test_newer_schema_is_refused(journal_path: Path) -> None:
    Journal.open(journal_path, IDENTITY).close()
    with closing(sqlite3.connect(journal_path, isolation_level=None)) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(SchemaTooNewError, match="schema version 2 is newer"):
        Journal.open(journal_path, IDENTITY)


def test_file_that_is_not_a_journal_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(JournalError, match="not a database"):
        Journal.open(path, IDENTITY)


def test_locked_database_gives_a_busy_error(journal_path: Path) -> None:
    with Journal.open(journal_path, IDENTITY, busy_timeout_s=0.05) as journal:
        other = sqlite3.connect(journal_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(JournalBusyError, match="locked"):
                record(journal, 1)
        finally:
            other.execute("ROLLBACK")
            other.close()
        record(journal, 1)  # usable again once the lock is gone
        assert journal.counts().passed == 0
        assert journal.counts().rejected == 1


def test_corrupt_rows_give_clear_errors_and_are_still_held(
    journal: Journal, journal_path: Path
) -> None:
    record(journal, 1, decide=False)
    record(journal, 2, decide=False)
    with closing(sqlite3.connect(journal_path, isolation_level=None)) as conn:
        conn.execute("UPDATE items SET reads = '{not json' WHERE window_id = 'w1'")
        conn.execute("UPDATE items SET item = '{\"gtin\": 5}' WHERE window_id = 'w2'")
    with pytest.raises(CorruptRowError, match="row 1 is corrupt"):
        journal.item("w1")
    with pytest.raises(CorruptRowError):
        journal.undecided()
    assert journal.hold_undecided(decided_at=9.0) == ["w1", "w2"]
    counts = journal.counts()
    assert (counts.held, counts.undecided, counts.outbox) == (2, 0, 0)


_CHILD = """
import sys
from edge_agent.journal import Journal
from tests.edge_agent.conftest import IDENTITY, record

journal = Journal.open(sys.argv[1], IDENTITY)
for n in range(100_000):
    record(journal, n)
    print(f"w{n}", flush=True)
"""


def test_decisions_survive_kill_9_without_loss_or_duplicates(journal_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(journal_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        acknowledged = [child.stdout.readline().strip() for _ in range(40)]
        os.kill(child.pid, signal.SIGKILL)
        acknowledged += child.stdout.read().split()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    with Journal.open(journal_path, IDENTITY) as journal:
        for window in acknowledged:
            got = journal.item(window)
            assert got is not None, window
            assert got.decision is not None, window
        held = journal.hold_undecided()
        assert len(held) <= 1  # at most the item between its record and its decision
        counts = journal.counts()
        assert counts.items == counts.passed + counts.rejected + counts.held
        assert len(acknowledged) <= counts.items <= len(acknowledged) + 1
        event_ids = [e for _, e, _, _ in outbox_rows(journal_path)]
        assert len(event_ids) == len(set(event_ids)) == counts.items
        rows = journal._conn.execute("SELECT event_id FROM items ORDER BY seq").fetchall()
        assert [r[0] for r in rows] == event_ids
