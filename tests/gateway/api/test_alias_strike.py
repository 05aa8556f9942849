"""One strike and you're out, whatever URI the ledger names the item by: the seller comes
from the item projection, timelines and proofs cover every name; brand owners read only
their own items."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from gateway.ledger.epcis import SELLER_BTT, BizStep, Disposition, object_event, to_jsonld
from gateway.ledger.ledger import Ledger
from gateway.ledger.proofs import verify_proof
from gateway.ledger.signing import Keystore
from gateway.policy import Policy
from gateway.rules import Verifier
from gatewire.identity import parse_item_id
from gatewire.item import CanonicalItemId
from tests.gateway.api.conftest import BOREALIS, SITE_ORG, Api
from tests.gateway.rules.rules_support import NOW, SECRET, SITE_SGLN, Facts

BRAND_X = "brand-x"  # prefix 0000040: the GS1 table gives no EPC URI for it
S77 = "https://provgate.dev/seller/s-77"
IDS = [f"(01)00000040123455(21)S{n}" for n in (1, 2)]


def _item(text: str) -> CanonicalItemId:
    parsed = parse_item_id(text).item
    assert parsed is not None
    return parsed


@dataclass
class Site:
    """The API plus the site's ledger handle and verifier, as the MQTT service has them."""

    api: Api
    ledger: Ledger
    verifier: Verifier

    def gate_event(self, item: CanonicalItemId, seller: str | None = S77) -> None:
        """An inbound gate's receiving event, naming the item as gateway/ingest.py does."""
        event = object_event(
            [item.epc_uri or item.digital_link],
            action="OBSERVE",
            biz_step=BizStep.RECEIVING,
            disposition=Disposition.IN_PROGRESS,
            biz_location=SITE_SGLN,
            transactions=[] if seller is None else [(SELLER_BTT, seller)],
            event_time=dt.datetime.fromtimestamp(NOW - 3600, dt.UTC),
        )
        self.ledger.append(to_jsonld(event), SITE_ORG)

    def inspect(self, item: str, result: str, **extra: Any) -> dict[str, Any]:
        body = {"item": item, "inspector": "ann", "result": result, **extra}
        reply = self.api.client.post(
            "/v1/inspections", json=body, headers=self.api.headers("operator")
        )
        assert reply.status_code == 201, reply.text
        answer: dict[str, Any] = reply.json()
        return answer


@pytest.fixture
def site(api: Api) -> Iterator[Site]:
    admin = api.headers("admin")
    reply = api.client.post(
        "/v1/orgs",
        json={"org": BRAND_X, "name": "X", "role": "brand_owner", "prefixes": ["0000040"]},
        headers=admin,
    )
    assert reply.status_code == 201, reply.text
    reply = api.client.post(
        "/v1/commissioning",
        json={
            "org": BRAND_X,
            "items": [{"id": i} for i in IDS],
            "event_time": "2026-10-01T00:00:00Z",
        },
        headers=admin,
    )
    assert reply.status_code == 201, reply.text  # no seller: the brand does not know it
    key = Keystore(api.settings.keystore_dir).load_or_generate(SITE_ORG)
    with Ledger.open(api.settings.ledger_url, [key]) as ledger:
        verifier = Verifier(
            ledger.store, Policy(), site=SITE_ORG, inspection_secret=SECRET, aliases=[SITE_SGLN]
        )
        yield Site(api, ledger, verifier)


def test_review_r5_strike_through_an_alias_holds_the_sellers_other_items(site: Site) -> None:
    items = [_item(i) for i in IDS]
    assert items[0].epc_uri is None  # the gate names them by Digital Link
    for item in items:
        site.gate_event(item)
    before = site.verifier.verify_many([Facts(items[1])], gate="out-01", now=NOW)
    assert before[0].decision == "PASS", before

    answer = site.inspect(IDS[0], "counterfeit")
    assert answer["inspection"]["seller"] == S77
    assert (answer["seller"]["status"], answer["seller"]["strikes"]) == ("suspended", 1)
    assert answer["warnings"] == []

    [after] = site.verifier.verify_many([Facts(items[1])], gate="out-01", now=NOW)
    assert after.decision == "HOLD"
    assert "seller.suspended" in after.reasons


