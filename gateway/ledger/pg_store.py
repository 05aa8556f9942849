"""PostgreSQL backend: for sites that outgrow one file and for several gateway workers.

Appenders are serialised by a transaction-scoped advisory lock (``pg_advisory_xact_lock``),
taken before the head of the chain is read, so concurrent workers keep the chain linear.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import count
from typing import Any

import psycopg

from gateway.ledger.store import EventRow, SqlStore, StoreError

#: Advisory lock key of the ledger's append lock ("provgate" in ASCII, as a bigint).
APPEND_LOCK_KEY = 0x70726F7667617465
_cursor_names = count()


def _redact(url: str) -> str:
    """The URL or conninfo without its password (``user:pw@``, ``password=``)."""
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)('[^']*'|[^&\s]*)", r"\1***", url, flags=re.IGNORECASE)


class PostgresStore(SqlStore):
    """A ledger in a PostgreSQL database (``postgresql://user@host:port/db``)."""

    placeholder = "%s"
    blob_type = "BYTEA"
    int_type = "BIGINT"

    def __init__(self, url: str, connect_timeout_s: int = 10, *, create: bool = True) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        try:
            self._conn = psycopg.connect(url, connect_timeout=connect_timeout_s, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {_redact(url)}: {exc}") from exc
        self._in_tx = False
        if create:
            self.initialize()

    def reopener(self) -> Callable[[], PostgresStore]:
        return partial(PostgresStore, self._url, self._connect_timeout_s, create=False)

    @property
    def url(self) -> str:
        return _redact(self._url)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The raw connection (tests and benchmarks use it to tamper and to bulk-load)."""
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._conn.execute(sql, params)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
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
        try:
            with self._conn.cursor(name=f"provgate_stream_{next(_cursor_names)}") as cur:
                cur.itersize = 10000
                cur.execute(sql, params)
                yield from cur
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def _copy(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
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

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        self._copy("events", "seq, event_id, event_json, signer, chain", rows)

    def insert_item_events(self, rows: Sequence[tuple[str, int]]) -> None:
        self._copy("item_events", "item_key, seq", rows)

    @contextmanager
    def _locked_transaction(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        self._in_tx = True
        try:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
                yield
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: write failed: {exc}") from exc
        finally:
            self._in_tx = False

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
