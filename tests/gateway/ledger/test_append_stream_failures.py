"""``Ledger.append_batches`` and PostgreSQL's commit beside work
(``PostgresStore._commit_while``): the connection after it, interrupts, a server that goes
away mid-commit, a stream closed early, batches the caller changes."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from select import poll as _real_poll
from typing import Any, cast

import psycopg
import pytest

from gateway.ledger.ledger import Appended, Ledger
from gateway.ledger.signing import Keystore, OrgKey
from gateway.ledger.store import StoreError, open_store
from tests.gateway.ledger.ledger_support import BRAND, epc, event, fake_event_hash
from tests.support.postgres import PostgresServer


def _advisory_locks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    assert row is not None
    return int(row[0])


def _no_advisory_lock_within(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _advisory_locks(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _advisory_locks(url) == 0


def _drain(stream: Iterator[list[Appended]], into: list[list[Appended]]) -> None:
    """Consume ``stream``, keeping what it yields in ``into`` (kept when it raises)."""
    for appended in stream:
        into.append(appended)


def _on_commit(conn: psycopg.Connection[Any], body: str) -> None:
    """Run ``body`` (plpgsql) at COMMIT for each event whose JSON mentions 'slow'."""
    conn.execute(
        "CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.event_json LIKE '%slow%' THEN {body} END IF; RETURN NULL; END $$"
    )
    conn.execute(
        "CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON events DEFERRABLE INITIALLY "
        "DEFERRED FOR EACH ROW EXECUTE FUNCTION at_commit()"
    )


@pytest.fixture
def pg_ledger(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[Ledger, str]]:
    url = postgres.new_url()
    key = Keystore(tmp_path / "keys").generate(BRAND)
    with Ledger.open(url, [key], event_hash=fake_event_hash, block_size=4) as ledger:
        yield ledger, url


def _raw(ledger: Ledger) -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] = ledger.store.connection  # type: ignore[attr-defined]
    return conn


def test_psycopg_is_in_step_after_a_stream_and_gets_the_commits_notices(
    pg_ledger: tuple[Ledger, str],
) -> None:
    ledger, _ = pg_ledger
    conn = _raw(ledger)
    _on_commit(conn, "RAISE NOTICE 'committing %', NEW.seq;")
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    slow = event(0) | {"pg:note": "slow"}
    batches = [[slow, event(1)], [event(i) for i in range(2, 40)], [event(40)]]
    assert [len(a) for a in ledger.append_batches(batches, BRAND)] == [2, 38, 1]
    assert notices == ["committing 1"]  # read below psycopg, still handed to its handlers
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
    with conn.pipeline():
        conn.execute("SELECT 1")
    with conn.transaction():
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (41,)
    ledger.seal()
    assert ledger.audit(strict=True).ok


def test_a_stream_closed_after_its_first_batch_leaves_no_lock_and_the_rest_unappended(
    pg_ledger: tuple[Ledger, str], postgres: PostgresServer
) -> None:
    ledger, url = pg_ledger
    taken: list[int] = []

    def batches() -> Iterator[list[dict[str, Any]]]:
        for n in range(0, 30, 10):
            taken.append(n)
            yield [event(i) for i in range(n, n + 10)]

    stream = cast(Generator[list[Appended], None, None], ledger.append_batches(batches(), BRAND))
    for appended in stream:
        assert len(appended) == 10
        break
    stream.close()
    assert taken == [0, 10]  # the second batch was taken (and prepared), not appended
    assert _advisory_locks(postgres.url) == 0
    with open_store(url) as other:
        assert other.event_count() == 10
    assert ledger.append_batch([event(99)], BRAND)[0].seq == 11
    ledger.seal()
    assert ledger.audit(strict=True).ok


class _InterruptedPoll:
    """select.poll() whose blocking poll (no timeout) raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self._poll = _real_poll()

    def register(self, *args: Any) -> None:
        self._poll.register(*args)

    def modify(self, *args: Any) -> None:
        self._poll.modify(*args)

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        if timeout is None:
            raise KeyboardInterrupt
        return self._poll.poll(timeout)