def test_timeline_and_proofs_cover_every_name_of_the_item(site: Site) -> None:
    item = _item(IDS[0])
    site.gate_event(item)
    site.inspect(IDS[0], "inconclusive")
    reply = site.api.client.get(
        f"/v1/items/{quote(item.digital_link, safe='')}", headers=site.api.headers("manager")
    )
    assert reply.status_code == 200, reply.text
    timeline = reply.json()
    steps = [(e["signer"], e["event"]["bizStep"]) for e in timeline["events"]]
    assert steps == [(BRAND_X, "commissioning"), (SITE_ORG, "receiving"), (SITE_ORG, "inspecting")]
    assert timeline["ledger_key"] == "urn:epc:id:sgtin:0000040.012345.S1"
    assert timeline["ledger_keys"] == [timeline["ledger_key"], item.digital_link]
    keystore = Keystore(site.api.settings.keystore_dir)
    keys = {o: keystore.load_or_generate(o).public_key for o in (BRAND_X, SITE_ORG)}
    proofs = [timeline["proof"], *timeline["alias_proofs"]]
    assert [p["item"] for p in proofs] == timeline["ledger_keys"]
    assert all(verify_proof(p, keys) for p in proofs)


def test_counterfeit_with_no_known_seller_is_recorded_with_a_warning(site: Site) -> None:
    answer = site.inspect(IDS[0], "counterfeit")
    assert answer["seller"] is None
    assert answer["inspection"]["result"] == "counterfeit"
    [warning] = answer["warnings"]
    assert "no seller is known" in warning
    listed = site.api.client.get(
        f"/v1/inspections?item={quote(IDS[0], safe='')}", headers=site.api.headers("operator")
    )
    assert [i["result"] for i in listed.json()] == ["counterfeit"]


def test_the_ledgers_seller_wins_over_the_requests(site: Site) -> None:
    site.gate_event(_item(IDS[0]))
    answer = site.inspect(IDS[0], "counterfeit", seller="https://provgate.dev/seller/other")
    assert answer["inspection"]["seller"] == S77
    assert any("was not used" in w for w in answer["warnings"])


def test_an_item_no_prefix_names_still_gets_its_inspection_and_strike(site: Site) -> None:
    unregistered = "(01)00000050123452(21)Z1"  # no registered prefix, no EPC URI
    assert _item(unregistered).epc_uri is None
    answer = site.inspect(unregistered, "counterfeit", seller=f" {S77} ")  # space: not the ID
    assert answer["inspection"]["item_key"] == _item(unregistered).key
    assert answer["ledger_key"] == _item(unregistered).digital_link
    assert (answer["seller"]["seller_id"], answer["seller"]["strikes"]) == (S77, 1)


@pytest.mark.parametrize(
    ("who", "item", "code"),
    [
        ("acme", "urn:epc:id:sgtin:4012345.000001.T1", 200),
        ("borealis", "urn:epc:id:sgtin:4012345.000001.T1", 403),
        ("borealis", "urn:epc:id:sgtin:4012345.000001.NEVER", 403),  # no hint it exists
        ("acme", "urn:epc:id:sgtin:4012345.000001.NEVER", 404),
        ("operator", "urn:epc:id:sgtin:4012345.000001.T1", 200),
        ("manager", "urn:epc:id:sgtin:4012345.000001.T1", 200),
        ("admin", "urn:epc:id:sgtin:4012345.000001.T1", 200),
    ],
)
def test_brand_owners_read_only_timelines_under_their_own_prefixes(
    api: Api, who: str, item: str, code: int
) -> None:
    reply = api.client.post(
        "/v1/commissioning",
        json={"items": [{"id": "urn:epc:id:sgtin:4012345.000001.T1"}]},
        headers=api.headers("acme"),
    )
    assert reply.status_code == 201, reply.text
    reply = api.client.get(f"/v1/items/{quote(item, safe='')}", headers=api.headers(who))
    assert reply.status_code == code, reply.text
    if code == 403:
        detail = reply.json()["detail"]
        assert "only timelines of items under its own company prefixes" in detail
        assert BOREALIS in detail
