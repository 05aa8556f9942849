"""PostgreSQL backend: for sites that outgrow one file and for several gateway workers.

Appenders are serialised by a transaction-scoped advisory lock (``pg_advisory_xact_lock``),
taken before the head of the chain is read, so concurrent workers keep the chain linear.

Round trips dominate small writes, so a write transaction sends its ``BEGIN`` and lock with
its first statement, writes nobody reads the result of (``_write``) with the next statement
or the ``COMMIT``, and several reads in one pipeline (``_execute_all``): an append is
three round trips (lock and reads, the events' COPY, writes and commit) whatever the batch
size, four when some of its events name several items (their item_events COPY). A write
given work to do while it commits (``write(while_committing=…)``, the ledger's stream of
batches) sends its writes, then its ``COMMIT`` on the libpq connection, and does the work
before it waits for the result.
"""

from __future__ import annotations

import re
import select
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from itertools import count
from typing import Any

import psycopg

from gateway.ledger.store import (
    BlockRow,
    CommitWork,
    NewEventRow,
    SqlStore,
    Statement,
    StoreError,
    _block,
)

#: Advisory lock key of the ledger's append lock ("provgate" in ASCII, as a bigint).
APPEND_LOCK_KEY = 0x70726F7667617465
_cursor_names = count()
#: Rows a chunk of a streamed query (raw_events_between).
_STREAM_CHUNK = 1000
#: What a write transaction starts with: BEGIN and the append lock.
_OPENING = (
    ("BEGIN", (), False),
    ("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,), False),
)


def _rolled_back(url: str) -> StoreError:
    """The error of a COMMIT that rolled back (the transaction had failed)."""
    return StoreError(f"{url}: the transaction was rolled back, not committed")


def _redact(url: str) -> str:
    """The URL or conninfo without its password (``user:pw@``, ``password=``)."""
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)('[^']*'|[^&\s]*)", r"\1***", url, flags=re.IGNORECASE)


