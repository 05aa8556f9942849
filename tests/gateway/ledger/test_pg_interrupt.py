"""PostgreSQL: an append interrupted in the middle of its COPY does not keep the append lock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore
from gateway.ledger.store import StoreError
from tests.gateway.ledger.ledger_support import BRAND, event, fake_event_hash
from tests.support.postgres import PostgresServer


def _advisory_locks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    assert row is not None
    return int(row[0])


def test_an_interrupt_inside_the_copy_releases_the_append_lock(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.new_url()
    key = Keystore(tmp_path / "keys").generate(BRAND)
    interrupted = Ledger.open(url, [key], event_hash=fake_event_hash, block_size=4)
    other = Ledger.open(url, [key], event_hash=fake_event_hash, block_size=4)
    try:

        def interrupt(self: Any, exc: BaseException | None = None) -> None:
            raise KeyboardInterrupt  # lands before the end of the COPY is sent

        with monkeypatch.context() as patch:
            patch.setattr(psycopg.copy.LibpqWriter, "finish", interrupt)
            with pytest.raises(KeyboardInterrupt):
                interrupted.append_batch([event(i) for i in range(10)], BRAND)
        deadline = time.monotonic() + 10
        while _advisory_locks(postgres.url) and time.monotonic() < deadline:
            time.sleep(0.05)  # the server ends the closed connection's transaction
        assert _advisory_locks(postgres.url) == 0
        other.append_batch([event(i) for i in range(3)], BRAND)  # would wait forever
        assert other.store.event_count() == 3
        with pytest.raises(StoreError):
            interrupted.append(event(7), BRAND)
    finally:
        other.close()
        interrupted.close()
