"""Inspections with photos, sellers, recalls, organisations, audit and gate status."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.ledger.store import open_store
from gateway.registry import Registry
from tests.gateway.api.conftest import SELLER, Api, make_settings, set_up
from tests.gateway.ledger.ledger_support import tamper

EPC = "urn:epc:id:sgtin:4012345.000001.{}"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _commission(api: Api, *serials: str, seller: str | None = SELLER) -> None:
    reply = api.client.post(
        "/v1/commissioning",
        json={"seller": seller, "items": [{"id": EPC.format(s)} for s in serials]},
        headers=api.headers("acme"),
    )
    assert reply.status_code == 201, reply.text


def _inspect(api: Api, item: str, result: str, **extra: object) -> tuple[int, dict[str, Any]]:
    reply = api.client.post(
        "/v1/inspections",
        json={"item": item, "inspector": "ann", "result": result, **extra},
        headers=api.headers("operator"),
    )
    return reply.status_code, reply.json()


# ---- inspections ---------------------------------------------------------------------


def test_genuine_inspection_leaves_the_seller_active(api: Api) -> None:
    _commission(api, "1")
    code, body = _inspect(api, EPC.format(1), "genuine")
    assert code == 201, body
    assert (body["seller"]["status"], body["seller"]["strikes"]) == ("active", 0)
    event = api.client.get(
        f"/v1/items/{quote(EPC.format(1), safe='')}", headers=api.headers("operator")
    ).json()["events"][-1]["event"]
    assert (event["disposition"], event["pg:verdict"]) == ("conformant", "PASS")


def test_inconclusive_inspection_leaves_the_disposition_alone(api: Api) -> None:
    _commission(api, "1")
    assert _inspect(api, EPC.format(1), "inconclusive")[0] == 201
    event = api.client.get(
        f"/v1/items/{quote(EPC.format(1), safe='')}", headers=api.headers("operator")
    ).json()["events"][-1]["event"]
    assert "disposition" not in event
    assert event["pg:verdict"] == "HOLD"


def test_inspection_photos_are_stored_and_served(api: Api) -> None:
    _commission(api, "1")
    code, body = _inspect(api, EPC.format(1), "genuine", photos=[base64.b64encode(PNG).decode()])
    assert code == 201, body
    [ref] = body["inspection"]["photos"]
    reply = api.client.get(f"/v1/photos/{ref}", headers=api.headers("manager"))
    assert reply.status_code == 200
    assert (reply.headers["content-type"], reply.content) == ("image/png", PNG)
    assert api.client.get("/v1/photos/sha256:00", headers=api.headers("manager")).status_code == 404


def test_bad_inspections_say_what_is_wrong(api: Api) -> None:
    _commission(api, "1")
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"photos": ["not base64!"]}, 422, "photo 1 is not base64"),
        ({"photos": [base64.b64encode(b"GIF89a").decode()]}, 422, "JPEG or PNG"),
        ({"photos": ["A" * 6_000_000]}, 413, "photo 1 is larger than"),
        ({"result": "probably-fine"}, 422, "genuine"),
        ({"item": "garbage"}, 422, "not an item ID"),
    ]
    for extra, code, message in cases:
        body = {"item": EPC.format(1), "inspector": "ann", "result": "genuine", **extra}
        reply = api.client.post("/v1/inspections", json=body, headers=api.headers("operator"))
        assert reply.status_code == code, (extra, reply.text)
        assert message in reply.text, (extra, reply.text)
    listed = api.client.get("/v1/inspections", headers=api.headers("operator")).json()
    assert listed == []


def test_inspection_of_an_item_without_seller_uses_the_given_one(api: Api) -> None:
    _commission(api, "1", seller=None)
    code, body = _inspect(api, EPC.format(1), "counterfeit", seller="s-given")
    assert code == 201, body
    assert body["seller"]["seller_id"] == "s-given"
    assert body["seller"]["status"] == "suspended"


def test_inspections_are_listed_per_item(api: Api) -> None:
    _commission(api, "1", "2")
    _inspect(api, EPC.format(1), "genuine")
    _inspect(api, EPC.format(2), "inconclusive")
    item = quote("https://id.gs1.org/01/04012345000016/21/2", safe="")
    listed = api.client.get(f"/v1/inspections?item={item}", headers=api.headers("manager")).json()
    assert [(i["item_key"], i["result"]) for i in listed] == [("04012345000016/2", "inconclusive")]


# ---- sellers -------------------------------------------------------------------------


def test_manager_suspends_and_reinstates_a_seller(api: Api) -> None:
    headers = api.headers("manager")
    reply = api.client.post(
        f"/v1/sellers/{SELLER}/suspend", json={"reason": "audit found fakes"}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    assert (reply.json()["status"], reply.json()["reason"]) == ("suspended", "audit found fakes")
    suspended = api.client.get("/v1/sellers?suspended=true", headers=headers).json()
    assert [s["seller_id"] for s in suspended] == [SELLER]
    reply = api.client.post(f"/v1/sellers/{SELLER}/reinstate", headers=headers)
    assert reply.json()["status"] == "active"
    one = api.client.get(f"/v1/sellers/{SELLER}", headers=headers).json()
    assert (one["status"], one["strikes"], one["recent_rejects"]) == ("active", 0, 0)
    assert api.client.get("/v1/sellers?suspended=true", headers=headers).json() == []


def test_unknown_seller_is_404(api: Api) -> None:
    headers = api.headers("admin")
    assert api.client.get("/v1/sellers/nobody", headers=headers).status_code == 404
    reply = api.client.post("/v1/sellers/nobody/reinstate", headers=headers)
    assert reply.status_code == 404
    assert reply.json()["detail"] == "unknown seller 'nobody'"


def test_suspension_needs_a_reason(api: Api) -> None:
    reply = api.client.post(f"/v1/sellers/{SELLER}/suspend", json={}, headers=api.headers("admin"))
    assert reply.status_code == 422
    assert "reason" in reply.text


# ---- recalls and organisations -------------------------------------------------------


def test_recalls_by_manager_and_by_the_owning_brand(api: Api) -> None:
    reply = api.client.post(
        "/v1/recalls",
        json={"gtin": "04012345000016", "batch": "L1", "reason": "mislabelled"},
        headers=api.headers("acme"),
    )
    assert reply.status_code == 201, reply.text
    reply = api.client.post(
        "/v1/recalls",
        json={"gtin": "4012345000023", "reason": "lead paint"},
        headers=api.headers("manager"),
    )
    assert reply.status_code == 201, reply.text
    listed = api.client.get("/v1/recalls", headers=api.headers("operator")).json()
    assert [(r["gtin"], r["batch"]) for r in listed] == [
        ("04012345000016", "L1"),
        ("04012345000023", None),
    ]


def test_brand_may_not_recall_a_foreign_gtin(api: Api) -> None:
    reply = api.client.post(
        "/v1/recalls",
        json={"gtin": "00614141073467", "reason": "sabotage"},
        headers=api.headers("acme"),
    )
    assert reply.status_code == 403
    assert "not under a company prefix of brand-acme" in reply.json()["detail"]


def test_bad_recall_gtin_is_422(api: Api) -> None:
    reply = api.client.post(
        "/v1/recalls", json={"gtin": "123", "reason": "x"}, headers=api.headers("manager")
    )
    assert reply.status_code == 422
    assert "GTIN must be 8, 12, 13 or 14 digits" in reply.json()["detail"]


def test_overlapping_prefix_is_409_and_unknown_org_404(api: Api) -> None:
    admin = api.headers("admin")
    reply = api.client.post(
        "/v1/orgs/brand-borealis/prefixes", json={"company_prefix": "40123456"}, headers=admin
    )
    assert reply.status_code == 409
    assert "overlaps prefix 4012345" in reply.json()["detail"]
    reply = api.client.post(
        "/v1/orgs/brand-ghost/prefixes", json={"company_prefix": "9521141"}, headers=admin
    )
    assert reply.status_code == 404
    reply = api.client.post(
        "/v1/orgs/brand-borealis/prefixes", json={"company_prefix": "9521141"}, headers=admin
    )
    assert reply.json()["prefixes"] == ["0614141", "9521141"]


def test_org_registration_is_all_or_nothing(api: Api) -> None:
    reply = api.client.post(
        "/v1/orgs",
        json={"org": "brand-x", "name": "X", "role": "brand_owner", "prefixes": ["7", "4012345"]},
        headers=api.headers("admin"),
    )
    assert reply.status_code == 422
    assert "6–12 digits" in reply.json()["detail"]
    orgs = api.client.get("/v1/orgs", headers=api.headers("manager")).json()
    assert "brand-x" not in [o["org"] for o in orgs]


# ---- audit and gates -----------------------------------------------------------------


def test_audit_passes_and_then_names_a_tampered_event(api: Api) -> None:
    _commission(api, "1", "2")
    reply = api.client.get("/v1/ledger/audit?strict=true", headers=api.headers("manager"))
    assert reply.status_code == 200
    report = reply.json()
    assert (report["ok"], report["events"], report["first_failure"]) == (True, 1, None)
    with open_store(api.settings.ledger_url) as store:
        tamper(store, "UPDATE events SET event_json = replace(event_json, 'ADD', 'OBSERVE')")
    report = api.client.get("/v1/ledger/audit", headers=api.headers("admin")).json()
    assert report["ok"] is False
    assert report["first_failure"]["seq"] == 1
    assert report["summary"].startswith("ledger FAILS audit")


def test_gate_status_from_the_registry(api: Api) -> None:
    with open_store(api.settings.ledger_url) as store:
        Registry(store).record_gate_status(
            "dc1", "in-1", now=100.0, online=True, counters={"pass": 4}, health={"rfid": "ok"}
        )
    reply = api.client.get("/v1/gates", headers=api.headers("operator"))
    assert reply.status_code == 200
    assert reply.json() == [
        {
            "site": "dc1",
            "gate": "in-1",
            "online": True,
            "last_seen": 100.0,
            "counters": {"pass": 4},
            "health": {"rfid": "ok"},
        }
    ]


def test_recent_rejects_follow_the_configured_window(tmp_path: Path) -> None:
    settings = make_settings(str(tmp_path / "db.sqlite"), tmp_path, recent_rejects_hours=1.0)
    with TestClient(create_app(settings)) as client:
        api = set_up(client, settings)
        with open_store(settings.ledger_url) as store:
            registry = Registry(store)
            now = time.time()
            registry.ensure_seller(SELLER, now - 3 * 3600)
            registry.note_outcome(SELLER, "REJECT", now - 2 * 3600)  # outside the hour
            registry.note_outcome(SELLER, "REJECT", now - 60)
        reply = client.get(f"/v1/sellers/{SELLER}", headers=api.headers("manager"))
        assert reply.status_code == 200, reply.text
        assert reply.json()["recent_rejects"] == 1