def test_an_interrupt_while_waiting_for_the_commit_releases_the_lock(
    pg_ledger: tuple[Ledger, str],
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ledger, url = pg_ledger
    _on_commit(_raw(ledger), "PERFORM pg_sleep(0.5);")  # the commit outlasts the work
    slow = event(0) | {"pg:note": "slow"}
    monkeypatch.setattr(select, "poll", _InterruptedPoll)  # as pg_store calls it
    yielded: list[list[Appended]] = []
    with pytest.raises(KeyboardInterrupt):
        _drain(ledger.append_batches([[slow], [event(1)]], BRAND), yielded)
    monkeypatch.undo()
    assert yielded == []  # outcome unknown to the caller: not yielded, interrupt raised
    assert _no_advisory_lock_within(postgres.url, 10)
    key = Keystore(tmp_path / "other").generate("brand-other")
    with Ledger.open(url, [key], event_hash=fake_event_hash, block_size=4) as other:
        other.append_batch([event(2)], "brand-other")  # would wait forever on a held lock
        stored = other.store.event_count()
    assert stored in (1, 2)  # the slow batch committed or not, the chain goes on either way
    with pytest.raises(StoreError):
        ledger.append(event(3), BRAND)  # the interrupted store is closed


def test_a_server_gone_mid_commit_reports_the_batch_failed_and_stores_nothing_of_it(
    postgres: PostgresServer, keys: dict[str, OrgKey]
) -> None:
    url = postgres.new_url()
    with Ledger.open(url, keys.values(), event_hash=fake_event_hash, block_size=4) as ledger:
        conn = _raw(ledger)
        _on_commit(conn, "PERFORM pg_sleep(5);")
        pid = conn.info.backend_pid
        slow = event(4) | {"pg:note": "slow"}
        batches = [[event(i) for i in range(4)], [slow], [event(5)]]
        yielded: list[list[Appended]] = []

        def kill() -> None:
            with psycopg.connect(postgres.url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        stream = ledger.append_batches(batches, BRAND)
        yielded.append(next(stream))
        timer = threading.Timer(0.5, kill)
        timer.start()
        try:
            with pytest.raises(StoreError, match="commit failed"):
                yielded.append(next(stream))
        finally:
            timer.join()
        assert [len(a) for a in yielded] == [4]
    assert _no_advisory_lock_within(postgres.url, 10)
    with Ledger.open(url, keys.values(), event_hash=fake_event_hash, block_size=4) as again:
        assert again.store.event_count() == 4
        again.append_batch([event(4), event(5)], BRAND)
        again.seal()
        assert again.audit(strict=True).ok


def test_a_batch_list_reused_by_its_producer_is_appended_as_handed_over(
    open_ledger: Callable[[], Ledger],
) -> None:
    """A producer that refills one list (``yield buf; buf.clear()``) works with append_batch
    in a loop; append_batches takes the next batch before appending the current one, so the
    first batch is lost and the others are shifted (docstring: do not change a batch once
    handed over; the stream could snapshot it with list(events) instead)."""
    ledger = open_ledger()

    def batches() -> Iterator[list[dict[str, Any]]]:
        buf: list[dict[str, Any]] = []
        for i in range(9):
            buf.append(event(i))
            if len(buf) == 3:
                yield buf
                buf.clear()

    for _ in ledger.append_batches(batches(), BRAND):
        pass
    stored = [e.event["epcList"][0] for i in range(9) for e in ledger.history(epc(i))]
    assert stored == [epc(i) for i in range(9)]


def _self_signed(directory: Path, owner: dict[str, Any]) -> tuple[Path, Path]:
    """A server certificate and key for localhost, owned by the server's user."""
    import datetime as dt
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    for path in (cert_path, key_path):
        path.chmod(0o600)
        if owner:
            os.chown(path, owner["user"], owner["group"])
    return cert_path, key_path


def test_a_stream_over_ssl_commits_every_batch(keys: dict[str, OrgKey]) -> None:
    """With TLS, the socket's readiness and libpq's buffered input differ; the commit beside
    the work must still be seen and awaited (nonblocking libpq connection, as psycopg's)."""
    with PostgresServer() as server:
        data = Path(str(server._dir)) / "data"
        cert, key = _self_signed(data, server._user)
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute(f"ALTER SYSTEM SET ssl_cert_file = '{cert}'")
            admin.execute(f"ALTER SYSTEM SET ssl_key_file = '{key}'")
            admin.execute("ALTER SYSTEM SET ssl = on")
            admin.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        url = server.url + "?sslmode=require"
        batches = [[event(i) for i in range(n, n + 50)] for n in range(0, 500, 50)]
        with Ledger.open(url, keys.values(), event_hash=fake_event_hash, block_size=4) as ledger:
            conn = _raw(ledger)
            assert conn.pgconn.ssl_in_use
            assert conn.pgconn.nonblocking
            assert [len(a) for a in ledger.append_batches(batches, BRAND)] == [50] * 10
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            ledger.seal()
            assert ledger.audit(strict=True).ok
        with open_store(url) as reader:
            assert reader.event_count() == 500


def test_a_producer_failing_on_the_next_batch_does_not_cost_the_current_one(
    open_ledger: Callable[[], Ledger],
) -> None:
    """append_batches asks for batch N+1 before it appends batch N; when the producer raises
    then (a malformed line of an import, a dropped source), batch N, complete and valid, is
    neither appended nor reported: the caller is told 'the batches before it stay committed'
    (ledger.py append_batches: ``following = next(pending, None)``)."""
    ledger = open_ledger()

    def batches() -> Iterator[list[dict[str, Any]]]:
        yield [event(i) for i in range(5)]
        raise ValueError("line 6 of the import is not JSON")

    yielded: list[list[Appended]] = []
    with pytest.raises(ValueError, match="line 6"):
        _drain(ledger.append_batches(batches(), BRAND), yielded)
    assert ledger.store.event_count() == 5
    assert [len(a) for a in yielded] == [5]


class _InterruptingPgconn:
    """The connection's libpq object, with KeyboardInterrupt before or after sending COMMIT."""

    def __init__(self, pgconn: Any, when: str) -> None:
        self._pgconn = pgconn
        self._when = when

    def send_query(self, command: bytes) -> None:
        if self._when == "after":
            self._pgconn.send_query(command)
        raise KeyboardInterrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pgconn, name)


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_interrupt_around_sending_the_commit_releases_the_lock(
    pg_ledger: tuple[Ledger, str], postgres: PostgresServer, when: str
) -> None:
    ledger, url = pg_ledger
    conn = _raw(ledger)
    real = conn.pgconn
    conn.pgconn = _InterruptingPgconn(real, when)  # type: ignore[assignment]
    yielded: list[list[Appended]] = []
    try:
        with pytest.raises(KeyboardInterrupt):
            _drain(ledger.append_batches([[event(0)], [event(1)]], BRAND), yielded)
    finally:
        conn.pgconn = real
    assert yielded == []
    assert _no_advisory_lock_within(postgres.url, 10)
    with open_store(url) as reader:
        # after: queued on the non-blocking connection, maybe never flushed; either way
        # the caller got the interrupt and nothing was yielded
        assert reader.event_count() in ((0,) if when == "before" else (0, 1))
    if when == "before":  # rolled back on a connection still in step: it goes on
        assert ledger.append_batch([event(0)], BRAND)[0].seq == 1
    else:  # mid-protocol: closed, the server ended the transaction
        with pytest.raises(StoreError):
            ledger.append(event(2), BRAND)
