"""Fixtures: every ledger test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore, OrgKey
from tests.gateway.ledger.ledger_support import BRAND, SITE, fake_event_hash
from tests.support.postgres import PostgresServer

BLOCK_SIZE = 4


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger database on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_url()


@pytest.fixture
def twin_url(ledger_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A second empty database on the same backend as ``ledger_url``."""
    if ledger_url.startswith("postgresql"):
        server: PostgresServer = request.getfixturevalue("postgres")
        return server.new_url()
    return str(tmp_path / "twin.db")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, OrgKey]:
    """Keys of a brand owner and of a site."""
    store = Keystore(tmp_path / "keys")
    return {org: store.generate(org) for org in (BRAND, SITE)}


@pytest.fixture
def open_ledger(ledger_url: str, keys: dict[str, OrgKey]) -> Iterator[Callable[[], Ledger]]:
    """Opens ledgers on the test's database (several, for concurrency tests); closes them."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        ledger = Ledger.open(
            ledger_url, keys.values(), event_hash=fake_event_hash, block_size=BLOCK_SIZE
        )
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger: Callable[[], Ledger]) -> Ledger:
    """A ledger with block size 4, the brand and site keys loaded, a stand-in event hash."""
    return open_ledger()
