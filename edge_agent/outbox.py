"""Gate events to the gateway through an outbox in the journal's SQLite file.

The journal enqueues each sealed ``gate_event`` (:func:`enqueue`) in the same transaction as
the decision that causes it, so an event exists exactly when its decision does. The payload
is sealed once, at enqueue time: every resend carries the same bytes, hence the same
``event_id``, message id and MAC, and the gateway records the event once.

:class:`Outbox` publishes the entries in ``seq`` order at QoS 1 on a connection of its own
(a backlog replay never delays verification requests), at most ``window`` unacknowledged at
a time, and deletes an entry only when the broker acknowledges it (``on_publish`` with its
mid; deletions are grouped, at most ``window`` entries or ``poll_s`` late, so the
publisher commits rarely and the agent's connection keeps its page cache). When the
connection drops, every unacknowledged entry is published again, oldest
first, on the next connection (with exponential backoff between attempts), and after a
restart everything left in the table is. Nothing is ever dropped: a broker that refuses an
entry (MQTT 5 failure reason code) keeps it first in line, retried after a backoff.

A broker acknowledgement means the broker has the event, not that the gateway recorded it:
the protocol has no event acknowledgement. A gate therefore runs its outbox paused until the
gateway's retained availability says online, and pauses it when that says offline (last will
or clean stop): :func:`edge_agent.runner.build_gate` wires this. The gateway takes events on
a persistent session and acknowledges each to the broker only once it is recorded (or
refused), so an event the broker has survives a gateway crash, even one before its last
will: the broker sends it again to the restarted worker (docs/gateway.md). What remains is
the broker's side: a broker restart keeps the events waiting only with persistence on, and
mosquitto drops events beyond ``max_queued_messages`` for a worker that is down or behind.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gatewire.mqtt import BrokerAddress, make_client, set_nodelay

__all__ = [
    "Outbox",
    "OutboxCounters",
    "OutboxEntry",
    "backlog",
    "create_schema",
    "delete",
    "enqueue",
    "pending",
]

log = logging.getLogger(__name__)

SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " event_id TEXT NOT NULL UNIQUE,"
    " topic TEXT NOT NULL,"
    " payload BLOB NOT NULL,"
    " created_at REAL NOT NULL)"
)


# --- storage (runs on the caller's connection and transaction) ---------------------------


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One sealed event waiting for the broker's acknowledgement."""

    seq: int
    event_id: str
    topic: str
    payload: bytes


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the ``outbox`` table if it is missing (inside the caller's transaction)."""
    conn.execute(SCHEMA)


def enqueue(
    conn: sqlite3.Connection, event_id: str, topic: str, payload: bytes, created_at: float
) -> int:
    """Append one sealed event; returns its ``seq`` (publication order). Run it inside the
    transaction that records the decision, so both commit or neither does."""
    cur = conn.execute(
        "INSERT INTO outbox (event_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
        (event_id, topic, payload, created_at),
    )
    seq = cur.lastrowid
    assert seq is not None
    return seq


def backlog(conn: sqlite3.Connection) -> int:
    """Entries not yet acknowledged by the broker."""
    row = conn.execute("SELECT count(*) FROM outbox").fetchone()
    return int(row[0])


def pending(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[OutboxEntry]:
    """Up to ``limit`` entries with ``seq > after_seq``, oldest first."""
    rows = conn.execute(
        "SELECT seq, event_id, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    return [OutboxEntry(int(s), str(e), str(t), bytes(p)) for s, e, t, p in rows]


def delete(conn: sqlite3.Connection, seqs: Iterable[int]) -> None:
    """Remove acknowledged entries."""
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])


# --- the publisher --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxCounters:
    """A snapshot of the publisher's counters (since :meth:`Outbox.start`)."""

    queued: int
    """Entries in the table, not yet acknowledged (as of the last look at the table)."""
    sent: int
    """Entries the broker acknowledged (deleted from the table soon after)."""
    resent: int
    """Publications of an entry already published before by this process."""
    failed: int
    """Failed connection attempts, lost connections and entries the broker refused."""


class Outbox:
    """Publishes the outbox of the journal at ``path`` to the broker at ``broker_url``.

    Runs one thread that owns its own MQTT connection (paho, driven with ``loop()``, so
    callbacks run on that thread) and its own SQLite connection. Errors never escape the
    thread: they are logged, counted as ``failed`` and retried after a backoff.
    """

    def __init__(
        self,
        path: str | Path,
        broker_url: str,
        client_id: str,
        *,
        window: int = 32,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 10.0,
        poll_s: float = 0.1,
        connect_timeout_s: float = 5.0,
        keepalive_s: int = 30,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_min_s <= backoff_max_s")
        self.path = str(path)
        self.address = BrokerAddress.from_url(broker_url)
        self.client_id = client_id
        self.window = window
        self._backoff = (backoff_min_s, backoff_max_s)
        self._poll_s, self._connect_timeout_s = poll_s, connect_timeout_s
        self._keepalive_s, self._busy_timeout_s = keepalive_s, busy_timeout_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the counters and _connected
        self._queued = self._sent = self._resent = self._failed = 0
        self._connected = False
        self._looks = 0  # how many times the pump has counted the table
        # Pump-thread state:
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, int] = {}  # mid -> seq, this connection only
        self._acked: list[int] = []  # mids acknowledged, not yet settled
        self._to_delete: list[int] = []  # seqs acknowledged, not yet deleted
        self._to_delete_since = 0.0
        self._refused: list[int] = []  # mids the broker refused
        self._last_seq = 0  # highest seq published on this connection
        self._published: set[int] = set()  # seqs published at least once by this process
        self._failures = 0
        self._next_attempt = 0.0

    # --- control (any thread) ----------------------------------------------------------

    def start(self) -> Self:
        """Start the publishing thread."""
        if self._thread is not None:
            raise RuntimeError("outbox already started")
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and disconnect; unacknowledged entries stay for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """Tell the publisher that entries were enqueued (it also looks every ``poll_s``)."""
        self._wake.set()

    def pause(self) -> None:
        """Publish nothing new and do not (re)connect, e.g. while the gateway is offline;
        entries already in flight may still be acknowledged."""
        self._paused.set()

    def resume(self) -> None:
        """Undo :meth:`pause`; the backlog is then published in order."""
        self._paused.clear()
        self._next_attempt = 0.0
        self._wake.set()

    @property
    def connected(self) -> bool:
        """True while the publisher has a connection to the broker."""
        with self._lock:
            return self._connected

    @property
    def counters(self) -> OutboxCounters:
        """Current counters."""
        with self._lock:
            return OutboxCounters(self._queued, self._sent, self._resent, self._failed)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the table is empty (all acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            looked = self._looks
        while time.monotonic() < deadline:
            with self._lock:
                if self._queued == 0 and self._looks > looked + 1:
                    return True
            self._wake.set()
            time.sleep(0.02)
        return False

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the pump thread -----------------------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.is_set():
                try:
                    if conn is None:
                        conn = self._open_db()
                    self._step(conn)
                except _RetryError:
                    continue  # already logged, counted and scheduled
                except (sqlite3.Error, OSError, ValueError, RuntimeError) as exc:
                    log.warning("outbox: %s: %s; retrying", type(exc).__name__, exc)
                    self._count_failure()
                    self._drop_connection()
                    if conn is not None and isinstance(exc, sqlite3.DatabaseError):
                        conn.close()
                        conn = None
                    self._stopping.wait(self._schedule_retry())
        finally:
            self._drop_connection(clean=True)
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._delete_acked(conn)
                conn.close()

    def _open_db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        # Deleting an acknowledged entry need not reach the disk before the next one: a
        # delete lost to a power cut means one harmless resend (the gateway dedupes).
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _step(self, conn: sqlite3.Connection) -> None:
        client = self._client
        if client is None:
            if self._paused.is_set() or time.monotonic() < self._next_attempt:
                self._refresh_queued(conn)
                self._wake.wait(self._poll_s)
                self._wake.clear()
                return
            self._delete_acked(conn)  # the new connection replays what is left
            client = self._connect()
        rc = client.loop(timeout=self._poll_s)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not client.is_connected():
            self._lost(f"connection lost ({mqtt.error_string(rc)})")
            return
        self._settle(conn)
        if not self._paused.is_set():
            self._fill(conn, client)
        self._wake.clear()

    def _connect(self) -> mqtt.Client:
        client = make_client(self.client_id)
        client.on_publish = self._on_publish
        client.connect_timeout = self._connect_timeout_s
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        self._client = client
        try:
            client.connect(self.address.host, self.address.port, keepalive=self._keepalive_s)
            set_nodelay(client)
            deadline = time.monotonic() + self._connect_timeout_s
            while not client.is_connected():
                rc = client.loop(timeout=0.05)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                    raise ConnectionError(f"no CONNACK ({mqtt.error_string(rc)})")
        except OSError as exc:
            self._drop_connection()
            self._count_failure()
            delay = self._schedule_retry()
            level = logging.WARNING if self._failures <= 2 else logging.DEBUG  # once per outage
            log.log(
                level, "outbox: cannot reach %s: %s; next try in %.1f s", self._where, exc, delay
            )
            raise _RetryError from exc
        self._failures = 0
        self._inflight.clear()
        self._acked.clear()
        self._refused.clear()
        self._last_seq = 0  # replay everything unacknowledged, oldest first
        with self._lock:
            self._connected = True
        log.info("outbox: connected to %s", self._where)
        return client

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason_code.is_failure:
            self._refused.append(mid)
        else:
            self._acked.append(mid)

    def _settle(self, conn: sqlite3.Connection) -> None:
        """Delete acknowledged entries; a refusal drops the connection to replay in order."""
        if self._acked:
            if not self._to_delete:
                self._to_delete_since = time.monotonic()
            acked = [self._inflight.pop(m) for m in self._acked if m in self._inflight]
            self._acked.clear()
            self._to_delete += acked
            with self._lock:
                self._sent += len(acked)
        if len(self._to_delete) >= self.window or (
            self._to_delete and time.monotonic() - self._to_delete_since >= self._poll_s
        ):
            self._delete_acked(conn)
        if self._refused:
            refused = [self._inflight.get(mid) for mid in self._refused]
            self._refused.clear()
            self._lost(f"broker refused entries {refused}")
        self._refresh_queued(conn)

    def _delete_acked(self, conn: sqlite3.Connection) -> None:
        """Delete the entries the broker acknowledged (one transaction)."""
        seqs = self._to_delete
        if not seqs:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            delete(conn, seqs)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._to_delete = []
        self._published.difference_update(seqs)

    def _fill(self, conn: sqlite3.Connection, client: mqtt.Client) -> None:
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        for entry in pending(conn, self._last_seq, room):
            info = client.publish(entry.topic, entry.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(f"publish failed ({mqtt.error_string(info.rc)})")
                return
            self._inflight[info.mid] = entry.seq
            self._last_seq = entry.seq
            if entry.seq in self._published:
                with self._lock:
                    self._resent += 1
            self._published.add(entry.seq)

    def _refresh_queued(self, conn: sqlite3.Connection) -> None:
        queued = backlog(conn) - len(self._to_delete)
        with self._lock:
            self._queued = queued
            self._looks += 1

    def _lost(self, why: str) -> None:
        unacked = len(self._inflight)
        self._drop_connection()
        self._count_failure()
        delay = self._schedule_retry()
        log.warning("outbox: %s, %d unacknowledged; reconnecting in %.1f s", why, unacked, delay)

    def _drop_connection(self, *, clean: bool = False) -> None:
        client, self._client = self._client, None
        self._inflight.clear()
        with self._lock:
            self._connected = False
        if client is not None:
            client.on_publish = None
            if client.is_connected():
                with contextlib.suppress(OSError, ValueError):
                    client.disconnect()
                    if clean:
                        client.loop(timeout=0.1)  # let the DISCONNECT go out
            # paho closes its sockets when the client is collected (Client.__del__)

    def _count_failure(self) -> None:
        with self._lock:
            self._failed += 1

    def _schedule_retry(self) -> float:
        low, high = self._backoff
        delay = min(high, low * 2.0 ** min(self._failures, 30))
        delay *= random.uniform(0.5, 1.0)
        self._failures += 1
        self._next_attempt = time.monotonic() + delay
        return delay

    @property
    def _where(self) -> str:
        return f"mqtt://{self.address.host}:{self.address.port}"


class _RetryError(OSError):
    """Connecting failed; already logged, counted and scheduled."""
