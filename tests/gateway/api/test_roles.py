"""Every route against every role: who gets past authentication and authorisation.

The table must name every route of the app, so a new route cannot go in unreviewed.
Bodies are empty or IDs unknown, so that an allowed call fails validation (422) or finds
nothing (404) and changes nothing.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from tests.gateway.api.conftest import Api

ROLES = ("operator", "manager", "acme", "admin")
ALL = frozenset(ROLES)
STAFF = frozenset({"operator", "manager", "admin"})
MANAGERS = frozenset({"manager", "admin"})
ADMIN = frozenset({"admin"})
BRANDS = frozenset({"acme", "admin"})
ACME_ITEM = quote("urn:epc:id:sgtin:4012345.000001.NOPE", safe="")

# (method, route path) -> (path to call, roles let through)
TABLE: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    ("GET", "/v1/me"): ("/v1/me", ALL),
    ("POST", "/v1/orgs"): ("/v1/orgs", ADMIN),
    ("GET", "/v1/orgs"): ("/v1/orgs", MANAGERS),
    # Brand owners read their own organisation only (test_auth.py); this is another one.
    ("GET", "/v1/orgs/{org}"): ("/v1/orgs/brand-borealis", MANAGERS),
    ("POST", "/v1/orgs/{org}/prefixes"): ("/v1/orgs/brand-borealis/prefixes", ADMIN),
    ("POST", "/v1/api-keys"): ("/v1/api-keys", ADMIN),
    ("GET", "/v1/api-keys"): ("/v1/api-keys", ADMIN),
    ("DELETE", "/v1/api-keys/{key_id}"): ("/v1/api-keys/k_nope", ADMIN),
    ("POST", "/v1/commissioning"): ("/v1/commissioning", BRANDS),
    ("POST", "/v1/commissioning/csv"): ("/v1/commissioning/csv", BRANDS),
    ("POST", "/v1/commissioning/epcis"): ("/v1/commissioning/epcis", BRANDS),
    # Brand owners: items under their own prefixes only (test_alias_strike.py).
    ("GET", "/v1/items/{item_id:path}"): (f"/v1/items/{ACME_ITEM}", ALL),
    ("POST", "/v1/inspections"): ("/v1/inspections", STAFF),
    ("GET", "/v1/inspections"): ("/v1/inspections", STAFF),
    ("GET", "/v1/photos/{ref}"): ("/v1/photos/sha256:00", STAFF),
    ("GET", "/v1/sellers"): ("/v1/sellers", MANAGERS),
    ("POST", "/v1/sellers/{seller_id:path}/suspend"): ("/v1/sellers/s-9/suspend", MANAGERS),
    ("POST", "/v1/sellers/{seller_id:path}/reinstate"): ("/v1/sellers/s-9/reinstate", MANAGERS),
    ("GET", "/v1/sellers/{seller_id:path}"): ("/v1/sellers/s-9", MANAGERS),
    ("POST", "/v1/recalls"): ("/v1/recalls", MANAGERS | {"acme"}),
    ("GET", "/v1/recalls"): ("/v1/recalls", ALL),
    ("GET", "/v1/ledger/audit"): ("/v1/ledger/audit", MANAGERS),
    ("GET", "/v1/gates"): ("/v1/gates", STAFF),
}
OPEN = {("GET", "/v1/health")}


def _operations(api: Api) -> set[tuple[str, str]]:
    """Every (method, path) of the app's OpenAPI schema (``{x:path}`` shows as ``{x}``)."""
    paths = api.client.get("/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_the_table_names_every_route(api: Api) -> None:
    tabled = {(method, re.sub(r":path}", "}", route)) for method, route in TABLE}
    assert _operations(api) - OPEN == tabled


@pytest.mark.parametrize(("method", "route"), sorted(TABLE))
def test_each_route_lets_through_exactly_its_roles(api: Api, method: str, route: str) -> None:
    path, allowed = TABLE[(method, route)]
    body: dict[str, object] | None = {} if method == "POST" else None
    for key in (None, "pgk_not-a-key"):
        headers = {} if key is None else {"X-API-Key": key}
        reply = api.client.request(method, path, headers=headers, json=body)
        assert reply.status_code == 401, (key, reply.text)
    got = {}
    for who in ROLES:
        reply = api.client.request(method, path, headers=api.headers(who), json=body)
        assert reply.status_code != 401, (who, reply.text)
        got[who] = reply.status_code != 403
        if reply.status_code == 403 and route != "/v1/orgs/{org}":
            assert reply.json()["detail"].startswith("this needs an API key of role")
    assert {who for who, ok in got.items() if ok} == allowed
