"""Commissioning in bulk: JSON, CSV and EPCIS; only under the brand's own prefixes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.ledger.epcis import BizStep, epcis_document, object_event
from gateway.ledger.store import open_store
from tests.gateway.api.conftest import BOREALIS, SELLER, Api, make_settings, set_up

ACME_EPC = "urn:epc:id:sgtin:4012345.000001.{}"
BOREALIS_EPC = "urn:epc:id:sgtin:0614141.107346.{}"


def _event_count(api: Api) -> int:
    with open_store(api.settings.ledger_url) as store:
        return store.event_count()


def _timeline(api: Api, item: str) -> dict[str, Any]:
    reply = api.client.get(f"/v1/items/{quote(item, safe='')}", headers=api.headers("manager"))
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def _commission(api: Api, who: str, body: dict[str, object]) -> tuple[int, dict[str, Any]]:
    reply = api.client.post("/v1/commissioning", json=body, headers=api.headers(who))
    return reply.status_code, reply.json()


def test_items_are_grouped_into_events_by_seller_batch_and_expiry(api: Api) -> None:
    items = [{"id": ACME_EPC.format(n), "batch": "L1"} for n in range(150)]
    items += [{"id": ACME_EPC.format(n), "batch": "L2"} for n in range(150, 155)]
    items.append({"id": ACME_EPC.format(999), "seller": "other-seller"})
    code, body = _commission(api, "acme", {"seller": SELLER, "items": items})
    assert code == 201, body
    # 150 of L1 → 100 + 50; 5 of L2; one of another seller.
    assert (body["items"], len(body["events"])) == (156, 4)


def test_brand_owner_may_not_commission_under_a_foreign_prefix(api: Api) -> None:
    before = _event_count(api)
    code, body = _commission(
        api,
        "acme",
        {"items": [{"id": ACME_EPC.format(1)}, {"id": BOREALIS_EPC.format(7)}]},
    )
    assert code == 403
    assert "brand-acme may commission only under its own company prefixes" in body["detail"]
    assert BOREALIS_EPC.format(7) in body["detail"]
    assert ACME_EPC.format(1) not in body["detail"]
    assert _event_count(api) == before


def test_unregistered_prefix_is_refused_too(api: Api) -> None:
    code, body = _commission(api, "acme", {"items": [{"gtin": "09521141000014", "serial": "9"}]})
    assert code == 403
    assert "1 items are not: 09521141000014/9" in body["detail"]


def test_brand_owner_may_not_sign_for_another_org(api: Api) -> None:
    code, body = _commission(
        api, "acme", {"org": BOREALIS, "items": [{"id": BOREALIS_EPC.format(7)}]}
    )
    assert code == 403
    assert "commissions only for brand-acme" in body["detail"]


def test_admin_commissions_for_the_owner_of_the_prefix(api: Api) -> None:
    code, body = _commission(api, "admin", {"items": [{"id": BOREALIS_EPC.format(7)}]})
    assert code == 201, body
    assert body["org"] == BOREALIS
    assert _timeline(api, BOREALIS_EPC.format(7))["events"][0]["signer"] == BOREALIS


def test_recommissioning_an_item_is_409_naming_it(api: Api) -> None:
    assert _commission(api, "acme", {"items": [{"id": ACME_EPC.format(1)}]})[0] == 201
    before = _event_count(api)
    code, body = _commission(
        api,
        "acme",
        {"items": [{"id": ACME_EPC.format(2)}, {"gtin": "4012345000016", "serial": "1"}]},
    )
    assert code == 409
    assert "1 items are already in the ledger" in body["detail"]
    assert ACME_EPC.format(1) in body["detail"]
    assert _event_count(api) == before


def test_the_same_item_twice_in_a_request_is_refused(api: Api) -> None:
    code, body = _commission(
        api,
        "acme",
        {"items": [{"id": ACME_EPC.format(1)}, {"id": "(01)04012345000016(21)1"}]},
    )
    assert code == 422
    assert "same item as urn:epc:id:sgtin:4012345.000001.1" in body["detail"]


def test_bad_json_bodies_say_what_is_wrong(api: Api) -> None:
    cases = [
        ({}, "items"),
        ({"items": []}, "at least 1"),
        ({"items": [{"batch": "L1"}]}, "give either id, or gtin and serial"),
        ({"items": [{"id": "nonsense"}]}, "not an item ID"),
        ({"items": [{"id": "04012345000016"}]}, "names a product"),
        ({"items": [{"gtin": "04012345000017", "serial": "1"}]}, "check digit"),
        ({"items": [{"gtin": "04012345000016", "serial": "x" * 21}]}, "not an item ID"),
        (
            {"items": [{"id": "(01)04012345000016(10)L1(21)5", "batch": "L2"}]},
            "batch L2 differs from the batch L1 in the ID",
        ),
        ({"items": [{"id": ACME_EPC.format(1)}], "colour": "red"}, "Extra inputs"),
    ]
    for body, message in cases:
        reply = api.client.post("/v1/commissioning", json=body, headers=api.headers("acme"))
        assert reply.status_code == 422, (body, reply.text)
        assert message in reply.text, (body, reply.text)


def test_csv_commissioning(api: Api) -> None:
    csv_text = (
        "gtin,serial,batch,expiry,seller\n"
        "04012345000016,C1,L7,2027-01-31,\n"
        "04012345000016,C2,L7,2027-01-31,s-99\n"
    )
    reply = api.client.post(
        f"/v1/commissioning/csv?seller={quote(SELLER, safe='')}",
        content=csv_text.encode(),
        headers={**api.headers("acme"), "Content-Type": "text/csv"},
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["items"] == 2
    event = _timeline(api, ACME_EPC.format("C1"))["events"][0]["event"]
    assert event["ilmd"]["cbvmda:lotNumber"] == "L7"
    assert event["bizTransactionList"][0]["bizTransaction"] == SELLER
    other = _timeline(api, ACME_EPC.format("C2"))["events"][0]["event"]
    assert other["bizTransactionList"][0]["bizTransaction"] == "s-99"


def test_csv_with_an_id_column(api: Api) -> None:
    reply = api.client.post(
        "/v1/commissioning/csv",
        content=f"id\n{ACME_EPC.format(5)}\nhttps://id.gs1.org/01/04012345000016/21/6\n".encode(),
        headers={**api.headers("acme"), "Content-Type": "text/csv"},
    )
    assert reply.status_code == 201, reply.text
    assert _timeline(api, ACME_EPC.format(6))["ledger_key"] == ACME_EPC.format(6)


def test_bad_csv_names_the_columns_or_the_line(api: Api) -> None:
    cases = [
        ("epc,lot\nx,y\n", "CSV columns (header row): id, or gtin and serial"),
        ("gtin\n04012345000016\n", "got: gtin"),
        ("id,expiry\nx,31/01/2027\n", "CSV line 2: expiry '31/01/2027' is not YYYY-MM-DD"),
        ("id\n", "holds a header but no items"),
        ("id\na,b\n", "CSV line 2: more fields than the header has"),
        ("id\nurn:epc:id:sgtin:0614141.107346.1\n", "brand-acme may commission only"),
    ]
    for text, message in cases:
        reply = api.client.post(
            "/v1/commissioning/csv",
            content=text.encode(),
            headers={**api.headers("acme"), "Content-Type": "text/csv"},
        )
        assert reply.status_code in (403, 422), (text, reply.text)
        assert message in reply.json()["detail"], (text, reply.text)


def _document(epcs: list[str]) -> dict[str, object]:
    events = [
        object_event(epcs, action="ADD", biz_step=BizStep.COMMISSIONING, disposition="active"),
    ]
    return epcis_document(events)


def test_epcis_document_commissioning(api: Api) -> None:
    epcs = [ACME_EPC.format("E1"), ACME_EPC.format("E2")]
    reply = api.client.post(
        "/v1/commissioning/epcis",
        content=json.dumps(_document(epcs)).encode(),
        headers={**api.headers("acme"), "Content-Type": "application/ld+json"},
    )
    assert reply.status_code == 201, reply.text
    assert (reply.json()["items"], len(reply.json()["events"])) == (2, 1)
    timeline = _timeline(api, epcs[1])
    assert timeline["events"][0]["event_id"] == reply.json()["events"][0]["event_id"]
    again = api.client.post(
        "/v1/commissioning/epcis", json=_document(epcs), headers=api.headers("acme")
    )
    assert again.status_code == 409


def test_epcis_document_naming_foreign_items_is_403(api: Api) -> None:
    reply = api.client.post(
        "/v1/commissioning/epcis",
        json=_document([ACME_EPC.format(1), BOREALIS_EPC.format(1)]),
        headers=api.headers("acme"),
    )
    assert reply.status_code == 403
    assert BOREALIS_EPC.format(1) in reply.json()["detail"]


def test_bad_epcis_documents_are_422(api: Api) -> None:
    cases = [
        ({"type": "Nonsense"}, "not an EPCIS document"),
        (_document(["https://id.gs1.org/01/04012345000016/21/1"]), "name items by SGTIN EPC URI"),
        (
            {**_document([ACME_EPC.format(1)]), "epcisBody": {"eventList": []}},
            "holds no event",
        ),
    ]
    for document, message in cases:
        reply = api.client.post(
            "/v1/commissioning/epcis", json=document, headers=api.headers("acme")
        )
        assert reply.status_code == 422, reply.text
        assert message in reply.json()["detail"]
    admin = api.client.post(
        "/v1/commissioning/epcis",
        json=_document([ACME_EPC.format(1)]),
        headers=api.headers("admin"),
    )
    assert admin.status_code == 422
    assert "?org=" in admin.json()["detail"]


def test_oversized_body_is_413(tmp_path: Path) -> None:
    settings = make_settings(str(tmp_path / "db.sqlite"), tmp_path, max_body_bytes=4096)
    with TestClient(create_app(settings)) as client:
        api = set_up(client, settings)
        items = [{"id": ACME_EPC.format(n)} for n in range(200)]
        reply = client.post("/v1/commissioning", json={"items": items}, headers=api.headers("acme"))
        assert reply.status_code == 413
        assert "larger than 4096 bytes" in reply.json()["detail"]


def test_unknown_item_is_404_and_a_product_or_garbage_is_422(api: Api) -> None:
    headers = api.headers("operator")
    reply = api.client.get(f"/v1/items/{quote(ACME_EPC.format(404), safe='')}", headers=headers)
    assert reply.status_code == 404
    assert "04012345000016/404 is not in the ledger" in reply.json()["detail"]
    assert api.client.get("/v1/items/04012345000016", headers=headers).status_code == 422
    reply = api.client.get("/v1/items/garbage", headers=headers)
    assert reply.status_code == 422
    assert "not an item ID" in reply.json()["detail"]


def test_batch_and_expiry_carried_in_the_id_become_ilmd(api: Api) -> None:
    code, body = _commission(
        api, "acme", {"items": [{"id": "(01)04012345000016(10)L9(17)270630(21)5"}]}
    )
    assert code == 201, body
    event = _timeline(api, ACME_EPC.format(5))["events"][0]["event"]
    assert event["ilmd"] == {"cbvmda:lotNumber": "L9", "cbvmda:itemExpirationDate": "2027-06-30"}
