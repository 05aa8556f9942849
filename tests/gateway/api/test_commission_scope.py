"""Commissioning routes only commission, and only the brand's own IDs: every ID the ledger
would index (epcList, childEPCs, parentID, inputEPCList, outputEPCList) in every ID form."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import pytest

from gateway.ledger.epcis import (
    BizStep,
    EpcisEvent,
    aggregation_event,
    epcis_document,
    object_event,
    to_jsonld,
)
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore
from gateway.ledger.store import open_store
from gateway.policy import Policy
from gateway.registry import Registry
from gateway.rules import Verifier
from tests.gateway.api.conftest import BOREALIS, SITE_ORG, Api
from tests.gateway.rules.rules_support import NOW, SECRET, SITE_SGLN, Facts, item, observe

ACME_1 = "urn:epc:id:sgtin:4012345.012345.1"  # item(1) of rules_support
ACME_2 = "urn:epc:id:sgtin:4012345.012345.2"
BOREALIS_EPC = "urn:epc:id:sgtin:0614141.107346.{}"
BOREALIS_SSCC = "urn:epc:id:sscc:0614141.1234567890"
T0 = "2026-11-28T09:00:00Z"


def _event(**fields: Any) -> dict[str, Any]:
    return {"type": "ObjectEvent", "eventTime": T0, "eventTimeZoneOffset": "+00:00", **fields}


def _doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-28T10:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def _post_epcis(api: Api, who: str, doc: dict[str, Any]) -> tuple[int, str]:
    reply = api.client.post("/v1/commissioning/epcis", json=doc, headers=api.headers(who))
    return reply.status_code, str(reply.json()["detail"] if reply.status_code >= 400 else "")


def _events(api: Api) -> int:
    with open_store(api.settings.ledger_url) as store:
        return store.event_count()


def _commission_acme_1(api: Api) -> None:
    reply = api.client.post(
        "/v1/commissioning",
        json={"items": [{"id": ACME_1}], "event_time": "2026-10-01T00:00:00Z"},
        headers=api.headers("acme"),
    )
    assert reply.status_code == 201, reply.text


def test_review_r2_foreign_items_in_input_and_output_lists_change_nothing(api: Api) -> None:
    # Acme's item 1 is commissioned and shipped: a clone of it is REJECTed. Borealis then
    # names it (and Acme's not yet commissioned serial 2) in inputEPCList/outputEPCList.
    _commission_acme_1(api)
    site_key = Keystore(api.settings.keystore_dir).load_or_generate(SITE_ORG)
    with Ledger.open(api.settings.ledger_url, [site_key]) as ledger:
        ledger.append(observe(1, BizStep.SHIPPING, hours_ago=5), SITE_ORG)
        verifier = Verifier(
            ledger.store, Policy(), site=SITE_ORG, inspection_secret=SECRET, aliases=[SITE_SGLN]
        )
        assert verifier.verify(Facts(item(1)), gate="in-01", now=NOW).decision == "REJECT"
        before = _events(api)
        receiving = _event(
            action="OBSERVE",
            bizStep="receiving",
            disposition="in_progress",
            bizLocation={"id": SITE_SGLN},
            epcList=[BOREALIS_EPC.format(9)],
            inputEPCList=[ACME_1],
            outputEPCList=[ACME_2],
        )
        squat = _event(
            action="ADD",
            bizStep="commissioning",
            disposition="active",
            epcList=[BOREALIS_EPC.format(10)],
            outputEPCList=[ACME_2],
        )
        assert _post_epcis(api, "borealis", _doc(receiving, squat))[0] in (403, 422)
        code, detail = _post_epcis(api, "borealis", _doc(squat))
        assert code == 403, detail
        assert ACME_2 in detail
        assert BOREALIS_EPC.format(10) not in detail
        code, detail = _post_epcis(
            api, "borealis", _doc(_event(**{**squat, "inputEPCList": [ACME_1]}))
        )
        assert code == 403
        assert ACME_1 in detail
        assert _events(api) == before
        outcome = verifier.verify(Facts(item(1)), gate="in-01", now=NOW)
        assert outcome.decision == "REJECT"
        assert "ledger.already_shipped" in outcome.reasons
    # Acme's genuine serial 2 is still Acme's to commission.
    reply = api.client.post(
        "/v1/commissioning", json={"items": [{"id": ACME_2}]}, headers=api.headers("acme")
    )
    assert reply.status_code == 201, reply.text


@pytest.mark.parametrize(
    "event",
    [
        _event(action="OBSERVE", bizStep="receiving", epcList=[BOREALIS_EPC.format(1)]),
        _event(action="ADD", bizStep="receiving", epcList=[BOREALIS_EPC.format(1)]),
        _event(action="DELETE", bizStep="decommissioning", epcList=[BOREALIS_EPC.format(1)]),
        _event(
            action="ADD",
            bizStep="commissioning",
            disposition="recalled",
            epcList=[BOREALIS_EPC.format(1)],
        ),
        _event(
            action="ADD",
            bizStep="commissioning",
            epcList=[BOREALIS_EPC.format(1)],
            **{"pg:verdict": "PASS"},
        ),
    ],
    ids=["observe", "add-receiving", "delete", "flag-disposition", "gate-data"],
)
def test_epcis_route_refuses_what_is_not_commissioning(api: Api, event: dict[str, Any]) -> None:
    before = _events(api)
    code, detail = _post_epcis(api, "borealis", _doc(event))
    assert code == 422, detail
    assert "only commissioning here" in detail
    assert _events(api) == before


def test_aggregation_of_items_commissioned_in_the_same_request_is_accepted(api: Api) -> None:
    epcs = [BOREALIS_EPC.format(n) for n in (1, 2)]
    doc = epcis_document(
        [
            object_event(epcs, action="ADD", biz_step=BizStep.COMMISSIONING, disposition="active"),
            aggregation_event(BOREALIS_SSCC, epcs),
        ]
    )
    code, detail = _post_epcis(api, "borealis", doc)
    assert code == 201, detail


def test_aggregation_must_not_reach_other_items(api: Api) -> None:
    _commission_acme_1(api)
    mine = BOREALIS_EPC.format(1)
    commissioning = to_jsonld(
        object_event([mine], action="ADD", biz_step=BizStep.COMMISSIONING, disposition="active")
    )
    foreign_child = to_jsonld(aggregation_event(BOREALIS_SSCC, [mine, ACME_1]))
    code, detail = _post_epcis(api, "borealis", _doc(commissioning, foreign_child))
    assert code == 403
    assert ACME_1 in detail
    foreign_parent = to_jsonld(aggregation_event("urn:epc:id:sscc:4012345.0000000001", [mine]))
    code, detail = _post_epcis(api, "borealis", _doc(commissioning, foreign_parent))
    assert code == 403
    assert "urn:epc:id:sscc:4012345.0000000001" in detail
    # Its own items, but commissioned earlier: packing them is not commissioning.
    assert _post_epcis(api, "borealis", _doc(commissioning))[0] == 201
    code, detail = _post_epcis(
        api, "borealis", _doc(to_jsonld(aggregation_event(BOREALIS_SSCC, [mine])))
    )
    assert code == 422
    assert "not commissioned earlier in this request" in detail


@pytest.mark.parametrize(
    "acme_id",
    [
        ACME_1,
        "urn:epc:id:sgtin:40123451.02345.1",  # the same item with another prefix split
        "https://id.gs1.org/01/04012345123456/21/1",
        "(01)04012345123456(21)1",
    ],
)
def test_json_and_csv_refuse_foreign_items_in_any_id_form(api: Api, acme_id: str) -> None:
    for body in ({"items": [{"id": acme_id}]}, {"org": BOREALIS, "items": [{"id": acme_id}]}):
        reply = api.client.post("/v1/commissioning", json=body, headers=api.headers("borealis"))
        assert reply.status_code == 403, reply.text
    reply = api.client.post(
        "/v1/commissioning/csv",
        content=f"id\n{acme_id}\n".encode(),
        headers={**api.headers("borealis"), "Content-Type": "text/csv"},
    )
    assert reply.status_code == 403, reply.text


def test_epcis_items_must_be_written_with_the_registered_prefix_length(api: Api) -> None:
    other_split = "urn:epc:id:sgtin:40123451.02345.1"
    event = _event(action="ADD", bizStep="commissioning", epcList=[other_split])
    code, detail = _post_epcis(api, "acme", _doc(event))
    assert code == 422
    assert f"write it as {ACME_1}" in detail
    assert _post_epcis(api, "borealis", _doc(event))[0] == 403


def test_an_item_the_ledger_names_under_another_uri_is_not_new(api: Api) -> None:
    # A gate named the item by its Digital Link; commissioning it is what a clone does.
    site_key = Keystore(api.settings.keystore_dir).load_or_generate(SITE_ORG)
    with Ledger.open(api.settings.ledger_url, [site_key]) as ledger:
        seen = object_event(
            ["https://id.gs1.org/01/04012345123456/21/1"],
            action="OBSERVE",
            biz_step=BizStep.RECEIVING,
            event_time=dt.datetime(2026, 11, 28, 8, tzinfo=dt.UTC),
        )
        ledger.append(to_jsonld(seen), SITE_ORG)
    reply = api.client.post(
        "/v1/commissioning", json={"items": [{"id": ACME_1}]}, headers=api.headers("acme")
    )
    assert reply.status_code == 409, reply.text
    code, detail = _post_epcis(
        api, "acme", _doc(_event(action="ADD", bizStep="commissioning", epcList=[ACME_1]))
    )
    assert code == 409
    assert ACME_1 in detail
    timeline = api.client.get(f"/v1/items/{quote(ACME_1, safe='')}", headers=api.headers("acme"))
    assert [e["signer"] for e in timeline.json()["events"]] == [SITE_ORG]


def test_company_prefixes_are_read_once_per_request(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = Registry.prefix_owners

    def counted(self: Registry) -> dict[str, str]:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(Registry, "prefix_owners", counted)
    epcs = [BOREALIS_EPC.format(n) for n in range(30)]
    events: list[EpcisEvent] = [object_event(epcs, action="ADD", biz_step=BizStep.COMMISSIONING)]
    events += [
        aggregation_event(f"urn:epc:id:sscc:0614141.{n:010d}", epcs[n : n + 1]) for n in range(30)
    ]
    code, detail = _post_epcis(api, "borealis", epcis_document(events))
    assert code == 201, detail
    assert len(calls) == 1
