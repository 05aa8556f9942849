"""SQLite backend (WAL, synchronous=FULL): the embedded default, one file per site."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from gateway.ledger.store import CommitWork, NewEventRow, SqlStore, StoreError

#: Rows per multi-row INSERT (6 parameters each: well under SQLite's 32,766 variables).
_ROWS_PER_INSERT = 500


class SqliteStore(SqlStore):
    """A ledger in one SQLite file; several processes may append (BEGIN IMMEDIATE serialises)."""

    clustered = " WITHOUT ROWID"

    def __init__(self, path: str, busy_timeout_s: float = 30.0, *, create: bool = True) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        try:
            self._conn = sqlite3.connect(
                path, isolation_level=None, timeout=busy_timeout_s, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before it returns (NORMAL may lose the last commits
            # on power loss in WAL mode), which is what "durable before acknowledged" needs.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=OFF")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger database {path!r}: {exc}") from exc
        self._in_tx = False
        if create:
            try:
                self.initialize()
            except BaseException:
                self._conn.close()
                raise

    def reopener(self) -> Callable[[], SqliteStore] | None:
        if self.path in ("", ":memory:") or self.path.startswith("file::memory:"):
            return None
        return partial(SqliteStore, self.path, self._busy_timeout_s, create=False)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection (tests and benchmarks use it to tamper and to bulk-load)."""
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _insert_rows(self, head: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
        """``head VALUES (…), (…), …`` in chunks of _ROWS_PER_INSERT rows: about a quarter
        cheaper than executemany, which binds and steps one statement per row."""
        one = "(" + ", ".join("?" * width) + ")"
        try:
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start : start + _ROWS_PER_INSERT]
                params = [value for row in chunk for value in row]
                self._conn.execute(f"{head} VALUES {', '.join([one] * len(chunk))}", params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def insert_events(self, rows: Iterable[NewEventRow]) -> None:
        self._insert_rows(
            "INSERT INTO events (seq, event_id, event_json, signer, chain, item_key)", 6, list(rows)
        )

    def insert_item_events(self, rows: Sequence[tuple[str, int]]) -> None:
        self._insert_rows("INSERT INTO item_events (item_key, seq)", 2, rows)

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        try:
            cur = self._conn.execute(sql, params)
            while batch := cur.fetchmany(5000):
                yield from batch
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def raw_events_between(self, first: int, last: int) -> Iterator[tuple[Any, ...]]:
        """:meth:`SqlStore.raw_events_between` read row by row from the cursor instead of
        in lists of 5,000 fetched rows: 1.9 against 2.5 µs of CPU a row when measured."""
        try:
            yield from self._conn.execute(
                "SELECT seq, event_id, event_json, signer, chain, item_key FROM events "
                "WHERE seq >= ? AND seq <= ? ORDER BY seq",
                (first, last),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @contextmanager
    def _locked_transaction(self, while_committing: CommitWork | None = None) -> Iterator[None]:
        # An SQLite commit is a call in this process: nothing to overlap it with.
        if self._in_tx:
            yield
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot start a write transaction: {exc}") from exc
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: commit failed: {exc}") from exc
        finally:
            self._in_tx = False

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        self._conn.execute("BEGIN")
        self._in_tx = True
        try:
            yield
        finally:
            self._in_tx = False
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()
