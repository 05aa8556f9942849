"""Commission → timeline → inspection through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import quote

from gateway.ledger.proofs import verify_proof
from gateway.ledger.signing import Keystore
from tests.gateway.api.conftest import ACME, SELLER, SITE_ORG, Api

GTIN = "04012345000016"
EPC = "urn:epc:id:sgtin:4012345.000001.SER1"
DIGITAL_LINK = f"https://id.gs1.org/01/{GTIN}/21/SER1"


def _commission(api: Api) -> None:
    reply = api.client.post(
        "/v1/commissioning",
        json={
            "seller": SELLER,
            "items": [
                {"gtin": GTIN, "serial": "SER1", "batch": "L1", "expiry": "2027-06-30"},
                {"id": "urn:epc:id:sgtin:4012345.000001.SER2"},
            ],
        },
        headers=api.headers("acme"),
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert (body["org"], body["items"], len(body["events"])) == (ACME, 2, 2)


def _public_keys(api: Api, *orgs: str) -> dict[str, bytes]:
    store = Keystore(api.settings.keystore_dir)
    return {org: store.load_or_generate(org).public_key.public_bytes_raw() for org in orgs}


def test_commission_timeline_inspection_flow(any_api: Api) -> None:
    api = any_api
    _commission(api)

    # The timeline answers for every form of the ID, and its proof verifies offline.
    for form in (EPC, DIGITAL_LINK, f"(01){GTIN}(21)SER1"):
        reply = api.client.get(f"/v1/items/{quote(form, safe='')}", headers=api.headers("operator"))
        assert reply.status_code == 200, reply.text
        timeline = reply.json()
        assert timeline["ledger_key"] == EPC
        assert timeline["item"]["key"] == f"{GTIN}/SER1"
    [commissioned] = timeline["events"]
    assert commissioned["signer"] == ACME
    assert commissioned["sealed"] is True
    event = commissioned["event"]
    assert (event["action"], event["bizStep"], event["disposition"]) == (
        "ADD",
        "commissioning",
        "active",
    )
    assert event["epcList"] == [EPC]
    assert event["ilmd"] == {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2027-06-30"}
    assert event["bizTransactionList"][0]["bizTransaction"] == SELLER
    result = verify_proof(timeline["proof"], _public_keys(api, ACME))
    assert result.ok, result.reason

    # A confirmed counterfeit suspends the seller named by the item's history…
    reply = api.client.post(
        "/v1/inspections",
        json={
            "item": DIGITAL_LINK,
            "inspector": "ann",
            "result": "counterfeit",
            "notes": "hologram missing",
        },
        headers=api.headers("operator"),
    )
    assert reply.status_code == 201, reply.text
    recorded = reply.json()
    assert recorded["ledger_key"] == EPC
    assert recorded["inspection"]["seller"] == SELLER
    assert (recorded["seller"]["status"], recorded["seller"]["strikes"]) == ("suspended", 1)

    # …and lands in the ledger as an inspecting event signed by the site.
    reply = api.client.get(f"/v1/items/{quote(EPC, safe='')}", headers=api.headers("acme"))
    assert reply.status_code == 200
    timeline = reply.json()
    inspected = timeline["events"][-1]
    assert inspected["signer"] == SITE_ORG
    assert inspected["seq"] == recorded["event"]["seq"]
    assert (
        inspected["event"]["bizStep"],
        inspected["event"]["disposition"],
        inspected["event"]["pg:verdict"],
        inspected["event"]["pg:inspector"],
    ) == ("inspecting", "non_conformant", "REJECT", "ann")
    assert [i["result"] for i in timeline["inspections"]] == ["counterfeit"]
    result = verify_proof(timeline["proof"], _public_keys(api, ACME, SITE_ORG))
    assert result.ok, result.reason
    assert result.verified == 2

    seller = api.client.get(f"/v1/sellers/{SELLER}", headers=api.headers("manager")).json()
    assert (seller["status"], seller["strikes"]) == ("suspended", 1)
    assert seller["reason"].startswith("counterfeit confirmed by inspection")


def test_proof_does_not_verify_with_another_brands_key(any_api: Api) -> None:
    _commission(any_api)
    reply = any_api.client.get(
        f"/v1/items/{quote(EPC, safe='')}", headers=any_api.headers("operator")
    )
    result = verify_proof(reply.json()["proof"], _public_keys(any_api, "brand-borealis"))
    assert not result.ok
    assert "not among the keys given" in result.reason
