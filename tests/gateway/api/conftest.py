"""Fixtures: the HTTP API on a real SQLite file (and on PostgreSQL where asked), with
organisations and one API key per role set up through the API itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api import ApiSettings, create_app
from tests.support.postgres import PostgresServer

BOOTSTRAP = "bootstrap-admin-key-for-tests-only"
ACME = "brand-acme"  # company prefix 4012345
BOREALIS = "brand-borealis"  # company prefix 0614141
SITE_ORG = "site-dc1"
SELLER = "https://provgate.dev/seller/s-01"


@dataclass
class Api:
    """A test client and the API keys of each role."""

    client: TestClient
    settings: ApiSettings
    keys: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        """The X-API-Key header of ``who`` (admin, manager, operator, acme, borealis)."""
        return {"X-API-Key": self.keys[who]}


def make_settings(url: str, tmp_path: Path, **overrides: object) -> ApiSettings:
    """Settings for a test site on ``url``."""
    values: dict[str, object] = {
        "ledger_url": url,
        "keystore_dir": tmp_path / "keys",
        "site": "dc1",
        "site_org": SITE_ORG,
        "bootstrap_admin_key": BOOTSTRAP,
        "site_location": "urn:epc:id:sgln:5012345.00005.0",
        **overrides,
    }
    return ApiSettings.model_validate(values)


def set_up(client: TestClient, settings: ApiSettings) -> Api:
    """Register the orgs and create one key per role, as an admin would."""
    admin = {"X-API-Key": BOOTSTRAP}
    for org, name, role, prefixes in [
        (ACME, "Acme Sportswear", "brand_owner", ["4012345"]),
        (BOREALIS, "Borealis Watches", "brand_owner", ["0614141"]),
        (SITE_ORG, "Provgate DC 1", "site", ["5012345"]),
    ]:
        reply = client.post(
            "/v1/orgs",
            json={"org": org, "name": name, "role": role, "prefixes": prefixes},
            headers=admin,
        )
        assert reply.status_code == 201, reply.text
    keys: dict[str, str] = {"admin": BOOTSTRAP}
    for who, role, key_org in [
        ("manager", "manager", None),
        ("operator", "operator", None),
        ("acme", "brand_owner", ACME),
        ("borealis", "brand_owner", BOREALIS),
    ]:
        reply = client.post(
            "/v1/api-keys", json={"role": role, "org": key_org, "label": who}, headers=admin
        )
        assert reply.status_code == 201, reply.text
        keys[who] = reply.json()["key"]
    return Api(client, settings, keys)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file ledger."""
    return str(tmp_path / "gateway.db")


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on a SQLite file, set up."""
    settings = make_settings(sqlite_url, tmp_path)
    with TestClient(create_app(settings)) as client:
        yield set_up(client, settings)


@pytest.fixture(params=["sqlite", "postgres"])
def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """The API, set up, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = str(tmp_path / "gateway.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.new_url()
    settings = make_settings(url, tmp_path)
    with TestClient(create_app(settings)) as client:
        yield set_up(client, settings)
