"""Storage backend interface of the ledger, shared SQL for SQLite and PostgreSQL.

Tables (column types shown for SQLite; PostgreSQL uses BIGINT and BYTEA):

- ``events(seq PK, event_id, event_json, signer, chain, item_key)``: the append-only log;
  ``chain`` is the 32-byte chain value (see chain.py); ``item_key`` the one item the event
  names when it names exactly one (most do), else NULL. Index ``(item_key, seq)``.
- ``open_blocks(signer PK, first_seq, event_count)``: each signer's events not yet in a
  sealed block (the first one's seq and how many), kept by the appender so that sealing
  reads a seq range instead of needing a ``(signer, seq)`` index on every event. It is
  the writer's bookkeeping, not evidence: the audit never reads it.
- ``item_events(seq, item_key) PK``: the items of events that name several (aggregations),
  clustered by seq (the audit reads it in seq order without sorting). With
  ``events.item_key`` it is the item index: its ``(item_key, seq)`` index and the events'
  serve an item's history and its current state (its latest event: two index seeks,
  whatever the size). A single-item event's key travels in its own row, so an append
  writes one row per event instead of two (on PostgreSQL the index entry is then stored
  while the events stream in, not after).
- ``blocks(block_no PK, signer, key_id, first_seq, last_seq, leaf_count, root,
  head_chain, signature, sealed_at)``: sealed Merkle blocks. A block holds the events of
  ONE signer with ``first_seq ≤ seq ≤ last_seq``; a signer's blocks follow each other
  without gaps, so every event of that signer up to its last ``last_seq`` is in exactly one.
- ``org_keys(key_id PK, org, public_key, registered_at)``: registered Ed25519 public keys.
- ``ledger_meta(key PK, value)``: schema version.

Writes happen only inside :meth:`SqlStore.write`, which serialises appenders (SQLite
``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock) so the chain stays
linear with several writers, and commits before returning (durable before acknowledged).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

SCHEMA_VERSION = "3"

EventRow = tuple[int, str, str, str, bytes]
"""(seq, event_id, event_json, signer, chain)."""
NewEventRow = tuple[int, str, str, str, bytes, str | None]
"""An event row as appended: (seq, event_id, event_json, signer, chain, item_key), the
item key set when the event names exactly one item (its index rows are then none)."""
ITEM_SEQS = (
    "(SELECT seq FROM events WHERE item_key = ? "
    "UNION ALL SELECT seq FROM item_events WHERE item_key = ?)"
)
"""The seqs of the events naming an item (parameters: the key twice)."""
Statement = tuple[str, Sequence[Any]]
"""(SQL, parameters)."""
CommitWork = Callable[[Callable[[], bool]], None]
"""Work to do while a commit is in flight: called with a poll that says whether the commit
is done (the work should return soon after it says so)."""


class StoreError(RuntimeError):
    """The database could not be opened, read or written."""


@dataclass(frozen=True, slots=True)
class AppendState:
    """What an append reads under the write lock, in one round trip (see append_state)."""

    #: (seq, chain) of the last event, or None when the ledger is empty.
    head: tuple[int, bytes] | None
    #: The signer's unsealed events: first seq and count ((0, 0) if none).
    first_open: int
    open_count: int
    #: Highest block number so far (0 when none).
    last_block_no: int
    #: (seq, event_id, chain) of the signer's unsealed events, oldest first, when the
    #: append fills a block and the appender does not hold them; otherwise empty.
    open_events: list[tuple[int, str, bytes]]
    #: Whether the stored open block is the one the appender said it holds.
    held_current: bool = False


class HeldBlock(NamedTuple):
    """An open block an appender holds the events of: its first seq and count, and the
    seq and chain value of its last event."""

    first_seq: int
    event_count: int
    last_seq: int
    last_chain: bytes


@dataclass(frozen=True, slots=True)
class BlockRow:
    """A sealed block as stored."""

    block_no: int
    signer: str
    key_id: str
    first_seq: int
    last_seq: int
    leaf_count: int
    root: bytes
    head_chain: bytes
    signature: bytes
    sealed_at: str
    #: Every Merkle tree level (merkle.pack_tree): proofs read their path from it.
    tree: bytes = b""


BLOCK_COLUMNS = (
    "block_no, signer, key_id, first_seq, last_seq, leaf_count, root, head_chain, "
    "signature, sealed_at, tree"
)


def _block(row: Sequence[Any]) -> BlockRow:
    return BlockRow(
        int(row[0]),
        str(row[1]),
        str(row[2]),
        int(row[3]),
        int(row[4]),
        int(row[5]),
        bytes(row[6]),
        bytes(row[7]),
        bytes(row[8]),
        str(row[9]),
        bytes(row[10]),
    )


class SqlStore(abc.ABC):
    """A ledger database. Not thread-safe: one store (connection) per thread or worker."""

    #: DB-API parameter placeholder of the driver.
    placeholder = "?"
    blob_type = "BLOB"
    int_type = "INTEGER"
    #: Trailer for tables keyed by their primary key only (SQLite WITHOUT ROWID).
    clustered = ""
    #: Whether insert_events sends rows to the server as they are produced, so that the
    #: database stores the first while the next are prepared (PostgreSQL's COPY).
    streams_inserts = False

    # ---- what a dialect provides -------------------------------------------------------

    @abc.abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the current transaction (or autocommit), return all rows."""

    @abc.abstractmethod
    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement per row."""

    def _execute_all(self, statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
        """Run statements in order and return each one's rows (PostgreSQL: one round trip)."""
        return [self._execute(sql, params) for sql, params in statements]

    def _write(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A statement whose result nobody reads; a backend may send it with the next
        statement or the commit (one round trip), never later than the commit."""
        self._execute(sql, params)

    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """:meth:`_write` for one statement per row."""
        self._executemany(sql, rows)

    @abc.abstractmethod
    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of a large query without loading them all."""

    @abc.abstractmethod
    @contextmanager
    def _locked_transaction(self, while_committing: CommitWork | None = None) -> Iterator[None]:
        """A transaction that excludes every other writer; commits on normal exit (see
        :meth:`write` for ``while_committing``)."""
        yield

    @abc.abstractmethod
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read-only transaction: every read inside sees the same state of the ledger."""
        yield

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where this store lives (without credentials)."""

    # ---- schema ------------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def schema_statements(self) -> list[str]:
        """CREATE statements of the schema in this dialect."""
        i, b = self.int_type, self.blob_type
        return [
            "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS events (seq {i} PRIMARY KEY, event_id TEXT NOT NULL, "
            f"event_json TEXT NOT NULL, signer TEXT NOT NULL, chain {b} NOT NULL, item_key TEXT)",
            "CREATE INDEX IF NOT EXISTS events_item_key_seq ON events (item_key, seq)",
            "CREATE TABLE IF NOT EXISTS open_blocks (signer TEXT PRIMARY KEY, "
            f"first_seq {i} NOT NULL, event_count {i} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS item_events (seq {i} NOT NULL, item_key TEXT NOT NULL, "
            f"PRIMARY KEY (seq, item_key)){self.clustered}",
            "CREATE INDEX IF NOT EXISTS item_events_key_seq ON item_events (item_key, seq)",
            f"CREATE TABLE IF NOT EXISTS blocks (block_no {i} PRIMARY KEY, signer TEXT NOT NULL, "
            f"key_id TEXT NOT NULL, first_seq {i} NOT NULL, last_seq {i} NOT NULL, "
            f"leaf_count {i} NOT NULL, root {b} NOT NULL, head_chain {b} NOT NULL, "
            f"signature {b} NOT NULL, sealed_at TEXT NOT NULL, tree {b} NOT NULL)",
            "CREATE INDEX IF NOT EXISTS blocks_signer_last ON blocks (signer, last_seq)",
            "CREATE TABLE IF NOT EXISTS org_keys (key_id TEXT PRIMARY KEY, org TEXT NOT NULL, "
            f"public_key {b} NOT NULL, registered_at TEXT NOT NULL)",
        ]

    def initialize(self) -> None:
        """Create the tables if missing and check the schema version."""
        with self._locked_transaction():
            meta, *tables = self.schema_statements()
            self._execute(meta)
            rows = self._execute("SELECT value FROM ledger_meta WHERE key = 'schema'")
            if rows and rows[0][0] == "2":
                self._migrate_from_2()
                rows = [(SCHEMA_VERSION,)]
            if not rows or rows[0][0] == SCHEMA_VERSION:
                for stmt in tables:
                    self._execute(stmt)
            if not rows:
                self._execute(
                    self._q("INSERT INTO ledger_meta (key, value) VALUES ('schema', ?)"),
                    (SCHEMA_VERSION,),
                )
            elif rows[0][0] != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.url}: ledger schema version {rows[0][0]}, this code reads "
                    f"{SCHEMA_VERSION}"
                )

    def _migrate_from_2(self) -> None:
        """Schema 2 → 3: single-item events' keys move from item_events into the event rows
        (in the caller's write transaction; nothing else changes, the audit still passes)."""
        self._execute("ALTER TABLE events ADD COLUMN item_key TEXT")
        self._execute(
            "UPDATE events SET item_key = (SELECT MIN(i.item_key) FROM item_events i "
            "WHERE i.seq = events.seq) WHERE seq IN "
            "(SELECT seq FROM item_events GROUP BY seq HAVING COUNT(*) = 1)"
        )
        self._execute(
            "DELETE FROM item_events "
            "WHERE seq IN (SELECT seq FROM events WHERE item_key IS NOT NULL)"
        )
        self._execute("CREATE INDEX IF NOT EXISTS events_item_key_seq ON events (item_key, seq)")
        self._execute(
            self._q("UPDATE ledger_meta SET value = ? WHERE key = 'schema'"), (SCHEMA_VERSION,)
        )

    # ---- writes (only inside write()) --------------------------------------------------

    @contextmanager
    def write(self, *, while_committing: CommitWork | None = None) -> Iterator[SqlStore]:
        """Serialised write transaction: ``with store.write() as tx: tx.insert_events(...)``.

        Committed when the block exits. A backend whose commit waits on a database server
        (PostgreSQL) calls ``while_committing`` once the commit is sent and before waiting
        for it, so the client works while the server flushes its log; the others do not
        call it. Its exceptions propagate once the commit is confirmed.
        """
        with self._locked_transaction(while_committing):
            yield self

    @contextmanager
    def savepoint(self, name: str = "provgate_part") -> Iterator[None]:
        """Part of the current write transaction that, when it raises, is undone alone (the
        transaction stays usable: on PostgreSQL a failed statement would otherwise abort
        it, and its COMMIT would quietly roll everything back)."""
        self._execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._execute(f"ROLLBACK TO SAVEPOINT {name}")
            self._execute(f"RELEASE SAVEPOINT {name}")
            raise
        self._execute(f"RELEASE SAVEPOINT {name}")

    def head(self) -> tuple[int, bytes] | None:
        """(seq, chain) of the last event, or None when empty."""
        rows = self._execute("SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def insert_events(self, rows: Iterable[NewEventRow]) -> None:
        """Append event rows (seq, event_id, event_json, signer, chain, item_key), read once
        in order."""
        self._executemany(
            self._q(
                "INSERT INTO events (seq, event_id, event_json, signer, chain, item_key) "
                "VALUES (?, ?, ?, ?, ?, ?)"
            ),
            rows,
        )

    def insert_item_events(self, rows: Sequence[tuple[str, int]]) -> None:
        """Index rows (item_key, seq) of the events that name several items."""
        self._executemany(self._q("INSERT INTO item_events (item_key, seq) VALUES (?, ?)"), rows)

    def append_state(
        self, signer: str, incoming: int, block_size: int, held: HeldBlock | None = None
    ) -> AppendState:
        """Head of the chain, the signer's open block and the last block number, plus the
        open block's events when ``incoming`` more events make it reach ``block_size``
        (then a block is sealed), unless it is the ``held`` one (the caller has its events:
        same first seq and count, and the same chain value at its last seq, which the
        chain makes true only if every event up to there is the same); one round trip on
        PostgreSQL. Call under the write lock."""
        q = self._q
        first, count, last, chain = held if held is not None else HeldBlock(-1, -1, -1, b"")
        # true when the stored open block is the held one (SQLite: 1/0; PostgreSQL: bool)
        is_held = (
            "(SELECT first_seq = ? AND event_count = ? FROM open_blocks WHERE signer = ?) "
            "AND (SELECT chain = ? FROM events WHERE seq = ?)"
        )
        is_held_params = (first, count, signer, chain, last)
        state, events = self._execute_all(
            [
                (
                    q(
                        "SELECT (SELECT seq FROM events ORDER BY seq DESC LIMIT 1), "
                        "(SELECT chain FROM events ORDER BY seq DESC LIMIT 1), "
                        "(SELECT first_seq FROM open_blocks WHERE signer = ?), "
                        "(SELECT event_count FROM open_blocks WHERE signer = ?), "
                        "(SELECT MAX(block_no) FROM blocks), "
                        "(SELECT value FROM ledger_meta WHERE key = 'schema'), "
                        f"COALESCE({is_held}, FALSE)"
                    ),
                    (signer, signer, *is_held_params),
                ),
                (
                    q(
                        "SELECT seq, event_id, chain FROM events WHERE signer = ? AND seq >= "
                        "(SELECT first_seq FROM open_blocks WHERE signer = ? AND event_count > 0 "
                        f"AND event_count + ? >= ? AND NOT COALESCE({is_held}, FALSE)) "
                        "ORDER BY seq "
                        "LIMIT COALESCE((SELECT event_count FROM open_blocks WHERE signer = ?), 0)"
                    ),
                    (signer, signer, incoming, block_size, *is_held_params, signer),
                ),
            ]
        )
        seq, head_chain, first_open, open_count, block_no, schema, held_current = state[0]
        if schema != SCHEMA_VERSION:  # moved on by a newer writer since this one opened it
            raise StoreError(
                f"{self.url}: the ledger is at schema version {schema}, this code writes "
                f"{SCHEMA_VERSION}: run every writer at the same version"
            )
        return AppendState(
            None if seq is None else (int(seq), bytes(head_chain)),
            0 if first_open is None else int(first_open),
            0 if open_count is None else int(open_count),
            0 if block_no is None else int(block_no),
            [(int(r[0]), str(r[1]), bytes(r[2])) for r in events],
            held is not None and bool(held_current),
        )

    def next_block_no(self) -> int:
        """Number for the next block (1, 2, …)."""
        rows = self._execute("SELECT MAX(block_no) FROM blocks")
        return 1 if rows[0][0] is None else int(rows[0][0]) + 1

    def open_block(self, signer: str) -> tuple[int, int]:
        """(first_seq, event_count) of the signer's events not yet sealed; (0, 0) if none."""
        rows = self._execute(
            self._q("SELECT first_seq, event_count FROM open_blocks WHERE signer = ?"), (signer,)
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def set_open_block(self, signer: str, first_seq: int, event_count: int) -> None:
        """Record the signer's unsealed events (``event_count`` 0: none)."""
        self._write(
            self._q(
                "INSERT INTO open_blocks (signer, first_seq, event_count) VALUES (?, ?, ?) "
                "ON CONFLICT (signer) DO UPDATE SET first_seq = excluded.first_seq, "
                "event_count = excluded.event_count"
            ),
            (signer, first_seq, event_count),
        )

    def signer_events_from(
        self, signer: str, first_seq: int, limit: int
    ) -> list[tuple[int, str, bytes]]:
        """(seq, event_id, chain) of the signer's first ``limit`` events from ``first_seq``."""
        rows = self._execute(
            self._q(
                "SELECT seq, event_id, chain FROM events WHERE seq >= ? AND signer = ? "
                "ORDER BY seq LIMIT ?"
            ),
            (first_seq, signer, limit),
        )
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def unsealed_signers(self) -> list[str]:
        """Signers with at least one event not in a sealed block."""
        rows = self._execute("SELECT signer FROM open_blocks WHERE event_count > 0")
        return sorted(str(r[0]) for r in rows)

    def insert_block(self, block: BlockRow) -> None:
        """Store a sealed block."""
        self.insert_blocks([block])

    def insert_blocks(self, blocks: Sequence[BlockRow]) -> None:
        """Store sealed blocks."""
        if not blocks:
            return
        self._write_many(
            self._q(
                f"INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            [
                (
                    block.block_no,
                    block.signer,
                    block.key_id,
                    block.first_seq,
                    block.last_seq,
                    block.leaf_count,
                    block.root,
                    block.head_chain,
                    block.signature,
                    block.sealed_at,
                    block.tree,
                )
                for block in blocks
            ],
        )

    def register_key(self, key_id: str, org: str, public_key: bytes, registered_at: str) -> None:
        """Register a public key (idempotent for the same key and org)."""
        rows = self._execute(
            self._q("SELECT org, public_key FROM org_keys WHERE key_id = ?"), (key_id,)
        )
        if rows:
            if rows[0][0] != org or bytes(rows[0][1]) != public_key:
                raise StoreError(f"key {key_id} is already registered to {rows[0][0]!r}")
            return
        self._execute(
            self._q(
                "INSERT INTO org_keys (key_id, org, public_key, registered_at) VALUES (?, ?, ?, ?)"
            ),
            (key_id, org, public_key, registered_at),
        )

    # ---- reads -------------------------------------------------------------------------

    def public_keys(self) -> dict[str, tuple[str, bytes]]:
        """key_id → (org, raw public key) of every registered key."""
        rows = self._execute("SELECT key_id, org, public_key FROM org_keys")
        return {str(r[0]): (str(r[1]), bytes(r[2])) for r in rows}

    def item_state(self, item_key: str) -> tuple[int, str, str] | None:
        """(seq, event_id, event JSON) of the item's latest event, or None if never seen."""
        rows = self._execute(
            self._q(
                "SELECT e.seq, e.event_id, e.event_json FROM events e "
                "WHERE e.seq = (SELECT MAX(i.seq) FROM ("
                "SELECT MAX(seq) AS seq FROM events WHERE item_key = ? "
                "UNION ALL SELECT MAX(seq) FROM item_events WHERE item_key = ?) i)"
            ),
            (item_key, item_key),
        )
        return (int(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def item_history(self, item_key: str) -> list[EventRow]:
        """The item's events, oldest first."""
        rows = self._execute(
            self._q(
                "SELECT e.seq, e.event_id, e.event_json, e.signer, e.chain "
                f"FROM {ITEM_SEQS} i JOIN events e ON e.seq = i.seq ORDER BY i.seq"
            ),
            (item_key, item_key),
        )
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bytes(r[4])) for r in rows]

    def item_history_with_blocks(self, item_key: str) -> list[tuple[EventRow, BlockRow | None]]:
        """The item's events, oldest first, each with the sealed block holding it (or None),
        in one statement (one consistent read, one round trip)."""
        cols = ", ".join(f"b.{c.strip()}" for c in BLOCK_COLUMNS.split(","))
        rows = self._execute(
            self._q(
                f"SELECT e.seq, e.event_id, e.event_json, e.signer, e.chain, {cols} "
                f"FROM {ITEM_SEQS} i JOIN events e ON e.seq = i.seq "
                "LEFT JOIN blocks b ON b.block_no = (SELECT c.block_no FROM blocks c "
                "WHERE c.signer = e.signer AND c.last_seq >= e.seq ORDER BY c.last_seq LIMIT 1) "
                "ORDER BY i.seq"
            ),
            (item_key, item_key),
        )
        out: list[tuple[EventRow, BlockRow | None]] = []
        for r in rows:
            event = (int(r[0]), str(r[1]), str(r[2]), str(r[3]), bytes(r[4]))
            block = None if r[5] is None else _block(r[5:])
            if block is not None and block.first_seq > event[0]:
                block = None
            out.append((event, block))
        return out

    def leaf_rank(self, block: BlockRow, seq: int) -> int:
        """Index of event ``seq`` among the block's leaves (its signer's events in range)."""
        rows = self._execute(
            self._q("SELECT COUNT(*) FROM events WHERE signer = ? AND seq >= ? AND seq < ?"),
            (block.signer, block.first_seq, seq),
        )
        return int(rows[0][0])

    def block_leaves(self, block: BlockRow) -> list[tuple[int, str]]:
        """(seq, event_id) of the events a block covers, in leaf order."""
        rows = self._execute(
            self._q(
                "SELECT seq, event_id FROM events WHERE signer = ? AND seq >= ? AND seq <= ? "
                "ORDER BY seq"
            ),
            (block.signer, block.first_seq, block.last_seq),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    def blocks(self) -> list[BlockRow]:
        """Every sealed block, by block number."""
        return [
            _block(r)
            for r in self._execute(f"SELECT {BLOCK_COLUMNS} FROM blocks ORDER BY block_no")
        ]

    def blocks_with_tree_digests(self) -> list[tuple[BlockRow, bytes]]:
        """Every sealed block by number, with the SHA-256 of its stored tree beside it (a
        store that can computes it where the tree lies and leaves the tree out of the row:
        the audit compares only the digest)."""
        return [(block, hashlib.sha256(block.tree).digest()) for block in self.blocks()]

    def event_count(self) -> int:
        """Number of stored events."""
        return int(self._execute("SELECT COUNT(*) FROM events")[0][0])

    def iter_events(self) -> Iterator[EventRow]:
        """Every event in seq order, streamed."""
        for r in self._stream(
            "SELECT seq, event_id, event_json, signer, chain FROM events ORDER BY seq"
        ):
            yield int(r[0]), str(r[1]), str(r[2]), str(r[3]), bytes(r[4])

    def max_seq(self) -> int:
        """The highest stored seq (0 when empty)."""
        rows = self._execute("SELECT MAX(seq) FROM events")
        return 0 if rows[0][0] is None else int(rows[0][0])

    def chain_before(self, seq: int) -> tuple[int, bytes] | None:
        """(seq, chain) of the last stored event before ``seq``, or None."""
        rows = self._execute(
            self._q("SELECT seq, chain FROM events WHERE seq < ? ORDER BY seq DESC LIMIT 1"),
            (seq,),
        )
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def raw_events_between(self, first: int, last: int) -> Iterator[tuple[Any, ...]]:
        """Event rows with ``first ≤ seq ≤ last`` in seq order, streamed as the driver
        returns them: (seq, event_id, event_json, signer, chain, item_key), column types NOT
        checked (a tampered row may hold anything; the audit checks them)."""
        return self._stream(
            self._q(
                "SELECT seq, event_id, event_json, signer, chain, item_key FROM events "
                "WHERE seq >= ? AND seq <= ? ORDER BY seq"
            ),
            (first, last),
        )

    def iter_item_events_between(self, first: int, last: int) -> Iterator[tuple[int, str]]:
        """(seq, item_key) rows of item_events (events naming several items) with
        ``first ≤ seq ≤ last``, by seq then key."""
        for r in self._stream(
            self._q(
                "SELECT seq, item_key FROM item_events WHERE seq >= ? AND seq <= ? "
                "ORDER BY seq, item_key"
            ),
            (first, last),
        ):
            yield int(r[0]), str(r[1])

    def rows_outside(self, last: int, limit: int = 10) -> list[tuple[str, int, str]]:
        """(table, seq, what) of event and index rows with a seq outside 1…``last``."""
        rows = self._execute(
            self._q(
                "SELECT 'events', seq, event_id FROM events WHERE seq < 1 "
                "UNION ALL SELECT 'item_events', seq, item_key FROM item_events "
                "WHERE seq < 1 OR seq > ? ORDER BY 2 LIMIT ?"
            ),
            (last, limit),
        )
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]

    @abc.abstractmethod
    def reopener(self) -> Callable[[], SqlStore] | None:
        """A picklable callable that opens the same database again without changing it
        (for a worker process), or None when other processes cannot reach it (in memory)."""

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str) -> SqlStore:
    """A store from a URL: ``postgresql://…`` / ``postgres://…``, ``sqlite:///path`` or a path."""
    if not isinstance(url, str) or not url:
        raise StoreError("ledger database URL is empty")
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.ledger.pg_store import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///") or ":memory:"  # sqlite:////abs/path → /abs/path
    elif "://" in url:
        raise StoreError(
            f"unsupported ledger URL {url!r}: use a file path, sqlite:///… or postgresql://…"
        )
    from gateway.ledger.sqlite_store import SqliteStore

    return SqliteStore(url)
