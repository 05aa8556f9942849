"""The gate's local journal: every item and decision, durable before the gate acts on it.

One SQLite file in WAL mode holds the ``items`` (one row per item window, its decision
columns empty until decided), the ``outbox`` of gate events (:mod:`edge_agent.outbox`) and
a ``meta`` table with the schema version. Each write is one transaction;
:meth:`Journal.record_decision` writes the decision and enqueues its sealed ``gate_event``
in the same one, so an event exists exactly when its decision does. Inside
:meth:`Journal.batch` the writes share one transaction committed at the end (group commit:
one fsync for every item and decision of the batch; none for a batch that wrote nothing),
each still all-or-nothing (a single statement, or a savepoint around the decision's two).

Per item the journal runs few statements: it keeps what :meth:`Journal.record_item` wrote
until the decision (no read back), and counts the outbox only when the events it enqueued
since the last count could have filled it.

Durability: ``synchronous=FULL`` by default, so a commit has reached the disk when the call
returns and a decision survives a power cut, not only a crash of the agent (``NORMAL`` in
WAL mode survives a process crash but may lose the last commits on power loss; it is
offered for hosts where an fsync per decision is too slow, and documented as such).

The gate event is enqueued with the decision, so it reaches the ledger even if the agent
dies before the item reaches the diverter; it carries no ``actuated_at`` (the diverter time
stays in the journal, :meth:`Journal.record_actuation`).

Bounds: when the outbox holds ``max_backlog`` events (the gateway unreachable for long),
:meth:`Journal.record_item` refuses new items (:class:`OutboxFullError`, logged once) and
the agent must hold them or stop the line; decisions of items already journaled are always
accepted, so nothing journaled loses its event. A full disk makes the transaction fail
as a whole (:class:`JournalError`, nothing half-written): the agent holds the item.

After a crash, :meth:`Journal.undecided` lists the items recorded but never decided;
:meth:`Journal.hold_undecided` holds them (fail closed) with reason ``agent.restart``.
Every failure surfaces as a :class:`JournalError` with a one-line message, never as a bare
``sqlite3`` exception.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Self, TypeVar

from pydantic import ValidationError

from edge_agent import outbox
from gatewire.auth import KEY_SIZE, seal
from gatewire.item import CanonicalItemId
from gatewire.messages import Decision, GateEvent, VisionVerdict, new_message_id, now_ts
from gatewire.topics import GateTopics

__all__ = [
    "SCHEMA_VERSION",
    "AlreadyDecidedError",
    "CorruptRowError",
    "Counts",
    "DuplicateItemError",
    "GateIdentity",
    "ItemRecord",
    "Journal",
    "JournalBusyError",
    "JournalError",
    "OutboxFullError",
    "SchemaTooNewError",
    "UnknownItemError",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
RESTART_REASON: Final = "agent.restart"
Durability = Literal["full", "normal"]
T = TypeVar("T")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " window_id TEXT NOT NULL UNIQUE,"
    " scanned_at REAL NOT NULL,"
    " deadline REAL NOT NULL,"
    " reads TEXT NOT NULL,"  # JSON: source -> ids read, as read
    " item TEXT,"  # JSON of the CanonicalItemId the item was verified as, if any
    " seller TEXT,"
    " vision_verdict TEXT,"
    " vision_score REAL,"
    " request_id TEXT,"
    " decision TEXT CHECK (decision IN ('PASS', 'REJECT', 'HOLD')),"
    " reasons TEXT,"  # JSON list
    " decided_at REAL,"
    " late INTEGER,"
    " event_id TEXT UNIQUE,"  # NULL when no event could be made (no item id read)
    " actuated_at REAL,"
    " CHECK ((decision IS NULL) = (decided_at IS NULL)))",
    "CREATE INDEX IF NOT EXISTS items_undecided ON items (seq) WHERE decision IS NULL",
)


class JournalError(Exception):
    """The journal could not do what was asked; the message says why in one line."""


class SchemaTooNewError(JournalError):
    """The file was written by a newer agent (its schema version is higher than ours)."""


class JournalBusyError(JournalError):
    """The database stayed locked by another connection longer than the busy timeout."""


class DuplicateItemError(JournalError):
    """An item with this window id is already in the journal."""


class UnknownItemError(JournalError):
    """No item with this window id is in the journal."""


class AlreadyDecidedError(JournalError):
    """The item has a decision already; decisions are never overwritten."""


class OutboxFullError(JournalError):
    """The outbox holds ``max_backlog`` events: admit no new item (hold it) until it drains."""


class CorruptRowError(JournalError):
    """A stored row cannot be read back (hand-edited or damaged file)."""


@dataclass(frozen=True, slots=True)
class GateIdentity:
    """Who this gate is, and the key its events are sealed with."""

    site: str
    gate: str
    key: bytes

    def __post_init__(self) -> None:
        GateTopics(self.site, self.gate)  # validates the ids
        if len(self.key) != KEY_SIZE:
            raise ValueError(f"gate key must be {KEY_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One journal row read back."""

    seq: int
    window_id: str
    scanned_at: float
    deadline: float
    reads: dict[str, list[str]]
    item: CanonicalItemId | None
    seller: str | None
    vision_verdict: VisionVerdict | None
    vision_score: float | None
    request_id: str | None
    decision: Decision | None
    reasons: tuple[str, ...]
    decided_at: float | None
    late: bool
    event_id: str | None
    actuated_at: float | None


