"""Fixtures: every projection and verifier test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import OrgKey
from gateway.ledger.store import SqlStore, open_store
from gateway.policy import Policy
from gateway.registry import OrgRole, Registry
from gateway.rules import Verifier
from tests.gateway.rules.rules_support import (
    BRAND,
    BRAND_PREFIX,
    OTHER_BRAND,
    OTHER_PREFIX,
    OTHER_SITE,
    SECRET,
    SITE,
    SITE_SGLN,
)
from tests.support.postgres import PostgresServer

ORGS = (BRAND, OTHER_BRAND, SITE, OTHER_SITE)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_url()


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    """A ledger holding the keys of two brands and two sites (real CBV event hash)."""
    keys = [OrgKey(org, Ed25519PrivateKey.generate()) for org in ORGS]
    with Ledger.open(db_url, keys) as opened:
        yield opened


@pytest.fixture
def open_db(db_url: str) -> Iterator[Callable[[], SqlStore]]:
    """Opens further connections to the test's database (another worker); closes them."""
    opened: list[SqlStore] = []

    def make() -> SqlStore:
        store = open_store(db_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def registry(ledger: Ledger) -> Registry:
    """The registry, with both brands owning their prefixes and both sites registered."""
    reg = Registry(ledger.store)
    reg.add_org(BRAND, "Acme Sportswear", OrgRole.BRAND_OWNER)
    reg.add_prefix(BRAND, BRAND_PREFIX)
    reg.add_org(OTHER_BRAND, "Borealis Watches", OrgRole.BRAND_OWNER)
    reg.add_prefix(OTHER_BRAND, OTHER_PREFIX)
    reg.add_org(SITE, "DC 1", OrgRole.SITE)
    reg.add_org(OTHER_SITE, "DC 2", OrgRole.SITE)
    return reg


@pytest.fixture
def make_verifier(
    ledger: Ledger, registry: Registry, open_db: Callable[[], SqlStore]
) -> Callable[..., Verifier]:
    """Builds a verifier for SITE (on its own connection with ``own_connection=True``)."""

    def make(policy: Policy | None = None, *, own_connection: bool = False) -> Verifier:
        store = open_db() if own_connection else ledger.store
        return Verifier(
            store,
            policy or Policy(),
            site=SITE,
            inspection_secret=SECRET,
            aliases=[SITE_SGLN],
        )

    return make


@pytest.fixture
def verifier(make_verifier: Callable[..., Verifier]) -> Verifier:
    """A verifier for SITE with the default policy, sharing the ledger's connection."""
    return make_verifier()
