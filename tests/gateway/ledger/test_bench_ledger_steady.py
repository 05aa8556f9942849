"""bench.bench_ledger: steady state after the bulk load, and repeated append runs."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from bench.bench_ledger import Samples, bulk_load, measure_append, settle
from gateway.ledger.ledger import Ledger
from gateway.ledger.pg_store import PostgresStore
from gateway.ledger.signing import OrgKey
from gateway.ledger.sqlite_store import SqliteStore
from tests.gateway.ledger.ledger_support import BRAND, SITE, fake_event_hash
from tests.support.postgres import PostgresServer

LOADED = 600


def test_settle_vacuums_analyzes_and_checkpoints_postgres(
    postgres: PostgresServer, keys: dict[str, OrgKey]
) -> None:
    url = postgres.new_url()
    store = PostgresStore(url)
    with store, psycopg.connect(postgres.url, autocommit=True) as admin:
        bulk_load([store], LOADED, keys[BRAND], fake_event_hash)
        schema = store.connection.execute("SELECT current_schema()").fetchone()
        redo_before = admin.execute("SELECT redo_lsn FROM pg_control_checkpoint()").fetchone()
        settle([store])
        checkpointed = admin.execute(  # pg_lsn compared by the server, not as text
            "SELECT redo_lsn > %s::pg_lsn FROM pg_control_checkpoint()", redo_before
        ).fetchone()
        stats = admin.execute(
            "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL, n_live_tup "
            "FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'events'",
            schema,
        ).fetchone()
    assert checkpointed == (True,)  # a checkpoint began after the load and completed
    assert stats == (True, True, LOADED)


def test_settle_checkpoints_and_truncates_the_sqlite_wal(
    tmp_path: Path, keys: dict[str, OrgKey]
) -> None:
    path = tmp_path / "big.db"
    with SqliteStore(str(path)) as store:
        bulk_load([store], LOADED, keys[BRAND], fake_event_hash)
        assert os.path.getsize(f"{path}-wal") > 0
        settle([store])
        assert os.path.getsize(f"{path}-wal") == 0
        assert store.event_count() == LOADED


def test_measure_append_runs_every_mode_once_a_round_on_one_growing_ledger(
    ledger_url: str, twin_url: str, keys: dict[str, OrgKey]
) -> None:
    run, rounds = 40, 2
    rates = measure_append(
        ledger_url, twin_url, list(keys.values()), fake_event_hash, run_events=run, rounds=rounds
    )
    modes = (rates.calls, rates.stream, rates.precomputed, rates.big_batches, rates.gateway)
    for runs in (*modes, rates.raw):
        assert len(runs.values) == rounds
        assert min(runs.values) > 0
    assert len(rates.hash_alone.values) == 4 * rounds
    with Ledger.open(ledger_url, list(keys.values()), event_hash=fake_event_hash) as ledger:
        assert ledger.store.event_count() == 5 * rounds * run  # each run its own events
        report = ledger.audit()  # the last block is held open, not sealed: not strict
        assert report.ok, report.summary()
        for n in (0, 4 * rounds * run - 1):  # the first and the last run's events, once
            assert [row[3] for row in ledger.store.item_history(_item(n))] == [SITE]
    raw = PostgresStore(twin_url) if twin_url.startswith("postgresql") else SqliteStore(twin_url)
    with raw:
        assert raw._execute("SELECT count(*) FROM raw_events") == [(rounds * run,)]


def test_samples_report_the_median_and_the_min_max_of_their_runs() -> None:
    runs = Samples((24_200.0, 18_600.0, 21_000.0))
    assert runs.median == 21_000.0
    assert runs.spread == "median of 3, 18.6k–24.2k/s"


def _item(n: int) -> str:
    return f"urn:epc:id:sgtin:0614141.107346.{n}"