@dataclass(frozen=True, slots=True)
class Counts:
    """Item totals; ``items == passed + rejected + held + undecided`` always holds."""

    items: int
    passed: int
    rejected: int
    held: int
    undecided: int
    late: int
    actuated: int
    outbox: int


_COLUMNS: Final = (
    "seq, window_id, scanned_at, deadline, reads, item, seller, vision_verdict, vision_score,"
    " request_id, decision, reasons, decided_at, late, event_id, actuated_at"
)


class Journal:
    """The journal of one gate. Not thread-safe: use it from the agent's thread."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
        identity: GateIdentity,
        max_backlog: int,
    ) -> None:
        self._conn, self.path, self.identity = conn, path, identity
        self.max_backlog = max_backlog
        self._refusing = False  # refusing items because the outbox is full (logged once)
        self._batch_depth = 0  # > 0 inside batch(): writes share one transaction
        self._batch_begun = False  # the batch's transaction is open (begun at its first write)
        self._backlog_bound: int | None = None  # outbox size is at most this (None: count it)
        self._recorded: dict[str, _Recorded] = {}  # items recorded here, not yet decided
        self._topic = GateTopics(identity.site, identity.gate).event

    @classmethod
    def open(
        cls,
        path: str | Path,
        identity: GateIdentity,
        *,
        durability: Durability = "full",
        busy_timeout_s: float = 5.0,
        max_backlog: int = 100_000,
    ) -> Self:
        """Open (creating if needed) the journal at ``path``.

        Raises :class:`SchemaTooNewError` for a file of a newer schema and
        :class:`JournalError` for a file that is not a journal or cannot be opened.
        """
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', not {durability!r}")
        name = str(path)
        try:
            conn = sqlite3.connect(name, timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {name}: {exc}") from exc
        try:
            _call(lambda: _prepare(conn, durability), f"journal {name}")
        except BaseException:
            conn.close()
            raise
        return cls(conn, name, identity, max_backlog)

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def uncommitted(self) -> bool:
        """True inside a :meth:`batch` that has written something (it will commit)."""
        return self._batch_depth > 0 and self._batch_begun

    # --- writes ------------------------------------------------------------------------

    def record_item(
        self,
        window_id: str,
        *,
        scanned_at: float,
        deadline: float,
        reads: Mapping[str, Sequence[str]],
        item: CanonicalItemId | None = None,
        seller: str | None = None,
        vision_verdict: VisionVerdict | None = None,
        vision_score: float | None = None,
        request_id: str | None = None,
    ) -> int:
        """Journal a new item (its window, what was read, the vision result); returns its
        ``seq``. ``deadline`` is the epoch time by which it must be decided.

        Raises :class:`OutboxFullError` (nothing written) when the outbox is at
        ``max_backlog``: the gate must hold the item, or stop the line, until it drains.
        """
        reads_json = json.dumps({str(k): list(v) for k, v in reads.items()}, sort_keys=True)
        item_json = None if item is None else item.model_dump_json(exclude_unset=True)
        verdict = None if vision_verdict is None else vision_verdict.value

        def write() -> int:
            bound = self._backlog_bound
            if bound is not None and bound < self.max_backlog:
                return insert()
            size = outbox.backlog(self._conn)
            self._backlog_bound = size
            if size >= self.max_backlog:
                if not self._refusing:
                    log.warning(
                        "journal: outbox holds %d events (limit %d): admitting no new items "
                        "until the gateway is reachable again",
                        size,
                        self.max_backlog,
                    )
                    self._refusing = True
                raise OutboxFullError(
                    f"outbox holds {size} events (limit {self.max_backlog}): "
                    f"item {window_id} not admitted; hold it until the gateway is reachable"
                )
            if self._refusing:
                log.warning("journal: outbox down to %d events: admitting items again", size)
                self._refusing = False
            return insert()

        def insert() -> int:
            try:
                cur = self._conn.execute(
                    "INSERT INTO items (window_id, scanned_at, deadline, reads, item, seller,"
                    " vision_verdict, vision_score, request_id) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        window_id,
                        scanned_at,
                        deadline,
                        reads_json,
                        item_json,
                        seller,
                        verdict,
                        vision_score,
                        request_id,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateItemError(f"item {window_id} is already journaled") from exc
            assert cur.lastrowid is not None
            return cur.lastrowid

        seq = self._transaction(write, atomic=True)  # one write: the INSERT
        if len(self._recorded) >= _RECORDED_MAX:  # items never decided: forget (read back)
            self._recorded.clear()
        self._recorded[window_id] = _Recorded(item, seller, scanned_at, request_id)
        return seq

    def record_decision(
        self,
        window_id: str,
        decision: Decision,
        reasons: Sequence[str],
        *,
        decided_at: float,
        late: bool = False,
        request_id: str | None = None,
    ) -> str | None:
        """Journal the item's decision and enqueue its gate event, in one transaction.

        Returns the event id, or None when the item has no id to report (nothing was read).
        Raises :class:`UnknownItemError`, :class:`AlreadyDecidedError` (nothing written),
        ``ValueError`` for reasons the wire format refuses.
        """

        recorded = self._recorded.pop(window_id, None)

        def write() -> str | None:
            if recorded is not None:
                with contextlib.suppress(_NotUndecidedError):
                    return self._decide(
                        window_id, recorded, decision, list(reasons), decided_at, late, request_id
                    )
            record = self._get(window_id)  # not recorded by this journal, or rolled back
            if record is None:
                raise UnknownItemError(f"no item {window_id} in the journal")
            if record.decision is not None:
                raise AlreadyDecidedError(
                    f"item {window_id} was decided {record.decision.value} already"
                )
            return self._decide_record(
                record, decision, list(reasons), decided_at, late, request_id
            )

        try:
            return self._transaction(write)
        except (UnknownItemError, AlreadyDecidedError):
            raise
        except BaseException:  # nothing written (e.g. reasons the wire refuses): keep it
            if recorded is not None:
                self._recorded[window_id] = recorded
            raise

    def record_actuation(self, window_id: str, actuated_at: float) -> None:
        """Journal when the diverter fired for a decided item (once)."""

        def write() -> None:
            cur = self._conn.execute(
                "UPDATE items SET actuated_at = ? WHERE window_id = ?"
                " AND decision IS NOT NULL AND actuated_at IS NULL",
                (actuated_at, window_id),
            )
            if cur.rowcount != 1:
                raise UnknownItemError(f"no decided, not yet actuated item {window_id}")

        self._transaction(write, atomic=True)  # one write: the UPDATE

    def hold_undecided(self, decided_at: float | None = None) -> list[str]:
        """Hold every item without a decision (after a crash: fail closed) with reason
        ``agent.restart``, late if past its deadline; returns their window ids. A row that
        cannot be read back is held too, without a gate event (logged)."""
        when = now_ts() if decided_at is None else decided_at

        def write() -> list[str]:
            held = []
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE decision IS NULL ORDER BY seq"
            ).fetchall()
            for row in rows:
                try:
                    record = _record(row)
                except CorruptRowError as exc:
                    log.error("journal: %s; holding it without a gate event", exc)
                    self._conn.execute(
                        "UPDATE items SET decision = 'HOLD', reasons = ?, decided_at = ?,"
                        " late = 1 WHERE seq = ?",
                        (json.dumps([RESTART_REASON, "journal.corrupt_row"]), when, row[0]),
                    )
                    held.append(str(row[1]))
                    continue
                late = when > record.deadline
                self._decide_record(record, Decision.HOLD, [RESTART_REASON], when, late, None)
                held.append(record.window_id)
            return held

        return self._transaction(write)

    # --- reads -------------------------------------------------------------------------

    def item(self, window_id: str) -> ItemRecord | None:
        """The item journaled under ``window_id``, or None."""
        return _call(lambda: self._get(window_id), self.path)

    def undecided(self) -> list[ItemRecord]:
        """Items journaled but never decided, oldest first (after a crash: hold them)."""
        rows = _call(
            lambda: self._conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE decision IS NULL ORDER BY seq"
            ).fetchall(),
            self.path,
        )
        return [_record(row) for row in rows]

    def counts(self) -> Counts:
        """Totals of items by decision, late and actuated items, and the outbox backlog."""

        def read() -> Counts:
            row = self._conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE decision = 'PASS'),"
                " count(*) FILTER (WHERE decision = 'REJECT'),"
                " count(*) FILTER (WHERE decision = 'HOLD'),"
                " count(*) FILTER (WHERE decision IS NULL),"
                " count(*) FILTER (WHERE late = 1),"
                " count(*) FILTER (WHERE actuated_at IS NOT NULL) FROM items"
            ).fetchone()
            values = [int(v) for v in row]
            return Counts(
                items=values[0],
                passed=values[1],
                rejected=values[2],
                held=values[3],
                undecided=values[4],
                late=values[5],
                actuated=values[6],
                outbox=outbox.backlog(self._conn),
            )

        return _call(read, self.path)

    # --- internals -----------------------------------------------------------------------

    def _get(self, window_id: str) -> ItemRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM items WHERE window_id = ?", (window_id,)
        ).fetchone()
        return None if row is None else _record(row)

    def _decide_record(
        self,
        record: ItemRecord,
        decision: Decision,
        reasons: list[str],
        decided_at: float,
        late: bool,
        request_id: str | None,
    ) -> str | None:
        recorded = _Recorded(record.item, record.seller, record.scanned_at, record.request_id)
        self._recorded.pop(record.window_id, None)
        try:
            return self._decide(
                record.window_id, recorded, decision, reasons, decided_at, late, request_id
            )
        except _NotUndecidedError as exc:  # read undecided in this transaction: cannot be
            raise AlreadyDecidedError(f"item {record.window_id} was decided meanwhile") from exc

    def _decide(
        self,
        window_id: str,
        record: _Recorded,
        decision: Decision,
        reasons: list[str],
        decided_at: float,
        late: bool,
        request_id: str | None,
    ) -> str | None:
        """Decide the undecided item ``window_id`` and enqueue its event (the caller runs
        this in a savepoint); :class:`_NotUndecidedError` (nothing written) when no undecided
        item has that id."""
        request_id = request_id or record.request_id
        event_id = None
        payload = b""
        if record.item is not None:
            event_id = new_message_id()
            event = GateEvent(
                site=self.identity.site,
                gate=self.identity.gate,
                ts=now_ts(),
                event_id=event_id,
                item=record.item,
                decision=decision,
                reasons=reasons,
                request_id=request_id,
                seller=record.seller,
                scanned_at=record.scanned_at,
                decided_at=decided_at,
                late=late,
            )
            payload = seal(event, self.identity.key)
        cur = self._conn.execute(
            "UPDATE items SET decision = ?, reasons = ?, decided_at = ?, late = ?,"
            " event_id = ?, request_id = ? WHERE window_id = ? AND decision IS NULL",
            (
                decision.value,
                json.dumps(reasons),
                decided_at,
                int(late),
                event_id,
                request_id,
                window_id,
            ),
        )
        if cur.rowcount != 1:
            raise _NotUndecidedError(window_id)
        if event_id is not None:
            outbox.enqueue(self._conn, event_id, self._topic, payload, decided_at)
            if self._backlog_bound is not None:
                self._backlog_bound += 1
        return event_id

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every write inside is one transaction, made durable by one commit
        at the end (one fsync for many items), begun at the first write (a batch that
        writes nothing commits nothing). Each write still succeeds or fails alone (one
        statement, or a savepoint); the caller must not act on what it wrote before the block
        exits.
        Raises :class:`JournalError` when the final commit fails (nothing inside is kept).
        """
        if self._batch_depth:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
            return
        self._batch_depth, self._batch_begun = 1, False
        try:
            yield
        except BaseException:
            self._batch_depth = 0
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._batch_depth = 0
        if not self._batch_begun:
            return  # nothing written: nothing to commit
        try:
            _call(lambda: self._conn.execute("COMMIT"), self.path)
        except JournalError:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _transaction(self, work: Callable[[], T], *, atomic: bool = False) -> T:
        """Run ``work`` as one transaction, or inside the open :meth:`batch`: as it is if
        ``atomic`` (it makes at most one write, a statement SQLite undoes alone when it
        fails), else in a savepoint."""
        if self._batch_depth:
            if not self._batch_begun:
                _call(lambda: self._conn.execute("BEGIN IMMEDIATE"), self.path)
                self._batch_begun = True
            elif not self._conn.in_transaction:  # SQLite rolled it all back (disk full, I/O)
                raise JournalError(f"{self.path}: this batch was rolled back; nothing is kept")
            return _call(work if atomic else lambda: self._savepoint(work), self.path)

        def run() -> T:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work()
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

        return _call(run, self.path)

    def _savepoint(self, work: Callable[[], T]) -> T:
        """One write inside a :meth:`batch`: undone alone if it fails."""
        self._conn.execute("SAVEPOINT journal_write")
        try:
            result = work()
        except BaseException:
            self._conn.execute("ROLLBACK TO journal_write")
            self._conn.execute("RELEASE journal_write")
            raise
        self._conn.execute("RELEASE journal_write")
        return result


