"""API keys: 401 without or with a wrong key, 403 for a role that is not allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from tests.gateway.api.conftest import ACME, Api, make_settings


def test_missing_key_is_401_with_a_challenge(api: Api) -> None:
    reply = api.client.get("/v1/me")
    assert reply.status_code == 401
    assert reply.json()["detail"] == "missing X-API-Key header"
    assert reply.headers["WWW-Authenticate"].startswith("APIKey")


@pytest.mark.parametrize("key", ["pgk_not-a-real-key", "nonsense", "x" * 500])
def test_wrong_key_is_401(api: Api, key: str) -> None:
    reply = api.client.get("/v1/me", headers={"X-API-Key": key})
    assert reply.status_code == 401
    assert reply.json()["detail"] == "unknown or revoked API key"


def test_each_key_says_who_it_is(api: Api) -> None:
    seen = {
        who: api.client.get("/v1/me", headers=api.headers(who)).json()
        for who in ("admin", "manager", "operator", "acme")
    }
    assert {who: (me["role"], me["org"]) for who, me in seen.items()} == {
        "admin": ("admin", None),
        "manager": ("manager", None),
        "operator": ("operator", None),
        "acme": ("brand_owner", ACME),
    }


@pytest.mark.parametrize(
    ("who", "method", "path", "body"),
    [
        ("operator", "POST", "/v1/orgs", {"org": "x-co", "name": "X", "role": "other"}),
        ("manager", "POST", "/v1/api-keys", {"role": "admin", "label": "escalate"}),
        ("acme", "GET", "/v1/sellers", None),
        ("operator", "POST", "/v1/commissioning", {"items": [{"id": "x"}]}),
        ("acme", "POST", "/v1/inspections", {"item": "x", "inspector": "a", "result": "genuine"}),
        ("operator", "GET", "/v1/ledger/audit", None),
        ("acme", "GET", "/v1/gates", None),
        ("operator", "POST", "/v1/recalls", {"gtin": "04012345000016", "reason": "r"}),
    ],
)
def test_role_not_allowed_is_403_naming_the_roles(
    api: Api, who: str, method: str, path: str, body: object
) -> None:
    reply = api.client.request(method, path, json=body, headers=api.headers(who))
    assert reply.status_code == 403, reply.text
    detail = reply.json()["detail"]
    assert detail.startswith("this needs an API key of role")
    assert detail.endswith(f"yours is {'brand_owner' if who == 'acme' else who}")


def test_brand_owner_reads_only_its_own_org(api: Api) -> None:
    assert api.client.get(f"/v1/orgs/{ACME}", headers=api.headers("acme")).status_code == 200
    reply = api.client.get("/v1/orgs/brand-borealis", headers=api.headers("acme"))
    assert reply.status_code == 403


def test_revoked_key_stops_working(api: Api) -> None:
    me = api.client.get("/v1/me", headers=api.headers("operator")).json()
    reply = api.client.delete(f"/v1/api-keys/{me['key_id']}", headers=api.headers("admin"))
    assert reply.status_code == 204
    assert api.client.get("/v1/me", headers=api.headers("operator")).status_code == 401
    listed = api.client.get("/v1/api-keys", headers=api.headers("admin")).json()
    assert [k["revoked_at"] is not None for k in listed if k["key_id"] == me["key_id"]] == [True]
    assert all(k["key"] is None for k in listed)


def test_without_bootstrap_key_nothing_is_admin(tmp_path: Path) -> None:
    settings = make_settings(str(tmp_path / "db.sqlite"), tmp_path, bootstrap_admin_key=None)
    with TestClient(create_app(settings)) as client:
        reply = client.get("/v1/me", headers={"X-API-Key": "bootstrap-admin-key-for-tests-only"})
        assert reply.status_code == 401


def test_health_needs_no_key(api: Api) -> None:
    reply = api.client.get("/v1/health")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "site": "dc1"}


def test_openapi_lists_the_paths_and_docs_are_served(api: Api) -> None:
    paths = set(api.client.get("/openapi.json").json()["paths"])
    assert {
        "/v1/orgs",
        "/v1/orgs/{org}/prefixes",
        "/v1/api-keys",
        "/v1/commissioning",
        "/v1/commissioning/csv",
        "/v1/commissioning/epcis",
        "/v1/items/{item_id}",
        "/v1/inspections",
        "/v1/sellers",
        "/v1/sellers/{seller_id}/suspend",
        "/v1/sellers/{seller_id}/reinstate",
        "/v1/recalls",
        "/v1/ledger/audit",
        "/v1/gates",
    } <= paths
    assert api.client.get("/docs").status_code == 200
