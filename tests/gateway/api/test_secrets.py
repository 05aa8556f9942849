"""No secret or database URL in any HTTP answer; the key is checked before the database
is opened and before the body is parsed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from tests.gateway.api.conftest import BOOTSTRAP, Api, make_settings

PASSWORD = "S3cretPw"
# Port 1 refuses connections at once: the database went away after start-up.
DOWN_URL = f"postgresql://gw@127.0.0.1:1/provgate?password={PASSWORD}&sslmode=disable"
SECRETS = (PASSWORD, "127.0.0.1", "gw@", "provgate?", "postgresql")


@pytest.fixture
def down(tmp_path: Path) -> TestClient:
    """The API whose database cannot be reached (no lifespan: it was there at start)."""
    pytest.importorskip("psycopg")
    return TestClient(create_app(make_settings(DOWN_URL, tmp_path)))


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def test_review_r6_no_key_is_401_without_touching_the_database(down: TestClient) -> None:
    reply = down.get("/v1/me")
    assert reply.status_code == 401
    assert reply.json() == {"detail": "missing X-API-Key header"}


def test_bootstrap_key_is_checked_before_the_database(down: TestClient) -> None:
    reply = down.get("/v1/me", headers={"X-API-Key": BOOTSTRAP})
    assert reply.status_code == 200
    assert reply.json()["role"] == "admin"


@pytest.mark.parametrize(
    ("key", "method", "path"),
    [
        ("pgk_some-key-to-look-up", "GET", "/v1/me"),
        ("pgk_some-key-to-look-up", "GET", "/v1/recalls"),
        (BOOTSTRAP, "GET", "/v1/sellers"),
        (BOOTSTRAP, "GET", "/v1/items/urn%3Aepc%3Aid%3Asgtin%3A4012345.000001.1"),
    ],
)
def test_database_down_is_a_generic_503_and_logged_redacted(
    down: TestClient, caplog: pytest.LogCaptureFixture, key: str, method: str, path: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.api"):
        reply = down.request(method, path, headers={"X-API-Key": key})
    assert reply.status_code == 503
    assert reply.json() == {"detail": "ledger database unavailable"}
    _clean(reply.text)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "database unavailable" in logged or "cannot connect" in logged
    assert PASSWORD not in logged


def test_a_wrong_key_is_401_without_touching_the_database(down: TestClient) -> None:
    reply = down.get("/v1/me", headers={"X-API-Key": "not-a-provgate-key"})
    assert reply.status_code == 401


def test_key_is_checked_before_the_body_is_parsed(api: Api) -> None:
    for headers in ({}, {"X-API-Key": "pgk_unknown"}):
        reply = api.client.post(
            "/v1/commissioning",
            content=b"{not json",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert reply.status_code == 401, reply.text


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://gw:hunter2@db/provgate",
        "postgresql://gw@db/provgate?password=hunter2&sslmode=disable",
        "postgresql://gw@db/provgate?sslmode=disable&PASSWORD=hunter2",
        "host=db user=gw password=hunter2 dbname=provgate",
        "host=db password='hunter2 x' dbname=provgate",
    ],
)
def test_redact_hides_passwords_in_every_url_form(text: str) -> None:
    from gateway.api.errors import redact

    assert "hunter2" not in redact(f"cannot connect to {text}: refused")


def test_redact_hides_the_database_password_wherever_it_appears() -> None:
    pytest.importorskip("psycopg")
    from gateway.api.errors import redact

    url = "postgresql://gw@db/provgate?password=pw%2Fwith-slash"
    assert "pw/with-slash" not in redact("error near 'pw/with-slash'", url)


def test_start_up_failure_names_no_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from gateway.ledger.store import StoreError

    with (
        pytest.raises(StoreError) as failed,
        TestClient(create_app(make_settings(DOWN_URL, tmp_path))),
    ):
        pass
    assert PASSWORD not in str(failed.value)