class PostgresStore(SqlStore):
    """A ledger in a PostgreSQL database (``postgresql://user@host:port/db``)."""

    placeholder = "%s"
    blob_type = "BYTEA"
    int_type = "BIGINT"
    streams_inserts = True  # COPY sends rows in 32 KB parts as they are written

    def __init__(self, url: str, connect_timeout_s: int = 10, *, create: bool = True) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        try:
            self._conn = psycopg.connect(url, connect_timeout=connect_timeout_s, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {_redact(url)}: {exc}") from exc
        self._in_tx = False
        #: Statements of the write transaction not sent yet: (sql, params or rows, many).
        self._pending: list[tuple[str, Sequence[Any], bool]] = []
        #: Whether the write transaction's BEGIN has reached the server.
        self._begun = False
        if create:
            try:
                self.initialize()
            except BaseException:
                self._conn.close()
                raise

    def reopener(self) -> Callable[[], PostgresStore]:
        return partial(PostgresStore, self._url, self._connect_timeout_s, create=False)

    @property
    def url(self) -> str:
        return _redact(self._url)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The raw connection (tests and benchmarks use it to tamper and to bulk-load);
        inside :meth:`write` the transaction has begun and holds the lock."""
        if self._pending:
            self._send([])
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._execute_all([(sql, params)])[0]

    def _execute_all(self, statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
        if not self._pending and len(statements) == 1:
            try:
                cur = self._conn.execute(statements[0][0], statements[0][1])
                return [cur.fetchall() if cur.description else []]
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: {exc}") from exc
        return self._send(statements)

    def _send(self, statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
        """The pending statements, then ``statements``, in one pipeline (one round trip)."""
        return [c.fetchall() if c.description else [] for c in self._pipeline(statements)]

    def _pipeline(self, statements: Sequence[Statement]) -> list[psycopg.Cursor[Any]]:
        """:meth:`_send`, giving the cursors of ``statements`` (their status messages)."""
        conn = self._conn
        pending, self._pending = self._pending, []
        if self._in_tx:
            self._begun = True  # from now on the server may hold a transaction to end
        try:
            with conn.pipeline():
                for sql, params, many in pending:
                    if many:
                        conn.cursor().executemany(sql, params)
                    else:
                        conn.execute(sql, params)
                cursors = [conn.execute(sql, params) for sql, params in statements]
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc
        return cursors  # the pipeline has synced: their results and statuses are in

    def _write(self, sql: str, params: Sequence[Any] = ()) -> None:
        if not self._in_tx:
            self._execute(sql, params)
            return
        self._pending.append((sql, params, False))

    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not self._in_tx:
            self._executemany(sql, rows)
            return
        self._pending.append((sql, rows, True))

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._pending:
            self._send([])
        try:
            with self._conn.cursor() as cur:
                cur.executemany(sql, rows)
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        if not self._in_tx:
            with self.snapshot():
                yield from self._stream(sql, params)
            return
        if self._pending:
            self._send([])
        try:
            with self._conn.cursor(name=f"provgate_stream_{next(_cursor_names)}") as cur:
                cur.itersize = 10000
                cur.execute(sql, params)
                yield from cur
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def raw_events_between(self, first: int, last: int) -> Iterator[tuple[Any, ...]]:
        """:meth:`SqlStore.raw_events_between` as one query whose rows arrive in chunks
        (libpq ≥ 17), in binary: about half the server's CPU of a named cursor's FETCHes and
        less of the client's. The connection serves nothing else until the rows are all
        read or the iterator is closed; closing it early cancels the query, which may abort
        the transaction it runs in."""
        if psycopg.pq.version() < 170000:  # no chunked rows: the named cursor
            yield from super().raw_events_between(first, last)
            return
        if not self._in_tx:
            with self.snapshot():
                yield from self.raw_events_between(first, last)
            return
        if self._pending:
            self._send([])
        try:
            with self._conn.cursor(binary=True) as cur:
                yield from cur.stream(
                    "SELECT seq, event_id, event_json, signer, chain, item_key FROM events "
                    "WHERE seq >= %s AND seq <= %s ORDER BY seq",
                    (first, last),
                    size=_STREAM_CHUNK,
                )
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def blocks_with_tree_digests(self) -> list[tuple[BlockRow, bytes]]:
        """Every sealed block by number, each without its tree (``b""``) but with the
        SHA-256 of the stored tree beside it, computed by the server: 32 bytes a block
        cross instead of the tree (16 KB a block of 256 events; at 1,000,000 events the
        trees took the audit about a second to read before its workers could start).
        ``pg_catalog.sha256`` by its full name: a function of that name in another schema
        (a search_path set to find it first) is never called."""
        if self._conn.info.server_version < 110000:  # no sha256() in SQL before 11
            return super().blocks_with_tree_digests()
        rows = self._execute(
            "SELECT block_no, signer, key_id, first_seq, last_seq, leaf_count, root, head_chain, "
            "signature, sealed_at, ''::bytea, pg_catalog.sha256(tree) FROM blocks "
            "ORDER BY block_no"
        )
        return [(_block(r), bytes(r[11])) for r in rows]

    def _copy(self, table: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._pending:  # COPY cannot run in a pipeline
            self._send([])
        try:
            with (
                self._conn.cursor() as cur,
                cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    # COPY instead of a statement per row: several times faster for batches (a plain
    # INSERT per row costs a round trip's worth of work each).

    def insert_events(self, rows: Iterable[NewEventRow]) -> None:
        self._copy("events", "seq, event_id, event_json, signer, chain, item_key", rows)

    def insert_item_events(self, rows: Sequence[tuple[str, int]]) -> None:
        self._copy("item_events", "item_key, seq", rows)

    @contextmanager
    def _locked_transaction(self, while_committing: CommitWork | None = None) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        self._in_tx = True
        self._begun = False
        # Sent with the first statement (or not at all if there is none).
        self._pending = list(_OPENING)
        try:
            yield
            if not self._begun and len(self._pending) == len(_OPENING):
                pass  # nothing was written: nothing to commit
            elif while_committing is None:
                (commit,) = self._pipeline([("COMMIT", ())])  # returns once committed
                if commit.statusmessage != "COMMIT":  # an aborted transaction rolls back
                    raise _rolled_back(self.url)
            else:
                if self._pending:
                    self._send([])
                self._commit_while(while_committing)
        except BaseException:
            self._pending = []
            if self._begun:
                self._rollback()
            raise
        finally:
            self._in_tx = False
            self._begun = False
            self._pending = []

    def _commit_while(self, work: CommitWork) -> None:
        """Send COMMIT, run ``work`` while the server commits, then wait for the commit.

        Below psycopg, on its libpq connection (``psycopg.pq``): psycopg's own calls wait
        for the result. The transaction is over (committed, or the error raised) before
        this returns or raises, whatever ``work`` does.
        """
        pgconn = self._conn.pgconn
        poller = select.poll()
        try:
            pgconn.send_query(b"COMMIT")
            poller.register(pgconn.socket, select.POLLOUT)
            while pgconn.flush():  # a non-blocking connection may not send it at once
                poller.poll()
            poller.modify(pgconn.socket, select.POLLIN)
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: commit failed: {exc}") from exc

        def committed() -> bool:
            if not poller.poll(0):
                return False
            try:
                pgconn.consume_input()
            except psycopg.Error:
                return True  # the wait below reports it
            return not pgconn.is_busy()

        try:
            work(committed)
        finally:
            self._await_commit(poller)

    def _await_commit(self, poller: select.poll) -> None:
        """Wait for the COMMIT sent by :meth:`_commit_while`; StoreError unless committed."""
        pgconn = self._conn.pgconn
        results = []
        try:
            while True:
                pgconn.consume_input()
                if not pgconn.is_busy():
                    break
                poller.poll()
            while (result := pgconn.get_result()) is not None:
                results.append(result)
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: commit failed: {exc}") from exc
        self._begun = False  # the server's transaction is over, one way or the other
        for result in results:
            if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
                field = result.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY)
                message = (field or result.error_message).decode(errors="replace").strip()
                raise StoreError(f"{self.url}: commit failed: {message}")
        if not results or results[-1].command_status != b"COMMIT":
            raise _rolled_back(self.url)

    def _rollback(self) -> None:
        """Roll back; if that fails or leaves the connection mid-protocol (an interrupt in
        the middle of a COPY), close the connection: the server then aborts the transaction
        and releases the append lock, which it would otherwise hold for every other writer.
        The store answers StoreError from then on."""
        status = psycopg.pq.TransactionStatus
        if self._conn.pgconn.transaction_status != status.ACTIVE:  # not mid-command
            with suppress(psycopg.Error):
                self._conn.execute("ROLLBACK")
        if self._conn.pgconn.transaction_status != status.IDLE:
            self._conn.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        self._in_tx = True
        try:
            with self._conn.transaction(force_rollback=True):
                self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: read failed: {exc}") from exc
        finally:
            self._in_tx = False

    def close(self) -> None:
        self._conn.close()