@dataclass(frozen=True, slots=True)
class _Recorded:
    """What :meth:`Journal.record_item` wrote that the decision's gate event needs."""

    item: CanonicalItemId | None
    seller: str | None
    scanned_at: float
    request_id: str | None


_RECORDED_MAX: Final = 100_000


class _NotUndecidedError(Exception):
    """No undecided item has this window id (unknown, decided, or its record rolled back)."""


def _prepare(conn: sqlite3.Connection, durability: Durability) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise JournalError(f"cannot switch the journal to WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = _version(row)
            if version > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"journal schema version {version} is newer than this agent's "
                    f"({SCHEMA_VERSION}): upgrade the agent or move the file away"
                )
        for statement in _SCHEMA:
            conn.execute(statement)
        outbox.create_schema(conn)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _version(row: tuple[Any, ...] | None) -> int:
    if row is None:
        raise JournalError("journal has a meta table without schema_version")
    try:
        return int(row[0])
    except (TypeError, ValueError) as exc:
        raise JournalError(f"journal schema_version {row[0]!r} is not a number") from exc


def _record(row: tuple[Any, ...]) -> ItemRecord:
    """Turn a row of :data:`_COLUMNS` into a record; :class:`CorruptRowError` if it is not
    one the journal could have written."""
    seq = row[0]
    try:
        reads = json.loads(row[4])
        if not isinstance(reads, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in reads.values()
        ):
            raise ValueError("reads is not a map of id lists")
        reasons = () if row[11] is None else tuple(json.loads(row[11]))
        if not all(isinstance(r, str) for r in reasons):
            raise ValueError("reasons is not a list of strings")
        return ItemRecord(
            seq=int(seq),
            window_id=str(row[1]),
            scanned_at=float(row[2]),
            deadline=float(row[3]),
            reads=reads,
            item=None if row[5] is None else CanonicalItemId.model_validate_json(row[5]),
            seller=row[6],
            vision_verdict=None if row[7] is None else VisionVerdict(row[7]),
            vision_score=None if row[8] is None else float(row[8]),
            request_id=row[9],
            decision=None if row[10] is None else Decision(row[10]),
            reasons=reasons,
            decided_at=None if row[12] is None else float(row[12]),
            late=bool(row[13]),
            event_id=row[14],
            actuated_at=None if row[15] is None else float(row[15]),
        )
    except (ValueError, TypeError, ValidationError) as exc:
        detail = str(exc).splitlines()[0][:200]
        raise CorruptRowError(f"journal row {seq} is corrupt: {detail}") from exc


def _call(work: Callable[[], T], where: str) -> T:
    """Run ``work``, turning SQLite errors into :class:`JournalError` with one line."""
    try:
        return work()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise JournalBusyError(f"{where}: database is locked by another process") from exc
        raise JournalError(f"{where}: {exc}") from exc
    except sqlite3.Error as exc:
        raise JournalError(f"{where}: {type(exc).__name__}: {exc}") from exc
